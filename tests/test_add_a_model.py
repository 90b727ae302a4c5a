"""Adding a model takes one model file and one config entry, and the whole pipeline then carries it.

In a fresh copy of the repository, a newcomer's model (a two-layer perceptron) is one new file in
src/ssmvit/models/ and one study file naming it; `snakemake` then trains, evaluates and profiles it
beside ViT and S4D and prints it in the tables and the paper. Nothing else is touched (git says so).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from test_pipeline import copy_repo, sh, snakemake

MODEL_FILE = '''"""A two-layer perceptron on the flattened image: the smallest model a newcomer might add."""

import torch.nn as nn

NAME, LABEL, INPUT_LAYOUT = "mlp", "MLP", "image"
DESCRIPTION = "a two-layer perceptron on the flattened image"
SETTINGS = {"lr": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 1.0e-2},
            "hidden": {"type": "integer", "minimum": 1, "default": 32}}


def build(n_channels, n_classes, image_size, hidden=32):
    return nn.Sequential(nn.Flatten(), nn.Linear(n_channels * image_size**2, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_classes))
'''
STUDY = "config/with-mlp.yaml"
OUT = "build/with-mlp"


@pytest.fixture(scope="module")
def added(tmp_path_factory):
    root = copy_repo(tmp_path_factory.mktemp("addmodel"))
    (root / "src/ssmvit/models/mlp.py").write_text(MODEL_FILE)
    cfg = yaml.safe_load((root / "config/smoke-synthetic.yaml").read_text())
    cfg["outdir"] = OUT
    cfg["study"].update(datasets=["organamnist"], resolutions=[28], seeds=[0], profile_only=[],
                        models=["vit", "s4d", "mlp"])
    cfg["models"]["mlp"] = {"lr": 0.01, "hidden": 24}  # the config entry
    (root / STUDY).write_text(yaml.safe_dump(cfg, sort_keys=False))
    changed = sh("git status --porcelain", root).stdout.split("\n")
    # No PYTHONPATH here: the installed ssmvit is the checkout's this test runs from, not the copy's; the workflow
    # itself puts the copy's src/ first, for Snakemake and for the jobs, so the new model is found in both.
    run = snakemake(f"--cores 2 --configfile {STUDY}", root)
    return {"root": root, "changed": [c for c in changed if c], "run": run}


def test_the_change_is_one_model_file_and_one_study_file(added):
    assert sorted(added["changed"]) == ["?? config/with-mlp.yaml", "?? src/ssmvit/models/mlp.py"]


def test_the_new_model_is_trained_evaluated_and_profiled(added):
    agg = added["root"] / OUT / "results/aggregate"
    runs = pd.read_csv(agg / "runs.csv")
    assert sorted(runs["model"]) == ["mlp", "s4d", "vit"]
    mlp = runs[runs["model"] == "mlp"].iloc[0]
    assert mlp["params"] == 28 * 28 * 24 + 24 + 24 * 11 + 11 and 0 <= mlp["acc"] <= 1
    summary = json.loads((added["root"] / OUT / "results/runs/organamnist_28_mlp_s0/train_summary.json").read_text())
    assert summary["model"] == "mlp" and summary["epochs_done"] == summary["epochs"]
    eff = pd.read_csv(agg / "efficiency.csv").set_index("model")
    # no formula of its own: the analytic count is FlopCounterMode's (its two matmuls), the same as thop's here
    assert eff.loc["mlp", "macs_analytic"] == eff.loc["mlp", "macs_flopcounter"] == 28 * 28 * 24 + 24 * 11
    pairs = pd.read_csv(agg / "seed_comparison.csv")
    assert sorted(zip(pairs["model_a"], pairs["model_b"])) == [("s4d", "mlp"), ("vit", "mlp"), ("vit", "s4d")]


def test_the_paper_names_the_new_model(added):
    generated = added["root"] / OUT / "paper/generated"
    assert "MLP" in (generated / "accuracy_table.tex").read_text()
    assert "MLP" in (generated / "efficiency_table.tex").read_text()
    assert "a two-layer perceptron on the flattened image (hidden 24)" in (generated / "setup.tex").read_text()
    pdf = added["root"] / OUT / "paper/main.pdf"
    if shutil.which("pdftotext") and pdf.exists():
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True).stdout
        assert "MLP" in text


def test_an_incomplete_model_file_is_refused_by_name(tmp_path):
    root = copy_repo(tmp_path)
    (root / "src/ssmvit/models/broken.py").write_text('NAME = "broken"\nLABEL = "Broken"\n')
    env = dict(os.environ, PYTHONPATH=str(root / "src"))
    r = subprocess.run([sys.executable, "-m", "ssmvit", "train", "--model", "vit", "--dataset", "organamnist", "--res", "28"],
                       cwd=root, capture_output=True, text=True, env=env, timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "ssmvit.models.broken is not a complete model entry" in lines[0]
    assert "(missing: INPUT_LAYOUT, DESCRIPTION, SETTINGS, build)" in lines[0]
