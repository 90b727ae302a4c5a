"""Move a study's small results between a GPU box and the machine that builds the paper.

A remote GPU box (no network, no TeX) runs the training, evaluation and
profiling stages; ``pack`` puts their small outputs (JSON, CSV, logits; no
checkpoints, no data) into one tarball, ``unpack`` lays them out here, and the
paper stages run here without retraining.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from . import paths
from .errors import UserError
from .fileio import atomic_path


def result_files(cfg: dict) -> list[str]:
    """Every small per-run and per-profile output of the study, relative to its outdir."""
    local = dict(cfg, outdir=".")
    return [f for pattern in paths.SMALL_RESULTS for f in paths.study_files(local, pattern)]


def pack(cfg: dict, tarball, include_logs=True) -> list[str]:
    root = Path(cfg["outdir"])
    files = result_files(cfg)
    missing = [f for f in files if not (root / f).exists()]
    if missing:
        raise UserError(f"{len(missing)} result files are missing (first: {root / missing[0]}); run the GPU stages "
                        "first (snakemake --omit-from aggregate ...)")
    with atomic_path(tarball) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            for f in files:
                tar.add(root / f, arcname=f)
            logs = root / "logs"
            if include_logs and logs.exists():
                tar.add(logs, arcname="logs")
    return files


def unpack(cfg: dict, tarball) -> list[str]:
    """Extract into the study's outdir; only regular files under results/ and logs/ are accepted."""
    root = Path(cfg["outdir"])
    names = []
    with tarfile.open(tarball, "r:gz") as tar:
        members = tar.getmembers()
        for m in members:
            parts = Path(m.name).parts
            if (m.isfile() or m.isdir()) and parts and parts[0] in ("results", "logs") and ".." not in parts \
                    and not Path(m.name).is_absolute():
                continue
            raise UserError(f"{tarball} holds '{m.name}', which is not a result file; refusing to unpack it")
        tar.extractall(root, members=members, filter="data")
        names = [m.name for m in members if m.isfile()]
    return names
