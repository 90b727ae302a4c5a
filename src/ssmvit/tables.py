"""The study's aggregate tables (``results/aggregate/*.csv``): the columns of each, and reading them back.

``ssmvit aggregate`` builds every table with ``frame`` from the columns named here, and the figures
(``ssmvit.plots``) and the paper (``ssmvit.report``) read them with ``read_table``: a column is named in
this one place. Numeric columns hold numbers or nothing; why a cell holds nothing is said in a column of its
own (efficiency.csv's ``oom`` names the cells whose measurement ran out of memory).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

RUN_KEY = ["dataset", "resolution", "model", "seed"]

# One row per run (dataset, resolution, model, seed): test metrics and how the run trained.
RUNS = [*RUN_KEY, "acc", "auc", "macro_f1", "test_loss", "n_test", "params", "best_epoch", "epochs", "best_val_acc",
        "train_seconds", "train_samples", "val_samples", "test_class_min_share", "test_class_max_share", "device",
        "device_name", "training_arithmetic", "train_shared_gpu_jobs", "upsampled", "source_size", "official_data"]

# One row per configuration (dataset, resolution, model): mean and sample std over seeds, or a status such as
# "needs download" for a dataset that was only profiled.
ACCURACY = ["dataset", "resolution", "model", "status", "n_seeds", "acc_mean", "acc_std", "auc_mean", "auc_std",
            "f1_mean", "f1_std", "params", "epochs", "n_test", "upsampled", "source_size", "official_data",
            "ref_resnet18_28_acc", "ref_resnet18_28_auc", "train_seconds_mean", "train_seconds_min",
            "train_seconds_max", "train_shared_gpu"]

# One row per epoch of every run (a run's own history.csv has the same columns).
HISTORIES = [*RUN_KEY, "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]

# ViT vs S4D on the same test images, per (dataset, resolution, seed).
PAIRED = ["dataset", "resolution", "seed", "n_test", "vit_acc", "s4d_acc", "diff_vit_minus_s4d", "ci95_low",
          "ci95_high", "only_vit_right", "only_s4d_right", "mcnemar_p"]

# Each pair of models per (dataset, resolution) across training seeds.
SEED_COMPARISON = ["dataset", "resolution", "model_a", "model_b", "n_seeds_a", "n_seeds_b", "acc_mean_a",
                   "acc_mean_b", "diff_a_minus_b", "welch_t", "welch_df", "welch_p"]

# One row per profiled configuration (``profiling.profile_to_row``); more columns follow these (the spread over
# the repeats, every profiled batch size, the as-trained regime's cells, the environment).
EFFICIENCY = ["dataset", "resolution", "model", "n_channels", "n_classes", "params",
              "macs_thop", "macs_flopcounter", "macs_analytic", "macs_torchinfo", "device_type", "device_name",
              "train_batch_size", "train_samples_per_s_fp32", "train_samples_per_s_trained",
              "train_peak_allocated_mb", "train_peak_reserved_mb", "static_mb",
              "infer_samples_per_s_bs1", "infer_samples_per_s_bs64", "infer_samples_per_s_bs256",
              "infer_samples_per_s_bs1024", "latency_bs1_ms", "infer_peak_allocated_mb_bs64",
              "peak_rss_mb", "data_note", "oom"]
OOM_SEPARATOR = ";"
# efficiency.csv's trained_caveat: what may make a row's as-trained numbers understate the fast path
# (profiling.trained_caveats), joined by CAVEAT_SEPARATOR. TRAINED_CAVEAT concerns the whole regime, DYNAMIC_CAVEAT
# its inference above batch 1 (caveat_applies).
CAVEAT_SEPARATOR = " | "
TRAINED_CAVEAT = ("measured after another input shape in the same process, before each shape's compiles were made "
                  "fresh: past dynamo's recompile limit, part of this regime may have run eager, so it can understate "
                  "the fast path")
DYNAMIC_CAVEAT = ("its inference above batch 1 ran one graph compiled for any batch size (dynamo recompiles the "
                  "second size it sees that way), not the static graph of a model compiled for its batch size: its "
                  "kernels index by divisions by runtime sizes, so its speed can understate the fast path's and its "
                  "memory differ from it")


def caveat_applies(caveat, column: str) -> bool:
    """Whether a row's ``trained_caveat`` concerns its as-trained ``column`` (e.g. infer_samples_per_s_bs1024_trained)."""
    column = re.sub(r"_(min|q25|q75|max)$", "", column)  # a spread column: that of its measurement
    if is_missing(caveat) or not column.endswith("_trained"):
        return False
    if any(text != DYNAMIC_CAVEAT for text in str(caveat).split(CAVEAT_SEPARATOR)):
        return True
    batch = re.search(r"_bs(\d+)_", column)
    return column.startswith("infer") and batch is not None and int(batch.group(1)) > 1
# The three MAC counts of a profile, as columns and as the paper names the counters.
MAC_COUNTS = [("macs_thop", "thop"), ("macs_flopcounter", "FlopCounter"), ("macs_analytic", "analytic")]

# The seed study's figures and claims beside ours (``ssmvit.seed_claims``), one column per regime.
SEED_CLAIM_REGIMES = ("train_fp32", "train_trained", "infer_fp32", "infer_trained")
SEED_CLAIMS = ["kind", "id", "claim", "dataset", "resolution", "model", "quantity", "seed", *SEED_CLAIM_REGIMES,
               "verdict", "reason"]

COLUMNS = {"runs.csv": RUNS, "accuracy.csv": ACCURACY, "histories.csv": HISTORIES, "paired.csv": PAIRED,
           "seed_comparison.csv": SEED_COMPARISON, "efficiency.csv": EFFICIENCY, "seed_claims.csv": SEED_CLAIMS}
# Tables whose rows may carry columns beyond the named ones (they follow, in the rows' order).
OPEN_ENDED = {"efficiency.csv"}


def frame(name: str, rows) -> pd.DataFrame:
    """``rows`` (dicts or a DataFrame) as the table ``name``: its columns in their order, a missing one empty.

    A column that is not named here is an error, except in an open-ended table, where it follows the named ones.
    """
    df = pd.DataFrame(rows)
    named = COLUMNS[name]
    extra = [c for c in df.columns if c not in named]
    if extra and name not in OPEN_ENDED:
        raise KeyError(f"{name} has no column {extra[0]!r}; name it in ssmvit.tables.COLUMNS")
    return df.reindex(columns=named + extra)


def read_table(path) -> pd.DataFrame | None:
    """A table as a DataFrame, or None when the file is missing or has no rows.

    A table named in ``COLUMNS`` gets every column (one its writer left out reads as empty), and rows without
    a dataset/resolution/model are dropped.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None
    named = COLUMNS.get(path.name, [])
    for col in named:
        if col not in df.columns:
            df[col] = np.nan
    keys = [c for c in ("dataset", "resolution", "model") if c in named]
    if keys:
        df = df.dropna(subset=keys).copy()
        df["resolution"] = df["resolution"].astype(int)
        df["dataset"] = df["dataset"].astype(str)
        if "model" in keys:
            df["model"] = df["model"].astype(str)
    if "status" in df.columns:
        df["status"] = df["status"].fillna("ok").astype(str)
    return df.reset_index(drop=True) if len(df) else None


# ------------------------------------------------------------------------------------------------ cells
def to_float(value) -> float:
    """A cell as float; an empty or non-numeric cell gives NaN."""
    if value is None:
        return float("nan")
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return float("nan")


def is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == "" or value.strip().lower() == "nan"
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def to_bool(value) -> bool | None:
    if is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return bool(value)
    s = str(value).strip().lower()
    if s in ("true", "1", "yes"):
        return True
    if s in ("false", "0", "no"):
        return False
    return None


def oom_cells(row) -> set[str]:
    """The columns of an efficiency row whose measurement ran out of memory (its ``oom`` cell)."""
    value = row.get("oom")
    return set() if is_missing(value) else {c for c in str(value).split(OOM_SEPARATOR) if c}


def ran_out_of_memory(row, column: str) -> bool:
    return column in oom_cells(row)


def batch_columns(eff: pd.DataFrame) -> list[tuple[int, str]]:
    """[(batch size, column)] of the fp32 inference throughput columns of efficiency.csv, by batch size."""
    out = []
    for col in eff.columns:
        m = re.fullmatch(r"infer_samples_per_s_bs(\d+)", col)
        if m:
            out.append((int(m.group(1)), col))
    return sorted(out)


def data_facts(accuracy: pd.DataFrame | None, runs: pd.DataFrame | None = None) -> dict:
    """(dataset, res) -> {'upsampled', 'source_size', 'official'} from trained rows."""
    facts: dict = {}
    for table in (runs, accuracy):
        if table is None:
            continue
        for _, r in table.iterrows():
            if "status" in table.columns and r.get("status") != "ok":
                continue
            key = (str(r["dataset"]), int(r["resolution"]))
            up, off = to_bool(r.get("upsampled")), to_bool(r.get("official_data"))
            src = to_float(r.get("source_size"))
            f = facts.setdefault(key, {"upsampled": False, "source_size": None, "official": True})
            if up:
                f["upsampled"] = True
            if not math.isnan(src):
                f["source_size"] = int(src)
            if off is False:
                f["official"] = False
    return facts
