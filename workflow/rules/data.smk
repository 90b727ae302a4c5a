# Download (or copy from the local root, or synthesise) the official files, then preprocess.

rule download:
    output:
        raw=f"{OUTP}{P.RAW}",
    log:
        f"{OUTP}logs/download/{{dataset}}_{{size}}.log",
    params:
        cfg=CONFIG_FILE,
        settings=lambda w: stage_settings(CFG, "download"),
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "{PY:q} workflow/scripts/download.py --config {params.cfg:q} --dataset {wildcards.dataset:q}"
        " --size {wildcards.size:q} --out {output.raw:q} > {log:q} 2>&1"


rule preprocess:
    input:
        raw=lambda w: OUTP + P.RAW.format(dataset=w.dataset, size=source_size_for(CFG, w.res)),
        script="workflow/scripts/preprocess.py",
    output:
        data=f"{OUTP}{P.PROCESSED}",
        meta=f"{OUTP}{P.PROCESSED_META}",
    log:
        f"{OUTP}logs/preprocess/{{dataset}}_{{res}}.log",
    params:
        cfg=CONFIG_FILE,
        settings=lambda w: stage_settings(CFG, "preprocess", res=w.res),
    resources:
        mem_mb=8000,
        runtime=30,
    shell:
        "{PY:q} workflow/scripts/preprocess.py --config {params.cfg:q} --dataset {wildcards.dataset:q}"
        " --res {wildcards.res:q} --raw {input.raw:q} --out {output.data:q} --meta {output.meta:q} > {log:q} 2>&1"
