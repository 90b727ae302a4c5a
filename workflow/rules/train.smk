# Train one model per dataset x resolution x seed, then evaluate its best checkpoint.
# GPU jobs take one gpu_slot each: several share a card (ssmvit.gpus, profiles/default).


rule train:
    input:
        data=rules.preprocess.output.data,
        meta=rules.preprocess.output.meta,
    output:
        best=out(paths.CKPT_BEST),
        history=out(paths.HISTORY),
        summary=out(paths.TRAIN_SUMMARY),
        live=directory(out(paths.LIVE_TRAIN)),
    log:
        log_file("train/{dataset}_{res}_{model}_s{seed}"),
    benchmark:
        out(paths.BENCHMARK.format(name="train/{dataset}_{res}_{model}_s{seed}"))
    priority: train_priority
    conda:
        "../envs/ssmvit.yaml"
    # train.threads where the config sets it, as torch then uses that many (ssmvit.training); else 2. On a SLURM
    # cluster this is --cpus-per-task.
    threads: config["train"]["threads"] or 2
    resources:
        gpu=1,
        gpu_slots=1,
        mem_mb=16000,
        runtime=120,
    params:
        settings=settings("outdir", "train", "models.{model}"),
        run_dir=run_dir,
    shell:
        "ssmvit train --dataset {wildcards.dataset} --res {wildcards.res} --model {wildcards.model}"
        " --seed {wildcards.seed} --data {input.data:q} --meta {input.meta:q} --out-dir {params.run_dir:q}"
        " --no-progress --settings {params.settings:q} > {log:q} 2>&1"


rule evaluate:
    input:
        best=rules.train.output.best,
        data=rules.preprocess.output.data,
        meta=rules.preprocess.output.meta,
    output:
        metrics=out(paths.METRICS),
        logits=out(paths.TEST_LOGITS),
        confusion=out(paths.CONFUSION),
        live=directory(out(paths.LIVE_TEST)),
    log:
        log_file("evaluate/{dataset}_{res}_{model}_s{seed}"),
    benchmark:
        out(paths.BENCHMARK.format(name="evaluate/{dataset}_{res}_{model}_s{seed}"))
    # before a profile, which takes the whole machine: the last training's evaluation ran after all
    # the profiles, 211 s after its training ended (bench/README.md, the 1-seed H100 study)
    priority: 1
    conda:
        "../envs/ssmvit.yaml"
    resources:
        gpu=1,
        gpu_slots=1,
        mem_mb=8000,
        runtime=30,
    params:
        settings=settings("train.device", "train.eval_batch_size", "train.max_eval_samples", "models.{model}"),
        run_dir=run_dir,
    shell:
        "ssmvit evaluate --dataset {wildcards.dataset} --res {wildcards.res} --model {wildcards.model}"
        " --seed {wildcards.seed} --data {input.data:q} --meta {input.meta:q} --checkpoint {input.best:q}"
        " --out-dir {params.run_dir:q} --settings {params.settings:q} > {log:q} 2>&1"
