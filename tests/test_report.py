"""Figures, generated LaTeX and the paper PDF from small but realistic aggregate files.

Layout mirrors the project: <root>/results/{aggregate,runs,figures}, <root>/paper/
(main.tex, references.bib, generated/). Figures are referenced from the paper
folder as ../results/figures/<name>.pdf.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, run_ssmvit
from ssmvit.aggregate import seed_comparison
from ssmvit.config import resolve
from ssmvit.report import write_all
from ssmvit.seed_claims import read_seed_table, seed_claims

ORGAN_CLASSES = ["bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
                 "lung-left", "lung-right", "pancreas", "spleen"]
DEVICE = "Xeon_Gold & co #2 50% {x}"  # LaTeX specials on purpose
PARAMS = {("organamnist", "vit"): 21_540_107, ("organamnist", "s4d"): 200_203,
          ("dermamnist", "vit"): 21_541_639, ("dermamnist", "s4d"): 664_327}
# (res, model) -> per-seed test accuracy; means/stds below are what accuracy.csv holds.
ACCS = {(28, "vit"): [0.9092, 0.9148], (28, "s4d"): [0.8704, 0.8810],
        (64, "vit"): [0.8950, 0.9010], (64, "s4d"): [0.8400, 0.8612]}


def _acc_stats(v):
    return float(np.mean(v)), float(np.std(v, ddof=1))


def make_inputs(root: Path, epochs: int = 7) -> dict:
    """Write config, aggregate CSVs, provenance and confusion matrices under ``root``."""
    agg, runs_dir = root / "results" / "aggregate", root / "results" / "runs"
    agg.mkdir(parents=True)
    cfg = {"data": {"upsample_from": {64: 28}},
           "study": {"datasets": ["organamnist"], "profile_only": ["dermamnist"], "resolutions": [28, 64],
                     "models": ["vit", "s4d"], "seeds": [0, 1]},
           "train": {"epochs": epochs, "batch_size": 64, "weight_decay": 0.01, "scheduler": "cosine",
                     "max_train_samples": 5000},
           "profile": {"batch_sizes": [1, 64, 256, 1024], "device": "cpu"}}

    runs, acc_rows, hist_rows = [], [], []
    rng = np.random.default_rng(0)
    for res in (28, 64):
        for model in ("vit", "s4d"):
            for seed, a in enumerate(ACCS[(res, model)]):
                runs.append({"dataset": "organamnist", "resolution": res, "model": model, "seed": seed, "acc": a,
                             "auc": 0.99 - (0.02 if model == "s4d" else 0), "macro_f1": a - 0.03, "test_loss": 0.3,
                             "n_test": 17778, "params": PARAMS[("organamnist", model)], "best_epoch": epochs,
                             "epochs": epochs, "train_seconds": 123.4, "train_samples": 5000, "device": "cpu",
                             "device_name": DEVICE, "upsampled": res == 64, "source_size": 28,
                             "official_data": False})
                for ep in range(1, epochs + 1):
                    hist_rows.append({"dataset": "organamnist", "resolution": res, "model": model, "seed": seed,
                                      "epoch": ep, "train_loss": 2.0 / ep + 0.05 * rng.random(),
                                      "train_acc": 0.5 + 0.05 * ep, "val_loss": 1.5 / ep,
                                      "val_acc": min(0.95, 0.5 + 0.06 * ep + 0.01 * rng.random()),
                                      "lr": 1e-4, "seconds": 10.0})
                k = len(ORGAN_CLASSES)
                cm = rng.integers(0, 20, size=(k, k)) + np.diag(rng.integers(100, 200, size=k))
                d = runs_dir / f"organamnist_{res}_{model}_s{seed}"
                d.mkdir(parents=True)
                (d / "metrics.json").write_text(json.dumps({
                    "dataset": "organamnist", "resolution": res, "model": model, "seed": seed, "acc": a,
                    "class_names": ORGAN_CLASSES, "confusion_matrix": cm.tolist()}))
            m, s = _acc_stats(ACCS[(res, model)])
            acc_rows.append({"dataset": "organamnist", "resolution": res, "model": model, "status": "ok",
                             "n_seeds": 2, "acc_mean": m, "acc_std": s, "auc_mean": 0.99 - (0.02 if model == "s4d" else 0),
                             "auc_std": 0.001, "f1_mean": m - 0.03, "f1_std": 0.005,
                             "params": PARAMS[("organamnist", model)], "epochs": epochs, "n_test": 17778,
                             "upsampled": res == 64, "source_size": 28, "official_data": False,
                             "ref_resnet18_28_acc": 0.935, "ref_resnet18_28_auc": 0.997})
    for res in (28, 64):
        for model in ("vit", "s4d"):
            acc_rows.append({"dataset": "dermamnist", "resolution": res, "model": model, "status": "needs download",
                             "n_seeds": 0, "ref_resnet18_28_acc": 0.735, "ref_resnet18_28_auc": 0.917})
    pd.DataFrame(runs).to_csv(agg / "runs.csv", index=False)
    pd.DataFrame(acc_rows).to_csv(agg / "accuracy.csv", index=False)
    pd.DataFrame(hist_rows).to_csv(agg / "histories.csv", index=False)

    paired = []
    for res in (28, 64):
        for seed in (0, 1):
            v, s = ACCS[(res, "vit")][seed], ACCS[(res, "s4d")][seed]
            paired.append({"dataset": "organamnist", "resolution": res, "seed": seed, "n_test": 17778,
                           "vit_acc": v, "s4d_acc": s, "diff_vit_minus_s4d": v - s, "ci95_low": v - s - 0.006,
                           "ci95_high": v - s + 0.006, "only_vit_right": 900, "only_s4d_right": 250,
                           "mcnemar_p": 3.2e-80})
    pd.DataFrame(paired).to_csv(agg / "paired.csv", index=False)

    eff = []
    for dataset in ("organamnist", "dermamnist"):
        for res in (28, 64):
            for model in ("vit", "s4d"):
                base = 1.0e8 if model == "s4d" else 1.2e8
                scale = (res / 28) ** 2
                row = {"dataset": dataset, "resolution": res, "model": model,
                       "n_channels": 1 if dataset == "organamnist" else 3,
                       "n_classes": 11 if dataset == "organamnist" else 7, "params": PARAMS[(dataset, model)],
                       "macs_thop": base * scale * 0.9, "macs_flopcounter": base * scale,
                       "macs_analytic": base * scale * 1.01, "device_type": "cpu", "device_name": DEVICE,
                       "train_batch_size": 64, "train_samples_per_s_fp32": 300.0 / scale,
                       "train_samples_per_s_trained": "", "train_peak_allocated_mb": "", "train_peak_reserved_mb": "",
                       "static_mb": "", "infer_samples_per_s_bs1": 50.0 / scale,
                       "infer_samples_per_s_bs64": 900.0 / scale, "infer_samples_per_s_bs256": 1000.0 / scale,
                       "infer_samples_per_s_bs1024": 1010.0 / scale, "latency_bs1_ms": 20.0 * scale,
                       "infer_peak_allocated_mb_bs64": "", "peak_rss_mb": 800.0 * scale,
                       "data_note": "shapes only" if dataset == "dermamnist" else ""}
                if dataset == "dermamnist" and res == 64 and model == "s4d":
                    row["infer_samples_per_s_bs1024"], row["oom"] = "", "infer_samples_per_s_bs1024"
                eff.append(row)
    pd.DataFrame(eff).to_csv(agg / "efficiency.csv", index=False)
    seed_comparison(pd.DataFrame(runs), ["vit", "s4d"]).to_csv(agg / "seed_comparison.csv", index=False)
    seed_claims(read_seed_table(REPO / "paper/seed_study.csv"), pd.read_csv(agg / "efficiency.csv")).to_csv(
        agg / "seed_claims.csv", index=False)

    prov = {"git_commit": "0123456789abcdef0123456789abcdef01234567", "git_dirty": True,
            "config_sha256": "a" * 64, "dvc_lock_sha256": None, "device_name": DEVICE, "driver": None,
            "cuda": None, "torch": "2.5.1+cpu", "python": "3.11.2",
            "stage_seconds": {"train": 3723.5, "evaluate": 61.0, "profile": 12.25},
            "generated_at": "2025-01-02T03:04:05Z"}
    (agg / "provenance.json").write_text(json.dumps(prov))
    return {"agg": agg, "runs": runs_dir, "figures": root / "results" / "figures",
            "paper": root / "paper", "generated": root / "paper" / "generated", "config": resolve(cfg),
            "metrics": sorted(runs_dir.glob("*/metrics.json"))}


def _ssmvit(*args, cwd):
    r = run_ssmvit(*args, cwd=cwd, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper_root")
    p = make_inputs(root, epochs=7)
    out = _ssmvit("plot", "--aggregate-dir", p["agg"], "--metrics", *p["metrics"], "--out-dir", p["figures"],
                  "--settings", "{}", cwd=root)
    p["plot_stdout"] = out
    write_all(p["config"], p["agg"], p["figures"], p["generated"])
    return p


def _read(p, name):
    return (p["generated"] / name).read_text()


def test_figures_written(built):
    figs = built["figures"]
    expected = ["curves_organamnist.pdf", "confusion_organamnist_28.pdf", "confusion_organamnist_64.pdf",
                "throughput.pdf", "vram.pdf", "macs.pdf", "acc_vs_params.pdf", "acc_vs_macs.pdf"]
    for name in expected:
        f = figs / name
        assert f.exists() and f.read_bytes()[:5] == b"%PDF-", name
        assert str(f) in built["plot_stdout"]
    manifest = json.loads((figs / "manifest.json").read_text())
    assert sorted(e["file"] for e in manifest["figures"]) == sorted(expected)
    assert not list(figs.glob(".*.tmp"))  # no temporary leftovers
    vram = next(e for e in manifest["figures"] if e["file"] == "vram.pdf")
    assert vram["cpu_only"] and not vram["vram_measured"]


def test_generated_files(built):
    for name in ("macros.tex", "accuracy_table.tex", "efficiency_table.tex", "paired_table.tex", "setup.tex",
                 "reproducibility.tex", "figures.tex", "results_text.tex", "discussion_text.tex",
                 "limitations_text.tex"):
        assert (built["generated"] / name).exists(), name


def test_accuracy_table(built):
    t = _read(built, "accuracy_table.tex")
    assert r"\toprule" in t and r"\bottomrule" in t
    m, s = _acc_stats(ACCS[(28, "vit")])
    assert f"{m:.3f}" == "0.912" and f"{s:.3f}" == "0.004"
    assert r"0.912 \pm 0.004" in t
    m, s = _acc_stats(ACCS[(64, "s4d")])
    assert f"{m:.3f} \\pm {s:.3f}" in t
    assert "needs download" in t
    assert "upsampled from 28" in t
    assert "synthetic data, not MedMNIST" in t
    assert "0.935" in t and "0.997" in t  # ResNet-18 (28) reference


def test_efficiency_table_cpu(built):
    t = _read(built, "efficiency_table.tex")
    assert "n/a" in t
    oom_rows = [line for line in t.splitlines() if "OOM" in line and "&" in line and "caption" not in line]
    # the fixture's one OOM cell: DermaMNIST S4D 64, inference fp32 at batch 1024, the batch the table quotes
    assert len(oom_rows) == 1 and "S4D" in oom_rows[0] and oom_rows[0].rstrip("\\ ").split("&")[-2].strip() == "OOM"
    assert r"Xeon\_Gold \& co \#2 50\% \{x\}" in t  # escaped device name
    assert "thop" in t and "FlopCounter" in t and "analytic" in t
    assert "CPU" in t
    # VRAM column never shows 0 for an unmeasured cell
    for line in t.splitlines():
        if line.strip().startswith(("OrganAMNIST", "DermaMNIST")):
            cells = [c.strip() for c in line.rstrip("\\ ").split("&")]
            assert cells[6] == "n/a", line


def test_oom_cell_shown(tmp_path):
    p = make_inputs(tmp_path)
    eff = pd.read_csv(p["agg"] / "efficiency.csv", dtype=str, keep_default_na=False)
    eff.loc[(eff["dataset"] == "dermamnist") & (eff["resolution"] == "64") & (eff["model"] == "s4d"),
            ["train_samples_per_s_fp32", "oom"]] = ["", "train_samples_per_s_fp32"]
    eff.to_csv(p["agg"] / "efficiency.csv", index=False)
    write_all(p["config"], p["agg"], p["figures"], p["generated"])
    t = _read(p, "efficiency_table.tex")
    row = [line for line in t.splitlines() if "S4D (64" in line][-1]
    cells = [c.strip() for c in row.rstrip("\\ ").split("&")]
    assert cells[-4] == "OOM"  # training fp32 (then training as trained, inference fp32 and as trained)
    assert "OOM: out of memory" in t


def test_paired_and_text(built):
    t = _read(built, "paired_table.tex")
    assert "0.039" in t  # 0.9092 - 0.8704 at 28, seed 0
    assert r"10^{-80}" in t
    r = _read(built, "results_text.tex")
    assert "DermaMNIST" in r and "download" in r


def test_setup_reflects_config(built):
    s = _read(built, "setup.tex")
    assert "7 epochs" in s
    assert "AdamW" in s and "0.01" in s
    assert "upsampled" in s or "resized" in s
    assert "5000" in s or "5,000" in s  # max_train_samples
    macros = _read(built, "macros.tex")
    assert r"\newcommand{\NumEpochs}{7}" in macros
    import re
    for name in re.findall(r"\\newcommand\{\\([^}]*)\}", macros):
        assert name.isalpha(), name


def test_setup_changes_with_config(tmp_path):
    p = make_inputs(tmp_path, epochs=3)
    write_all(p["config"], p["agg"], p["figures"], p["generated"])
    s = _read(p, "setup.tex")
    assert "3 epochs" in s and "7 epochs" not in s
    # no figures folder: figures.tex still written, with a sentence instead of figures
    assert "includegraphics" not in _read(p, "figures.tex")


def test_missing_inputs_give_sentences(tmp_path):
    p = make_inputs(tmp_path)
    for name in ("paired.csv", "efficiency.csv", "provenance.json", "histories.csv", "seed_claims.csv",
                 "seed_comparison.csv", "runs.csv"):
        (p["agg"] / name).unlink()
    write_all(p["config"], p["agg"], p["figures"], p["generated"])
    assert "claims are not checked here" in _read(p, "seed_claims.tex")
    assert "No comparison across seeds" in _read(p, "seed_comparison_table.tex")
    assert "NumRunsBestLast" not in _read(p, "macros.tex")  # main.tex then says nothing about the budget
    assert "No paired comparison" in _read(p, "paired_table.tex")
    assert "not available" in _read(p, "efficiency_table.tex")
    assert "not available" in _read(p, "reproducibility.tex")


def test_reproducibility(built):
    t = _read(built, "reproducibility.tex")
    assert "0123456789ab" in t
    assert "uncommitted" in t
    assert r"Xeon\_Gold" in t
    assert "3723.5" in t or "3,723.5" in t or "1.03" in t


def build_pdf(p) -> tuple[str, Path]:
    """latexmk on the repository's main.tex over ``p``'s generated files; (the PDF's text, the build folder)."""
    if not shutil.which("latexmk") or not shutil.which("pdftotext"):
        pytest.skip("latexmk or pdftotext not installed")
    paper = p["paper"]
    shutil.copy(REPO / "paper" / "main.tex", paper / "main.tex")
    shutil.copy(REPO / "paper" / "references.bib", paper / "references.bib")
    out = paper / "build"
    r = subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", f"-outdir={out}", "main.tex"],
                       cwd=paper, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    pdf = out / "main.pdf"
    assert pdf.exists()
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True).stdout, out


def test_the_training_budget_sentence_follows_the_best_epochs(tmp_path):
    p = make_inputs(tmp_path, epochs=7)
    runs = pd.read_csv(p["agg"] / "runs.csv")
    runs["best_epoch"] = [3, 7] * (len(runs) // 2)  # half the runs still improving at the end
    runs.to_csv(p["agg"] / "runs.csv", index=False)
    write_all(p["config"], p["agg"], p["figures"], p["generated"])
    text = " ".join(build_pdf(p)[0].split())
    assert "In 4 of the 8 runs the best validation accuracy came in the last of the 7 epochs" in text
    runs["best_epoch"] = 6
    runs.to_csv(p["agg"] / "runs.csv", index=False)
    write_all(p["config"], p["agg"], p["figures"], p["generated"])
    text = " ".join(build_pdf(p)[0].split())
    assert "Every run reached its best validation accuracy before its last epoch" in text
    assert "still improving" not in text


def test_pdf_builds(built):
    text, out = build_pdf(built)
    assert "0.912" in text and "0.004" in text
    assert "needs download" in text
    flat = " ".join(text.split())
    # the abstract's key numbers: each model's mean accuracy range (ViT 0.898-0.912, S4D 0.851-0.876 in the fixture)
    assert re.search(r"lowest to highest over the dataset/resolution pairs: ViT 0\.898.0\.912 and S4D 0\.851.0\.876", flat)
    assert "Latency (ms)" in flat  # the inference table
    # the seed study, claim by claim: its figures as printed beside ours, each claim with a verdict
    assert "The seed study, claim by claim" in text and "103.57" in text and "1,766" in text
    assert "Claim of the seed study" in text and "not reproduced" in text and "nanx" not in text
    assert "not measured" in text  # a CPU profile has no VRAM: said so, not "not in this study"
    # across seeds (Welch), and the training budget read from the best epochs: every run here peaks last
    assert "Welch" in text and "In 8 of the 8 runs the best validation accuracy came in the last" in " ".join(text.split())
    # every bibliography entry is cited, and the seed study, FlopCounterMode, torchinfo and thop among them
    keys = set(re.findall(r"@\w+\{([^,]+),", (REPO / "paper/references.bib").read_text()))
    cited = {k for group in re.findall(r"\\citation\{([^}]*)\}", (out / "main.aux").read_text()) for k in group.split(",")}
    assert keys - cited == set() and {"seedstudy", "pytorchflopcounter", "torchinfo", "zhu2019thop"} <= cited
    log = (out / "main.log").read_text(errors="replace")
    assert "Citation" not in log or "undefined" not in log
    assert "There were undefined references" not in log


def swap_models(agg: Path) -> None:
    """Give ViT's numbers to S4D and S4D's to ViT in every aggregate table (what the flip test feeds the paper)."""
    flip = {"vit": "s4d", "s4d": "vit"}
    for name in ("runs.csv", "accuracy.csv", "histories.csv", "efficiency.csv"):
        t = pd.read_csv(agg / name)
        t["model"] = t["model"].map(lambda m: flip.get(m, m))
        t.to_csv(agg / name, index=False)
    p = pd.read_csv(agg / "paired.csv")
    p["vit_acc"], p["s4d_acc"] = p["s4d_acc"].copy(), p["vit_acc"].copy()
    p["diff_vit_minus_s4d"] = -p["diff_vit_minus_s4d"]
    p["ci95_low"], p["ci95_high"] = -p["ci95_high"], -p["ci95_low"]
    p["only_vit_right"], p["only_s4d_right"] = p["only_s4d_right"].copy(), p["only_vit_right"].copy()
    p.to_csv(agg / "paired.csv", index=False)
    seed_comparison(pd.read_csv(agg / "runs.csv"), ["vit", "s4d"]).to_csv(agg / "seed_comparison.csv", index=False)
    seed_claims(read_seed_table(REPO / "paper/seed_study.csv"), pd.read_csv(agg / "efficiency.csv")).to_csv(
        agg / "seed_claims.csv", index=False)


def macros_of(generated: Path) -> dict:
    return dict(re.findall(r"\\newcommand\{\\(\w+)\}\{(.*)\}", (generated / "macros.tex").read_text()))


def test_swapping_the_two_models_numbers_flips_every_verdict(tmp_path):
    p = make_inputs(tmp_path)
    write_all(p["config"], p["agg"], p["figures"], p["generated"])
    before, said_before = macros_of(p["generated"]), _read(p, "discussion_text.tex")
    claims_before = pd.read_csv(p["agg"] / "seed_claims.csv").set_index("id")["verdict"]
    swap_models(p["agg"])
    write_all(p["config"], p["agg"], p["figures"], p["generated"])
    after, said_after = macros_of(p["generated"]), _read(p, "discussion_text.tex")
    # ViT is the more accurate model in the test data; after the swap, S4D is, and the text follows
    assert (before["NumViTBetter"], before["NumSFourDBetter"]) == ("2", "0")
    assert (after["NumViTBetter"], after["NumSFourDBetter"]) == ("0", "2")
    assert (before["NumWelchViTBetter"], before["NumWelchSFourDBetter"]) == (
        after["NumWelchSFourDBetter"], after["NumWelchViTBetter"])
    assert "ViT was more accurate" in said_before and "(OrganAMNIST 28" in said_before.split("S4D in")[0]
    assert "(OrganAMNIST 28" in said_after.split("S4D in")[1].split(", and")[0]
    assert (before["AccDiffOrganAMNISTTwentyEight"], after["AccDiffOrganAMNISTTwentyEight"]) == ("$+0.036$", "$-0.036$")
    assert (before["NumWelchViTBetter"], after["NumWelchViTBetter"]) == ("1", "0")
    # the abstract's parameter sentence and the seed's parameter claim follow the numbers too
    assert (before["ParamRatioDirection"], after["ParamRatioDirection"]) == ("1", "-1")
    claims_after = pd.read_csv(p["agg"] / "seed_claims.csv").set_index("id")["verdict"]
    assert (claims_before["params"], claims_after["params"]) == ("reproduced", "not reproduced")  # ViT the larger
    assert (claims_before["macs-64"], claims_after["macs-64"]) == ("not reproduced", "reproduced")  # S4D the costlier


def test_efficiency_is_labelled_with_the_regime_it_was_measured_in(tmp_path):
    p = make_inputs(tmp_path)
    runs = pd.read_csv(p["agg"] / "runs.csv")
    runs["training_arithmetic"] = "bf16 autocast + fused AdamW + torch.compile (blocks)"
    runs.to_csv(p["agg"] / "runs.csv", index=False)
    eff = pd.read_csv(p["agg"] / "efficiency.csv")
    eff["trained_fast_path"] = "bf16 autocast + fused AdamW + torch.compile (blocks) + CUDA graphs"
    eff.to_csv(p["agg"] / "efficiency.csv", index=False)
    write_all(p["config"], p["agg"], p["figures"], p["generated"])
    table = _read(p, "efficiency_table.tex")
    assert ("fp32, the plain eager models (the seed study's regime), and as trained, the fast path the runs' "
            "training step takes (bf16 autocast + fused AdamW + torch.compile (blocks) + CUDA graphs)") in table
    # the runs' recorded fast path differs from the profiled one (no CUDA graphs): the caption says so
    assert "The runs themselves trained with bf16 autocast + fused AdamW + torch.compile (blocks), which differs" in table
    assert "as trained (bf16 autocast + fused AdamW + torch.compile (blocks))" in _read(p, "limitations_text.tex")
    discussion = _read(p, "discussion_text.tex")
    assert "in the seed study's regime (plain eager fp32)" in discussion
    if "as trained (the runs' fast path)" not in discussion:  # the fixture's profiles are CPU ones: one regime
        assert "no part of the fast path applies" in discussion


def test_as_trained_cells_with_a_caveat_are_marked_where_they_appear(tmp_path):
    """Profiles made before each input shape's compiles were fresh, or before static shapes
    (profiling.trained_caveats): the as-trained cells a caveat concerns carry a mark, and each table that shows or
    uses them says what it means."""
    from ssmvit.profiling import DYNAMIC_CAVEAT, TRAINED_CAVEAT
    from ssmvit.tables import CAVEAT_SEPARATOR

    p = make_inputs(tmp_path)
    eff = pd.read_csv(p["agg"] / "efficiency.csv")
    eff["device_type"], eff["trained_fast_path"] = "cuda", "bf16 autocast + torch.compile (blocks) + CUDA graphs"
    eff["train_samples_per_s_trained"], eff["infer_samples_per_s_bs1024_trained"] = 1234.0, 5678.0
    # both caveats on some DermaMNIST rows, one on the others: the caption names each once
    both = TRAINED_CAVEAT + CAVEAT_SEPARATOR + DYNAMIC_CAVEAT
    eff["trained_caveat"] = np.where(eff["dataset"] == "dermamnist", np.where(eff["model"] == "s4d", both,
                                                                              DYNAMIC_CAVEAT), None)
    eff.to_csv(p["agg"] / "efficiency.csv", index=False)
    write_all(p["config"], p["agg"], p["figures"], p["generated"])
    table = _read(p, "efficiency_table.tex")
    blocks = {b.split("&")[0].strip(): b for b in table.split("\\midrule")[1:]}
    # the whole as-trained regime of the S4D rows; the inference above batch 1 only of the ViT rows
    assert blocks["DermaMNIST"].count("1234$^{c}$") == 2 and blocks["DermaMNIST"].count("1234") == 4
    assert blocks["DermaMNIST"].count("5678$^{c}$") == 4
    assert "$^{c}$" not in blocks["OrganAMNIST"] and blocks["OrganAMNIST"].count("1234") == 4
    caption = table[table.index("$^{c}$: "):table.index("\\label{tab:efficiency}")]
    assert caption.count(TRAINED_CAVEAT) == caption.count(DYNAMIC_CAVEAT) == 1
    assert "$^{c}$: as in Table~\\ref{tab:efficiency}" in _read(p, "inference_table.tex")
    claims = _read(p, "seed_claims.tex")  # the seed's DermaMNIST rows are 64x64 RGB
    assert claims.count("DermaMNIST 64$\\times$64 S4D and DermaMNIST 64$\\times$64 ViT include measurements "
                        "marked $^{c}$") == 2
    assert "These as-trained ratios include the DermaMNIST measurements marked $^{c}$" in _read(p, "discussion_text.tex")
    eff["trained_caveat"] = None
    eff.to_csv(p["agg"] / "efficiency.csv", index=False)
    write_all(p["config"], p["agg"], p["figures"], p["generated"])
    assert "$^{c}$" not in "".join(_read(p, f) for f in ("efficiency_table.tex", "seed_claims.tex",
                                                          "discussion_text.tex", "inference_table.tex"))


def test_training_time_is_flagged_when_runs_shared_the_gpu(tmp_path):
    p = make_inputs(tmp_path)
    acc = pd.read_csv(p["agg"] / "accuracy.csv")
    acc["train_seconds_mean"], acc["train_seconds_min"], acc["train_seconds_max"] = 123.4, 123.4, 123.4
    acc["train_shared_gpu"] = False
    acc.to_csv(p["agg"] / "accuracy.csv", index=False)
    write_all(p["config"], p["agg"], p["figures"], p["generated"])
    alone = _read(p, "accuracy_table.tex")
    assert " & 123 & " in alone and "$^{g}$" not in alone
    acc.loc[0, "train_shared_gpu"] = True
    acc.to_csv(p["agg"] / "accuracy.csv", index=False)
    write_all(p["config"], p["agg"], p["figures"], p["generated"])
    shared = _read(p, "accuracy_table.tex")
    assert shared.count("123$^{g}$") == 1 and "used the same GPU" in shared
    acc.loc[1, "train_seconds_min"], acc.loc[1, "train_seconds_max"] = 41.5, 137.9  # seeds alone and sharing
    acc.to_csv(p["agg"] / "accuracy.csv", index=False)
    write_all(p["config"], p["agg"], p["figures"], p["generated"])
    assert " & 42--138 & " in _read(p, "accuracy_table.tex")  # shortest to longest run, not a mean of the two


def test_the_prose_is_the_templates_a_writer_edits(tmp_path):
    import shutil

    from ssmvit.errors import UserError

    p = make_inputs(tmp_path)
    sections = tmp_path / "sections"
    shutil.copytree(REPO / "paper/sections", sections)
    results = sections / "results.tex"
    results.write_text(results.read_text().replace("reaches a test accuracy of", "scores"))
    write_all(p["config"], p["agg"], p["figures"], p["generated"], sections_dir=sections)
    text = _read(p, "results_text.tex")
    assert "ViT scores \\AccOrganAMNISTTwentyEightViT{}" in text and "reaches a test accuracy" not in text
    assert "\\VAR{" not in text and "\\BLOCK{" not in text and "%%" not in text  # nothing of the template left
    # a broken or missing template is one line naming the file, and nothing is written
    before = _read(p, "results_text.tex")
    results.write_text("\\VAR{no_such_fact}\n")
    with pytest.raises(UserError, match=r"results\.tex.*no_such_fact.*fix the template"):
        write_all(p["config"], p["agg"], p["figures"], p["generated"], sections_dir=sections)
    results.unlink()
    with pytest.raises(UserError, match=r"results\.tex is missing .*git checkout -- "):
        write_all(p["config"], p["agg"], p["figures"], p["generated"], sections_dir=sections)
    assert _read(p, "results_text.tex") == before


def test_the_captions_are_the_template_a_writer_edits(tmp_path):
    import shutil

    from ssmvit.errors import UserError

    p = make_inputs(tmp_path)
    sections = tmp_path / "sections"
    shutil.copytree(REPO / "paper/sections", sections)
    captions = sections / "captions.tex"
    original = captions.read_text()
    captions.write_text(original.replace("per seed. ViT$-$S4D:", "per seed, side by side. ViT$-$S4D:")
                        .replace("they carry no detail beyond", "they hold nothing beyond"))
    write_all(p["config"], p["agg"], p["figures"], p["generated"], sections_dir=sections)
    assert "\\caption{ViT versus S4D on the same test images, per seed, side by side." in _read(p, "paired_table.tex")
    assert "they hold nothing beyond the smaller file" in _read(p, "accuracy_table.tex")  # a table's notes too
    captions.write_text(original.replace("%% macro paired()", "%% macro paired_renamed()"))
    with pytest.raises(UserError, match=r"captions\.tex has no macro 'paired'"):
        write_all(p["config"], p["agg"], p["figures"], p["generated"], sections_dir=sections)


def test_a_study_run_in_parts_on_two_gpus_says_which_seeds_ran_where(tmp_path):
    """Seeds 0-1 on one GPU, seed 2 days later on another: the provenance keeps the parts apart (no span across the
    gap), the reproducibility list names each part's seeds, GPU and span, and the accuracy table says its mean
    training time mixes devices."""
    from ssmvit.aggregate import training_parts

    day = 86400.0
    summaries = [{"seed": s, "device_name": "GPU A", "torch": "2.11", "started_at": 1000.0 + 10 * s,
                  "ended_at": 1100.0 + 10 * s, "started_utc": "2026-12-02T00:00:00Z"} for s in (0, 1)]
    summaries.append({"seed": 2, "device_name": "GPU B", "torch": "2.11", "started_at": 1000.0 + 4 * day,
                      "ended_at": 1050.0 + 4 * day, "started_utc": "2026-12-06T00:00:00Z"})
    parts = training_parts(summaries)
    assert [(p["runs"], p["seeds"], p["devices"], p["span_s"], p["training_s"]) for p in parts] == [
        (2, [0, 1], ["GPU A"], 110.0, 110.0), (1, [2], ["GPU B"], 50.0, 50.0)]
    assert len(training_parts(summaries[:2])) == 1
    late = dict(summaries[1], started_at=1800.0, ended_at=1900.0)  # a rerun 700 s after the first run ended
    (part,) = training_parts([summaries[0], late])
    assert part["span_s"] == 900.0 and part["training_s"] == 200.0
    assert training_parts(summaries[:2] + [{"seed": 2}]) is None  # a run without its times: no span is claimed

    p = make_inputs(tmp_path)
    prov = json.loads((p["agg"] / "provenance.json").read_text())
    prov["train_parts"] = parts
    (p["agg"] / "provenance.json").write_text(json.dumps(prov))
    write_all(p["config"], p["agg"], p["figures"], p["generated"])
    text = " ".join(_read(p, "reproducibility.tex").split())
    assert "in 2 parts run at different times" in text
    assert "2 runs (seeds 0, 1) on GPU A" in text and "1 run (seed 2) on GPU B" in text
    assert "last one's end 110.0\\,s (1.8\\,min); " in text and "last one's end 50.0\\,s." in text
    assert "of which trainings ran" not in text  # no part waited
    assert "more than one device" not in _read(p, "accuracy_table.tex")  # make_inputs: one device
    prov["train_parts"][1]["training_s"] = 30.0  # the second part's GPU waited 20 s for a rerun
    (p["agg"] / "provenance.json").write_text(json.dumps(prov))
    write_all(p["config"], p["agg"], p["figures"], p["generated"])
    text = " ".join(_read(p, "reproducibility.tex").split())
    assert "end 50.0\\,s, of which trainings ran during 30.0\\,s" in text and "to no job at all" in text

    runs = pd.read_csv(p["agg"] / "runs.csv")
    runs.loc[runs["seed"] == 1, "device_name"] = "GPU B"
    runs.to_csv(p["agg"] / "runs.csv", index=False)
    write_all(p["config"], p["agg"], p["figures"], p["generated"])
    table = " ".join(_read(p, "accuracy_table.tex").split())
    assert "more than one device" in table and "GPU B: seed 1" in table and r"Xeon\_Gold" in table
    limits = " ".join(_read(p, "limitations_text.tex").split())
    assert "seed and device are confounded" in limits and "GPU B: seed 1" in limits
    gap = max(abs(ACCS[k][0] - ACCS[k][1]) for k in ACCS)  # per configuration: seed 0 on one GPU, seed 1 on the other
    assert f"differ by at most {gap:.3f}" in limits
    model_gap = min(abs(np.mean(ACCS[(r, "vit")]) - np.mean(ACCS[(r, "s4d")])) for r in (28, 64))
    assert f"mean accuracies in one configuration of {model_gap:.3f}: the device could shift" in limits


def test_latency_inference_memory_and_spread_reach_the_paper(tmp_path):
    p = make_inputs(tmp_path)
    eff = pd.read_csv(p["agg"] / "efficiency.csv")
    eff["timed_with"] = eff["dataset"]
    eff.loc[eff["dataset"] == "dermamnist", "timed_with"] = "organamnist"  # shares organamnist's measurement
    eff["train_samples_per_s_fp32_q25"], eff["train_samples_per_s_fp32_q75"] = 280.0, 310.0
    eff["latency_bs1_ms_trained"] = 3.25
    eff.to_csv(p["agg"] / "efficiency.csv", index=False)
    write_all(p["config"], p["agg"], p["figures"], p["generated"])
    t = _read(p, "inference_table.tex")
    rows = [line for line in t.splitlines() if "times$" in line and "&" in line]
    assert len(rows) == len(eff[eff["timed_with"] == eff["dataset"]])  # once per measurement, not per dataset
    assert all(" & 280--310 & " in r and " & 3.25 & " in r for r in rows)
    lat = eff[eff["timed_with"] == eff["dataset"]]["latency_bs1_ms"]
    assert {f"{x:.2f}" for x in lat} <= {r.split("&")[2].strip() for r in rows}
    assert "tab:inference" in t and "middle half" in t
