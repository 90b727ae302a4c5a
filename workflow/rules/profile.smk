# Params, MACs (three counts), peak memory and throughput of each configuration.
# Shapes only: no images needed, so datasets listed in study.profile_only are profiled too.

rule profile:
    input:
        script="workflow/scripts/profile_model.py",
    output:
        profile=f"{OUTP}{P.PROFILE}",
    log:
        f"{OUTP}logs/profile/{{dataset}}_{{res}}_{{model}}.log",
    params:
        cfg=CONFIG_FILE,
        settings=lambda w: stage_settings(CFG, "profile", model=w.model),
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=60,
    shell:
        "{PY:q} workflow/scripts/profile_model.py --config {params.cfg:q} --dataset {wildcards.dataset:q}"
        " --res {wildcards.res:q} --model {wildcards.model:q} --out {output.profile:q} > {log:q} 2>&1"
