"""Aggregate per-run files into the CSVs that figures and the paper read.

Every number the paper prints passes through these tables, and every row
says where it came from (device, data provenance, status), so that a table
can label upsampled, synthetic or missing data where it appears.

  runs.csv        one row per (dataset, res, model, seed): test metrics and run facts
  accuracy.csv    one row per (dataset, res, model): mean and std over seeds, or
                  status 'needs download' for datasets only profiled
  histories.csv   per-epoch training curves of every run, long format
  efficiency.csv  one row per profiled configuration (profiling.profile_to_row)
  seed_claims.csv the seed study's table and claims beside ours, with verdicts (ssmvit.seed_claims)
  paired.csv      ViT vs S4D on the same test images: McNemar's exact test and a
                  paired bootstrap interval of the accuracy difference
  seed_comparison.csv  each pair of models across training seeds: Welch's t-test on test accuracy
"""

from __future__ import annotations

import json
from math import comb
from pathlib import Path

import numpy as np
import pandas as pd

from . import tables
from .fileio import load_npz

# MedMNIST v2 (Yang et al., Scientific Data 2023), Table of 2D results, ResNet-18 (28):
# test AUC and ACC. Printed beside our numbers for reference, never mixed with them.
MEDMNIST_V2_RESNET18_28 = {
    "pathmnist": {"auc": 0.983, "acc": 0.907},
    "dermamnist": {"auc": 0.917, "acc": 0.735},
    "bloodmnist": {"auc": 0.998, "acc": 0.958},
    "organamnist": {"auc": 0.997, "acc": 0.935},
}

# How a training step ran (train_summary.json "fast_path": the parts that were active), in words for the paper.
FAST_PATH_WORDS = {"bf16_autocast": "bf16 autocast", "fused_optimizer": "fused AdamW",
                   "compile": "torch.compile", "s4d_chunked_conv": "chunked S4D convolution",
                   "bf16_residual": "bf16 S4D residual stream", "cuda_graphs": "CUDA graphs"}
S4D_ONLY_PARTS = ("s4d_chunked_conv", "bf16_residual")  # recorded for every run, but only S4D has them


def training_arithmetic(fast_path: dict | None, model: str | None = None) -> str:
    """'fp32 eager' for a plain step, else the active fast-path parts, e.g. 'bf16 autocast + fused AdamW + ...'.
    With ``model`` given, a part that only S4D has (its chunked convolution and bf16 residual stream) is named for S4D
    only: the setting is recorded for every run, but no other model has a convolution to chunk or that stream."""
    active = [FAST_PATH_WORDS[k] + (f" ({fast_path['compile_scope']})" if k == "compile" and fast_path.get("compile_scope")
                                    else "")
              for k in FAST_PATH_WORDS if (fast_path or {}).get(k) is True
              and not (k in S4D_ONLY_PARTS and model is not None and model != "s4d")]
    return " + ".join(active) if active else "fp32 eager"


def _read_json(path) -> dict:
    return json.loads(Path(path).read_text())


def run_key(record: dict) -> tuple:
    """A run's identity, read from inside its files (never from their paths)."""
    return (record["dataset"], int(record["resolution"]), record["model"], int(record["seed"]))


def _class_shares(confusion) -> dict:
    """The smallest and largest class's share of the test images (the confusion matrix's row sums)."""
    if not confusion:
        return {"test_class_min_share": None, "test_class_max_share": None}
    support = np.asarray(confusion, dtype=float).sum(axis=1)
    return {"test_class_min_share": float(support.min() / support.sum()),
            "test_class_max_share": float(support.max() / support.sum())}


def _gpu_of(job: dict):
    """(host, GPU UUID) a training or evaluation ran on, or None (a CPU, or not recorded)."""
    where = job.get("where") or {}
    return (where.get("host"), where["gpu_uuid"]) if where.get("gpu_uuid") else None


def shared_gpu_jobs(job: dict, others) -> int | None:
    """How many of ``others`` (trainings and evaluations) ran on ``job``'s GPU while it ran; None off a GPU
    or where the times or the GPU were not recorded (jobs written before they were)."""
    gpu = _gpu_of(job)
    if gpu is None or job.get("started_at") is None or job.get("ended_at") is None:
        return None
    return sum(1 for o in others if o is not job and _gpu_of(o) == gpu and o.get("started_at") is not None
               and o.get("ended_at") is not None and o["started_at"] < job["ended_at"] and job["started_at"] < o["ended_at"])


def collect_runs(metrics_files, summary_files) -> pd.DataFrame:
    """Join each run's metrics.json with its train_summary.json (matched by the run identity both hold).

    ``train_shared_gpu_jobs``: the other trainings and evaluations of the study that used the same GPU while
    this run trained (its training time is not that of the card alone when it is above 0)."""
    summaries = {run_key(s): s for s in map(_read_json, summary_files)}
    metrics = [_read_json(p) for p in metrics_files]
    jobs = list(summaries.values()) + metrics
    rows = []
    for m in metrics:
        s = summaries.get(run_key(m), {})
        rows.append({
            "dataset": m["dataset"], "resolution": m["resolution"], "model": m["model"], "seed": m["seed"],
            "acc": m["acc"], "auc": m["auc"], "macro_f1": m["macro_f1"], "test_loss": m["test_loss"],
            "n_test": m["n_test"], "params": s.get("params"), "best_epoch": s.get("best_epoch"),
            "epochs": s.get("epochs"), "best_val_acc": s.get("best_val_acc"),
            "train_seconds": s.get("train_seconds_total"), "train_samples": s.get("train_samples"),
            "val_samples": s.get("val_samples"), **_class_shares(m.get("confusion_matrix")), "device": m.get("device"),
            "device_name": s.get("device_name"),
            "training_arithmetic": training_arithmetic(s.get("fast_path"), s.get("model")) if s else None,
            "train_shared_gpu_jobs": shared_gpu_jobs(s, jobs) if s else None,
            "upsampled": m["upsampled"],
            "source_size": m["source_size"], "official_data": m["official_data"],
        })
    df = tables.frame("runs.csv", rows)
    return df.sort_values(["dataset", "resolution", "model", "seed"]).reset_index(drop=True)


def _any_shared(counts: pd.Series):
    """True if any run shared its GPU, False if none did, None if no run recorded it (CPU runs, older files)."""
    known = pd.to_numeric(counts, errors="coerce").dropna()
    return None if known.empty else bool((known > 0).any())


def accuracy_table(runs: pd.DataFrame, profile_only=(), resolutions=(), models=()) -> pd.DataFrame:
    """Mean and sample std over seeds; 'needs download' rows for profile-only datasets."""
    rows = []
    for (dataset, res, model), g in runs.groupby(["dataset", "resolution", "model"], sort=True):
        ref = MEDMNIST_V2_RESNET18_28.get(dataset, {})
        rows.append({
            "dataset": dataset, "resolution": int(res), "model": model, "status": "ok", "n_seeds": len(g),
            "acc_mean": g["acc"].mean(), "acc_std": g["acc"].std(ddof=1) if len(g) > 1 else np.nan,
            "auc_mean": g["auc"].mean(), "auc_std": g["auc"].std(ddof=1) if len(g) > 1 else np.nan,
            "f1_mean": g["macro_f1"].mean(), "f1_std": g["macro_f1"].std(ddof=1) if len(g) > 1 else np.nan,
            "params": g["params"].iloc[0], "epochs": g["epochs"].iloc[0], "n_test": int(g["n_test"].iloc[0]),
            "upsampled": bool(g["upsampled"].iloc[0]), "source_size": int(g["source_size"].iloc[0]),
            "official_data": bool(g["official_data"].all()),
            "ref_resnet18_28_acc": ref.get("acc"), "ref_resnet18_28_auc": ref.get("auc"),
            "train_seconds_mean": pd.to_numeric(g["train_seconds"], errors="coerce").mean(),
            "train_seconds_min": pd.to_numeric(g["train_seconds"], errors="coerce").min(),
            "train_seconds_max": pd.to_numeric(g["train_seconds"], errors="coerce").max(),
            "train_shared_gpu": _any_shared(g["train_shared_gpu_jobs"]),
        })
    for dataset in profile_only:
        for res in resolutions:
            for model in models:
                ref = MEDMNIST_V2_RESNET18_28.get(dataset, {})
                rows.append({"dataset": dataset, "resolution": int(res), "model": model,
                             "status": "needs download", "n_seeds": 0,
                             "ref_resnet18_28_acc": ref.get("acc"), "ref_resnet18_28_auc": ref.get("auc")})
    return tables.frame("accuracy.csv", rows)


def summary_metrics(accuracy: pd.DataFrame) -> dict:
    """Test ACC, AUC and macro-F1 (mean over seeds) per dataset, resolution and model: the one metric set
    `dvc metrics show` and `dvc exp show` print for the study."""
    out: dict = {}
    for r in accuracy[accuracy["status"] == "ok"].itertuples():
        out.setdefault(r.dataset, {}).setdefault(str(int(r.resolution)), {})[r.model] = {
            "acc": float(r.acc_mean), "auc": float(r.auc_mean), "f1": float(r.f1_mean), "seeds": int(r.n_seeds)}
    return out


def collect_histories(history_files) -> pd.DataFrame:
    """All training curves, long format (each history row names its run)."""
    frames = [pd.read_csv(p) for p in history_files]
    return tables.frame("histories.csv", pd.concat(frames, ignore_index=True) if frames else [])


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b and c."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    p = 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n
    return float(min(1.0, p))


def logits_by_run(logit_files) -> dict:
    """(dataset, res, model, seed) -> test_logits.npz, from the identity stored in each file."""
    out = {}
    for f in logit_files:
        z = load_npz(f)
        out[(str(z["dataset"]), int(z["resolution"]), str(z["model"]), int(z["seed"]))] = f
    return out


def paired_comparison(logit_files, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """ViT vs S4D per (dataset, res, seed), on the same test images (``logit_files``: test_logits.npz files)."""
    logit_files = logits_by_run(logit_files)
    rows = []
    rng = np.random.default_rng(seed)
    keys = {(d, r, s) for (d, r, m, s) in logit_files}
    for dataset, res, s in sorted(keys):
        vit_f, s4d_f = logit_files.get((dataset, res, "vit", s)), logit_files.get((dataset, res, "s4d", s))
        if vit_f is None or s4d_f is None:
            continue
        a, b = load_npz(vit_f), load_npz(s4d_f)
        if not np.array_equal(a["labels"], b["labels"]) or not np.array_equal(a["indices"], b["indices"]):
            raise ValueError(f"{vit_f} and {s4d_f} are not on the same test images")
        y = a["labels"]
        va, sa = (a["logits"].argmax(1) == y), (b["logits"].argmax(1) == y)
        n = len(y)
        boot = rng.integers(0, n, size=(n_boot, n))
        diffs = va[boot].mean(1) - sa[boot].mean(1)
        only_vit, only_s4d = int((va & ~sa).sum()), int((~va & sa).sum())
        rows.append({"dataset": dataset, "resolution": res, "seed": s, "n_test": n,
                     "vit_acc": va.mean(), "s4d_acc": sa.mean(), "diff_vit_minus_s4d": va.mean() - sa.mean(),
                     "ci95_low": float(np.quantile(diffs, 0.025)), "ci95_high": float(np.quantile(diffs, 0.975)),
                     "only_vit_right": only_vit, "only_s4d_right": only_s4d,
                     "mcnemar_p": mcnemar_exact_p(only_vit, only_s4d)})
    return tables.frame("paired.csv", rows)


def seed_comparison(runs: pd.DataFrame, models=()) -> pd.DataFrame:
    """Each pair of models per (dataset, res), compared across training seeds: Welch's t-test on test accuracy.

    The seeds are the replicates here (each run a draw of initialisation, shuffling and dropout), so this
    asks whether the difference survives training noise, which McNemar and the bootstrap over test images
    (``paired_comparison``) cannot. No pairing of seeds is assumed. Needs at least 2 seeds per model.
    """
    from scipy import stats

    if runs.empty:
        return tables.frame("seed_comparison.csv", [])
    order = list(models) or sorted(runs["model"].unique())
    rows = []
    for (dataset, res), g in runs.groupby(["dataset", "resolution"], sort=True):
        present = [m for m in order if m in set(g["model"])]
        for i, a in enumerate(present):
            for b in present[i + 1:]:
                xa, xb = g[g["model"] == a]["acc"].to_numpy(float), g[g["model"] == b]["acc"].to_numpy(float)
                row = {"dataset": dataset, "resolution": int(res), "model_a": a, "model_b": b,
                       "n_seeds_a": len(xa), "n_seeds_b": len(xb), "acc_mean_a": xa.mean(), "acc_mean_b": xb.mean(),
                       "diff_a_minus_b": xa.mean() - xb.mean(), "welch_t": np.nan, "welch_df": np.nan,
                       "welch_p": np.nan}
                if len(xa) >= 2 and len(xb) >= 2:
                    va, vb = xa.var(ddof=1) / len(xa), xb.var(ddof=1) / len(xb)
                    if va + vb > 0:
                        test = stats.ttest_ind(xa, xb, equal_var=False)
                        row.update(welch_t=float(test.statistic), welch_p=float(test.pvalue),
                                   welch_df=float((va + vb) ** 2 / (va ** 2 / (len(xa) - 1) + vb ** 2 / (len(xb) - 1))))
                rows.append(row)
    return tables.frame("seed_comparison.csv", rows)


# What the pipeline itself writes, relative to a study's outdir: a rewritten result is not a source change.
OUTPUT_PREFIXES = ("data/", "results/", "logs/", "paper/generated/", "paper/main.pdf")


def git_state(outdir: str, root=".") -> dict:
    """The commit, and which tracked files other than the study's own outputs (and DVC locks) differ from it.

    Read when aggregation starts, before it writes anything; the outputs of the
    stages before it are results, not sources, so they do not make the tree dirty.
    """
    import subprocess

    def git(*args):
        try:
            r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    if commit is None or status is None:
        return {"git_commit": None, "git_dirty": None, "git_dirty_files": []}
    prefix = "" if outdir in (".", "") else outdir.rstrip("/") + "/"
    outputs = tuple(prefix + p for p in OUTPUT_PREFIXES)
    changed = [line[3:].split(" -> ")[-1].strip('"') for line in status.splitlines() if line.strip()]
    sources = [f for f in changed if not f.startswith(outputs) and not f.endswith("dvc.lock")]
    return {"git_commit": commit.strip(), "git_dirty": bool(sources), "git_dirty_files": sources[:20]}


# No training running for this long separates two parts of a study: one run at another time (seeds added later,
# a second GPU call, a rerun), perhaps on another GPU.
PART_GAP_S = 3600.0


def _union_seconds(intervals) -> float:
    """Seconds covered by at least one of the (start, end) ``intervals``."""
    total, end = 0.0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total, end = total + (b - a), b
        elif b > end:
            total, end = total + (b - end), b
    return total


def training_parts(summaries) -> list[dict] | None:
    """The study's trainings grouped into the parts they ran in, each with its runs, seeds, GPUs and software, its
    span (first start to last end) and the seconds in which at least one of its trainings ran (less than the span
    where the GPU waited, e.g. for a failed run to be rerun); None where a run lacks its start or end time."""
    if not summaries or not all(s.get("started_at") and s.get("ended_at") for s in summaries):
        return None
    parts, last_end = [], None
    for s in sorted(summaries, key=lambda s: s["started_at"]):
        if last_end is None or s["started_at"] - last_end > PART_GAP_S:
            parts.append([])
        parts[-1].append(s)
        last_end = s["ended_at"] if last_end is None else max(last_end, s["ended_at"])
    return [{"runs": len(p), "seeds": sorted({int(s["seed"]) for s in p if s.get("seed") is not None}),
             "devices": sorted({str(s.get("device_name") or s.get("device")) for s in p}),
             "torch": sorted({str(s["torch"]) for s in p if s.get("torch")}),
             "started_utc": min(p, key=lambda s: s["started_at"]).get("started_utc"),
             "span_s": float(max(s["ended_at"] for s in p) - min(s["started_at"] for s in p)),
             "training_s": float(_union_seconds((s["started_at"], s["ended_at"]) for s in p))} for p in parts]


def provenance(config: dict, train_summaries=(), profiles=(), git: dict | None = None) -> dict:
    """Where the numbers came from: code version, config, hardware, wall time."""
    import hashlib
    import platform
    from datetime import datetime, timezone

    summaries = [_read_json(p) for p in train_summaries]
    profs = [_read_json(p) for p in profiles]
    env = next((p.get("environment") for p in profs if p.get("environment")), {}) or {}
    import torch

    return {
        **(git if git is not None else git_state(config["outdir"])),
        "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest(),
        "train_devices": sorted({s.get("device_name") or s.get("device") for s in summaries}) or None,
        # the device, driver and software below are the profiles' (the trainings' are in train_parts)
        "device_name": env.get("device_name") or next((s.get("device_name") for s in summaries), None),
        "driver": env.get("gpu_driver") or env.get("driver"),
        "cuda": env.get("cuda") or torch.version.cuda,
        "torch": env.get("torch") or torch.__version__,
        "python": env.get("python") or platform.python_version(),  # where the GPU stages ran
        "python_here": platform.python_version(),  # where aggregation and the paper ran
        "stage_seconds": {
            "train": float(sum(s.get("train_seconds_total") or 0 for s in summaries)) if summaries else None,
            "profile": float(sum(p.get("seconds") or 0 for p in profs)) if any("seconds" in p for p in profs) else None,
        },
        # the sums above exceed the wall time when jobs share a GPU; each part's span is its first start to last end
        "train_parts": training_parts(summaries),
        "n_runs": len(summaries),
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def efficiency_table(profile_files) -> pd.DataFrame:
    """One flat row per profile JSON (see profiling.profile_to_row)."""
    from .errors import UserError
    from .profiling import PROFILE_FORMAT, profile_to_row, trained_caveats

    profiles = [(p, _read_json(p)) for p in profile_files]
    for path, prof in profiles:
        if prof.get("format", 1) < PROFILE_FORMAT:
            raise UserError(f"{path} was written by an older ssmvit (profile format {prof.get('format', 1)}, "
                            f"this one reads {PROFILE_FORMAT}: without the as-trained regime, or another MAC cost "
                            "model); "
                            "rerun its profile job (snakemake --forcerun profile, or delete the file)")
    caveats = trained_caveats([prof for _, prof in profiles])
    rows = [profile_to_row(prof, caveat) for (_, prof), caveat in zip(profiles, caveats)]
    df = tables.frame("efficiency.csv", rows)
    if not df.empty:
        df = df.sort_values(["dataset", "resolution", "model"]).reset_index(drop=True)
    return df
