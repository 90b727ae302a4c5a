"""Figures of the paper, drawn from the aggregate CSVs and per-run confusion matrices.

Every figure is a vector PDF written atomically (temporary file, then rename),
under a fixed name, at the size the paper prints it (``TEXT_WIDTH_IN`` wide;
the paper includes it unscaled, so no text is under ``MIN_TEXT_PT``). Each
model has its own colour and marker (``MODEL_COLORS``, ``MODEL_MARKERS``, in
registry order); legends sit below the axes.

  curves_{dataset}.pdf            validation accuracy and training loss per epoch,
                                  one column per resolution, mean line and
                                  min-max band over seeds
  confusion_{dataset}_{res}.pdf   every model's confusion matrix, two to a row (seed 0,
                                  or the first seed): percent of each true class, with
                                  the class's test count in its label
  throughput.pdf                  inference images/s vs batch size (log-log), one panel
                                  per resolution, line style per dataset
  vram.pdf                        peak training VRAM vs resolution (a labelled
                                  placeholder when profiling ran on CPU), and peak host RSS
  macs.pdf                        Mult-Adds per image, three counts (thop, FlopCounter,
                                  analytic) per configuration, horizontal bars, one panel
                                  per resolution
  acc_vs_params.pdf               test accuracy vs parameter count (log x), one panel per dataset
  acc_vs_macs.pdf                 test accuracy vs Mult-Adds (log x), one panel per dataset
  manifest.json                   the figures this call wrote (file, kind, dataset,
                                  resolution, width_in, notes); report.py includes exactly these

Input data that is not official MedMNIST is labelled "synthetic data" and a
resolution made by resizing a smaller file "RxR upsampled from SxS", in the
titles where the numbers are shown.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .catalog import dataset_label
from .fileio import atomic_path, write_json
from .models import MODELS, model_label, model_sort_key
from .tables import MAC_COUNTS, batch_columns, data_facts, ran_out_of_memory, read_table, to_float

# Models in registry order (ssmvit.models), each with its own colour and marker: Okabe-Ito colours
# (colourblind-safe; the first three also differ in grayscale brightness) and distinct marker shapes,
# so that a model stays recognisable in grayscale print.
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
MODEL_COLORS = {name: OKABE_ITO[i % len(OKABE_ITO)] for i, name in enumerate(MODELS)}
MODEL_MARKERS = {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(MODELS)}
DATASET_LINESTYLES = ["-", "--", ":", "-."]
MAC_COLORS = ["#BBBBBB", "#777777", "#222222"]  # three grays: the counters are ordered, not categories
MAC_HATCHES = ["", "//", ""]

# Print geometry: figures are drawn at the size the paper prints them (paper/main.tex: 1in margins on
# letter paper, a 6.5in text width) and included unscaled, so a font size here is its size on paper.
TEXT_WIDTH_IN = 6.5
MIN_TEXT_PT = 7

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


def mpl_text(s) -> str:
    """A string from data, safe for matplotlib (no mathtext from a stray '$')."""
    return str(s).replace("$", r"\$")


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

    plt.rcParams.update({"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": MIN_TEXT_PT,
                         "legend.title_fontsize": MIN_TEXT_PT, "xtick.labelsize": MIN_TEXT_PT,
                         "ytick.labelsize": MIN_TEXT_PT, "figure.titlesize": 9, "pdf.fonttype": 42,
                         "svg.hashsalt": "ssmvit", "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5,
                         "lines.markersize": 5})
    return plt


def new_figure(height_in: float, nrows: int = 1, ncols: int = 1, width_in: float = TEXT_WIDTH_IN, **kw):
    """A figure of its printed size (constrained layout keeps everything inside it) and its axes grid."""
    plt = _plt()
    return plt.subplots(nrows, ncols, figsize=(width_in, height_in), squeeze=False, layout="constrained", **kw)


def log_axis(ax, which: str = "y", subs=(1.0, 2.0, 5.0)) -> None:
    """A log axis whose ticks are labelled however narrow its range: 1-2-5 steps (``subs``), plain numbers (10k,
    not 1e4)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    axis = ax.yaxis if which == "y" else ax.xaxis
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: _plain_number(v)))
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())


def value_axis(ax, values, which: str = "y") -> None:
    """Log scale (``log_axis``) for values spanning at least 4x, else linear: a narrow log axis shows no ticks."""
    from matplotlib.ticker import FuncFormatter

    vals = [v for v in values if v and v > 0 and not math.isnan(v)]
    if vals and max(vals) / min(vals) >= 4:
        log_axis(ax, which, subs=log_subs(vals))
    else:
        (ax.yaxis if which == "y" else ax.xaxis).set_major_formatter(FuncFormatter(lambda v, _: _plain_number(v)))


def log_subs(values) -> tuple:
    """Log-axis ticks for ``values``: 1-2-5 steps, or powers of ten alone over more than about 1.5 decades, where
    1-2-5 labels of a panel a third of the page wide run into each other."""
    vals = [v for v in values if v and v > 0 and not math.isnan(v)]
    return (1.0,) if vals and max(vals) / min(vals) >= 30 else (1.0, 2.0, 5.0)


def _plain_number(v: float) -> str:
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:g}{unit}"
    return f"{v:g}"


def model_legend(fig, models, extra=(), ncol=None) -> None:
    """One legend for the whole figure, below the axes (never on the data): each model's colour and marker."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=MODEL_COLORS.get(m), marker=MODEL_MARKERS.get(m, "o"), lw=1.3, label=model_label(m))
               for m in models]
    handles += list(extra)
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=ncol or min(len(handles), 6), frameon=False)


def save_figure(fig, path) -> Path:
    """Save ``fig`` as PDF, at its own size (it is printed unscaled), to a temporary file, then rename it onto ``path``."""
    plt = _plt()
    path = Path(path)
    with atomic_path(path) as tmp:
        # No creation date in the metadata: the same inputs give the same bytes.
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None})
    plt.close(fig)
    return path


def figure_width_in(fig) -> float:
    return round(float(fig.get_size_inches()[0]), 3)


# ---------------------------------------------------------------- figures

def plot_curves(histories: pd.DataFrame, facts: dict, out_dir) -> list[dict]:
    """One figure per dataset: rows = validation accuracy / training loss, columns = resolutions."""
    written = []
    if histories is None or not len(histories):
        return written
    for dataset, hd in histories.groupby("dataset", sort=True):
        resolutions = sorted(int(r) for r in hd["resolution"].unique())
        fig, axes = new_figure(4.4, 2, len(resolutions), sharex="col")
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
                    ax.plot(g.index, g["mean"], marker=MODEL_MARKERS.get(model, "o"), ms=4, lw=1.3, color=color)
                    if n_seeds > 1:
                        ax.fill_between(g.index, g["min"], g["max"], color=color, alpha=0.2, lw=0)
            axes[0, j].set_ylabel("validation accuracy (fraction)")
            axes[1, j].set_ylabel("training loss (cross-entropy)")
            axes[1, j].set_xlabel("epoch")
            axes[1, j].xaxis.get_major_locator().set_params(integer=True)
        band = "mean over seeds, band: min-max" if max(seeds_used.values() or [1]) > 1 else "one seed"
        suffix = ", synthetic data" if any_synthetic(facts, dataset) else ""
        fig.suptitle(f"{dataset_label(dataset)}: training curves ({band}{suffix})")
        models = sorted(seeds_used, key=model_sort_key)
        model_legend(fig, models)
        name = curves_name(dataset)
        width = figure_width_in(fig)
        save_figure(fig, Path(out_dir) / name)
        written.append({"file": name, "kind": "curves", "dataset": dataset, "resolutions": resolutions,
                        "width_in": width, "synthetic": any_synthetic(facts, dataset),
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
    """One figure per (dataset, res): every model's matrix (seed 0, or the first seed), two to a row.

    Each row is normalised by its true class; a cell prints that share in percent, and each true class's
    label carries its number of test images, so the counts can be read back.
    """
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
        # Two matrices a row at most: three side by side leave 7 pt numbers of neighbouring cells touching.
        ncols = min(2, len(panels))
        nrows = math.ceil(len(panels) / ncols)
        matrix_in = 2.4 if ncols == 2 else 3.4  # printed width of one matrix; a row shares its class labels
        # each row: the matrix, the rotated class names under it (at most 14 characters) and a two-line title
        fig, axes = new_figure(nrows * (matrix_in + 1.3) + 0.3, nrows, ncols, sharey=True)
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        im = None
        for ax, (model, seed, cm, acc) in zip(axes.flat, panels):
            counts = cm.to_numpy(dtype=float)
            support = counts.sum(axis=1, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                norm = np.where(support > 0, counts / np.where(support > 0, support, 1), np.nan)
            im = ax.imshow(100 * norm, vmin=0, vmax=100, cmap="Blues")
            ax.grid(False)
            ax.set_xticks(range(len(cm.columns)), [_short(c, 14) for c in cm.columns], rotation=90)
            ax.set_yticks(range(len(cm.index)), [f"{_short(c, 14)} (n={int(n)})" for c, n in zip(cm.index, support[:, 0])])
            ax.set_xlabel("predicted class")
            if ax in axes[:, 0]:
                ax.set_ylabel("true class (test images)")
            acc_text = f"test ACC {acc:.3f}, " if not math.isnan(acc) else ""
            ax.set_title(f"{model_label(model)}\n({acc_text}seed {seed})")
            if norm.shape[0] <= 12:
                for i in range(norm.shape[0]):
                    for j in range(norm.shape[1]):
                        v = norm[i, j]
                        if not np.isnan(v):
                            ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=MIN_TEXT_PT,
                                    color="white" if v > 0.55 else "black")
        fig.colorbar(im, ax=list(axes.flat[:len(panels)]), fraction=0.04, pad=0.02, shrink=0.6,
                     label="share of the true class (%)")
        fact = facts.get((dataset, res))
        note = data_note(fact)
        fig.suptitle(f"{dataset_label(dataset)} {res_label(res, fact)}{', ' + note if note else ''}: "
                     "test confusion matrices (% of each true class)")
        name = confusion_name(dataset, res)
        width = figure_width_in(fig)
        save_figure(fig, Path(out_dir) / name)
        written.append({"file": name, "kind": "confusion", "dataset": dataset, "resolution": res, "width_in": width,
                        "models": [p[0] for p in panels], "seeds": {p[0]: p[1] for p in panels},
                        "synthetic": bool(note), "upsampled": bool((fact or {}).get("upsampled")),
                        "source_size": (fact or {}).get("source_size")})
    return written


def device_summary(eff: pd.DataFrame) -> str:
    parts = []
    for (dtype, name), _ in eff.groupby([eff["device_type"].fillna("?").astype(str),
                                         eff["device_name"].fillna("unknown device").astype(str)], sort=True):
        parts.append(f"{mpl_text(name)} ({'GPU' if dtype == 'cuda' else dtype.upper()})")
    return "; ".join(parts) or "unknown device"


def cpu_only(eff: pd.DataFrame) -> bool:
    return bool(len(eff)) and bool((eff["device_type"].astype(str).str.lower() == "cpu").all())


def _dataset_styles(eff: pd.DataFrame) -> dict:
    datasets = sorted(eff["dataset"].astype(str).unique())
    return {d: DATASET_LINESTYLES[i % len(DATASET_LINESTYLES)] for i, d in enumerate(datasets)}


def _dataset_handles(styles: dict) -> list:
    from matplotlib.lines import Line2D

    return [Line2D([], [], color="0.35", ls=ls, lw=1.3, label=dataset_label(d)) for d, ls in styles.items()]


def _models_of(frame: pd.DataFrame) -> list[str]:
    return sorted(frame["model"].astype(str).unique(), key=model_sort_key)


def plot_throughput(eff: pd.DataFrame, out_dir) -> list[dict]:
    cols = batch_columns(eff)
    if not cols:
        return []
    resolutions = sorted(int(r) for r in eff["resolution"].unique())
    styles = _dataset_styles(eff)
    fig, axes = new_figure(3.2, 1, len(resolutions))
    ooms = []
    any_point = False
    for ax, res in zip(axes[0], resolutions):
        er = eff[eff["resolution"] == res]
        for _, r in er.sort_values(["dataset", "model"]).iterrows():
            xs, ys, oom_bs = [], [], []
            for bs, col in cols:
                v = r.get(col)
                if ran_out_of_memory(r, col):
                    oom_bs.append(bs)
                elif not math.isnan(to_float(v)):
                    xs.append(bs)
                    ys.append(to_float(v))
            model, dataset = str(r["model"]), str(r["dataset"])
            if xs:
                any_point = True
                ax.plot(xs, ys, marker=MODEL_MARKERS.get(model, "o"), ls=styles[dataset], ms=4, lw=1.2,
                        color=MODEL_COLORS.get(model))
            if oom_bs:
                ooms.append(f"{model_label(model)} {dataset_label(dataset)} {res}x{res}: OOM at batch {', '.join(map(str, oom_bs))}")
        ax.set_xscale("log", base=2)
        ax.set_xticks([bs for bs, _ in cols], [str(bs) for bs, _ in cols])
        ax.minorticks_off()
        log_axis(ax, "y")
        ax.set_title(f"{res}\u00d7{res} ({res * res} pixels)")
        ax.set_xlabel("batch size (images)")
        ax.set_ylabel("inference throughput (images/s)")
    if not any_point:
        _plt().close(fig)
        return []
    fig.suptitle(f"Inference throughput vs batch size on {device_summary(eff)}")
    model_legend(fig, _models_of(eff), _dataset_handles(styles))
    width = figure_width_in(fig)
    save_figure(fig, Path(out_dir) / THROUGHPUT)
    return [{"file": THROUGHPUT, "kind": "throughput", "batch_sizes": [bs for bs, _ in cols], "width_in": width,
             "cpu_only": cpu_only(eff), "ooms": ooms}]


def plot_vram(eff: pd.DataFrame, out_dir) -> list[dict]:
    """Peak training VRAM vs resolution, beside peak host RSS (measured on any device)."""
    styles = _dataset_styles(eff)
    fig, axes = new_figure(3.2, 1, 2)
    panels = [("train_peak_allocated_mb", "peak GPU memory, training step (MB)", axes[0, 0]),
              ("peak_rss_mb", "peak host memory, RSS (MB)", axes[0, 1])]
    measured = {}
    ooms = []
    res = sorted(int(r) for r in eff["resolution"].unique())
    for col, ylabel, ax in panels:
        n_points = 0
        col_ok = col in eff.columns and not (col == "train_peak_allocated_mb" and cpu_only(eff))
        if col_ok:
            for (dataset, model), g in eff.groupby(["dataset", "model"], sort=True):
                g = g.sort_values("resolution")
                xs, ys = [], []
                for _, r in g.iterrows():
                    v = r.get(col)
                    if ran_out_of_memory(r, col):
                        ooms.append(f"{model_label(model)} {dataset_label(dataset)} {int(r['resolution'])}")
                    elif not math.isnan(to_float(v)):
                        xs.append(int(r["resolution"]))
                        ys.append(to_float(v))
                if xs:
                    n_points += len(xs)
                    ax.plot(xs, ys, marker=MODEL_MARKERS.get(str(model), "o"), ls=styles[str(dataset)], ms=4, lw=1.2,
                            color=MODEL_COLORS.get(model))
        measured[col] = n_points > 0
        ax.set_xlabel("resolution (pixels per side)")
        ax.set_ylabel(ylabel)
        if n_points:
            value_axis(ax, [to_float(v) for v in eff[col]], "y")
            ax.set_xscale("log", base=2)
            ax.set_xticks(res, [str(r) for r in res])
            ax.minorticks_off()
        else:
            text = PLACEHOLDER_CPU if (col == "train_peak_allocated_mb" and cpu_only(eff)) else "not measured"
            ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11, color="0.3")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
    fig.suptitle(f"Peak memory vs resolution on {device_summary(eff)}")
    model_legend(fig, _models_of(eff), _dataset_handles(styles))
    width = figure_width_in(fig)
    save_figure(fig, Path(out_dir) / VRAM)
    return [{"file": VRAM, "kind": "vram", "cpu_only": cpu_only(eff), "vram_measured": measured["train_peak_allocated_mb"],
             "rss_measured": measured["peak_rss_mb"], "ooms": ooms, "width_in": width}]


def plot_macs(eff: pd.DataFrame, out_dir) -> list[dict]:
    """Horizontal bars: the three counts of every configuration, one panel per resolution."""
    from matplotlib.patches import Patch

    present = [(c, lab) for c, lab in MAC_COUNTS if c in eff.columns]
    if not present:
        return []
    resolutions = sorted(int(r) for r in eff["resolution"].unique())
    n_rows = max(len(eff[eff["resolution"] == r]) for r in resolutions)
    fig, axes = new_figure(0.32 * n_rows + 1.5, 1, len(resolutions), sharex=True)
    height = 0.8 / len(present)
    any_bar = False
    for ax, res in zip(axes[0], resolutions):
        rows = eff[eff["resolution"] == res].copy()
        rows["_m"] = rows["model"].map(model_sort_key)
        rows = rows.sort_values(["dataset", "_m"], ascending=[False, False])
        y = np.arange(len(rows))
        for k, ((col, lab), color, hatch) in enumerate(zip(present, MAC_COLORS, MAC_HATCHES)):
            vals = np.array([to_float(v) for v in rows[col]])
            pos = y + 0.4 - height * (k + 0.5)
            ok = ~np.isnan(vals) & (vals > 0)
            any_bar |= bool(ok.any())
            ax.barh(pos[ok], vals[ok], height=height, color=color, hatch=hatch, edgecolor="black", lw=0.3)
            for p in pos[~ok]:
                ax.text(0.01, p, "n/a", ha="left", va="center", fontsize=MIN_TEXT_PT, transform=ax.get_yaxis_transform())
        ax.set_yticks(y, [f"{dataset_label(r['dataset'])} {model_label(r['model'])}" for _, r in rows.iterrows()])
        log_axis(ax, "x", subs=log_subs(to_float(v) for c, _ in present for v in eff[c]))  # shared x: all panels
        ax.grid(axis="y", visible=False)
        ax.set_title(f"{res}x{res}")
        ax.set_xlabel("Mult-Adds per image (log scale)")
        ax.set_ylabel("configuration (dataset, model)")
    if not any_bar:
        _plt().close(fig)
        return []
    fig.suptitle("Mult-Adds of one forward pass of one image, three counts per configuration")
    fig.legend(handles=[Patch(facecolor=c, hatch=h, edgecolor="black", lw=0.3, label=lab)
                        for (_, lab), c, h in zip(present, MAC_COLORS, MAC_HATCHES)],
               loc="outside lower center", ncol=len(present), frameon=False, title="counter")
    width = figure_width_in(fig)
    save_figure(fig, Path(out_dir) / MACS)
    return [{"file": MACS, "kind": "macs", "counters": [lab for _, lab in present], "width_in": width}]


def mac_choice(row) -> tuple[float, str]:
    """The MAC count used for scatter plots: analytic, else FlopCounter, else thop."""
    for col, lab in reversed(MAC_COUNTS):
        v = to_float(row.get(col))
        if not math.isnan(v) and v > 0:
            return v, lab
    return float("nan"), ""


def _accuracy_scatter(acc: pd.DataFrame, xvals: dict, xlabel: str, title: str, facts: dict, out_path):
    """Mean test accuracy (± std over seeds) against ``xvals[(dataset, res, model)]``, one panel per dataset.

    Colour and marker: the model; hollow: upsampled inputs; the number beside a point: its resolution.
    """
    from matplotlib.lines import Line2D

    ok = acc[acc["status"] == "ok"]
    points = []
    for _, r in ok.iterrows():
        key = (str(r["dataset"]), int(r["resolution"]), str(r["model"]))
        x = xvals.get(key, float("nan"))
        y, e = to_float(r["acc_mean"]), to_float(r.get("acc_std"))
        if not (math.isnan(x) or math.isnan(y) or x <= 0):
            points.append((key, x, y, e))
    if not points:
        return None
    datasets = sorted({k[0] for k, *_ in points})
    fig, axes = new_figure(3.0, 1, len(datasets))
    for ax, dataset in zip(axes[0], datasets):
        mine = sorted((p for p in points if p[0][0] == dataset), key=lambda p: (model_sort_key(p[0][2]), p[0][1]))
        for i, ((_, res, model), x, y, e) in enumerate(mine):
            fact = facts.get((dataset, res)) or {}
            color = MODEL_COLORS.get(model)
            ax.errorbar([x], [y], yerr=None if math.isnan(e) else [e], fmt=MODEL_MARKERS.get(model, "o"), ms=6,
                        capsize=2, color=color, mfc="white" if fact.get("upsampled") else color, mew=1.2)
            # resolutions of one model alternate left/right of their point, so labels do not stack up
            ax.annotate(str(res), (x, y), textcoords="offset points", xytext=(6, 0) if i % 2 == 0 else (-6, 0),
                        ha="left" if i % 2 == 0 else "right", va="center", fontsize=MIN_TEXT_PT)
        log_axis(ax, "x", subs=log_subs([x for _, x, _, _ in mine]))
        ax.margins(x=0.25, y=0.15)
        note = " (synthetic)" if any_synthetic(facts, dataset) else ""
        ax.set_title(f"{dataset_label(dataset)}{note}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (fraction)")
    fig.suptitle(title + " (mean ± std over seeds; number: resolution)")
    extra = []
    if any(f.get("upsampled") for f in facts.values()):
        extra.append(Line2D([], [], ls="", marker="o", mfc="white", mec="0.3", color="0.3", label="hollow: upsampled"))
    model_legend(fig, sorted({k[2] for k, *_ in points}, key=model_sort_key), extra)
    width = figure_width_in(fig)
    save_figure(fig, out_path)
    return width


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
    width = _accuracy_scatter(acc, params, "trainable parameters (log scale)", "Accuracy vs parameters",
                              facts, Path(out_dir) / ACC_VS_PARAMS)
    if width:
        written.append({"file": ACC_VS_PARAMS, "kind": "acc_vs_params", "synthetic": any_synthetic(facts),
                        "width_in": width})
    if eff is not None:
        macs, used = {}, set()
        for _, r in eff.iterrows():
            v, lab = mac_choice(r)
            macs[(str(r["dataset"]), int(r["resolution"]), str(r["model"]))] = v
            if lab:
                used.add(lab)
        counter = " / ".join(sorted(used)) if len(used) > 1 else (next(iter(used)) if used else "")
        width = _accuracy_scatter(acc, macs, f"Mult-Adds per image, {counter} (log scale)",
                                  "Accuracy vs Mult-Adds", facts, Path(out_dir) / ACC_VS_MACS)
        if width:
            written.append({"file": ACC_VS_MACS, "kind": "acc_vs_macs", "counter": counter,
                            "synthetic": any_synthetic(facts), "width_in": width})
    return written


def make_all(aggregate_dir, metrics_files, out_dir) -> list[Path]:
    """Draw every figure the inputs allow; write manifest.json; return the written paths.

    ``metrics_files``: the runs' metrics.json (their confusion matrices)."""
    aggregate_dir, out_dir = Path(aggregate_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    acc = read_table(aggregate_dir / "accuracy.csv")
    runs = read_table(aggregate_dir / "runs.csv")
    hist = read_table(aggregate_dir / "histories.csv")
    eff = read_table(aggregate_dir / "efficiency.csv")
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
