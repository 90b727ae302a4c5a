"""Training interrupted under the real orchestrators, then resumed by the same command.

Snakemake and DVC both delete a job's declared outputs (best.pt among them)
before they run it again. A run interrupted at an epoch after its best one
must still finish with the best checkpoint of the uninterrupted run, without
retraining the epochs it finished: its resume state (last.pt, undeclared)
carries the best checkpoint too. Each case is a fault of the fault suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, TINY_MODELS
from ssmvit.fileio import load_torch
from ssmvit.synthetic import make_synthetic_medmnist
from test_pipeline import copy_repo, sh

CONFIG = "config/interrupt.yaml"
DVC_FILE = "pipelines/interrupt/dvc.yaml"
RUN = "build/interrupt/results/runs/organamnist_28_s4d_s0"
EPOCHS, BEST_EPOCH, KILL_AFTER = 5, 2, 3  # the run's best validation accuracy comes at epoch 2 (checked below)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupt_root")
    _, md5 = make_synthetic_medmnist("organamnist", 28, root / "organamnist.npz",
                                     splits={"train": 1024, "val": 24, "test": 64})
    return root, md5


def make_repo(dest: Path, data_root) -> Path:
    """A fresh repository with a one-run study (about 1.7 s per epoch on one thread) and its DVC pipeline."""
    root, md5 = data_root
    repo = copy_repo(dest)
    cfg = {"outdir": "build/interrupt", "data": {"local_root": str(root), "checksums": {"organamnist.npz": md5}},
           "study": {"datasets": ["organamnist"], "resolutions": [28], "models": ["s4d"], "seeds": [0],
                     "profile_only": []},
           "train": {"epochs": EPOCHS, "batch_size": 32, "device": "cpu", "threads": 1},
           "profile": {"batch_sizes": [1], "repeats": 1, "warmup": 0},
           "models": {"s4d": dict(TINY_MODELS["s4d"], lr=3e-2)}}
    (repo / CONFIG).write_text(yaml.safe_dump(cfg))
    (repo / DVC_FILE).parent.mkdir(parents=True)
    (repo / DVC_FILE).write_text((REPO / "pipelines/smoke/dvc.yaml").read_text().replace("config/smoke.yaml", CONFIG))
    sh("git add -A && git -c user.email=t@t -c user.name=t commit -qm study", repo)
    return repo


COMMANDS = {
    "snakemake": [sys.executable, "-m", "snakemake", f"{RUN}/metrics.json", "--cores", "1", "--configfile", CONFIG],
    "dvc": ["dvc", "repro", f"{DVC_FILE}:evaluate@organamnist-28-s4d-0"],
}


def outcome(repo: Path) -> dict:
    run = repo / RUN
    return {"best": load_torch(run / "best.pt"), "history": pd.read_csv(run / "history.csv").drop(columns="seconds"),
            "metrics": json.loads((run / "metrics.json").read_text())}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_root):
    repo = make_repo(tmp_path_factory.mktemp("uninterrupted"), data_root)
    sh(COMMANDS["snakemake"], repo)
    ref = outcome(repo)
    best_epoch = int(ref["history"].loc[ref["history"]["val_acc"].idxmax(), "epoch"])
    assert best_epoch == ref["best"]["epoch"] == BEST_EPOCH < KILL_AFTER < EPOCHS  # the case the test is about
    return ref


def saved_epochs(repo: Path) -> int:
    try:
        return int(load_torch(repo / RUN / "last.pt")["epoch"])
    except Exception:  # noqa: BLE001  not written yet, or being replaced right now
        return 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
@pytest.mark.parametrize("tool", ["snakemake", "dvc"])
def test_training_interrupted_after_its_best_epoch_resumes_to_the_same_result(fault, reference, tmp_path, data_root,
                                                                            tool, sig):
    fault.describe(f"orchestrator: {sig.name} to {tool} after epoch {KILL_AFTER}, "
                   f"best epoch {BEST_EPOCH}")
    repo = make_repo(tmp_path / "repo", data_root)
    log = open(tmp_path / "first.log", "w")
    env = {k: v for k, v in os.environ.items() if k != "MEDMNIST_ROOT"}
    # Its own process group, as a terminal's foreground job: Ctrl-C (SIGINT) reaches the tool and its job.
    # SIGINT restored to its default: a shell's background job (`pytest ... &`) inherits it ignored, and a
    # Python started that way never raises KeyboardInterrupt.
    proc = subprocess.Popen(COMMANDS[tool], cwd=repo, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while saved_epochs(repo) < KILL_AFTER and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None and saved_epochs(repo) == KILL_AFTER, (tmp_path / "first.log").read_text()
        os.killpg(proc.pid, sig)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    if tool == "snakemake" and sig == signal.SIGKILL:  # a killed Snakemake leaves its lock, as the README says
        sh([sys.executable, "-m", "snakemake", "--unlock", "--cores", "1", "--configfile", CONFIG], repo, env=env)
    rerun = sh(COMMANDS[tool], repo, env=env)
    train_log = rerun.stdout if tool == "dvc" else (repo / "build/interrupt/logs/train/organamnist_28_s4d_s0.log").read_text()
    assert f"after epoch {KILL_AFTER}" in train_log, train_log  # resumed: the finished epochs were not retrained
    got = outcome(repo)
    a, b = reference["best"]["model"], got["best"]["model"]
    same_best = got["best"]["epoch"] == BEST_EPOCH and all(torch.equal(a[k], b[k]) for k in a)
    fault.lost(0 if same_best else 1)
    assert same_best, "best.pt differs from the uninterrupted run's"
    pd.testing.assert_frame_equal(reference["history"], got["history"])
    for key in ("acc", "auc", "macro_f1", "test_loss", "confusion_matrix", "checkpoint_epoch"):
        assert got["metrics"][key] == reference["metrics"][key], key
    fault.handled(f"resumed after epoch {KILL_AFTER}; best.pt (epoch {BEST_EPOCH}), history and metrics as uninterrupted")
