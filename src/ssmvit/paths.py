"""Every file the pipeline writes, as one pattern each, relative to the study's ``outdir``.

The Snakefile's rules declare their outputs with these patterns (and wire
upstream products as ``rules.X.output``), the DVC pipelines spell the same
paths, and a person's ``ssmvit`` command uses them for its defaults, so a
single-stage command reads and writes the files the pipeline does. Nothing
reads a run's identity back out of a path: it travels inside the files.
"""

from __future__ import annotations

from pathlib import Path

# The official file that resolution {res} is made from: {dataset}_{res}'s own file, or the smaller
# official file that data.upsample_from names for {res} (its metadata says which).
RAW = "data/raw/{dataset}_for_{res}.npz"
PROCESSED = "data/processed/{dataset}_{res}.npz"
PROCESSED_META = "data/processed/{dataset}_{res}.json"
RUN_DIR = "results/runs/{dataset}_{res}_{model}_s{seed}"
CKPT_LAST = RUN_DIR + "/last.pt"
CKPT_BEST = RUN_DIR + "/best.pt"
HISTORY = RUN_DIR + "/history.csv"
TRAIN_SUMMARY = RUN_DIR + "/train_summary.json"
METRICS = RUN_DIR + "/metrics.json"
TEST_LOGITS = RUN_DIR + "/test_logits.npz"
CONFUSION = RUN_DIR + "/confusion_matrix.csv"
# dvclive logs (for `dvc plots`, `dvc exp show`, DVC's VS Code extension): per epoch while training, the test metrics after.
LIVE_TRAIN = RUN_DIR + "/live/train"
LIVE_TEST = RUN_DIR + "/live/test"
# One profile job per resolution and model measures each input shape (channels) once and writes one file per
# dataset (its own parameter and MAC counts beside the shared timings).
PROFILE_DIR = "results/profile/{res}_{model}"
PROFILE = PROFILE_DIR + "/{dataset}.json"
# What the compile job compiled into COMPILE_CACHE ahead of a profile job (which graphs, how long): not a measurement.
COMPILED = "results/compile/{res}_{model}.json"
AGGREGATE = "results/aggregate/{table}"
FIGURES_DIR = "results/figures"
PAPER_GENERATED = "paper/generated"
PAPER_SECTIONS = "paper/sections"  # the prose templates, in the repository (not under outdir)
PAPER_PDF = "paper/main.pdf"
LOG = "logs/{name}.log"
BENCHMARK = "benchmarks/{name}.tsv"  # Snakemake's per-job seconds and memory (GPU rules)
COMPILE_CACHE = ".torchinductor-cache"

# The small per-run and per-profile results (no checkpoints, no data): what a results bundle carries.
SMALL_RESULTS = (METRICS, TRAIN_SUMMARY, HISTORY, TEST_LOGITS, CONFUSION, COMPILED, PROFILE)
AGGREGATE_TABLES = (
    "runs.csv", "accuracy.csv", "histories.csv", "paired.csv", "seed_comparison.csv", "efficiency.csv", "seed_claims.csv",
    "provenance.json", "summary.json")
# Inputs in the repository (not under outdir): the seed study's benchmark table as printed.
SEED_STUDY = "paper/seed_study.csv"


def under(outdir: str, pattern: str) -> str:
    """``pattern`` inside the study folder, spelled without a leading './' (as Snakemake and DVC compare paths)."""
    return pattern if outdir in (".", "") else f"{outdir.rstrip('/')}/{pattern}"


def file(outdir: str, pattern: str, **wildcards) -> Path:
    """One concrete path: ``file('build/x', RUN_DIR, dataset='organamnist', res=28, model='s4d', seed=0)``."""
    return Path(under(outdir, pattern.format(**wildcards)))


def study_files(cfg: dict, pattern: str) -> list[str]:
    """``pattern`` for every trained run (for PROFILE, every profiled configuration; for COMPILED, every compile job)
    of the study."""
    st = cfg["study"]
    if pattern == COMPILED:
        return [str(file(cfg["outdir"], pattern, res=r, model=m)) for r in st["resolutions"] for m in st["models"]]
    if pattern == PROFILE:
        return [str(file(cfg["outdir"], pattern, dataset=d, res=r, model=m))
                for r in st["resolutions"] for m in st["models"] for d in profiled_datasets(cfg)]
    return [str(file(cfg["outdir"], pattern, dataset=d, res=r, model=m, seed=s))
            for d in st["datasets"] for r in st["resolutions"] for m in st["models"] for s in st["seeds"]]


def profiled_datasets(cfg: dict) -> list[str]:
    """The datasets a profile job writes a file for: the trained ones, then those only profiled."""
    st = cfg["study"]
    return list(dict.fromkeys(st["datasets"] + st["profile_only"]))
