"""Shared fixtures: synthetic MedMNIST files in the official layout, tiny model settings."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest

from ssmvit.config import DEFAULTS, validate
from ssmvit.synthetic import make_synthetic_medmnist

REPO = Path(__file__).resolve().parents[1]
SHARED_MEDMNIST = Path(os.environ.get("SSMVIT_SHARED_MEDMNIST", REPO.parent / "shared" / "medmnist"))
REAL_ORGANAMNIST = SHARED_MEDMNIST / "organamnist.npz"

TINY_MODELS = {
    "vit": {"lr": 1e-3, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 4, "mlp_dim": 64, "dropout": 0.1},
    "s4d": {"lr": 1e-2, "ssm_lr": 1e-3, "d_model_grayscale": 16, "d_model_rgb": 24, "n_layers": 2, "d_state": 8, "dropout": 0.1},
}

needs_real_organamnist = pytest.mark.skipif(
    not REAL_ORGANAMNIST.exists(), reason=f"real OrganAMNIST-28 not found at {REAL_ORGANAMNIST}")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A local data root with synthetic organamnist (gray, 28 and 64) and bloodmnist (RGB, 28)."""
    root = tmp_path_factory.mktemp("medmnist_root")
    checksums = {}
    for dataset, size in (("organamnist", 28), ("organamnist", 64), ("bloodmnist", 28)):
        path, md5 = make_synthetic_medmnist(root, dataset, size)
        checksums[path.name] = md5
    return root, checksums


@pytest.fixture
def tiny_cfg(synthetic_root, monkeypatch):
    """A config over the synthetic root with tiny models and 2 epochs, validated."""
    root, checksums = synthetic_root
    monkeypatch.delenv("MEDMNIST_ROOT", raising=False)
    cfg = copy.deepcopy(DEFAULTS)
    cfg["data"]["local_root"] = str(root)
    cfg["data"]["checksums"] = dict(checksums)
    cfg["study"].update({"datasets": ["organamnist"], "resolutions": [28], "seeds": [0]})
    cfg["train"].update({"epochs": 2, "batch_size": 32, "device": "cpu", "threads": 2})
    cfg["models"] = copy.deepcopy(TINY_MODELS)
    return validate(cfg)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run with the working directory in a fresh folder (stages write relative paths)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_script(name: str, *args, cwd=None, env=None):
    import subprocess

    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, str(REPO / "workflow" / "scripts" / name), *map(str, args)],
                          cwd=cwd, env=e, capture_output=True, text=True, timeout=600)


# Fault-injection report (tests/fault_report.py): the `fault` fixture, its outcome hook, and the summary line.
from fault_report import fault, pytest_runtest_makereport  # noqa: E402,F401


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    import fault_report

    fault_report.terminal_summary(terminalreporter, config)
    slurm = sys.modules.get("test_slurm")
    if slurm is not None and slurm.TIMINGS:  # wall times of the SLURM test (tests/test_slurm.py)
        terminalreporter.write_line("slurm: " + "; ".join(f"{k}: {v:.0f} s" for k, v in slurm.TIMINGS.items()))
