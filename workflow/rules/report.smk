# Aggregate CSVs -> figures -> paper PDF (generated LaTeX beside it).

# The aggregate tables shown in `snakemake --report`, with their captions.
TABLES = {"accuracy.csv": "../report/accuracy.rst", "efficiency.csv": "../report/efficiency.rst"}


rule aggregate:
    input:
        metrics=paths.study_files(config, paths.METRICS),
        summaries=paths.study_files(config, paths.TRAIN_SUMMARY),
        histories=paths.study_files(config, paths.HISTORY),
        logits=paths.study_files(config, paths.TEST_LOGITS),
        profiles=paths.study_files(config, paths.PROFILE),
        seed_study=paths.SEED_STUDY,
    output:
        **{t.split(".")[0]: out(paths.AGGREGATE.format(table=t)) for t in paths.AGGREGATE_TABLES if t not in TABLES},
        **{
            t.split(".")[0]: report(out(paths.AGGREGATE.format(table=t)), caption=caption, category="Tables")
            for t, caption in TABLES.items()
        },
    log:
        log_file("aggregate"),
    benchmark:
        out(paths.BENCHMARK.format(name="aggregate"))
    conda:
        "../envs/ssmvit.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        settings=settings("outdir", "study"),
        out_dir=lambda wildcards, output: os.path.dirname(output.runs),
    shell:
        # The inputs are the study's files, which `ssmvit aggregate` reads by default (as under DVC).
        "ssmvit aggregate --out-dir {params.out_dir:q} --seed-study {input.seed_study:q}"
        " --settings {params.settings:q} > {log:q} 2>&1"


rule plot:
    input:
        tables=rules.aggregate.output,
        metrics=paths.study_files(config, paths.METRICS),
    output:
        # `snakemake --report report.html` shows every figure under "Figures".
        figures=report(
            directory(out(paths.FIGURES_DIR)),
            patterns=["{name}.pdf"],
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "{name}"},
        ),
    log:
        log_file("plot"),
    benchmark:
        out(paths.BENCHMARK.format(name="plot"))
    conda:
        "../envs/ssmvit.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        settings=settings("outdir", "study"),
        aggregate_dir=lambda wildcards, input: os.path.dirname(input.tables[0]),
    shell:
        "ssmvit plot --aggregate-dir {params.aggregate_dir:q} --out-dir {output.figures:q}"
        " --settings {params.settings:q} > {log:q} 2>&1"


rule paper:
    input:
        tables=rules.aggregate.output,
        figures=rules.plot.output.figures,
        tex="paper/main.tex",
        bib="paper/references.bib",
        sections=sorted(glob.glob(f"{paths.PAPER_SECTIONS}/*.tex")),  # the prose templates
    output:
        pdf=out(paths.PAPER_PDF),
        generated=directory(out(paths.PAPER_GENERATED)),
    log:
        log_file("paper"),
    benchmark:
        out(paths.BENCHMARK.format(name="paper"))
    conda:
        "../envs/ssmvit.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=settings("outdir", "data", "study", "train", "profile", "models", "paper"),
        aggregate_dir=lambda wildcards, input: os.path.dirname(input.tables[0]),
    shell:
        "ssmvit paper --aggregate-dir {params.aggregate_dir:q} --figures-dir {input.figures:q}"
        " --tex {input.tex:q} --bib {input.bib:q} --out {output.pdf:q}"
        " --settings {params.settings:q} > {log:q} 2>&1"
