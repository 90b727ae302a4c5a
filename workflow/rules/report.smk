# Aggregate CSVs -> figures -> generated LaTeX -> paper PDF.

def run_files(pattern):
    return [OUTP + pattern.format(dataset=d, res=r, model=m, seed=s)
            for d, r, m, s in trained_runs(CFG)]


rule aggregate:
    input:
        metrics=run_files(P.METRICS),
        summaries=run_files(P.TRAIN_SUMMARY),
        histories=run_files(P.HISTORY),
        logits=run_files(P.TEST_LOGITS),
        profiles=[OUTP + P.PROFILE.format(dataset=d, res=r, model=m) for d, r, m in profiled_configs(CFG)],
        script="workflow/scripts/aggregate.py",
    output:
        runs=f"{OUTP}{P.AGGREGATE_DIR}/runs.csv",
        accuracy=f"{OUTP}{P.AGGREGATE_DIR}/accuracy.csv",
        histories=f"{OUTP}{P.AGGREGATE_DIR}/histories.csv",
        paired=f"{OUTP}{P.AGGREGATE_DIR}/paired.csv",
        efficiency=f"{OUTP}{P.AGGREGATE_DIR}/efficiency.csv",
        provenance=f"{OUTP}{P.AGGREGATE_DIR}/provenance.json",
    log:
        f"{OUTP}logs/aggregate.log",
    params:
        cfg=CONFIG_FILE,
        out_dir=f"{OUTP}{P.AGGREGATE_DIR}",
    resources:
        mem_mb=4000,
        runtime=10,
    shell:
        "{PY:q} workflow/scripts/aggregate.py --config {params.cfg:q} --metrics {input.metrics:q}"
        " --summaries {input.summaries:q} --histories {input.histories:q} --logits {input.logits:q}"
        " --profiles {input.profiles:q} --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule plot:
    input:
        rules.aggregate.output.accuracy,
        rules.aggregate.output.histories,
        rules.aggregate.output.efficiency,
        confusion=run_files(P.CONFUSION),
        script="workflow/scripts/plot.py",
    output:
        # report(): `snakemake --report report.html` shows every figure, grouped under "Figures".
        figures=report(directory(f"{OUTP}{P.FIGURES_DIR}"), patterns=["{name}.pdf"], category="Figures"),
    log:
        f"{OUTP}logs/plot.log",
    params:
        cfg=CONFIG_FILE,
        aggregate=f"{OUTP}{P.AGGREGATE_DIR}",
        runs=f"{OUTP}results/runs",
    resources:
        mem_mb=4000,
        runtime=10,
    shell:
        "{PY:q} workflow/scripts/plot.py --config {params.cfg:q} --aggregate-dir {params.aggregate:q}"
        " --runs-dir {params.runs:q} --out-dir {output.figures:q} > {log:q} 2>&1"


rule paper_inputs:
    input:
        aggregate=rules.aggregate.output,
        figures=rules.plot.output.figures,
        config=CONFIG_FILE,
        script="workflow/scripts/paper_inputs.py",
    output:
        generated=directory(f"{OUTP}{P.PAPER_DIR}/generated"),
    log:
        f"{OUTP}logs/paper_inputs.log",
    params:
        cfg=CONFIG_FILE,
        aggregate=f"{OUTP}{P.AGGREGATE_DIR}",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{PY:q} workflow/scripts/paper_inputs.py --config {params.cfg:q} --aggregate-dir {params.aggregate:q}"
        " --figures-dir {input.figures:q} --out-dir {output.generated:q} > {log:q} 2>&1"


rule paper:
    input:
        generated=rules.paper_inputs.output.generated,
        figures=rules.plot.output.figures,
        tex="paper/main.tex",
        bib="paper/references.bib",
        script="workflow/scripts/build_paper.py",
    output:
        pdf=f"{OUTP}{P.PAPER_DIR}/main.pdf",
    log:
        f"{OUTP}logs/paper.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{PY:q} workflow/scripts/build_paper.py --tex {input.tex:q} --bib {input.bib:q}"
        " --generated {input.generated:q} --out {output.pdf:q} > {log:q} 2>&1"
