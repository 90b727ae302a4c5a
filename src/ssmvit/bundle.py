"""Move a study's small results between a GPU box and the machine that builds the paper.

A remote GPU box (no network, no TeX) runs the training, evaluation and
profiling stages; ``pack`` puts their small outputs (JSON, CSV, logits; no
checkpoints, no data) into one tarball, ``unpack`` lays them out here, and the
paper stages run here without retraining.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from . import paths
from .errors import UserError
from .fileio import atomic_path, is_disk_full


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


# What a bundle of one study's small results may hold (the reference study's is about 30 MB in 250 files).
MAX_FILES = 20_000
MAX_FILE_BYTES = 512 * 2**20
MAX_TOTAL_BYTES = 4 * 2**30


def _members(tarball: Path) -> list[tarfile.TarInfo]:
    """The archive's index, checked before anything is written; one line for a missing, damaged or odd archive."""
    if not tarball.is_file():
        raise UserError(f"bundle {tarball} does not exist or is not a file; pass the tarball that `ssmvit bundle pack` wrote")
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            members = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise UserError(f"bundle {tarball} is not a complete gzip tarball ({type(exc).__name__}); copy it again") from None
    files, total = 0, 0
    for m in members:
        parts = Path(m.name).parts
        if not ((m.isfile() or m.isdir()) and parts and parts[0] in ("results", "logs") and ".." not in parts
                and not Path(m.name).is_absolute()):
            raise UserError(f"{tarball} holds '{m.name}', which is not a result file; refusing to unpack it")
        if m.isfile():
            files, total = files + 1, total + m.size
            if m.size > MAX_FILE_BYTES:
                raise UserError(f"{tarball} holds '{m.name}' of {m.size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit "
                                "for one result file; refusing to unpack it")
    if files > MAX_FILES or total > MAX_TOTAL_BYTES:
        raise UserError(f"{tarball} holds {files:,} files, {total:,} bytes, over the limits ({MAX_FILES:,} files, "
                        f"{MAX_TOTAL_BYTES:,} bytes) of a study's results; refusing to unpack it")
    return members


def unpack(cfg: dict, tarball) -> list[str]:
    """Lay a bundle's files out in the study's outdir.

    The whole archive is checked (names, counts, sizes) and extracted to a
    staging folder first; only then does each file replace its namesake, by a
    rename. A damaged archive or a full disk leaves every existing file as it was.
    """
    root, tarball = Path(cfg["outdir"]), Path(tarball)
    members = _members(tarball)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=root))  # same file system: os.replace is a rename
    names = []
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for m in members:
                if not m.isfile():
                    continue
                dest = staging / m.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(m) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, length=1 << 20)
                if dest.stat().st_size != m.size:
                    raise UserError(f"{tarball}: '{m.name}' is shorter than its header says; copy the bundle again")
                names.append(m.name)
        for name in names:  # everything is here and checked: now replace, one rename per file
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, root / name)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise UserError(f"bundle {tarball} is damaged ({type(exc).__name__}); copy it again; no file was replaced") from None
    except OSError as exc:
        if is_disk_full(exc):
            raise UserError(f"disk full while unpacking {tarball}; free space and rerun; no file was replaced") from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return names
