"""Figures of the paper, drawn from the aggregate CSVs and per-run confusion matrices.

Every figure is a vector PDF written atomically (temporary file, then rename),
under a fixed name, so that the paper can include it:

  curves_{dataset}.pdf            validation accuracy and training loss per epoch,
                                  one column per resolution, mean line and
                                  min-max band over seeds, one colour per model
  confusion_{dataset}_{res}.pdf   ViT and S4D confusion matrices side by side
                                  (seed 0, or the first seed), normalised per true class
  throughput.pdf                  inference samples/s vs batch size (log-log), one panel per resolution
  vram.pdf                        peak training VRAM vs resolution (a labelled
                                  placeholder when profiling ran on CPU), and peak host RSS
  macs.pdf                        Mult-Adds per image, three counts (thop, FlopCounter,
                                  analytic) per configuration, grouped bars, log scale
  acc_vs_params.pdf               test accuracy vs parameter count (log x)
  acc_vs_macs.pdf                 test accuracy vs Mult-Adds (log x)
  manifest.json                   the figures this call wrote (file, kind, dataset,
                                  resolution, notes); report.py includes exactly these

Input data that is not official MedMNIST is labelled "synthetic data" and a
resolution made by resizing a smaller file "RxR upsampled from SxS", in the
titles where the numbers are shown.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .fileio import atomic_path, write_json
from .models import MODELS

# Models in registry order (ssmvit.models), each with its own colour from the Okabe-Ito palette
# (colourblind-safe; the first three also differ in grayscale brightness).
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
MODEL_LABELS = {name: e.label for name, e in MODELS.items()}
MODEL_ORDER = list(MODELS)
MODEL_COLORS = {name: OKABE_ITO[i % len(OKABE_ITO)] for i, name in enumerate(MODELS)}
DATASET_MARKERS = ["o", "s", "^", "D", "v", "P"]
DATASET_LINESTYLES = ["-", "--", ":", "-."]
MAC_COUNTS = [("macs_thop", "thop"), ("macs_flopcounter", "FlopCounter"), ("macs_analytic", "analytic")]
MAC_COLORS = ["#8da0cb", "#fc8d62", "#66c2a5"]

THROUGHPUT = "throughput.pdf"
VRAM = "vram.pdf"
MACS = "macs.pdf"
ACC_VS_PARAMS = "acc_vs_params.pdf"
ACC_VS_MACS = "acc_vs_macs.pdf"
MANIFEST = "manifest.json"
PLACEHOLDER_CPU = "not measured on CPU"


def curves_name(dataset: str) -> str:
    return f"curves_{dataset}.pdf"


def confusion_name(dataset: str, res: int) -> str:
    return f"confusion_{dataset}_{int(res)}.pdf"


# ---------------------------------------------------------------- reading helpers

def dataset_label(name: str) -> str:
    """MedMNIST's own spelling (medmnist.INFO's class name: OrganAMNIST), else the name as given."""
    try:
        from .catalog import describe

        return describe(str(name))["title"]
    except Exception:  # noqa: BLE001  a name outside the catalogue (a test's) is shown as it is
        return str(name)


def model_label(name: str) -> str:
    return MODEL_LABELS.get(str(name), str(name))


def model_sort_key(name: str):
    return (MODEL_ORDER.index(name) if name in MODEL_ORDER else len(MODEL_ORDER), str(name))


# The columns each aggregate file is read with; a column a producer left out reads as empty.
COLUMNS = {
    "accuracy.csv": ["dataset", "resolution", "model", "status", "n_seeds", "acc_mean", "acc_std", "auc_mean",
                     "auc_std", "f1_mean", "f1_std", "params", "epochs", "n_test", "upsampled", "source_size",
                     "official_data", "ref_resnet18_28_acc", "ref_resnet18_28_auc"],
    "runs.csv": ["dataset", "resolution", "model", "seed", "acc", "auc", "macro_f1", "test_loss", "n_test", "params",
                 "best_epoch", "epochs", "train_seconds", "train_samples", "device", "device_name", "upsampled",
                 "source_size", "official_data"],
    "histories.csv": ["dataset", "resolution", "model", "seed", "epoch", "train_loss", "train_acc", "val_loss",
                      "val_acc", "lr", "seconds"],
    "paired.csv": ["dataset", "resolution", "seed", "n_test", "vit_acc", "s4d_acc", "diff_vit_minus_s4d", "ci95_low",
                   "ci95_high", "only_vit_right", "only_s4d_right", "mcnemar_p"],
    "efficiency.csv": ["dataset", "resolution", "model", "n_channels", "n_classes", "params", "macs_thop",
                       "macs_flopcounter", "macs_analytic", "device_type", "device_name", "train_batch_size",
                       "train_samples_per_s_fp32", "train_samples_per_s_bf16", "train_peak_allocated_mb",
                       "train_peak_reserved_mb", "static_mb", "peak_rss_mb", "data_note"],
}


def read_csv(path) -> pd.DataFrame | None:
    """A CSV as a DataFrame, or None when the file is missing or has no rows.

    Known files get every documented column (missing ones empty), and rows
    without a dataset/resolution/model are dropped.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None
    for col in COLUMNS.get(path.name, []):
        if col not in df.columns:
            df[col] = np.nan
    keys = [c for c in ("dataset", "resolution", "model") if c in COLUMNS.get(path.name, [])]
    if keys:
        df = df.dropna(subset=keys).copy()
        df["resolution"] = df["resolution"].astype(int)
        df["dataset"] = df["dataset"].astype(str)
        if "model" in keys:
            df["model"] = df["model"].astype(str)
    if "status" in df.columns:
        df["status"] = df["status"].fillna("ok").astype(str)
    return df.reset_index(drop=True) if len(df) else None


def to_float(value) -> float:
    """A cell as float; empty cells, 'OOM' and anything non-numeric give NaN."""
    if value is None:
        return float("nan")
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return float("nan")


def is_oom(value) -> bool:
    return isinstance(value, str) and value.strip().upper() == "OOM"


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


def mpl_text(s) -> str:
    """A string from data, safe for matplotlib (no mathtext from a stray '$')."""
    return str(s).replace("$", r"\$")


def data_facts(accuracy: pd.DataFrame | None, runs: pd.DataFrame | None = None) -> dict:
    """(dataset, res) -> {'upsampled', 'source_size', 'official'} from trained rows."""
    facts: dict = {}
    for frame in (runs, accuracy):
        if frame is None:
            continue
        for _, r in frame.iterrows():
            if "status" in frame.columns and r.get("status") != "ok":
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


def res_label(res: int, fact: dict | None = None) -> str:
    """'28x28', '64x64 upsampled from 28x28'."""
    text = f"{int(res)}x{int(res)}"
    if fact and fact.get("upsampled") and fact.get("source_size"):
        s = int(fact["source_size"])
        text += f" upsampled from {s}x{s}"
    return text


def data_note(fact: dict | None) -> str:
    return "synthetic data" if fact and fact.get("official") is False else ""


def any_synthetic(facts: dict, dataset: str | None = None) -> bool:
    return any(f.get("official") is False for (d, _), f in facts.items() if dataset is None or d == dataset)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
                         "xtick.labelsize": 7, "ytick.labelsize": 7, "figure.titlesize": 9,
                         "pdf.fonttype": 42, "svg.hashsalt": "ssmvit", "axes.grid": True,
                         "grid.alpha": 0.3, "grid.linewidth": 0.5})
    return plt


def save_figure(fig, path) -> Path:
    """Save ``fig`` as PDF to a temporary file beside ``path``, then rename it onto ``path``."""
    plt = _plt()
    path = Path(path)
    with atomic_path(path) as tmp:
        # No creation date in the metadata: the same inputs give the same bytes.
        fig.savefig(tmp, format="pdf", bbox_inches="tight", metadata={"CreationDate": None})
    plt.close(fig)
    return path


# ---------------------------------------------------------------- figures

def plot_curves(histories: pd.DataFrame, facts: dict, out_dir) -> list[dict]:
    """One figure per dataset: rows = val acc / train loss, columns = resolutions."""
    plt = _plt()
    written = []
    if histories is None or not len(histories):
        return written
    for dataset, hd in histories.groupby("dataset", sort=True):
        resolutions = sorted(int(r) for r in hd["resolution"].unique())
        fig, axes = plt.subplots(2, len(resolutions), figsize=(3.3 * len(resolutions) + 0.4, 4.6),
                                 squeeze=False, sharex="col")
        seeds_used = {}
        for j, res in enumerate(resolutions):
            hr = hd[hd["resolution"] == res]
            fact = facts.get((dataset, res))
            title = res_label(res, fact)
            if data_note(fact):
                title += f" ({data_note(fact)})"
            axes[0, j].set_title(title)
            for model in sorted(hr["model"].unique(), key=model_sort_key):
                hm = hr[hr["model"] == model]
                n_seeds = hm["seed"].nunique()
                seeds_used[model] = max(seeds_used.get(model, 0), n_seeds)
                for i, col in enumerate(("val_acc", "train_loss")):
                    g = hm.groupby("epoch")[col].agg(["mean", "min", "max"]).sort_index()
                    ax = axes[i, j]
                    color = MODEL_COLORS.get(model)
                    ax.plot(g.index, g["mean"], marker="o", ms=3, lw=1.3, color=color,
                            label=f"{model_label(model)} ({n_seeds} seed{'s' if n_seeds != 1 else ''})")
                    if n_seeds > 1:
                        ax.fill_between(g.index, g["min"], g["max"], color=color, alpha=0.2, lw=0)
            axes[0, j].set_ylabel("validation accuracy" if j == 0 else "")
            axes[1, j].set_ylabel("training loss" if j == 0 else "")
            axes[1, j].set_xlabel("epoch")
            axes[1, j].xaxis.get_major_locator().set_params(integer=True)
        axes[0, 0].legend(loc="lower right")
        band = "mean over seeds, band = min-max" if max(seeds_used.values() or [1]) > 1 else "one seed"
        suffix = ", synthetic data" if any_synthetic(facts, dataset) else ""
        fig.suptitle(f"{dataset_label(dataset)}: training curves ({band}{suffix})")
        fig.tight_layout()
        name = curves_name(dataset)
        save_figure(fig, Path(out_dir) / name)
        written.append({"file": name, "kind": "curves", "dataset": dataset, "resolutions": resolutions,
                        "synthetic": any_synthetic(facts, dataset),
                        "upsampled": [r for r in resolutions if (facts.get((dataset, r)) or {}).get("upsampled")],
                        "source_sizes": {str(r): (facts.get((dataset, r)) or {}).get("source_size") for r in resolutions},
                        "n_seeds": {m: int(n) for m, n in seeds_used.items()}})
    return written


def _short(name: str, n: int = 18) -> str:
    name = mpl_text(name)
    return name if len(name) <= n else name[: n - 1] + "…"


def confusion_matrices(metrics_files) -> dict:
    """(dataset, res, model, seed) -> test confusion matrix (rows true, columns predicted), from metrics.json files."""
    import json

    out = {}
    for f in metrics_files:
        m = json.loads(Path(f).read_text())
        names = m.get("class_names") or [str(i) for i in range(len(m["confusion_matrix"]))]
        out[(m["dataset"], int(m["resolution"]), m["model"], int(m["seed"]))] = pd.DataFrame(
            m["confusion_matrix"], index=names, columns=names)
    return out


def plot_confusions(runs: pd.DataFrame, matrices: dict, facts: dict, out_dir) -> list[dict]:
    """One figure per (dataset, res): the models side by side, seed 0 or the first seed."""
    plt = _plt()
    written = []
    if runs is None or not len(runs):
        return written
    for (dataset, res), g in runs.groupby(["dataset", "resolution"], sort=True):
        res = int(res)
        panels = []
        for model in sorted(g["model"].unique(), key=model_sort_key):
            seeds = sorted(int(s) for s in g[g["model"] == model]["seed"].unique())
            seed = 0 if 0 in seeds else seeds[0]
            cm = matrices.get((dataset, res, model, seed))
            if cm is None:
                continue
            acc = to_float(g[(g["model"] == model) & (g["seed"] == seed)]["acc"].iloc[0])
            panels.append((model, seed, cm, acc))
        if not panels:
            continue
        k = max(len(p[2]) for p in panels)
        side = max(3.2, 0.32 * k + 1.6)
        fig, axes = plt.subplots(1, len(panels), figsize=(side * len(panels) + 1.0, side + 0.6), squeeze=False,
                                 layout="constrained")
        im = None
        for ax, (model, seed, cm, acc) in zip(axes[0], panels):
            counts = cm.to_numpy(dtype=float)
            support = counts.sum(axis=1, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                norm = np.where(support > 0, counts / np.where(support > 0, support, 1), np.nan)
            im = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
            ax.grid(False)
            true_names = [_short(c) for c in cm.index]
            pred_names = [_short(c) for c in cm.columns]
            ax.set_xticks(range(len(pred_names)), pred_names, rotation=60, ha="right")
            ax.set_yticks(range(len(true_names)), true_names)
            ax.set_xlabel("predicted class")
            if ax is axes[0, 0]:
                ax.set_ylabel("true class")
            acc_text = f", test ACC {acc:.3f}" if not math.isnan(acc) else ""
            ax.set_title(f"{model_label(model)} (seed {seed}{acc_text})")
            if norm.shape[0] <= 12:
                for i in range(norm.shape[0]):
                    for j in range(norm.shape[1]):
                        v = norm[i, j]
                        if not np.isnan(v):
                            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=5.5,
                                    color="white" if v > 0.55 else "black")
        fig.colorbar(im, ax=list(axes[0]), fraction=0.03, pad=0.01, shrink=0.85, label="fraction of true class")
        fact = facts.get((dataset, res))
        note = data_note(fact)
        fig.suptitle(f"{dataset_label(dataset)} {res_label(res, fact)}{', ' + note if note else ''}: "
                     "test confusion matrices, normalised per true class")
        name = confusion_name(dataset, res)
        save_figure(fig, Path(out_dir) / name)
        written.append({"file": name, "kind": "confusion", "dataset": dataset, "resolution": res,
                        "models": [p[0] for p in panels], "seeds": {p[0]: p[1] for p in panels},
                        "synthetic": bool(note), "upsampled": bool((fact or {}).get("upsampled")),
                        "source_size": (fact or {}).get("source_size")})
    return written


def batch_columns(eff: pd.DataFrame) -> list[tuple[int, str]]:
    """[(batch size, column)] of the inference throughput columns, by batch size."""
    out = []
    for col in eff.columns:
        m = re.fullmatch(r"infer_samples_per_s_bs(\d+)", col)
        if m:
            out.append((int(m.group(1)), col))
    return sorted(out)


def device_summary(eff: pd.DataFrame) -> str:
    parts = []
    for (dtype, name), _ in eff.groupby([eff["device_type"].fillna("?").astype(str),
                                         eff["device_name"].fillna("unknown device").astype(str)], sort=True):
        parts.append(f"{mpl_text(name)} ({'GPU' if dtype == 'cuda' else dtype.upper()})")
    return "; ".join(parts) or "unknown device"


def cpu_only(eff: pd.DataFrame) -> bool:
    return bool(len(eff)) and bool((eff["device_type"].astype(str).str.lower() == "cpu").all())


def _series_style(eff: pd.DataFrame):
    datasets = sorted(eff["dataset"].astype(str).unique())
    markers = {d: DATASET_MARKERS[i % len(DATASET_MARKERS)] for i, d in enumerate(datasets)}
    styles = {d: DATASET_LINESTYLES[i % len(DATASET_LINESTYLES)] for i, d in enumerate(datasets)}
    return datasets, markers, styles


def plot_throughput(eff: pd.DataFrame, out_dir) -> list[dict]:
    plt = _plt()
    cols = batch_columns(eff)
    if not cols:
        return []
    resolutions = sorted(int(r) for r in eff["resolution"].unique())
    datasets, markers, styles = _series_style(eff)
    fig, axes = plt.subplots(1, len(resolutions), figsize=(3.4 * len(resolutions) + 0.4, 3.2), squeeze=False)
    ooms = []
    any_point = False
    for ax, res in zip(axes[0], resolutions):
        er = eff[eff["resolution"] == res]
        panel_ooms = []
        for _, r in er.sort_values(["dataset", "model"]).iterrows():
            xs, ys, oom_bs = [], [], []
            for bs, col in cols:
                v = r.get(col)
                if is_oom(v):
                    oom_bs.append(bs)
                elif not math.isnan(to_float(v)):
                    xs.append(bs)
                    ys.append(to_float(v))
            model, dataset = str(r["model"]), str(r["dataset"])
            if xs:
                any_point = True
                ax.plot(xs, ys, marker=markers[dataset], ls=styles[dataset], ms=4, lw=1.2,
                        color=MODEL_COLORS.get(model), label=f"{model_label(model)}, {dataset_label(dataset)}")
            if oom_bs:
                panel_ooms.append(f"{model_label(model)} {dataset_label(dataset)}: OOM at batch {', '.join(map(str, oom_bs))}")
                ooms.append(f"{model_label(model)} {dataset_label(dataset)} {res}x{res}: OOM at batch {', '.join(map(str, oom_bs))}")
        if panel_ooms:
            ax.text(0.0, -0.30, "\n".join(panel_ooms), transform=ax.transAxes, fontsize=6, va="top")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks([bs for bs, _ in cols], [str(bs) for bs, _ in cols])
        ax.minorticks_off()
        ax.set_title(f"{res}x{res} (sequence {res * res} pixels)")
        ax.set_xlabel("batch size")
    axes[0, 0].set_ylabel("inference throughput (samples/s)")
    handles, labels = axes[0, -1].get_legend_handles_labels()
    if handles:
        axes[0, -1].legend(handles, labels, loc="upper left", fontsize=6)
    if not any_point:
        plt.close(fig)
        return []
    fig.suptitle(f"Inference throughput vs batch size on {device_summary(eff)}")
    fig.tight_layout()
    save_figure(fig, Path(out_dir) / THROUGHPUT)
    return [{"file": THROUGHPUT, "kind": "throughput", "batch_sizes": [bs for bs, _ in cols],
             "cpu_only": cpu_only(eff), "ooms": ooms}]


def plot_vram(eff: pd.DataFrame, out_dir) -> list[dict]:
    """Peak training VRAM vs resolution, beside peak host RSS (measured on any device)."""
    plt = _plt()
    datasets, markers, styles = _series_style(eff)
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.1), squeeze=False)
    panels = [("train_peak_allocated_mb", "peak VRAM, training step (MB)", axes[0, 0]),
              ("peak_rss_mb", "peak host RSS (MB)", axes[0, 1])]
    measured = {}
    ooms = []
    for col, ylabel, ax in panels:
        n_points = 0
        if col == "train_peak_allocated_mb" and cpu_only(eff):
            col_ok = False
        else:
            col_ok = col in eff.columns
        if col_ok:
            for (dataset, model), g in eff.groupby(["dataset", "model"], sort=True):
                g = g.sort_values("resolution")
                xs, ys = [], []
                for _, r in g.iterrows():
                    v = r.get(col)
                    if is_oom(v):
                        ooms.append(f"{model_label(model)} {dataset_label(dataset)} {int(r['resolution'])}")
                    elif not math.isnan(to_float(v)):
                        xs.append(int(r["resolution"]))
                        ys.append(to_float(v))
                if xs:
                    n_points += len(xs)
                    ax.plot(xs, ys, marker=markers[str(dataset)], ls=styles[str(dataset)], ms=4, lw=1.2,
                            color=MODEL_COLORS.get(model), label=f"{model_label(model)}, {dataset_label(dataset)}")
        measured[col] = n_points > 0
        ax.set_xlabel("resolution (pixels per side)")
        ax.set_ylabel(ylabel)
        if n_points:
            ax.set_yscale("log")
            res = sorted(int(r) for r in eff["resolution"].unique())
            ax.set_xscale("log", base=2)
            ax.set_xticks(res, [str(r) for r in res])
            ax.minorticks_off()
            ax.legend(fontsize=6)
        else:
            text = PLACEHOLDER_CPU if (col == "train_peak_allocated_mb" and cpu_only(eff)) else "not measured"
            ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11, color="0.3")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
    if ooms:
        axes[0, 0].text(0.0, -0.25, "OOM: " + "; ".join(ooms), transform=axes[0, 0].transAxes, fontsize=6, va="top")
    fig.suptitle(f"Peak memory vs resolution on {device_summary(eff)}")
    fig.tight_layout()
    save_figure(fig, Path(out_dir) / VRAM)
    return [{"file": VRAM, "kind": "vram", "cpu_only": cpu_only(eff), "vram_measured": measured["train_peak_allocated_mb"],
             "rss_measured": measured["peak_rss_mb"], "ooms": ooms}]


def plot_macs(eff: pd.DataFrame, out_dir) -> list[dict]:
    plt = _plt()
    present = [(c, lab) for c, lab in MAC_COUNTS if c in eff.columns]
    if not present:
        return []
    rows = eff.sort_values(["dataset", "resolution", "model"], key=lambda s: s.map(model_sort_key) if s.name == "model" else s)
    n = len(rows)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.75 * n + 1.5), 3.4))
    width = 0.8 / len(present)
    any_bar = False
    x = np.arange(n)
    for k, ((col, lab), color) in enumerate(zip(present, MAC_COLORS)):
        vals = np.array([to_float(v) for v in rows[col]])
        pos = x - 0.4 + width * (k + 0.5)
        ok = ~np.isnan(vals) & (vals > 0)
        if ok.any():
            any_bar = True
        ax.bar(pos[ok], vals[ok], width=width, color=color, label=lab, edgecolor="black", lw=0.3)
        for p in pos[~ok]:
            ax.text(p, 0.02, "n/a", rotation=90, ha="center", va="bottom", fontsize=5.5,
                    transform=ax.get_xaxis_transform())
    if not any_bar:
        plt.close(fig)
        return []
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{dataset_label(r['dataset'])}\n{int(r['resolution'])}x{int(r['resolution'])} {model_label(r['model'])}"
                      for _, r in rows.iterrows()], fontsize=6)
    ax.set_ylabel("Mult-Adds per image")
    ax.legend(title="counter", fontsize=6, title_fontsize=6)
    ax.grid(axis="x", visible=False)
    ax.set_title("Mult-Adds of one forward pass, three counts per configuration")
    fig.tight_layout()
    save_figure(fig, Path(out_dir) / MACS)
    return [{"file": MACS, "kind": "macs", "counters": [lab for _, lab in present]}]


def mac_choice(row) -> tuple[float, str]:
    """The MAC count used for scatter plots: analytic, else FlopCounter, else thop."""
    for col, lab in reversed(MAC_COUNTS):
        v = to_float(row.get(col))
        if not math.isnan(v) and v > 0:
            return v, lab
    return float("nan"), ""


def _accuracy_scatter(acc: pd.DataFrame, xvals: dict, xlabel: str, title: str, facts: dict, out_path):
    """Scatter of mean test accuracy (± std) against ``xvals[(dataset, res, model)]``."""
    plt = _plt()
    ok = acc[acc["status"] == "ok"]
    datasets = sorted(ok["dataset"].astype(str).unique())
    markers = {d: DATASET_MARKERS[i % len(DATASET_MARKERS)] for i, d in enumerate(datasets)}
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    n = 0
    seen = set()
    for _, r in ok.iterrows():
        key = (str(r["dataset"]), int(r["resolution"]), str(r["model"]))
        x = xvals.get(key, float("nan"))
        y, e = to_float(r["acc_mean"]), to_float(r.get("acc_std"))
        if math.isnan(x) or math.isnan(y) or x <= 0:
            continue
        n += 1
        fact = facts.get((key[0], key[1])) or {}
        upsampled = bool(fact.get("upsampled"))
        color = MODEL_COLORS.get(key[2])
        label = None
        if (key[0], key[2]) not in seen:
            seen.add((key[0], key[2]))
            label = f"{model_label(key[2])}, {dataset_label(key[0])}"
        ax.errorbar([x], [y], yerr=None if math.isnan(e) else [e], fmt=markers[key[0]], ms=5, capsize=2,
                    color=color, mfc="white" if upsampled else color, label=label)
        tag = f"{key[1]}" + (f" (up from {fact['source_size']})" if upsampled and fact.get("source_size") else "")
        ax.annotate(tag, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=6)
    if not n:
        plt.close(fig)
        return False
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    suffix = " — synthetic data" if any_synthetic(facts) else ""
    ax.set_title(title + suffix)
    ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, out_path)
    return True


def plot_accuracy_vs_cost(acc: pd.DataFrame, eff: pd.DataFrame | None, facts: dict, out_dir) -> list[dict]:
    written = []
    if acc is None or "status" not in acc.columns or not (acc["status"] == "ok").any():
        return written
    params = {}
    for _, r in acc.iterrows():
        params[(str(r["dataset"]), int(r["resolution"]), str(r["model"]))] = to_float(r.get("params"))
    if eff is not None:  # profile's count where training has none
        for _, r in eff.iterrows():
            key = (str(r["dataset"]), int(r["resolution"]), str(r["model"]))
            if math.isnan(params.get(key, float("nan"))):
                params[key] = to_float(r.get("params"))
    upsampled_note = " (hollow: upsampled)" if any(f.get("upsampled") for f in facts.values()) else ""
    if _accuracy_scatter(acc, params, "parameters (log scale)" + upsampled_note, "Accuracy vs parameters",
                         facts, Path(out_dir) / ACC_VS_PARAMS):
        written.append({"file": ACC_VS_PARAMS, "kind": "acc_vs_params", "synthetic": any_synthetic(facts)})
    if eff is not None:
        macs, used = {}, set()
        for _, r in eff.iterrows():
            v, lab = mac_choice(r)
            macs[(str(r["dataset"]), int(r["resolution"]), str(r["model"]))] = v
            if lab:
                used.add(lab)
        counter = " / ".join(sorted(used)) if len(used) > 1 else (next(iter(used)) if used else "")
        if _accuracy_scatter(acc, macs, f"Mult-Adds per image, {counter} count (log scale)" + upsampled_note,
                             "Accuracy vs Mult-Adds", facts, Path(out_dir) / ACC_VS_MACS):
            written.append({"file": ACC_VS_MACS, "kind": "acc_vs_macs", "counter": counter,
                            "synthetic": any_synthetic(facts)})
    return written


def make_all(aggregate_dir, metrics_files, out_dir) -> list[Path]:
    """Draw every figure the inputs allow; write manifest.json; return the written paths.

    ``metrics_files``: the runs' metrics.json (their confusion matrices)."""
    aggregate_dir, out_dir = Path(aggregate_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    acc = read_csv(aggregate_dir / "accuracy.csv")
    runs = read_csv(aggregate_dir / "runs.csv")
    hist = read_csv(aggregate_dir / "histories.csv")
    eff = read_csv(aggregate_dir / "efficiency.csv")
    facts = data_facts(acc, runs)
    entries: list[dict] = []
    skipped: list[str] = []
    if hist is not None:
        entries += plot_curves(hist, facts, out_dir)
    else:
        skipped.append("training curves: no histories.csv")
    if runs is not None:
        entries += plot_confusions(runs, confusion_matrices(metrics_files), facts, out_dir)
    else:
        skipped.append("confusion matrices: no runs.csv")
    if eff is not None:
        entries += plot_throughput(eff, out_dir)
        entries += plot_vram(eff, out_dir)
        entries += plot_macs(eff, out_dir)
    else:
        skipped.append("efficiency figures: no efficiency.csv")
    entries += plot_accuracy_vs_cost(acc, eff, facts, out_dir)
    write_json(out_dir / MANIFEST, {"figures": entries, "skipped": skipped})
    return [out_dir / e["file"] for e in entries]


def read_manifest(figures_dir) -> dict:
    """The manifest of a figures folder, keeping only entries whose file exists."""
    import json

    path = Path(figures_dir) / MANIFEST
    if not path.exists():
        return {"figures": [], "skipped": [f"no {MANIFEST} in {figures_dir}"]}
    data = json.loads(path.read_text())
    data["figures"] = [e for e in data.get("figures", []) if (Path(figures_dir) / e["file"]).exists()]
    return data
