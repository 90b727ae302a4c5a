# Get (local root, download or synthesise) the official file a resolution is made from, then preprocess.


rule download:
    output:
        raw=out(paths.RAW),
    log:
        log_file("download/{dataset}_{res}"),
    benchmark:
        out(paths.BENCHMARK.format(name="download/{dataset}_{res}"))
    priority: 1  # before a profile, which needs no data and would take the idle machine (profile.smk)
    conda:
        "../envs/ssmvit.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        settings=settings(
            "data.local_root",
            "data.mirror_url",
            "data.download_timeout_s",
            "data.download_retries",
            "data.download_backoff_s",
            "data.checksums",
            "data.synthetic",
            "data.synthetic_splits",
            "data.upsample_from.{res}",
        ),
    shell:
        "ssmvit download --dataset {wildcards.dataset} --res {wildcards.res} --out {output.raw:q}"
        " --settings {params.settings:q} > {log:q} 2>&1"


rule preprocess:
    input:
        raw=rules.download.output.raw,
    output:
        data=out(paths.PROCESSED),
        meta=out(paths.PROCESSED_META),
    log:
        log_file("preprocess/{dataset}_{res}"),
    benchmark:
        out(paths.BENCHMARK.format(name="preprocess/{dataset}_{res}"))
    priority: 1  # as download
    conda:
        "../envs/ssmvit.yaml"
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        settings=settings("data.upsample_from.{res}", "data.checksums", "data.synthetic"),
    shell:
        "ssmvit preprocess --dataset {wildcards.dataset} --res {wildcards.res} --raw {input.raw:q}"
        " --out {output.data:q} --meta {output.meta:q} --settings {params.settings:q} > {log:q} 2>&1"
