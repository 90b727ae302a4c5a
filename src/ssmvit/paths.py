"""Every path the pipeline reads or writes, built in one place.

The scripts, the Snakefile and dvc.yaml use these patterns, so a path is
spelled once. Patterns are relative to the study's output folder
(config key ``outdir``: ``.`` for the reference study, e.g. ``build/smoke``
for the smoke study, so a smoke run never overwrites the reference results),
which is itself relative to the project root, the working directory of
every stage.
"""

from __future__ import annotations

from pathlib import Path

from .config import KNOWN_DATASETS, KNOWN_MODELS, KNOWN_RESOLUTIONS, check_choice

RAW = "data/raw/{dataset}_{size}.npz"
PROCESSED = "data/processed/{dataset}_{res}.npz"
PROCESSED_META = "data/processed/{dataset}_{res}.json"
RUN_DIR = "results/runs/{dataset}_{res}_{model}_s{seed}"
HISTORY = RUN_DIR + "/history.csv"
CKPT_LAST = RUN_DIR + "/last.pt"
CKPT_BEST = RUN_DIR + "/best.pt"
TRAIN_SUMMARY = RUN_DIR + "/train_summary.json"
METRICS = RUN_DIR + "/metrics.json"
TEST_LOGITS = RUN_DIR + "/test_logits.npz"
CONFUSION = RUN_DIR + "/confusion_matrix.csv"
PROFILE = "results/profile/{dataset}_{res}_{model}.json"
AGGREGATE_DIR = "results/aggregate"
FIGURES_DIR = "results/figures"
PAPER_DIR = "paper"
LOGS_DIR = "logs"


def _checked(dataset=None, res=None, model=None, seed=None, size=None) -> dict:
    """Check names against the known lists so no path can leave the project folders."""
    out = {}
    if dataset is not None:
        check_choice("dataset", dataset, KNOWN_DATASETS)
        out["dataset"] = dataset
    for key, val in (("res", res), ("size", size)):
        if val is not None:
            check_choice("resolution" if key == "res" else "source size", int(val), KNOWN_RESOLUTIONS)
            out[key] = int(val)
    if model is not None:
        check_choice("model", model, KNOWN_MODELS)
        out["model"] = model
    if seed is not None:
        if int(seed) < 0:
            raise ValueError("seed must be >= 0")
        out["seed"] = int(seed)
    return out


def raw(dataset, size, outdir=".") -> Path:
    return Path(outdir) / RAW.format(**_checked(dataset=dataset, size=size))


def processed(dataset, res, outdir=".") -> Path:
    return Path(outdir) / PROCESSED.format(**_checked(dataset=dataset, res=res))


def processed_meta(dataset, res, outdir=".") -> Path:
    return Path(outdir) / PROCESSED_META.format(**_checked(dataset=dataset, res=res))


def run_file(pattern: str, dataset, res, model, seed, outdir=".") -> Path:
    return Path(outdir) / pattern.format(**_checked(dataset=dataset, res=res, model=model, seed=seed))


def run_dir(dataset, res, model, seed, outdir=".") -> Path:
    return run_file(RUN_DIR, dataset, res, model, seed, outdir)


def profile(dataset, res, model, outdir=".") -> Path:
    return Path(outdir) / PROFILE.format(**_checked(dataset=dataset, res=res, model=model))


def official_name(dataset: str, size: int) -> str:
    """The file name medmnist uses: ``organamnist.npz`` for 28, ``organamnist_64.npz`` otherwise."""
    return f"{dataset}.npz" if int(size) == 28 else f"{dataset}_{int(size)}.npz"
