# Params, MACs (three counts), peak memory and throughput of each model at each resolution, in the seed's
# regime (plain eager fp32) and as trained (the runs' fast path). Shapes only: no images needed, so datasets
# listed in study.profile_only are profiled too. One job per resolution and model measures each input shape
# (channels) once, in one process, and writes one file per dataset.


PROFILE_SETTINGS = (
    "outdir",  # the study's inductor cache (as-trained regime)
    "profile",
    "study.datasets",
    "study.profile_only",
    "train.batch_size",
    "train.weight_decay",
    "train.device",
    "train.threads",
    "train.fast_path",
    "models.{model}",
)


# The profile's own compiles, ahead of it on a shared card: a profile has the whole machine, and a second it spends
# compiling is a second no other job runs (bench/results/h100_compile_stage_2026-12-07/). This job compiles the same
# graphs into the study's inductor cache while trainings still run, and the profile loads them. Nothing it times is
# a measurement. Where compile does not apply (a CPU), it only says so. It has no input: as an input, even ancient(),
# the data would make `--forcerun compile profile` on a checkout without data (the reference's) redo the data and so
# every training, so it may start beside the data jobs, before the first training.
rule compile:
    output:
        compiled=out(paths.COMPILED),
    log:
        log_file("compile/{res}_{model}"),
    benchmark:
        out(paths.BENCHMARK.format(name="compile/{res}_{model}"))
    conda:
        "../envs/ssmvit.yaml"
    threads: 2
    resources:
        gpu=1,
        gpu_slots=1,
        mem_mb=16000,
        runtime=30,
    params:
        settings=settings(*PROFILE_SETTINGS),
    shell:
        "ssmvit compile --res {wildcards.res} --model {wildcards.model}"
        " --out {output.compiled:q} --settings {params.settings:q} > {log:q} 2>&1"


rule profile:
    input:
        compiled=rules.compile.output.compiled,
    output:
        profiles=expand(out(paths.PROFILE), dataset=paths.profiled_datasets(config), allow_missing=True),
    log:
        log_file("profile/{res}_{model}"),
    benchmark:
        out(paths.BENCHMARK.format(name="profile/{res}_{model}"))
    conda:
        "../envs/ssmvit.yaml"
    # The whole machine, every core as well as every GPU slot (Snakemake caps both at what it has): a profile
    # starts only when no other job runs, so nothing shares the card or loads the CPU while it measures. It
    # needs no data, and with the card alone it would start first and compile cold while the trainings waited
    # (bench/README.md, the 1-seed H100 study); the data rules' priority keeps it behind them, and the
    # trainings' behind those. (profiles/slurm asks for one core: there each job has its own allocation.)
    threads: gpus.EXCLUSIVE
    resources:
        gpu=1,
        gpu_slots=gpus.EXCLUSIVE,
        mem_mb=16000,
        runtime=60,
    params:
        settings=settings(*PROFILE_SETTINGS),
        out_dir=lambda wildcards: out(paths.PROFILE_DIR.format(**wildcards)),
    shell:
        "ssmvit profile --res {wildcards.res} --model {wildcards.model}"
        " --out-dir {params.out_dir:q} --settings {params.settings:q} > {log:q} 2>&1"
