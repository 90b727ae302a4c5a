"""The seed study's benchmark table and claims, checked against this study's profiles.

``paper/seed_study.csv`` holds the seed's table as printed (its source is
named in every row). ``seed_claims`` puts each of its figures beside ours
and turns its observations into ratios of S4D to ViT that our profiles
either show or do not, per regime:

  train_fp32       training step at the study's batch size, plain eager fp32 (the seed's regime)
  train_trained    the same step as the runs trained (their fast path: the profile's "as trained" regime)
  infer_fp32       inference at the largest profiled batch size, plain eager fp32
  infer_trained    the same inference through the fast path's forward

The seed names no GPU, batch size or phase for its memory and throughput
columns, so their absolute values are shown, not judged; its claims are
judged by the direction of the ratio (the parameter ratio: within 10% of the
seed's; "about the same": within 2x). Mult-Adds claims are judged with MACs
counted the same way for both models (``macs.count_macs_analytic``); the
seed's own counter was torchinfo's total, which is not a MAC count.
The result is ``results/aggregate/seed_claims.csv``, which the paper prints.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from .tables import SEED_CLAIM_REGIMES as REGIMES
from .tables import frame

REGIME_WORDS = {"train_fp32": "training fp32", "train_trained": "training as trained", "infer_fp32": "inference fp32",
                "infer_trained": "inference as trained"}
REPRODUCED, NOT_REPRODUCED, MIXED, NOT_JUDGED, ABSENT, NOT_MEASURED = (
    "reproduced", "not reproduced", "depends on the regime", "not comparable", "not in this study", "not measured")
PARAM_RATIO_TOLERANCE = 0.10
SIMILAR_FACTOR = 2.0


SEED_TABLE_COLUMNS = ("dataset", "model", "resolution_stated", "resolution", "n_channels", "params_text", "params",
                      "mult_adds_text", "mult_adds", "peak_vram_mb", "throughput_samples_s", "note", "source")


def read_seed_table(path) -> pd.DataFrame:
    """``paper/seed_study.csv``, checked for the columns this module reads."""
    from .errors import UserError

    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"cannot read the seed study's table {path} ({type(exc).__name__}); "
                        "restore paper/seed_study.csv from the repository") from None
    missing = [c for c in SEED_TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise UserError(f"the seed study's table {path} lacks column(s) {', '.join(missing)}; "
                        "restore paper/seed_study.csv from the repository")
    return table


def _num(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _si(value: float) -> str:
    """A count as the seed prints it: millions below 1e9, billions above, two decimals ('--' if unknown)."""
    if math.isnan(value):
        return "--"
    return f"{value / 1e6:.2f} M" if value < 1e9 else f"{value / 1e9:.2f} G"


def _on_gpu(row: pd.Series | None) -> bool:
    return row is not None and str(row.get("device_type")).lower() == "cuda"


def _ours(eff: pd.DataFrame | None, dataset: str, res: int, model: str) -> pd.Series | None:
    if eff is None:
        return None
    rows = eff[(eff["dataset"] == dataset) & (eff["resolution"].astype(int) == int(res)) & (eff["model"] == model)]
    return None if rows.empty else rows.iloc[0]


def _regime_values(row: pd.Series | None, quantity: str) -> dict:
    """Our value of a memory or throughput quantity in each regime (NaN where not measured).

    Inference is read at the largest profiled batch size: at the training batch (64) the fast path's inference is
    bound by kernel launches, so a ratio there would compare overheads, not the models.
    """
    batches = [int(m.group(1)) for c in (row.index if row is not None else ())
               if (m := re.fullmatch(r"infer_samples_per_s_bs(\d+)", str(c)))]
    if row is None or not batches:
        return dict.fromkeys(REGIMES, math.nan)
    infer_batch = max(batches)
    cols = {"peak_vram_mb": ("train_peak_allocated_mb", "train_peak_allocated_mb_trained",
                             f"infer_peak_allocated_mb_bs{infer_batch}", f"infer_peak_allocated_mb_bs{infer_batch}_trained"),
            "throughput_samples_s": ("train_samples_per_s_fp32", "train_samples_per_s_trained",
                                     f"infer_samples_per_s_bs{infer_batch}",
                                     f"infer_samples_per_s_bs{infer_batch}_trained")}[quantity]
    return {regime: _num(row.get(col)) for regime, col in zip(REGIMES, cols)}


def _figure_rows(seed: pd.DataFrame, eff: pd.DataFrame | None) -> list[dict]:
    rows = []
    for _, s in seed.iterrows():
        ours = _ours(eff, s["dataset"], s["resolution"], s["model"])
        base = {"kind": "figure", "dataset": s["dataset"], "resolution": int(s["resolution"]), "model": s["model"]}
        label = f"{s['dataset']} {s['resolution']}x{s['resolution']} {s['model']}"
        # parameters
        p = _num(ours.get("params")) if ours is not None else math.nan
        ok = not math.isnan(p) and f"{p / 1e6:.2f} M" == s["params_text"]
        missing = ABSENT if ours is None else NOT_MEASURED
        rows.append(base | {"id": f"{label} params", "quantity": "params", "seed": _num(s["params"]),
                            "train_fp32": p, "verdict": missing if math.isnan(p) else (REPRODUCED if ok else NOT_REPRODUCED),
                            "reason": "" if math.isnan(p) else f"ours {p:,.0f} ({p / 1e6:.2f} M)"})
        # Mult-Adds: the seed's counter is torchinfo's total (not a MAC count)
        ti = _num(ours.get("macs_torchinfo")) if ours is not None else math.nan
        analytic = _num(ours.get("macs_analytic")) if ours is not None else math.nan
        seed_text = s["mult_adds_text"].replace("MB", "M").replace("GB", "G")
        if math.isnan(ti):
            verdict, why = missing, ""
        elif _si(ti) == seed_text:
            verdict, why = REPRODUCED, f"torchinfo's total mult-adds is {ti:,.0f}; counted as MACs (analytic) {_si(analytic)}"
        else:
            verdict, why = NOT_REPRODUCED, (f"torchinfo gives {_si(ti)}, thop {_si(_num(ours.get('macs_thop')))}, "
                                            f"FlopCounterMode {_si(_num(ours.get('macs_flopcounter')))}, "
                                            f"analytic {_si(analytic)}: no counter gives {seed_text}")
        rows.append(base | {"id": f"{label} mult-adds", "quantity": "mult_adds", "seed": _num(s["mult_adds"]),
                            "train_fp32": ti, "verdict": verdict, "reason": why})
        for quantity in ("peak_vram_mb", "throughput_samples_s"):
            values = _regime_values(ours, quantity)
            measured = not all(math.isnan(v) for v in values.values())
            rows.append(base | {"id": f"{label} {quantity}", "quantity": quantity, "seed": _num(s[quantity]), **values,
                                "verdict": NOT_JUDGED if measured else ABSENT if ours is None else NOT_MEASURED,
                                "reason": "the seed names no GPU, batch size or phase" if measured else ""})
    return rows


# The seed's observations as ratios: (id, claim, dataset, res, quantity, numerator model, denominator model, test).
CLAIMS = (
    ("params", "S4D has about 110x fewer parameters than ViT", "organamnist", 28, "params", "vit", "s4d", "within"),
    ("throughput-28", "S4D processes more samples per second than ViT at 28x28", "organamnist", 28,
     "throughput_samples_s", "s4d", "vit", "direction"),
    ("throughput-64", "ViT processes more samples per second than S4D at 64x64 RGB", "dermamnist", 64,
     "throughput_samples_s", "s4d", "vit", "direction"),
    ("vram-64", "S4D needs more peak GPU memory than ViT at 64x64 RGB", "dermamnist", 64, "peak_vram_mb", "s4d", "vit",
     "direction"),
    ("macs-28", "S4D and ViT need about the same Mult-Adds at 28x28 (within 2x)", "organamnist", 28, "mult_adds", "s4d",
     "vit", "similar"),
    ("macs-64", "S4D needs more Mult-Adds than ViT at 64x64 RGB", "dermamnist", 64, "mult_adds", "s4d", "vit",
     "direction"),
)


def _claim_rows(seed: pd.DataFrame, eff: pd.DataFrame | None) -> list[dict]:
    rows = []
    for cid, text, dataset, res, quantity, num, den, test in CLAIMS:
        pick = seed[(seed["dataset"] == dataset) & (seed["resolution"].astype(int) == res)].set_index("model")
        seed_ratio = _num(pick.loc[num, quantity]) / _num(pick.loc[den, quantity])
        a, b = _ours(eff, dataset, res, num), _ours(eff, dataset, res, den)
        row = {"kind": "claim", "id": cid, "claim": text, "dataset": dataset, "resolution": res,
               "model": f"{num}/{den}", "quantity": quantity, "seed": seed_ratio,
               **dict.fromkeys(REGIMES, math.nan)}
        if a is None or b is None:
            rows.append(row | {"verdict": ABSENT, "reason": ""})
            continue
        if quantity in ("params", "mult_adds"):
            col = "params" if quantity == "params" else "macs_analytic"  # MACs counted the same way for both
            row["train_fp32"] = _num(a.get(col)) / _num(b.get(col))
        elif not (_on_gpu(a) and _on_gpu(b)):  # the seed's memory and speed are GPU figures
            rows.append(row | {"verdict": NOT_JUDGED, "reason": "measured on a CPU, not a GPU"})
            continue
        else:
            va, vb = _regime_values(a, quantity), _regime_values(b, quantity)
            row.update({r: va[r] / vb[r] for r in REGIMES})
        ours = {r: row[r] for r in REGIMES if not math.isnan(row[r])}
        if test == "within":
            holds = {r: abs(v / seed_ratio - 1) <= PARAM_RATIO_TOLERANCE for r, v in ours.items()}
        elif test == "similar":
            holds = {r: 1 / SIMILAR_FACTOR <= v <= SIMILAR_FACTOR for r, v in ours.items()}
        else:
            holds = {r: (v > 1) == (seed_ratio > 1) for r, v in ours.items()}
        verdict = NOT_MEASURED if not holds else (REPRODUCED if all(holds.values()) else
                                                  NOT_REPRODUCED if not any(holds.values()) else MIXED)
        if quantity == "params":
            reason = f"ours {row['train_fp32']:.1f}x"
        elif quantity == "mult_adds":
            ti = _num(a.get("macs_torchinfo")) / _num(b.get("macs_torchinfo"))
            reason = f"MACs counted the same way for both (analytic): {row['train_fp32']:.2f}x" + (
                "" if math.isnan(ti) else f"; the seed's counter (torchinfo) gives {ti:.2f}x")
        else:
            reason = "; ".join(f"{REGIME_WORDS[r]} {v:.2f}x" for r, v in ours.items())
        rows.append(row | {"verdict": verdict, "reason": reason})
    return rows


def seed_claims(seed: pd.DataFrame, efficiency: pd.DataFrame | None) -> pd.DataFrame:
    """The seed's figures and claims (``read_seed_table``) beside ours from ``efficiency`` (the aggregate table)."""
    if efficiency is not None and efficiency.empty:
        efficiency = None
    rows = _figure_rows(seed, efficiency) + _claim_rows(seed, efficiency)
    return frame("seed_claims.csv", rows)
