# Train one model per dataset x resolution x seed, then evaluate its best checkpoint.
# GPU jobs declare gpu=1: `--resources gpu=N` runs N at once (see README, "GPUs").

rule train:
    input:
        data=rules.preprocess.output.data,
        meta=rules.preprocess.output.meta,
        script="workflow/scripts/train.py",
    output:
        best=f"{OUTP}{P.CKPT_BEST}",
        history=f"{OUTP}{P.HISTORY}",
        summary=f"{OUTP}{P.TRAIN_SUMMARY}",
    log:
        f"{OUTP}logs/train/{{dataset}}_{{res}}_{{model}}_s{{seed}}.log",
    params:
        cfg=CONFIG_FILE,
        settings=lambda w: stage_settings(CFG, "train", model=w.model, res=w.res),
        out_dir=lambda w, output: str(Path(output.best).parent),
    threads: 2
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=120,
    shell:
        "{PY:q} workflow/scripts/train.py --config {params.cfg:q} --dataset {wildcards.dataset:q}"
        " --res {wildcards.res:q} --model {wildcards.model:q} --seed {wildcards.seed:q} --data {input.data:q}"
        " --out-dir {params.out_dir:q} --no-progress > {log:q} 2>&1"


rule evaluate:
    input:
        best=rules.train.output.best,
        data=rules.preprocess.output.data,
        meta=rules.preprocess.output.meta,
        script="workflow/scripts/evaluate.py",
    output:
        metrics=f"{OUTP}{P.METRICS}",
        logits=f"{OUTP}{P.TEST_LOGITS}",
        confusion=f"{OUTP}{P.CONFUSION}",
    log:
        f"{OUTP}logs/evaluate/{{dataset}}_{{res}}_{{model}}_s{{seed}}.log",
    params:
        cfg=CONFIG_FILE,
        settings=lambda w: stage_settings(CFG, "evaluate"),
        out_dir=lambda w, output: str(Path(output.metrics).parent),
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=30,
    shell:
        "{PY:q} workflow/scripts/evaluate.py --config {params.cfg:q} --dataset {wildcards.dataset:q}"
        " --res {wildcards.res:q} --model {wildcards.model:q} --seed {wildcards.seed:q} --data {input.data:q}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"
