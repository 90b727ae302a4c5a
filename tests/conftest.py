"""Shared fixtures: synthetic MedMNIST files in the official layout, tiny model settings."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ssmvit.config import resolve
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
    from ssmvit.catalog import official_name

    root = tmp_path_factory.mktemp("medmnist_root")
    checksums = {}
    for dataset, size in (("organamnist", 28), ("organamnist", 64), ("bloodmnist", 28)):
        path, md5 = make_synthetic_medmnist(dataset, size, root / official_name(dataset, size))
        checksums[path.name] = md5
    return root, checksums


@pytest.fixture
def tiny_cfg(synthetic_root, monkeypatch):
    """A config over the synthetic root with tiny models and 2 epochs, validated."""
    root, checksums = synthetic_root
    monkeypatch.delenv("MEDMNIST_ROOT", raising=False)
    return resolve({
        "outdir": ".",
        "data": {"local_root": str(root), "checksums": dict(checksums)},
        "study": {"datasets": ["organamnist"], "resolutions": [28], "seeds": [0]},
        "train": {"epochs": 2, "batch_size": 32, "device": "cpu", "threads": 2},
        "models": copy.deepcopy(TINY_MODELS),
    })


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run with the working directory in a fresh folder (stages write relative paths)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_ssmvit(*args, cwd=None, env=None, timeout=600):
    """The ``ssmvit`` command as a person runs it (``python -m ssmvit``: the same entry point)."""
    import subprocess

    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "ssmvit", *map(str, args)],
                          cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- running the pipeline as a person does
def sh(cmd, cwd, timeout=1800, check=True, env=None):
    e = dict(os.environ)
    e.pop("MEDMNIST_ROOT", None)
    e.update(env or {})
    r = subprocess.run(cmd, cwd=cwd, shell=isinstance(cmd, str), capture_output=True, text=True,
                       timeout=timeout, env=e)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def snakemake(args, cwd, **kw):
    return sh(f"{sys.executable} -m snakemake {args}", cwd, **kw)


def copy_repo(dest: Path) -> Path:
    """A fresh checkout-like copy with its own git repository and one commit (DVC needs git)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    sh("git init -q && git add -A && git -c user.email=t@t -c user.name=t commit -qm copy", dest)
    return dest


def smoke_config(root: Path) -> tuple[str, dict]:
    """config/smoke.yaml on the real files, else the same study on synthetic data."""
    if REAL_ORGANAMNIST.exists():
        return "config/smoke.yaml", {"MEDMNIST_ROOT": str(SHARED_MEDMNIST)}
    cfg = yaml.safe_load((root / "config/smoke.yaml").read_text())
    cfg["data"]["synthetic"] = True
    (root / "config/smoke-slurm-synthetic.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return "config/smoke-slurm-synthetic.yaml", {}


@pytest.fixture(scope="session")
def smoke_by_snakemake(tmp_path_factory):
    """The README's smoke study (smoke_config) built by `snakemake --cores 2` in a fresh repository, once for the
    tests that compare another way of running it with this one (dvc repro, SLURM). They only read it."""
    import time

    root = copy_repo(tmp_path_factory.mktemp("smoke_by_snakemake"))
    configfile, env = smoke_config(root)
    t0 = time.perf_counter()
    snakemake(f"--cores 2 --configfile {configfile}", root, env=env)
    return {"root": root, "configfile": configfile, "env": env, "seconds": time.perf_counter() - t0}


# Fault-injection report (tests/fault_report.py): the `fault` fixture, its outcome hook, and the summary line.
from fault_report import fault, pytest_runtest_makereport  # noqa: E402,F401


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    import fault_report

    fault_report.terminal_summary(terminalreporter, config)
    slurm = sys.modules.get("test_slurm")
    if slurm is not None and slurm.TIMINGS:  # wall times of the SLURM test (tests/test_slurm.py)
        terminalreporter.write_line("slurm: " + "; ".join(f"{k}: {v:.0f} s" for k, v in slurm.TIMINGS.items()))


# The pipeline's paths in a study folder '.' (the tests' working directory), as ssmvit.paths builds them.
def RAW(dataset, res):
    from ssmvit import paths

    return paths.file(".", paths.RAW, dataset=dataset, res=res)


def PROCESSED(dataset, res):
    from ssmvit import paths

    return paths.file(".", paths.PROCESSED, dataset=dataset, res=res)


def META(dataset, res):
    from ssmvit import paths

    return paths.file(".", paths.PROCESSED_META, dataset=dataset, res=res)


def RUN(dataset, res, model, seed):
    from ssmvit import paths

    return paths.file(".", paths.RUN_DIR, dataset=dataset, res=res, model=model, seed=seed)
