# Params, MACs (three counts), peak memory and throughput of each configuration.
# Shapes only: no images needed, so datasets listed in study.profile_only are profiled too.


rule profile:
    output:
        profile=out(paths.PROFILE),
    log:
        log_file("profile/{dataset}_{res}_{model}"),
    benchmark:
        out(paths.BENCHMARK.format(name="profile/{dataset}_{res}_{model}"))
    conda:
        "../envs/ssmvit.yaml"
    resources:
        gpu=1,
        gpu_slots=gpus.EXCLUSIVE,  # every slot: no other job shares the card while it measures
        mem_mb=16000,
        runtime=60,
    params:
        settings=settings(
            "profile",
            "train.batch_size",
            "train.weight_decay",
            "train.device",
            "train.threads",
            "train.fast_path",
            "models.{model}",
        ),
    shell:
        "ssmvit profile --dataset {wildcards.dataset} --res {wildcards.res} --model {wildcards.model}"
        " --out {output.profile:q} --settings {params.settings:q} > {log:q} 2>&1"
