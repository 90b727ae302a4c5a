"""The LaTeX the paper inputs, generated from the config and the aggregate files.

Every number the paper prints comes from here, formatted from its input:
the study config, results/aggregate/*.csv, provenance.json and the figures
manifest. Nothing is typed in, except the MedMNIST v2 ResNet-18 (28)
reference, which reaches us through accuracy.csv. Strings from data are
LaTeX-escaped. A missing input gives a sentence saying so, never a crash.

Files written to ``out_dir`` (paper/generated):

  macros.tex           \\newcommand for every number the text quotes (names: letters only)
  accuracy_table.tex   ACC/AUC mean ± std per dataset/res/model beside the ResNet-18 (28) reference
  efficiency_table.tex Params, Mult-Adds (thop / FlopCounter / analytic), peak VRAM, throughput
  inference_table.tex  latency, inference VRAM and the spread of the throughputs, once per input shape
  paired_table.tex     ViT−S4D accuracy difference, 95% bootstrap CI, McNemar p
  seed_claims.tex      the seed study's figures beside ours, and its claims with verdicts (seed_claims.csv)
  seed_comparison_table.tex  each pair of models across training seeds, Welch's t (seed_comparison.csv)
  setup.tex            the experimental setup, written from the config
  reproducibility.tex  commit, hashes, device, software versions, wall time per stage
  figures.tex          \\FiguresCurves, \\FiguresConfusion, \\FiguresEfficiency, \\FiguresAccuracyCost
                       (floats of exactly the figures in the manifest) and sentences that refer to them
  results_text.tex     result sentences per dataset/resolution (direction stated only from the data)
  discussion_text.tex  data-driven discussion statements
  limitations_text.tex data-dependent limitations (itemize)

Figures are referenced by their path relative to the paper folder (the parent
of ``out_dir`` unless ``paper_dir`` is given), e.g. ../results/figures/x.pdf;
LaTeX is run in the paper folder (latexmk -cd).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pandas as pd

from . import paths
from .catalog import dataset_label
from .errors import UserError
from .fileio import write_text
from .models import MODELS, model_label, model_sort_key
from .plots import read_manifest
from .seed_claims import REGIMES as SEED_REGIMES
from .tables import (
    CAVEAT_SEPARATOR,
    MAC_COUNTS,
    batch_columns,
    caveat_applies,
    data_facts,
    is_missing,
    oom_cells,
    ran_out_of_memory,
    read_table,
    to_bool,
    to_float,
)

GENERATED_FILES = ("macros.tex", "accuracy_table.tex", "efficiency_table.tex", "inference_table.tex", "paired_table.tex",
                   "setup.tex", "reproducibility.tex", "figures.tex", "results_text.tex", "discussion_text.tex",
                   "limitations_text.tex", "seed_claims.tex", "seed_comparison_table.tex")
ALPHA = 0.05  # significance level of the McNemar statements

# ---------------------------------------------------------------- formatting

_TEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 "<": r"\textless{}", ">": r"\textgreater{}"}


def tex_escape(value) -> str:
    """A string from data, safe to print in LaTeX text."""
    return re.sub(r"[\\&%$#_{}~^<>]", lambda m: _TEX_SPECIALS[m.group()], str(value))


def nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt(x, nd: int = 3) -> str:
    x = to_float(x)
    return "--" if math.isnan(x) else f"{x:.{nd}f}"


def fmt_signed(x, nd: int = 3) -> str:
    x = to_float(x)
    return "--" if math.isnan(x) else f"{x:+.{nd}f}"


def fmt_signed_math(x, nd: int = 3) -> str:
    """'$+0.036$' / '$-0.014$' (a real minus sign), for text."""
    t = fmt_signed(x, nd)
    return t if t == "--" else f"${t}$"


def fmt_pm(mean, std, nd: int = 3) -> str:
    """'$0.912 \\pm 0.004$', or '$0.912$' when the std is missing (one seed)."""
    m, s = to_float(mean), to_float(std)
    if math.isnan(m):
        return "--"
    return f"${m:.{nd}f} \\pm {s:.{nd}f}$" if not math.isnan(s) else f"${m:.{nd}f}$"


def fmt_count(x) -> str:
    """Three significant digits and a unit: 21540107 -> '21.5\\,M'; 200203 -> '200\\,k'."""
    x = to_float(x)
    if math.isnan(x):
        return "--"
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            v = x / div
            nd = 0 if abs(v) >= 100 else 1 if abs(v) >= 10 else 2
            return f"{v:.{nd}f}\\,{unit}"
    return f"{x:.0f}"


def fmt_sci(x) -> str:
    """A config number: 0.01 -> '0.01', 1e-4 -> '$1\\times10^{-4}$'."""
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) < 1e-2 or abs(x) >= 1e5:
        exp = math.floor(math.log10(abs(x)))
        mant = f"{x / 10 ** exp:.3g}"
        if mant in ("10", "-10"):
            mant, exp = mant[:-1], exp + 1
        return f"$10^{{{exp}}}$" if mant == "1" else f"${mant}\\times10^{{{exp}}}$"
    return f"{x:g}"


def fmt_p(p) -> str:
    p = to_float(p)
    if math.isnan(p):
        return "--"
    if p >= 1e-3:
        return f"{p:.3f}"
    mant, exp = f"{p:.1e}".split("e")
    return f"${mant}\\times10^{{{int(exp)}}}$"


def fmt_seconds(s) -> str:
    s = to_float(s)
    if math.isnan(s):
        return "not recorded"
    text = f"{s:.1f}\\,s"
    if s >= 3600:
        text += f" ({s / 3600:.2f}\\,h)"
    elif s >= 60:
        text += f" ({s / 60:.1f}\\,min)"
    return text


def res_tex(res) -> str:
    return f"{int(res)}$\\times${int(res)}"


def ratio_text(x) -> str:
    x = to_float(x)
    if math.isnan(x):
        return "--"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def join_words(items) -> str:
    items = list(items)
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _sep(loop) -> str:
    """Between the items of a template's for loop: ', ' and ' and ' as ``join_words`` joins them."""
    return "" if loop.last else " and " if loop.revindex == 2 else ", "


def _template(sections_dir, name: str):
    """``paper/sections/<name>``, a jinja2 template with LaTeX-safe delimiters: ``\\VAR{...}``, ``\\BLOCK{...}``,
    ``%%`` statement lines, ``%#`` comments."""
    import jinja2

    path = Path(sections_dir) / name
    if not path.is_file():
        raise UserError(f"{path} is missing (the paper's prose for generated/{name}); restore it with "
                        f"git checkout -- {path}, or run from the repository root")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(path.parent)), undefined=jinja2.StrictUndefined, autoescape=False,
        block_start_string="\\BLOCK{", block_end_string="}", variable_start_string="\\VAR{", variable_end_string="}",
        comment_start_string="\\#{", comment_end_string="}", line_statement_prefix="%%", line_comment_prefix="%#",
        trim_blocks=False, lstrip_blocks=True)
    env.filters["words"] = lambda items: join_words([str(i) for i in items])
    env.globals["sep"] = _sep
    try:
        return path, env.get_template(name)
    except jinja2.TemplateError as exc:
        line = getattr(exc, "lineno", None)
        raise UserError(f"{path}{f':{line}' if line else ''}: {exc}; fix the template") from None


def _rendering(path, render):
    """``render()``, with a template's error as one line naming the file and line."""
    import jinja2

    try:
        return render()
    except jinja2.TemplateError as exc:
        line = getattr(exc, "lineno", None)
        raise UserError(f"{path}{f':{line}' if line else ''}: {exc}; fix the template") from None


def render_section(sections_dir, name: str, **context) -> str:
    """``paper/sections/<name>`` rendered with ``context``, one paragraph per line."""
    path, template = _template(sections_dir, name)
    text = _rendering(path, lambda: template.render(**context))
    paragraphs = [" ".join(line.strip() for line in par.splitlines() if line.strip()) for par in text.split("\n\n")]
    return (f"% Generated by ssmvit.report from {path.as_posix()} and results/aggregate; do not edit.\n\n"
            + "\n\n".join(p for p in paragraphs if p) + "\n")


CAPTIONS = "captions.tex"


def caption(inp, name: str, **facts) -> str:
    """The macro ``name`` of ``paper/sections/captions.tex`` with ``facts``: a caption (or a sentence) as one line."""
    path, template = _template(inp.sections_dir, CAPTIONS)
    module = _rendering(path, template.make_module)
    if not hasattr(module, name):
        raise UserError(f"{path} has no macro {name!r} (a caption the paper needs); restore it with "
                        f"git checkout -- {path}")
    return " ".join(_rendering(path, lambda: str(getattr(module, name)(**facts))).split())


# ---------------------------------------------------------------- macro names

_DIGITS = ["Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine"]
_RES_WORDS = {28: "TwentyEight", 64: "SixtyFour", 128: "OneTwentyEight", 224: "TwoTwentyFour"}
_MODEL_TAGS = {"vit": "ViT", "s4d": "SFourD"}


def letters(text: str) -> str:
    """Any name as letters only: digits spelled out, everything else dropped, CamelCased."""
    out = []
    for part in re.split(r"[^A-Za-z0-9]+", str(text)):
        for chunk in re.findall(r"[A-Za-z]+|[0-9]+", part):
            out.append(chunk[0].upper() + chunk[1:] if chunk.isalpha() else "".join(_DIGITS[int(c)] for c in chunk))
    return "".join(out)


def res_tag(res) -> str:
    return _RES_WORDS.get(int(res)) or letters(str(int(res)))


def model_tag(model) -> str:
    return _MODEL_TAGS.get(str(model)) or letters(model)


def dataset_tag(dataset) -> str:
    return letters(dataset_label(dataset))


class Macros:
    """An ordered set of \\newcommand definitions; ``add`` returns the macro call for text."""

    def __init__(self):
        self.defs: dict[str, str] = {}

    def add(self, name: str, value: str) -> str:
        if not name.isalpha():
            raise ValueError(f"macro name {name!r} must be letters only")
        if name in self.defs and self.defs[name] != value:
            raise ValueError(f"macro {name} defined twice with different values")
        self.defs[name] = value
        return f"\\{name}{{}}"

    def render(self) -> str:
        lines = ["% Generated by ssmvit.report from the config and results/aggregate; do not edit.",
                 "% Every number the text quotes is one of these macros."]
        lines += [f"\\newcommand{{\\{k}}}{{{v}}}" for k, v in self.defs.items()]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- inputs

class Inputs:
    """Everything the generated files are made from."""

    def __init__(self, cfg: dict, aggregate_dir, figures_dir, paper_dir, sections_dir=None):
        self.cfg = cfg
        self.sections_dir = Path(sections_dir) if sections_dir else Path(paths.PAPER_SECTIONS)
        agg = Path(aggregate_dir)
        self.acc = read_table(agg / "accuracy.csv")
        self.runs = read_table(agg / "runs.csv")
        self.paired = read_table(agg / "paired.csv")
        self.seed_cmp = read_table(agg / "seed_comparison.csv")
        self.eff = read_table(agg / "efficiency.csv")
        self.seed = read_table(agg / "seed_claims.csv")
        self.hist = read_table(agg / "histories.csv")
        prov_path = agg / "provenance.json"
        self.prov = None
        if prov_path.exists():
            try:
                self.prov = json.loads(prov_path.read_text())
            except json.JSONDecodeError:
                self.prov = None
        self.figures_dir = Path(figures_dir)
        self.manifest = read_manifest(self.figures_dir)
        self.paper_dir = Path(paper_dir)
        self.facts = data_facts(self.acc, self.runs)
        for df in (self.acc, self.runs, self.paired, self.eff):
            if df is not None and "resolution" in df.columns:
                df["resolution"] = df["resolution"].astype(int)

    # -- ordering
    def datasets(self) -> list[str]:
        order = list(self.cfg["study"]["datasets"]) + list(self.cfg["study"].get("profile_only") or [])
        for df in (self.acc, self.eff):
            if df is not None:
                order += [d for d in sorted(df["dataset"].astype(str).unique()) if d not in order]
        return list(dict.fromkeys(order))

    def acc_rows(self, status: str | None = "ok") -> pd.DataFrame:
        if self.acc is None:
            return pd.DataFrame(columns=["dataset", "resolution", "model", "status"])
        a = self.acc
        return a if status is None else a[a["status"] == status]

    def acc_row(self, dataset, res, model):
        a = self.acc_rows("ok")
        r = a[(a["dataset"] == dataset) & (a["resolution"] == int(res)) & (a["model"] == model)]
        return None if r.empty else r.iloc[0]

    def eff_row(self, dataset, res, model):
        if self.eff is None:
            return None
        e = self.eff
        r = e[(e["dataset"] == dataset) & (e["resolution"] == int(res)) & (e["model"] == model)]
        return None if r.empty else r.iloc[0]

    def trained_pairs(self) -> list[tuple[str, int]]:
        a = self.acc_rows("ok")
        pairs = {(str(d), int(r)) for d, r in zip(a["dataset"], a["resolution"])}
        order = {d: i for i, d in enumerate(self.datasets())}
        return sorted(pairs, key=lambda p: (order.get(p[0], 99), p[1]))

    def needs_download(self) -> list[str]:
        a = self.acc_rows("needs download")
        found = [d for d in self.datasets() if d in set(a["dataset"].astype(str))]
        for d in self.cfg["study"].get("profile_only") or []:
            if d not in found and (self.acc is None or d not in set(self.acc_rows("ok")["dataset"])):
                found.append(d)
        return found

    def upsample_map(self) -> dict[int, int]:
        return {int(k): int(v) for k, v in (self.cfg["data"].get("upsample_from") or {}).items()}

    def fact(self, dataset, res) -> dict:
        return self.facts.get((str(dataset), int(res))) or {}

    def synthetic(self) -> bool:
        return any(f.get("official") is False for f in self.facts.values())

    def eff_cpu_only(self) -> bool:
        return self.eff is not None and bool((self.eff["device_type"].astype(str).str.lower() == "cpu").all())

    def eff_devices(self) -> list[tuple[str, str]]:
        if self.eff is None:
            return []
        pairs = []
        for _, r in self.eff.iterrows():
            p = (str(r.get("device_type") if not is_missing(r.get("device_type")) else "unknown"),
                 str(r.get("device_name") if not is_missing(r.get("device_name")) else "unknown device"))
            if p not in pairs:
                pairs.append(p)
        return pairs

    def eff_device_text(self) -> str:
        parts = [f"{tex_escape(name)} ({'GPU' if t == 'cuda' else t.upper()})" for t, name in self.eff_devices()]
        return join_words(parts) or "an unrecorded device"

    def train_devices(self) -> list[str]:
        if self.runs is None or "device_name" not in self.runs.columns:
            return []
        return [str(d) for d in dict.fromkeys(self.runs["device_name"].dropna().astype(str))]

    def seeds_per_train_device(self) -> dict[str, list[int]]:
        """The seeds whose runs trained on each GPU (or CPU), in the order the runs list them."""
        if self.runs is None or "device_name" not in self.runs.columns:
            return {}
        runs = self.runs.dropna(subset=["device_name"])
        return {str(d): sorted({int(x) for x in g["seed"]}) for d, g in runs.groupby("device_name", sort=False)}

    def infer_batch(self) -> tuple[int, str] | None:
        """The inference batch the tables quote: the largest profiled (``seed_claims.INFERENCE_BATCH``)."""
        if self.eff is None:
            return None
        cols = batch_columns(self.eff)
        return cols[-1] if cols else None

    def val_test_gap(self, dataset) -> float | None:
        """Mean over a dataset's runs of (best validation accuracy - test accuracy), or None if unknown."""
        if self.runs is None or "best_val_acc" not in self.runs.columns:
            return None
        r = self.runs[self.runs["dataset"] == dataset]
        gaps = (r["best_val_acc"].map(to_float) - r["acc"].map(to_float)).dropna()
        return float(gaps.mean()) if len(gaps) else None

    def class_shares(self, dataset) -> tuple[float, float] | None:
        """(smallest, largest) class share of the test images, from the runs' confusion matrices."""
        if self.runs is None or "test_class_min_share" not in self.runs.columns:
            return None
        r = self.runs[self.runs["dataset"] == dataset]
        lo, hi = r["test_class_min_share"].map(to_float).dropna(), r["test_class_max_share"].map(to_float).dropna()
        return (float(lo.iloc[0]), float(hi.iloc[0])) if len(lo) and len(hi) else None

    def training_arithmetic(self) -> list[str]:
        """How the runs' training steps ran (runs.csv), e.g. ['bf16 autocast + fused AdamW + torch.compile (blocks)']."""
        if self.runs is None or "training_arithmetic" not in self.runs.columns:
            return []
        return [str(v) for v in dict.fromkeys(self.runs["training_arithmetic"].dropna().astype(str))]

    def best_epochs(self, dataset, res, model) -> str:
        """The best-on-validation epoch of each seed's run, in seed order ("5,5,4"), or -- if unknown."""
        if self.runs is None or "best_epoch" not in self.runs.columns:
            return "--"
        r = self.runs[(self.runs["dataset"] == dataset) & (self.runs["resolution"].astype(int) == int(res))
                      & (self.runs["model"] == model)].sort_values("seed")
        eps = [int(v) for v in r["best_epoch"] if not math.isnan(to_float(v))]
        return ",".join(map(str, eps)) if eps else "--"

    def seeds_of(self, dataset, res, model) -> int:
        r = self.acc_row(dataset, res, model)
        return 0 if r is None else int(to_float(r.get("n_seeds")))

    def models(self) -> list[str]:
        found = list(self.cfg["study"]["models"])
        a = self.acc_rows(None)
        found += [m for m in a["model"].astype(str).unique() if m not in found]
        return sorted(dict.fromkeys(found), key=model_sort_key)


# ---------------------------------------------------------------- tables

def _table_order(inp: Inputs, df):
    """Rows in the paper's order: dataset as in the study, then resolution, then model (helper columns _d, _m)."""
    df = df.copy()
    order = {d: i for i, d in enumerate(inp.datasets())}
    df["_d"] = df["dataset"].map(lambda d: order.get(d, 99))
    df["_m"] = df["model"].map(model_sort_key)
    return df.sort_values(["_d", "resolution", "_m"])


def accuracy_table(inp: Inputs) -> str:
    if inp.acc is None:
        return ("% accuracy.csv missing\n\\noindent\\emph{No accuracy results are available: "
                "results/aggregate/accuracy.csv was not found or is empty.}\n")
    a = _table_order(inp, inp.acc)
    up_notes, any_synth, any_nd, any_shared = {}, False, False, False
    lines = [
        "% Generated by ssmvit.report from results/aggregate/accuracy.csv; do not edit.",
        "\\begin{table}[htbp]", "\\centering", "\\footnotesize", "\\setlength{\\tabcolsep}{4pt}",
        f"\\caption{{{caption(inp, 'accuracy', epochs=int(inp.cfg['train']['epochs']))}}}",
        "\\label{tab:accuracy}",
        "\\begin{tabular}{lllccccrcc}",
        "\\toprule",
        "Dataset & Res. & Model & Seeds & Best ep. & ACC & AUC & Train & \\multicolumn{2}{c}{ResNet-18 (28) ref.} \\\\",
        "\\cmidrule(lr){9-10}",
        " & & & & & & & (s) & ACC & AUC \\\\",
        "\\midrule",
    ]
    first = True
    for dataset, g in a.groupby("_d", sort=True):
        dname = str(g["dataset"].iloc[0])
        if not first:
            lines.append("\\midrule")
        first = False
        synth = any(to_bool(v) is False for v in g.get("official_data", pd.Series(dtype=object)))
        any_synth |= synth
        for i, (_, r) in enumerate(g.iterrows()):
            res = int(r["resolution"])
            dcell = tex_escape(dataset_label(dname)) + ("$^{s}$" if synth else "") if i == 0 else ""
            up = to_bool(r.get("upsampled"))
            src = to_float(r.get("source_size"))
            rcell = str(res)
            if up and not math.isnan(src):
                rcell += "$^{u}$"
                up_notes[(res, int(src))] = True
            mcell = tex_escape(model_label(r["model"]))
            ref_acc = fmt(r.get("ref_resnet18_28_acc")) if i == 0 else ""
            ref_auc = fmt(r.get("ref_resnet18_28_auc")) if i == 0 else ""
            if str(r["status"]) != "ok":
                any_nd = True
                status = tex_escape(r["status"])
                lines.append(f"{dcell} & {rcell} & {mcell} & -- & -- & \\multicolumn{{2}}{{c}}{{\\emph{{{status}}}}} & -- & "
                             f"{ref_acc} & {ref_auc} \\\\")
            else:
                n = int(to_float(r.get("n_seeds")))
                shared = to_bool(r.get("train_shared_gpu")) is True
                any_shared |= shared
                tcell = _seconds_range(r.get("train_seconds_min"), r.get("train_seconds_max")) + \
                    ("$^{g}$" if shared else "")
                lines.append(f"{dcell} & {rcell} & {mcell} & {n} & {inp.best_epochs(dname, res, r['model'])} & "
                             f"{fmt_pm(r['acc_mean'], r.get('acc_std'))} & "
                             f"{fmt_pm(r['auc_mean'], r.get('auc_std'))} & {tcell} & {ref_acc} & {ref_auc} \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    notes = caption(inp, "accuracy_notes", synthetic=any_synth, shared=any_shared, needs_download=any_nd,
                    upsampled=[{"res": res_tex(res), "source": res_tex(src)} for res, src in sorted(up_notes)],
                    device_seeds=[{"device": tex_escape(d), "seeds": seeds}
                                  for d, seeds in inp.seeds_per_train_device().items()])
    if notes:
        lines += ["\\par\\smallskip", "\\begin{minipage}{0.95\\linewidth}\\footnotesize", notes, "\\end{minipage}"]
    lines += ["\\end{table}"]
    return "\n".join(lines) + "\n"


def _seconds_range(low, high) -> str:
    """'41--138' (seconds, shortest to longest run), one number where they agree, '--' where not recorded."""
    lo, hi = to_float(low), to_float(high)
    if math.isnan(lo) or math.isnan(hi):
        return "--"

    def one(x):
        return f"{x:.0f}" if x >= 10 else f"{x:.1f}"

    return one(lo) if one(lo) == one(hi) else f"{one(lo)}--{one(hi)}"


CAVEAT_MARK = "$^{c}$"


def _caveat(row, col: str, cell: str) -> str:
    """``cell`` with ``CAVEAT_MARK`` when ``col`` is an as-trained measurement that the row's ``trained_caveat``
    concerns (tables.caveat_applies)."""
    marked = cell not in ("--", "n/a") and caveat_applies(row.get("trained_caveat"), col)
    return cell + CAVEAT_MARK if marked else cell


def _caveat_text(e: pd.DataFrame | None) -> str | None:
    """The caveat of the efficiency rows that have one (profiling.trained_caveats), for a caption."""
    if e is None or "trained_caveat" not in e.columns:
        return None
    texts = dict.fromkeys(t for v in e["trained_caveat"] if not is_missing(v) for t in str(v).split(CAVEAT_SEPARATOR))
    return tex_escape("; ".join(texts)) if texts else None


def _vram_cell(row, col: str) -> str:
    """'n/a' on CPU (not applicable, never 0), 'OOM', '--' when not measured, else MB."""
    if str(row.get("device_type")).lower() == "cpu":
        return "n/a"
    if ran_out_of_memory(row, col):
        return "OOM"
    x = to_float(row.get(col))
    return _caveat(row, col, "--" if math.isnan(x) else f"{x:.0f}")


def _rate_cell(row, col: str) -> str:
    if ran_out_of_memory(row, col):
        return "OOM"
    x = to_float(row.get(col))
    return _caveat(row, col, "--" if math.isnan(x) else (f"{x:.0f}" if x >= 100 else f"{x:.1f}"))


def efficiency_table(inp: Inputs) -> str:
    if inp.eff is None:
        return ("% efficiency.csv missing\n\\noindent\\emph{Efficiency measurements are not available: "
                "results/aggregate/efficiency.csv was not found or is empty.}\n")
    e = _table_order(inp, inp.eff)
    ib = inp.infer_batch()
    train_bs = sorted({int(to_float(v)) for v in e.get("train_batch_size", []) if not math.isnan(to_float(v))})
    bs_text = join_words([str(b) for b in train_bs]) or "an unrecorded size"
    lines = ["% Generated by ssmvit.report from results/aggregate/efficiency.csv; do not edit."]
    profiled_as = [str(v) for v in dict.fromkeys(e.get("trained_fast_path", pd.Series(dtype=object)))
                   if not is_missing(v)]
    trained_as = inp.training_arithmetic()
    all_notes = [str(v) for v in dict.fromkeys(e["data_note"]) if not is_missing(v)]
    if len(all_notes) == 1 and not e["data_note"].map(is_missing).any():
        inputs = [tex_escape(all_notes[0])]
    else:
        inputs = [f"{tex_escape(dataset_label(d))}: {tex_escape('; '.join(vals))}"
                  for d, g in e.groupby("dataset", sort=False)
                  if (vals := [str(v) for v in dict.fromkeys(g["data_note"]) if not is_missing(v)])]
    shown = [c for c, _ in MAC_COUNTS] + ["train_peak_allocated_mb", "train_samples_per_s_fp32"] + ([ib[1]] if ib else [])
    cap = caption(inp, "efficiency", device=inp.eff_device_text(), train_batch=bs_text, infer_batch=ib[0] if ib else None,
                  profiled_as=[tex_escape(t) for t in profiled_as],
                  trained_as=[tex_escape(t) for t in trained_as]
                  if trained_as and profiled_as and set(trained_as) != set(profiled_as) else [],
                  cpu_only=inp.eff_cpu_only(), inputs=inputs,
                  oom=any(c in oom_cells(r) for c in shown for _, r in e.iterrows()), caveat=_caveat_text(e))
    lines += ["\\begin{table}[htbp]", "\\centering", "\\scriptsize", "\\setlength{\\tabcolsep}{3pt}",
              f"\\caption{{{cap}}}", "\\label{tab:efficiency}",
              "\\begin{tabular}{llrrrrrrrrrr}", "\\toprule",
              "& & & \\multicolumn{3}{c}{Mult-Adds} & \\multicolumn{2}{c}{Peak VRAM (MB)} & "
              "\\multicolumn{4}{c}{Throughput (samples/s)} \\\\",
              "\\cmidrule(lr){4-6} \\cmidrule(lr){7-8} \\cmidrule(lr){9-12}",
              "& & & & & & & & \\multicolumn{2}{c}{Train} & \\multicolumn{2}{c}{Infer.} \\\\",
              "Dataset & Model (Res.) & Params & thop & FlopC. & analytic & fp32 & trained & fp32 & trained & fp32 & "
              "trained \\\\",
              "\\midrule"]
    lines += _profile_rows(e, lambda r: [fmt_count(r.get("params")), *[fmt_count(r.get(c)) for c, _ in MAC_COUNTS],
                                         _vram_cell(r, "train_peak_allocated_mb"),
                                         _vram_cell(r, "train_peak_allocated_mb_trained"),
                                         _rate_cell(r, "train_samples_per_s_fp32"),
                                         _rate_cell(r, "train_samples_per_s_trained"),
                                         _rate_cell(r, ib[1]) if ib else "--",
                                         _rate_cell(r, f"{ib[1]}_trained") if ib else "--"])
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def _profile_rows(e: pd.DataFrame, cells) -> list[str]:
    """Table rows of profiled configurations, one block per dataset: its name, the model and resolution, then
    ``cells(row)``."""
    lines = []
    for k, (_, g) in enumerate(e.groupby("_d", sort=True)):
        if k:
            lines.append("\\midrule")
        for i, (_, r) in enumerate(g.iterrows()):
            res = int(r["resolution"])
            lines.append(" & ".join([tex_escape(dataset_label(r["dataset"])) if i == 0 else "",
                                     f"{tex_escape(model_label(r['model']))} ({res}$\\times${res})", *cells(r)])
                         + " \\\\")
    return lines


def _iqr_cell(row, col: str) -> str:
    """The middle half of the repeats' samples/s (q25--q75), 'OOM', or '--'."""
    if ran_out_of_memory(row, col) or ran_out_of_memory(row, f"{col}_q25"):
        return "OOM"
    lo, hi = to_float(row.get(f"{col}_q25")), to_float(row.get(f"{col}_q75"))
    if math.isnan(lo) or math.isnan(hi):
        return "--"
    return _caveat(row, col, f"{lo:.0f}--{hi:.0f}" if hi >= 100 else f"{lo:.1f}--{hi:.1f}")


def _latency_cell(row, col: str) -> str:
    x = to_float(row.get(col))
    return _caveat(row, col, "--" if math.isnan(x) else f"{x:.2f}")


def inference_table(inp: Inputs) -> str:
    """Latency, inference memory and the spread of the throughputs, once per measured input shape."""
    if inp.eff is None:
        return "% efficiency.csv missing\n"
    e = _table_order(inp, inp.eff)
    if "timed_with" in e.columns:  # one row per measurement: datasets of one shape share it
        e = e[e["timed_with"].astype(str) == e["dataset"].astype(str)]
    ib = inp.infer_batch()
    train_bs = join_words(sorted({str(int(to_float(v))) for v in e.get("train_batch_size", [])
                                  if not math.isnan(to_float(v))})) or "an unrecorded size"
    vram = not inp.eff_cpu_only()
    cap = caption(inp, "inference", device=inp.eff_device_text(), vram=vram, infer_batch=ib[0] if ib else None,
                  train_batch=train_bs, caveat=_caveat_text(e))
    lines = ["% Generated by ssmvit.report from results/aggregate/efficiency.csv; do not edit.",
             "\\begin{table}[htbp]", "\\centering", "\\scriptsize", "\\setlength{\\tabcolsep}{3pt}",
             f"\\caption{{{cap}}}", "\\label{tab:inference}", "\\begin{tabular}{llrrrrrrrr}", "\\toprule",
             "& & \\multicolumn{2}{c}{Latency (ms)} & \\multicolumn{2}{c}{Infer.\\ VRAM (MB)} & "
             "\\multicolumn{4}{c}{Spread of samples/s} \\\\",
             "\\cmidrule(lr){3-4} \\cmidrule(lr){5-6} \\cmidrule(lr){7-10}",
             "& & & & & & \\multicolumn{2}{c}{Train} & \\multicolumn{2}{c}{Infer.} \\\\",
             "Timed on & Model (Res.) & fp32 & trained & fp32 & trained & fp32 & trained & fp32 & trained \\\\",
             "\\midrule"]
    vram_col = f"infer_peak_allocated_mb_bs{ib[0]}" if ib else None
    lines += _profile_rows(e, lambda r: [
        _latency_cell(r, "latency_bs1_ms"), _latency_cell(r, "latency_bs1_ms_trained"),
        _vram_cell(r, vram_col) if vram_col else "--", _vram_cell(r, f"{vram_col}_trained") if vram_col else "--",
        _iqr_cell(r, "train_samples_per_s_fp32"), _iqr_cell(r, "train_samples_per_s_trained"),
        _iqr_cell(r, ib[1]) if ib else "--", _iqr_cell(r, f"{ib[1]}_trained") if ib else "--"])
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the seed study, claim by claim

_SEED_QUANTITY = {"params": "Params", "mult_adds": "Mult-Adds", "peak_vram_mb": "Peak VRAM (MB)",
                  "throughput_samples_s": "Samples/s"}


def _seed_value(quantity: str, value) -> str:
    v = to_float(value)
    if math.isnan(v):
        return "--"
    if quantity in ("params", "mult_adds"):  # as the seed prints them
        return f"{v / 1e6:.2f}\\,M" if v < 1e9 else f"{v / 1e9:.2f}\\,G"
    return f"{v:,.0f}".replace(",", "{,}")


def _seed_caveat(inp: Inputs, t: pd.DataFrame) -> list[str]:
    """The configurations of the seed tables whose as-trained figures include a measurement that a trained_caveat
    concerns (tables.caveat_applies; the figures are seed_claims' training and largest-batch inference)."""
    e = inp.eff
    if e is None or "trained_caveat" not in e.columns:
        return []
    ib = inp.infer_batch()
    used = ["train_samples_per_s_trained", "train_peak_allocated_mb_trained"]
    if ib:
        used += [ib[1] + "_trained", f"infer_peak_allocated_mb_bs{ib[0]}_trained"]
    marked = {(str(r["dataset"]), int(r["resolution"]), str(r["model"])) for _, r in e.iterrows()
              if any(caveat_applies(r.get("trained_caveat"), c) for c in used)}
    confs = dict.fromkeys((str(r["dataset"]), int(r["resolution"]), str(r["model"])) for _, r in t.iterrows()
                          if not is_missing(r.get("dataset")) and not is_missing(r.get("resolution")))
    return [f"{tex_escape(dataset_label(d))} {res}$\\times${res} {tex_escape(model_label(m))}"
            for d, res, m in confs if (d, res, m) in marked]


def seed_claims_tables(inp: Inputs) -> str:
    """The seed's figures beside ours and its claims with verdicts (results/aggregate/seed_claims.csv)."""
    if inp.seed is None:
        return ("% seed_claims.csv missing\n\\noindent\\emph{The seed study's claims are not checked here: "
                "results/aggregate/seed\\_claims.csv was not found or is empty.}\n")
    t = inp.seed
    device = inp.eff_device_text()
    lines = ["% Generated by ssmvit.report from results/aggregate/seed_claims.csv; do not edit."]
    fig = t[t["kind"] == "figure"]
    caveat = _seed_caveat(inp, t)
    lines += ["\\begin{table}[htbp]", "\\centering", "\\scriptsize", "\\setlength{\\tabcolsep}{3pt}",
              f"\\caption{{{caption(inp, 'seed_figures', device=device, caveat=caveat)}}}",
              "\\label{tab:seedfigures}",
              "\\begin{tabular}{lrrrrrlp{4.6cm}}", "\\toprule",
              "& & \\multicolumn{4}{c}{ours} & & \\\\ \\cmidrule(lr){3-6}",
              "& & \\multicolumn{2}{c}{training} & \\multicolumn{2}{c}{inference} & & \\\\",
              "Quantity & Seed & fp32 & as trained & fp32 & as trained & Verdict & Why \\\\"]
    last = None
    for _, r in fig.iterrows():
        conf = (r["dataset"], int(r["resolution"]), r["model"])
        if conf != last:  # one header line per configuration
            lines += ["\\midrule", f"\\multicolumn{{8}}{{l}}{{\\textbf{{{tex_escape(dataset_label(r['dataset']))} "
                                     f"{int(r['resolution'])}$\\times${int(r['resolution'])}, "
                                     f"{tex_escape(model_label(r['model']))}}}}} \\\\"]
        last = conf
        q = r["quantity"]
        ours = [_seed_value(q, r.get(reg)) for reg in SEED_REGIMES]
        if q in ("params", "mult_adds"):
            ours = [f"\\multicolumn{{4}}{{c}}{{{ours[0]}}}"]
        why = "" if r["verdict"] == "not comparable" or is_missing(r.get("reason")) else tex_escape(r["reason"])
        lines.append(" & ".join([_SEED_QUANTITY[q], _seed_value(q, r["seed"]), *ours, tex_escape(r["verdict"]), why])
                     + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]

    claims = t[t["kind"] == "claim"]
    lines += ["\\begin{table}[htbp]", "\\centering", "\\scriptsize", "\\setlength{\\tabcolsep}{3pt}",
              f"\\caption{{{caption(inp, 'seed_claims', caveat=caveat)}}}",
              "\\label{tab:seedclaims}",
              "\\begin{tabular}{p{3.5cm}rrrrrlp{3.1cm}}", "\\toprule",
              "& & \\multicolumn{4}{c}{ours} & & \\\\ \\cmidrule(lr){3-6}",
              "& & \\multicolumn{2}{c}{training} & \\multicolumn{2}{c}{inference} & & \\\\",
              "Claim of the seed study & Seed & fp32 & as trained & fp32 & as trained & Verdict & Why \\\\",
              "\\midrule"]
    for _, r in claims.iterrows():
        vals = [to_float(r.get(reg)) for reg in SEED_REGIMES]
        cells = ["--" if math.isnan(v) else f"{v:.2f}$\\times$" for v in vals]
        if r["quantity"] in ("params", "mult_adds"):
            cells = [f"\\multicolumn{{4}}{{c}}{{{cells[0]}}}"]
        # the ratios are in the columns; only the Mult-Adds claims need words (which counter)
        why = (tex_escape(r["reason"]) if r["quantity"] == "mult_adds" and not is_missing(r.get("reason"))
               else "the regimes' ratios lie on both sides of 1" if r["verdict"] == "depends on the regime" else "")
        lines.append(" & ".join([tex_escape(r["claim"]), f"{to_float(r['seed']):.2f}$\\times$", *cells,
                                 tex_escape(r["verdict"]), why]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def paired_table(inp: Inputs) -> str:
    if inp.paired is None:
        both = [(d, r) for d, r in inp.trained_pairs()
                if inp.acc_row(d, r, "vit") is not None and inp.acc_row(d, r, "s4d") is not None]
        why = ("no dataset/resolution has both models trained" if not both
               else "results/aggregate/paired.csv was not found or is empty")
        return ("% paired.csv missing\n\\noindent\\emph{No paired comparison is available: it needs ViT and S4D "
                f"test predictions on the same images, and {why}.}}\n")
    p = inp.paired.copy()
    order = {d: i for i, d in enumerate(inp.datasets())}
    p["_d"] = p["dataset"].map(lambda d: order.get(d, 99))
    p = p.sort_values(["_d", "resolution", "seed"])
    lines = ["% Generated by ssmvit.report from results/aggregate/paired.csv; do not edit.",
             "\\begin{table}[htbp]", "\\centering", "\\footnotesize", "\\setlength{\\tabcolsep}{4pt}",
             f"\\caption{{{caption(inp, 'paired')}}}",
             "\\label{tab:paired}",
             "\\begin{tabular}{llrrcccrc}", "\\toprule",
             "Dataset & Res. & Seed & $n$ & ViT & S4D & ViT$-$S4D [95\\% CI] & $b$/$c$ & McNemar $p$ \\\\",
             "\\midrule"]
    prev = None
    for _, r in p.iterrows():
        d = str(r["dataset"])
        if prev is not None and d != prev:
            lines.append("\\midrule")
        dcell = tex_escape(dataset_label(d)) if d != prev else ""
        prev = d
        res = int(r["resolution"])
        ci = f"${fmt_signed(r['diff_vit_minus_s4d'])}$ [${fmt_signed(r['ci95_low'])}$, ${fmt_signed(r['ci95_high'])}$]"
        b, c = int(to_float(r["only_vit_right"])), int(to_float(r["only_s4d_right"]))
        rcell = str(res) + ("$^{u}$" if inp.fact(d, res).get("upsampled") else "")
        lines.append(f"{dcell} & {rcell} & {int(r['seed'])} & {int(to_float(r['n_test']))} & {fmt(r['vit_acc'])} & "
                     f"{fmt(r['s4d_acc'])} & {ci} & {b}/{c} & {fmt_p(r['mcnemar_p'])} \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    ups = sorted({(int(r), inp.fact(d, r).get("source_size")) for d, r in zip(p["dataset"], p["resolution"])
                  if inp.fact(d, r).get("upsampled")})
    if ups:
        lines += ["\\par\\smallskip{\\footnotesize " + " ".join(
            f"$^{{u}}$\\,{res_tex(r)} upsampled from {res_tex(s)}." for r, s in ups if s) + "}"]
    lines += ["\\end{table}"]
    return "\n".join(lines) + "\n"


def seed_comparison_table(inp: Inputs) -> str:
    """Each pair of models per dataset and resolution across training seeds (results/aggregate/seed_comparison.csv)."""
    c = inp.seed_cmp
    if c is None:
        return ("% seed_comparison.csv missing\n\\noindent\\emph{No comparison across seeds is available: it needs "
                "two models trained on the same data, and results/aggregate/seed\\_comparison.csv was not found or "
                "is empty.}\n")
    order = {d: i for i, d in enumerate(inp.datasets())}
    c = c.assign(_d=c["dataset"].map(lambda d: order.get(d, 99))).sort_values(["_d", "resolution"], kind="stable")
    lines = ["% Generated by ssmvit.report from results/aggregate/seed_comparison.csv; do not edit.",
             "\\begin{table}[htbp]", "\\centering", "\\footnotesize", "\\setlength{\\tabcolsep}{4pt}",
             f"\\caption{{{caption(inp, 'seed_comparison')}}}",
             "\\label{tab:seedcomparison}",
             "\\begin{tabular}{llllrrrrr}", "\\toprule",
             "Dataset & Res. & A & B & Seeds & ACC A & ACC B & A$-$B & Welch $p$ ($t$, df) \\\\", "\\midrule"]
    prev = None
    for _, r in c.iterrows():
        d = str(r["dataset"])
        if prev is not None and d != prev:
            lines.append("\\midrule")
        dcell = tex_escape(dataset_label(d)) if d != prev else ""
        prev = d
        res = int(r["resolution"])
        rcell = str(res) + ("$^{u}$" if inp.fact(d, res).get("upsampled") else "")
        p = to_float(r.get("welch_p"))
        test = "--" if math.isnan(p) else (f"{fmt_p(p)} (${to_float(r['welch_t']):.1f}$, "
                                           f"{to_float(r['welch_df']):.1f})")
        seeds = f"{int(to_float(r['n_seeds_a']))}/{int(to_float(r['n_seeds_b']))}"
        lines.append(f"{dcell} & {rcell} & {tex_escape(model_label(r['model_a']))} & "
                     f"{tex_escape(model_label(r['model_b']))} & {seeds} & {fmt(r['acc_mean_a'])} & "
                     f"{fmt(r['acc_mean_b'])} & ${fmt_signed(r['diff_a_minus_b'])}$ & {test} \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def _seed_level_macros(inp: Inputs, M: Macros) -> None:
    """ViT vs S4D across seeds: how many dataset/resolution pairs Welch's test separates, in which direction."""
    c = inp.seed_cmp
    if c is None:
        return
    vit_s4d = c[(c["model_a"] == "vit") & (c["model_b"] == "s4d")]
    s4d_vit = c[(c["model_a"] == "s4d") & (c["model_b"] == "vit")]  # the study listed S4D first
    diff = pd.concat([vit_s4d["diff_a_minus_b"].map(to_float), -s4d_vit["diff_a_minus_b"].map(to_float)])
    p = pd.concat([vit_s4d["welch_p"].map(to_float), s4d_vit["welch_p"].map(to_float)])
    tested = ~p.isna()
    if not tested.any():
        return
    sig = tested & (p < ALPHA)
    M.add("NumWelchPairs", str(int(tested.sum())))
    M.add("NumWelchSFourDBetter", str(int((sig & (diff < 0)).sum())))  # diff: ViT minus S4D
    M.add("NumWelchViTBetter", str(int((sig & (diff > 0)).sum())))


def _seed_claim_macros(inp: Inputs, M: Macros) -> None:
    """How many of the seed study's claims hold, for the abstract (results/aggregate/seed_claims.csv)."""
    if inp.seed is None:
        return
    claims = inp.seed[inp.seed["kind"] == "claim"]
    judged = claims[claims["verdict"].isin(["reproduced", "not reproduced", "depends on the regime"])]
    if judged.empty:
        return
    M.add("NumSeedClaims", str(len(judged)))
    M.add("NumSeedClaimsReproduced", str(int((judged["verdict"] == "reproduced").sum())))
    M.add("NumSeedClaimsMixed", str(int((judged["verdict"] == "depends on the regime").sum())))
    M.add("NumSeedClaimsNotReproduced", str(int((judged["verdict"] == "not reproduced").sum())))


def _training_budget_macros(inp: Inputs, M: Macros) -> None:
    """How many runs peaked in their last epoch: main.tex's under-training paragraph reads these."""
    runs = inp.runs
    if runs is None or "best_epoch" not in runs.columns:
        return
    best, last = runs["best_epoch"].map(to_float), runs["epochs"].map(to_float)
    known = ~(best.isna() | last.isna())
    if not known.any():
        return  # nothing is known of the runs' best epochs: the paper says nothing about the budget
    M.add("NumRunsTrained", str(int(known.sum())))
    M.add("NumRunsBestLast", str(int((best[known] == last[known]).sum())))


# ---------------------------------------------------------------- setup (from the config)

def _describe(dataset):
    try:
        from .catalog import describe

        return describe(dataset)
    except Exception:  # medmnist missing: the setup still says what the config says
        return None


def _s4d_dt_range():
    try:
        import inspect

        from .models.s4d import S4DKernel

        params = inspect.signature(S4DKernel.__init__).parameters
        return params["dt_min"].default, params["dt_max"].default
    except Exception:
        return None


def setup_text(inp: Inputs, M: Macros) -> str:
    """paper/sections/setup.tex rendered with the study config and the data's facts (the words are the template's)."""
    cfg = inp.cfg
    st, tr = cfg["study"], cfg["train"]
    mv, ms = cfg["models"].get("vit"), cfg["models"].get("s4d")
    prof = cfg.get("profile") or {}
    ups = inp.upsample_map()
    models = st["models"]
    datasets, sources = [], []
    for d in st["datasets"]:
        desc = _describe(d)
        entry = {"label": tex_escape(dataset_label(d)), "described": bool(desc)}
        if desc:
            n, shares = desc["n_samples"], inp.class_shares(d)
            entry.update(n_classes=desc["n_classes"], gray=desc["n_channels"] == 1, n_train=n.get("train"),
                         n_val=n.get("val"), n_test=n.get("test"),
                         shares=(f"{100 * shares[0]:.1f}", f"{100 * shares[1]:.1f}") if shares else None)
            if desc.get("source"):
                sources.append(tex_escape(desc["source"]))
        datasets.append(entry)
    vit = s4d = None
    if "vit" in models:
        patch = int(mv["patch_size"])
        vit = {"patch": patch, "embed": mv["embed_dim"], "depth": mv["depth"], "heads": mv["num_heads"],
               "mlp": mv["mlp_dim"], "dropout": fmt_sci(mv["dropout"]),
               "tokens": [{"n": (int(r) // patch) ** 2 + 1, "res": res_tex(r)} for r in st["resolutions"]]}
    if "s4d" in models:
        dt = _s4d_dt_range()
        s4d = {"layers": ms["n_layers"], "h_gray": ms["d_model_grayscale"], "h_rgb": ms["d_model_rgb"],
               "n": ms["d_state"], "pairs": int(ms["d_state"]) // 2, "dropout": fmt_sci(ms["dropout"]),
               "dt": (fmt_sci(dt[0]), fmt_sci(dt[1])) if dt else None,
               "lengths": [{"n": int(r) ** 2, "res": res_tex(r)} for r in st["resolutions"]],
               "ssm_lr": fmt_sci(ms["ssm_lr"]).strip("$"), "ssm_lr_used": fmt_sci(min(float(ms["lr"]), float(ms["ssm_lr"])))}
    other_models = []
    for name in models:  # any other registered model: its own description and settings
        if name in ("vit", "s4d") or name not in MODELS:
            continue
        given = ", ".join(f"{k} {v}" for k, v in cfg["models"][name].items() if k != "lr")
        other_models.append({"label": tex_escape(MODELS[name].label), "description": tex_escape(MODELS[name].description),
                             "given": tex_escape(given)})
    lrs = ([{"lr": fmt_sci(mv["lr"]), "label": "ViT"}] if vit else []) + \
          ([{"lr": fmt_sci(ms["lr"]), "label": "S4D"}] if s4d else []) + \
          [{"lr": fmt_sci(cfg["models"][m]["lr"]), "label": tex_escape(model_label(m))} for m in models
           if m not in ("vit", "s4d") and m in cfg["models"]]
    seeds = [int(x) for x in st["seeds"]]
    profiling = None
    if prof:
        dev = str(prof.get("device", "auto"))
        eff = inp.eff
        profiling = {"batch_sizes": ", ".join(str(int(b)) for b in prof.get("batch_sizes", [])),
                     "warmup": int(prof.get("warmup", 0)), "repeats": int(prof.get("repeats", 0)),
                     "device": None if dev == "auto" else tex_escape(dev),
                     "measured_on": inp.eff_device_text() if eff is not None and len(eff) else None,
                     # what the profiles at hand did (older ones measured each dataset and one regime)
                     "trained_measured": eff is not None and "train_samples_per_s_trained" in eff.columns
                     and pd.to_numeric(eff["train_samples_per_s_trained"], errors="coerce").notna().any(),
                     "shared": eff is not None and "timed_with" in eff.columns
                     and bool((eff["timed_with"].astype(str) != eff["dataset"].astype(str)).any())}
    M.add("NumEpochs", str(int(tr["epochs"])))
    M.add("BatchSize", str(int(tr["batch_size"])))
    M.add("NumSeeds", str(len(seeds)))
    M.add("WeightDecay", fmt_sci(tr["weight_decay"]))
    if vit:
        M.add("LrViT", fmt_sci(mv["lr"]))
    if s4d:
        M.add("LrSFourD", fmt_sci(ms["lr"]))
    for m in models:
        if m not in ("vit", "s4d") and m in cfg["models"]:
            M.add(f"Lr{model_tag(m)}", fmt_sci(cfg["models"][m]["lr"]))
    return render_section(
        inp.sections_dir, "setup.tex", datasets=datasets, sources=sources,
        resolutions=[{"res": res_tex(r), "upsampled_from": res_tex(ups[int(r)]) if int(r) in ups else None}
                     for r in st["resolutions"]],
        max_train_samples=int(tr["max_train_samples"]) if tr.get("max_train_samples") else None,
        max_eval_samples=int(tr["max_eval_samples"]) if tr.get("max_eval_samples") else None,
        profile_only=[tex_escape(dataset_label(d)) for d in st.get("profile_only") or []],
        vit=vit, s4d=s4d, other_models=other_models, epochs=int(tr["epochs"]),
        weight_decay=fmt_sci(tr["weight_decay"]), lrs=lrs, cosine=tr["scheduler"] == "cosine",
        batch_size=int(tr["batch_size"]), seeds=seeds, profiling=profiling)


# ---------------------------------------------------------------- reproducibility

def reproducibility_text(inp: Inputs) -> str:
    """paper/sections/reproducibility.tex rendered with provenance.json and the runs' records."""
    prov = None
    if inp.prov:
        def val(key, mono=False):
            v = inp.prov.get(key)
            if v is None or v == "":
                return "not recorded"
            return f"{{\\footnotesize\\texttt{{{tex_escape(v)}}}}}" if mono else tex_escape(v)

        prov = {"commit": val("git_commit", mono=True), "dirty": inp.prov.get("git_dirty"),
                "dirty_files": [f"\\texttt{{{tex_escape(f)}}}" for f in inp.prov.get("git_dirty_files") or []],
                "config_sha256": val("config_sha256", mono=True), "device_name": val("device_name"),
                "driver": val("driver"), "cuda": val("cuda"), "torch": val("torch"), "python": val("python"),
                "stages": [{"name": tex_escape(k), "seconds": fmt_seconds(v)}
                           for k, v in (inp.prov.get("stage_seconds") or {}).items()],
                "generated_at": val("generated_at"),
                "train_parts": [{"runs": p["runs"], "seeds": ", ".join(map(str, p["seeds"])), "n_seeds": len(p["seeds"]),
                                 "devices": join_words([tex_escape(d) for d in p["devices"]]),
                                 "torch": join_words([tex_escape(t) for t in p["torch"]]),
                                 "date": tex_escape(str(p.get("started_utc") or "")[:10]),
                                 "span": fmt_seconds(p["span_s"]),
                                 "training": fmt_seconds(p["training_s"]) if p.get("training_s") is not None
                                 and p["training_s"] < p["span_s"] - 1 else None}
                               for p in inp.prov.get("train_parts") or []]}
    arithmetic = []
    if inp.runs is not None and "training_arithmetic" in inp.runs.columns:
        runs = inp.runs.dropna(subset=["training_arithmetic"])
        arithmetic = [{"kind": tex_escape(k), "runs": len(g),
                       "models": [tex_escape(model_label(m)) for m in sorted(set(g["model"]), key=model_sort_key)]}
                      for k, g in runs.groupby(runs["training_arithmetic"].astype(str), sort=False)]
    return render_section(inp.sections_dir, "reproducibility.tex", prov=prov, arithmetic=arithmetic)


# ---------------------------------------------------------------- figures

def figures_tex(inp: Inputs) -> str:
    figs = inp.manifest.get("figures", [])
    rel = Path(os.path.relpath(inp.figures_dir.resolve(), inp.paper_dir.resolve())).as_posix()

    def path(name):
        return f"{rel}/{name}"

    def natural(e) -> str:
        """The figure's own width: it is drawn at print size (plots.TEXT_WIDTH_IN), so never scaled."""
        return f"{float(e['width_in']):g}in" if e.get("width_in") else "\\linewidth"

    def fig(name, caption, label, width):
        return ("\\begin{figure}[htbp]\n\\centering\n"
                f"\\includegraphics[width={width}]{{{path(name)}}}\n"
                f"\\caption{{{caption}}}\n\\label{{{label}}}\n\\end{{figure}}\n")

    groups = {"Curves": [], "Confusion": [], "Efficiency": [], "AccuracyCost": []}
    refs = {k: [] for k in groups}
    for e in figs:
        kind = e["kind"]
        if kind == "curves":
            d = tex_escape(dataset_label(e["dataset"]))
            seeds = e.get("n_seeds") or {}
            nmax = max(seeds.values() or [1])
            ups = [f"{res_tex(r)} upsampled from {res_tex((e.get('source_sizes') or {}).get(str(r)))}"
                   for r in e.get("upsampled", []) if (e.get("source_sizes") or {}).get(str(r))]
            cap = caption(inp, "curves", dataset=d, several_seeds=nmax > 1, upsampled=ups, synthetic=e.get("synthetic"),
                          seeds_per_model=[f"{tex_escape(model_label(m))}: {n}" for m, n in
                                           sorted(seeds.items(), key=lambda x: model_sort_key(x[0]))])
            lab = f"fig:curves-{e['dataset']}"
            groups["Curves"].append(fig(e["file"], cap, lab, natural(e)))
            refs["Curves"].append(lab)
        elif kind == "confusion":
            d = tex_escape(dataset_label(e["dataset"]))
            res = int(e["resolution"])
            rt = res_tex(res) + (f" (upsampled from {res_tex(e['source_size'])})" if e.get("upsampled") and e.get("source_size") else "")
            models = e.get("models", [])
            cap = caption(inp, "confusion", dataset=d, res=rt, synthetic=e.get("synthetic"),
                          models=[f"{tex_escape(model_label(m))} (seed {e['seeds'][m]})" for m in models])
            lab = f"fig:confusion-{e['dataset']}-{res}"
            groups["Confusion"].append(fig(e["file"], cap, lab, natural(e)))
            refs["Confusion"].append(lab)
        elif kind == "throughput":
            ooms = e.get("ooms") or []
            cap = caption(inp, "throughput", device=inp.eff_device_text(), ooms=[tex_escape(o) for o in ooms],
                          cpu_only=e.get("cpu_only"))
            groups["Efficiency"].append(fig(e["file"], cap, "fig:throughput", natural(e)))
            refs["Efficiency"].append("fig:throughput")
        elif kind == "vram":
            cap = caption(inp, "vram", device=inp.eff_device_text(), vram_measured=e.get("vram_measured"),
                          cpu_only=e.get("cpu_only"), rss_measured=e.get("rss_measured"))
            groups["Efficiency"].append(fig(e["file"], cap, "fig:vram", natural(e)))
            refs["Efficiency"].append("fig:vram")
        elif kind == "macs":
            cap = caption(inp, "macs", counters=[tex_escape(c) for c in e.get("counters", [])])
            groups["Efficiency"].append(fig(e["file"], cap, "fig:macs", natural(e)))
            refs["Efficiency"].append("fig:macs")
    cost = {e["kind"]: e for e in figs if e["kind"] in ("acc_vs_params", "acc_vs_macs")}
    if cost:
        parts = []
        for kind, what in (("acc_vs_params", "parameters"), ("acc_vs_macs", "Mult-Adds")):
            if kind in cost:
                e = cost[kind]
                extra = f" ({tex_escape(e['counter'])} count)" if kind == "acc_vs_macs" and e.get("counter") else ""
                parts.append((e, f"{what}{extra}"))
        body = "\n\\par\\medskip\n".join(f"\\includegraphics[width={natural(e)}]{{{path(e['file'])}}}" for e, _ in parts)
        against = [f"{w} ({'top' if i == 0 else 'bottom'})" if len(parts) == 2 else w for i, (_, w) in enumerate(parts)]
        cap = caption(inp, "accuracy_cost", against=against, upsampled=any(f.get("upsampled") for f in inp.facts.values()),
                      synthetic=any(e.get("synthetic") for e in cost.values()))
        groups["AccuracyCost"].append("\\begin{figure}[htbp]\n\\centering\n" + body + f"\n\\caption{{{cap}}}\n"
                                      "\\label{fig:acc-cost}\n\\end{figure}\n")
        refs["AccuracyCost"].append("fig:acc-cost")

    sentences = {g: caption(inp, f"{name}_sentence", labels=refs[g]) for g, name in
                 (("Curves", "curves"), ("Confusion", "confusion"), ("Efficiency", "efficiency"),
                  ("AccuracyCost", "accuracy_cost"))}
    lines = ["% Generated by ssmvit.report from the figures manifest; do not edit.",
             f"% Figures are referenced relative to the paper folder ({tex_escape(rel)}/).",
             "% \\Figures<Group> place the floats of a group; \\<Group>Sentence refers to them."]
    for g, floats in groups.items():
        lines.append(f"\\newcommand{{\\Figures{g}}}{{%\n" + "".join(floats) + "}")
        lines.append(f"\\newcommand{{\\{g}Sentence}}{{{sentences[g]}}}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- text

def _paired_summary(inp: Inputs, dataset, res):
    if inp.paired is None:
        return None
    p = inp.paired[(inp.paired["dataset"] == dataset) & (inp.paired["resolution"] == int(res))]
    if p.empty:
        return None
    diff = pd.to_numeric(p["diff_vit_minus_s4d"], errors="coerce")
    lo = pd.to_numeric(p["ci95_low"], errors="coerce")
    hi = pd.to_numeric(p["ci95_high"], errors="coerce")
    pv = pd.to_numeric(p["mcnemar_p"], errors="coerce")
    n = len(p)
    vit_ci, s4d_ci = int((lo > 0).sum()), int((hi < 0).sum())
    sig = int((pv < ALPHA).sum())
    if vit_ci == n:
        verdict = "vit"
    elif s4d_ci == n:
        verdict = "s4d"
    elif vit_ci and s4d_ci:
        verdict = "mixed"
    elif vit_ci or s4d_ci:
        verdict = "partial"
    else:
        verdict = "none"
    return {"n": n, "mean_diff": float(diff.mean()), "vit_ci": vit_ci, "s4d_ci": s4d_ci, "sig": sig,
            "verdict": verdict, "max_p": float(pv.max()), "min_p": float(pv.min())}


def results_text(inp: Inputs, M: Macros) -> str:
    """paper/sections/results.tex rendered with the facts of each trained dataset (the words are the template's)."""
    datasets = []
    for dataset in inp.datasets() if inp.acc is not None else []:
        pairs = [(d, r) for d, r in inp.trained_pairs() if d == dataset]
        if not pairs:
            continue
        dt = dataset_tag(dataset)
        entry = {"label": tex_escape(dataset_label(dataset)), "pairs": [], "gap": None, "best": None}
        for _, res in pairs:
            rt = res_tag(res)
            trained = [m for m in inp.models() if inp.acc_row(dataset, res, m) is not None]
            models = []
            for m in trained:
                r = inp.acc_row(dataset, res, m)
                tag = f"{dt}{rt}{model_tag(m)}"
                models.append({"label": model_label(m), "acc": M.add(f"Acc{tag}", fmt(r["acc_mean"])),
                               "std": (M.add(f"AccStd{tag}", fmt(r["acc_std"]))
                                       if not math.isnan(to_float(r.get("acc_std"))) else None),
                               "auc": M.add(f"Auc{tag}", fmt(r["auc_mean"])), "n": int(to_float(r.get("n_seeds")))})
                if not math.isnan(to_float(r.get("f1_mean"))):
                    M.add(f"FOne{tag}", fmt(r["f1_mean"]))
                if not math.isnan(to_float(r.get("params"))):
                    M.add(f"Params{tag}", fmt_count(r["params"]))
            f = inp.fact(dataset, res)
            pair = {"res": res_tex(res), "models": models, "seeds": sorted({m["n"] for m in models}),
                    "upsampled_from": res_tex(f["source_size"]) if f.get("upsampled") and f.get("source_size") else None,
                    "synthetic": f.get("official") is False, "paired": None}
            ps = _paired_summary(inp, dataset, res)
            if ps:
                pair["paired"] = {"diff": M.add(f"AccDiff{dt}{rt}", fmt_signed_math(ps["mean_diff"])), "n": ps["n"],
                                  "verdict": ps["verdict"], "excl": ps["vit_ci"] + ps["s4d_ci"], "sig": ps["sig"],
                                  "p": fmt_p(ps["min_p"]).strip("$")}
            if "vit" in trained and "s4d" in trained:
                pv = to_float(inp.acc_row(dataset, res, "vit").get("params"))
                pss = to_float(inp.acc_row(dataset, res, "s4d").get("params"))
                if not math.isnan(pv) and not math.isnan(pss) and pss > 0:
                    M.add(f"ParamRatio{dt}{rt}", ratio_text(pv / pss))
            entry["pairs"].append(pair)
        gap = inp.val_test_gap(dataset)
        if gap is not None:
            entry["gap"] = {"macro": M.add(f"ValTestGap{dt}", fmt_signed_math(gap)), "value": gap}
        ok = inp.acc_rows("ok")
        okd = ok[ok["dataset"] == dataset]
        if len(okd):
            best = okd.loc[pd.to_numeric(okd["acc_mean"], errors="coerce").idxmax()]
            ref, ep = to_float(best.get("ref_resnet18_28_acc")), to_float(best.get("epochs"))
            entry["best"] = {
                "acc": M.add(f"BestAcc{dt}", fmt(best["acc_mean"])),
                "model": M.add(f"BestAccModel{dt}", tex_escape(model_label(best["model"]))),
                "res": M.add(f"BestAccRes{dt}", res_tex(best["resolution"])),
                "ref": None if math.isnan(ref) else M.add(f"RefAcc{dt}", fmt(ref)),
                "synthetic": any(to_bool(v) is False for v in okd.get("official_data", [])),
                "below": not math.isnan(ref) and float(best["acc_mean"]) < ref,
                "epochs": None if math.isnan(ref) or math.isnan(ep) else M.add(f"BestAccEpochs{dt}", str(int(ep)))}
        datasets.append(entry)
    nd = inp.needs_download()
    return render_section(inp.sections_dir, "results.tex", trained=inp.acc is not None, datasets=datasets,
                          needs_download=[tex_escape(dataset_label(d)) for d in nd], alpha=ALPHA,
                          needs_download_profiled=bool(inp.eff is not None and set(nd) & set(inp.eff["dataset"])))


def _ratio_range(values):
    v = [x for x in values if not math.isnan(x)]
    return (min(v), max(v)) if v else None


def _range_text(rng) -> str:
    lo, hi = rng
    return ratio_text(lo) if ratio_text(lo) == ratio_text(hi) else f"{ratio_text(lo)}--{ratio_text(hi)}"


def _ratio_fact(rng, M: Macros, name: str) -> dict:
    """The S4D/ViT ratio range as macros and its direction (read from the data) for the template's ``ratio``."""
    lo, hi = rng
    same = ratio_text(lo) == ratio_text(hi)
    direction = ("up" if lo > 1 else "down" if hi < 1 else "same" if _range_text(rng) == ratio_text(1.0) else "mixed")
    return {"lo": M.add(f"{name}Min", ratio_text(lo)), "hi": M.add(f"{name}Max", ratio_text(hi)), "same": same,
            "direction": direction}


def discussion_text(inp: Inputs, M: Macros) -> str:
    """paper/sections/discussion.tex rendered with the comparisons' outcomes (the words are the template's)."""
    # accuracy over (dataset, res) pairs with a paired comparison
    verdicts = {"vit": [], "s4d": [], "other": []}
    for d, r in inp.trained_pairs():
        ps = _paired_summary(inp, d, r)
        if ps:
            key = ps["verdict"] if ps["verdict"] in ("vit", "s4d") else "other"
            verdicts[key].append(f"{tex_escape(dataset_label(d))} {res_tex(r)}")
    n_cmp = sum(len(v) for v in verdicts.values())
    comparison = None
    if n_cmp:
        comparison = {"count": n_cmp, "n": M.add("NumComparisons", str(n_cmp)),
                      "vit_n": M.add("NumViTBetter", str(len(verdicts["vit"]))),
                      "s4d_n": M.add("NumSFourDBetter", str(len(verdicts["s4d"]))),
                      "other_n": M.add("NumNoConsistentDifference", str(len(verdicts["other"]))), **verdicts}
    # the resolution's effect
    resolution_effects = []
    for dataset in inp.datasets():
        rs = sorted({r for d, r in inp.trained_pairs() if d == dataset})
        if len(rs) < 2:
            continue
        lo_r, hi_r = rs[0], rs[-1]
        models = []
        for m in inp.models():
            a, b = inp.acc_row(dataset, lo_r, m), inp.acc_row(dataset, hi_r, m)
            if a is not None and b is not None:
                delta = float(b["acc_mean"]) - float(a["acc_mean"])
                models.append({"label": model_label(m),
                               "change": M.add(f"ResGain{dataset_tag(dataset)}{model_tag(m)}", fmt_signed_math(delta))})
        if models:
            f = inp.fact(dataset, hi_r)
            resolution_effects.append({
                "dataset": tex_escape(dataset_label(dataset)), "lo": res_tex(lo_r), "hi": res_tex(hi_r), "models": models,
                "upsampled_from": res_tex(f["source_size"]) if f.get("upsampled") and f.get("source_size") else None})
    # parameters, from the efficiency rows (or the accuracy rows without them)
    ratios = []
    src = inp.eff if inp.eff is not None else (inp.acc_rows("ok") if inp.acc is not None else None)
    if src is not None and len(src):
        for (d, r), g in src.groupby(["dataset", "resolution"]):
            pv, ps_ = g[g["model"] == "vit"]["params"], g[g["model"] == "s4d"]["params"]
            if len(pv) and len(ps_):
                a, b = to_float(pv.iloc[0]), to_float(ps_.iloc[0])
                if not math.isnan(a) and not math.isnan(b) and b > 0:
                    ratios.append(a / b)
    params = None
    if ratios:
        lo, hi = min(ratios), max(ratios)
        M.add("ParamRatioMin", ratio_text(lo))
        M.add("ParamRatioMax", ratio_text(hi))
        rng = "\\ParamRatioMin{}" if ratio_text(lo) == ratio_text(hi) else "\\ParamRatioMin{}--\\ParamRatioMax{}"
        M.add("ParamRatioRange", rng)
        direction = 1 if lo > 1 else -1 if hi < 1 else 0
        M.add("ParamRatioDirection", str(direction))  # main.tex's abstract branches on it
        params = {"range": rng, "direction": direction}
    # the most accurate model (highest mean test accuracy) of each pair with at least two models trained
    best_counts: dict[str, int] = {}
    for d, r in inp.trained_pairs():
        accs = {m: float(row["acc_mean"]) for m in inp.models()
                if (row := inp.acc_row(d, r, m)) is not None and not nan(to_float(row["acc_mean"]))}
        if len(accs) >= 2:
            top = max(accs, key=accs.get)
            best_counts[top] = best_counts.get(top, 0) + 1
    # the abstract's key numbers: each model's mean test accuracy, lowest to highest over the trained pairs
    ranges = []
    for m in inp.models():
        accs = [float(row["acc_mean"]) for d, r in inp.trained_pairs()
                if (row := inp.acc_row(d, r, m)) is not None and not nan(to_float(row["acc_mean"]))]
        if accs:
            lo, hi = fmt(min(accs)), fmt(max(accs))
            ranges.append(f"{tex_escape(model_label(m))} {lo}" + (f"--{hi}" if hi != lo else ""))
    if ranges:
        M.add("AccuracyRangesByModel", join_words(ranges))
    best = None
    if best_counts and len(inp.models()) > 2:  # with ViT and S4D alone the comparison above says it
        n_pairs = sum(best_counts.values())
        M.add("NumBestMeanPairs", str(n_pairs))
        M.add("BestMeanModels", join_words([f"{tex_escape(model_label(m))} in {n}" for m, n in
                                            sorted(best_counts.items(), key=lambda kv: -kv[1])]))
        best = {"n": "\\NumBestMeanPairs{}", "models": "\\BestMeanModels{}"}
    return render_section(inp.sections_dir, "discussion.tex", comparison=comparison, synthetic=inp.synthetic(),
                          resolution_effects=resolution_effects, params=params, efficiency=_efficiency_facts(inp, M),
                          best=best)


def _efficiency_facts(inp: Inputs, M: Macros) -> dict | None:
    """S4D/ViT ratios of throughput and memory per regime and resolution, and the MAC counters' deviations."""
    if inp.eff is None:
        return None
    ib = inp.infer_batch()
    # One verdict per regime: the seed's (plain eager fp32) and as trained (the runs' fast path). On a CPU no
    # fast-path part applies, so the two are one.
    regimes = [("", "", "in the seed study's regime (plain eager fp32)")]
    if not inp.eff_cpu_only():
        regimes.append(("_trained", "Trained", "as trained (the runs' fast path)"))
    out = []
    for suffix, mtag, words in regimes:
        resolutions = []
        for res in sorted(inp.eff["resolution"].unique()):
            e = inp.eff[inp.eff["resolution"] == res]
            ratios = {"train": [], "infer": [], "vram": []}
            for _, g in e.groupby("dataset"):
                v, s = g[g["model"] == "vit"], g[g["model"] == "s4d"]
                if v.empty or s.empty:
                    continue
                v, s = v.iloc[0], s.iloc[0]
                col = "train_samples_per_s_" + ("trained" if suffix else "fp32")
                ratios["train"].append(to_float(s.get(col)) / to_float(v.get(col)))
                if ib:
                    ratios["infer"].append(to_float(s.get(ib[1] + suffix)) / to_float(v.get(ib[1] + suffix)))
                if str(v.get("device_type")).lower() == "cuda":
                    col = "train_peak_allocated_mb" + suffix
                    ratios["vram"].append(to_float(s.get(col)) / to_float(v.get(col)))
            rt = res_tag(res)
            names = {"train": "TrainThroughputRatio", "infer": "InferThroughputRatio", "vram": "VramRatio"}
            quantities = [{"kind": kind, **_ratio_fact(rng, M, f"{names[kind]}{mtag}{rt}")}
                          for kind in ("train", "infer", "vram") if (rng := _ratio_range(ratios[kind]))]
            if quantities:
                resolutions.append({"res": res_tex(res), "quantities": quantities})
        if resolutions:
            caveat = []  # datasets whose as-trained ratios use a marked measurement (profiling.trained_caveats)
            if suffix and "trained_caveat" in inp.eff.columns:  # of a dataset with both models (a ratio)
                pairs = inp.eff[inp.eff["model"].isin(["vit", "s4d"])]
                both = {d for (d, _), g in pairs.groupby(["dataset", "resolution"]) if g["model"].nunique() == 2}
                used = ["train_samples_per_s_trained", "train_peak_allocated_mb_trained"] + ([ib[1] + suffix] if ib else [])
                marked = [r["dataset"] for _, r in pairs.iterrows() if r["dataset"] in both
                          and any(caveat_applies(r.get("trained_caveat"), c) for c in used)]
                caveat = [tex_escape(dataset_label(d)) for d in dict.fromkeys(marked)]
            out.append({"words": words, "resolutions": resolutions, "caveat": caveat})
    macs = []
    for m in inp.models():
        devs = []
        for _, r in inp.eff[inp.eff["model"] == m].iterrows():
            an = to_float(r.get("macs_analytic"))
            for col, lab in MAC_COUNTS[:2]:
                x = to_float(r.get(col))
                if not math.isnan(an) and an > 0 and not math.isnan(x):
                    devs.append((abs(x / an - 1), lab))
        if devs:
            macs.append({"label": model_label(m),
                         "pct": M.add(f"MacsMaxDeviation{model_tag(m)}", _pct(100 * max(devs)[0]))})
    return {"device": inp.eff_device_text(), "infer_batch": ib[0] if ib else None, "cpu_only": inp.eff_cpu_only(),
            "regimes": out, "macs": macs}


def _pct(x: float) -> str:
    """A percentage for prose: whole numbers from 1% on, one decimal below (0.4%, not 0%)."""
    return f"{x:.0f}\\%" if x >= 1 or x == 0 else f"{x:.1f}\\%"


def limitations_text(inp: Inputs, M: Macros) -> str:
    """paper/sections/limitations.tex rendered with the facts of this build (the words are the template's)."""
    cfg, tr = inp.cfg, inp.cfg["train"]
    ran = []
    if inp.acc is not None:
        ran = sorted({int(to_float(e)) for e in inp.acc_rows("ok").get("epochs", []) if not math.isnan(to_float(e))})
    device_seeds = inp.seeds_per_train_device()
    device_acc_gap = max_acc_std = min_model_gap = None
    if len(device_seeds) > 1:
        runs = inp.runs.dropna(subset=["device_name"])
        gaps = [g.groupby("device_name")["acc"].mean() for _, g in runs.groupby(["dataset", "resolution", "model"])]
        gap = max((m.max() - m.min() for m in gaps if len(m) > 1), default=None)
        if gap is not None:  # some configuration has runs on more than one device
            device_acc_gap = fmt(gap)
            max_acc_std = fmt(pd.to_numeric(inp.acc_rows("ok")["acc_std"], errors="coerce").max())
            if inp.seed_cmp is not None and len(inp.seed_cmp):
                diffs = pd.to_numeric(inp.seed_cmp["diff_a_minus_b"], errors="coerce").abs().dropna()
                if len(diffs):
                    min_model_gap = {"value": fmt(diffs.min()), "above_device_gap": bool(diffs.min() > gap)}
    return render_section(
        inp.sections_dir, "limitations.tex", epochs=M.add("NumEpochs", str(int(tr["epochs"]))),
        epochs_config=int(tr["epochs"]), epochs_ran=ran if ran and ran != [int(tr["epochs"])] else [],
        upsampled=[{"res": res_tex(r), "source": res_tex(src)} for r, src in sorted(inp.upsample_map().items())],
        needs_download=[tex_escape(dataset_label(d)) for d in inp.needs_download()], synthetic=inp.synthetic(),
        max_train_samples=int(tr["max_train_samples"]) if tr.get("max_train_samples") else None,
        single_seed=len(cfg["study"]["seeds"]) < 2, cpu_only=inp.eff_cpu_only(),
        profile_devices=[tex_escape(n) for _, n in inp.eff_devices()],
        train_devices=[tex_escape(d) for d in inp.train_devices()],
        device_seeds=[{"device": tex_escape(d), "seeds": s} for d, s in device_seeds.items()] if device_acc_gap else [],
        device_acc_gap=device_acc_gap, max_acc_std=max_acc_std, min_model_gap=min_model_gap,
        profiled=inp.eff is not None,
        trained_as=[tex_escape(t) for t in inp.training_arithmetic() if t != "fp32 eager"])


# ---------------------------------------------------------------- all

def write_all(cfg: dict, aggregate_dir, figures_dir, out_dir, paper_dir=None, sections_dir=None) -> list[Path]:
    """Write every generated file into ``out_dir``; return their paths. ``sections_dir``: the prose templates
    (default ``paper/sections`` of the working directory, the repository root)."""
    out_dir = Path(out_dir)
    paper_dir = Path(paper_dir) if paper_dir else out_dir.parent
    inp = Inputs(cfg, aggregate_dir, figures_dir, paper_dir, sections_dir)
    M = Macros()
    texts = {
        "setup.tex": setup_text(inp, M),
        "accuracy_table.tex": accuracy_table(inp),
        "efficiency_table.tex": efficiency_table(inp),
        "inference_table.tex": inference_table(inp),
        "paired_table.tex": paired_table(inp),
        "reproducibility.tex": reproducibility_text(inp),
        "figures.tex": figures_tex(inp),
        "results_text.tex": results_text(inp, M),
        "discussion_text.tex": discussion_text(inp, M),
        "limitations_text.tex": limitations_text(inp, M),
        "seed_claims.tex": seed_claims_tables(inp),
        "seed_comparison_table.tex": seed_comparison_table(inp),
    }
    _training_budget_macros(inp, M)
    _seed_level_macros(inp, M)
    _seed_claim_macros(inp, M)
    M.add("PaperAuthors", " \\and ".join(tex_escape(a) for a in cfg["paper"]["authors"]))
    _efficiency_macros(inp, M)
    texts["macros.tex"] = M.render()
    written = []
    for name in GENERATED_FILES:
        path = out_dir / name
        write_text(path, texts[name])
        written.append(path)
    return written


def _efficiency_macros(inp: Inputs, M: Macros) -> None:
    """Per-configuration cost numbers as macros, for text that quotes them."""
    if inp.eff is None:
        return
    ib = inp.infer_batch()
    for _, r in inp.eff.iterrows():
        tag = f"{dataset_tag(r['dataset'])}{res_tag(r['resolution'])}{model_tag(r['model'])}"
        if f"Params{tag}" not in M.defs:  # training's count wins where both exist
            M.add(f"Params{tag}", fmt_count(r.get("params")))
        for col, lab in MAC_COUNTS:
            M.add(f"Macs{letters(lab)}{tag}", fmt_count(r.get(col)))
        M.add(f"PeakVram{tag}", _vram_cell(r, "train_peak_allocated_mb"))
        M.add(f"TrainThroughput{tag}", _rate_cell(r, "train_samples_per_s_fp32"))
        if ib:
            M.add(f"InferThroughput{tag}", _rate_cell(r, ib[1]))
    M.add("ProfileDevice", inp.eff_device_text())
