"""Writing results so that no half-written file is ever visible, and reading
files that may come from elsewhere (a DVC remote, a colleague) safely."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import UserError

# A temporary file of a writer that cannot be asked whether it is alive (legacy
# name, or written from another host) is stale once untouched this long.
STALE_TMP_AGE_S = 3600.0
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:63] or "host"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Temporary files of earlier writes of ``path`` whose writer is gone.

    Temporary names are ``.{name}.{host}.{pid}.{random}.tmp``: one of this
    host whose process no longer exists is stale at once (a writer killed
    between its first byte and its rename); others (other hosts, the older
    ``.{name}.{random}.tmp`` names) once untouched for ``STALE_TMP_AGE_S``.
    """
    path = Path(path)
    prefix, host = f".{path.name}.", _host_tag()
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return []
    stale = []
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
            continue
        parts = entry.name[len(prefix):-len(".tmp")].split(".")
        if len(parts) == 3 and parts[1].isdigit():  # host.pid.random
            if parts[0] == host:
                if not _pid_alive(int(parts[1])):
                    stale.append(Path(entry.path))
                continue
        elif not (len(parts) == 1 and re.fullmatch(r"[A-Za-z0-9_]{6,}", parts[0])):
            continue  # another file's temporary (e.g. of "{name}.x"), not ours
        with contextlib.suppress(OSError):
            if time.time() - entry.stat(follow_symlinks=False).st_mtime > STALE_TMP_AGE_S:
                stale.append(Path(entry.path))
    return stale


def remove_stale_temp_files(path: str | os.PathLike) -> int:
    """Delete what ``stale_temp_files`` finds; return how many were removed."""
    n = 0
    for tmp in stale_temp_files(path):
        with contextlib.suppress(OSError):  # best effort: gone already, or not ours to delete
            tmp.unlink()
            n += 1
    return n


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it wraps) is ENOSPC/EDQUOT."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if
    the block finishes. On any exception the temporary file is removed and the
    previous content of ``path`` (if any) is untouched. Temporary files that
    earlier, killed writes of ``path`` left behind are removed first. A full
    disk (ENOSPC, EDQUOT) becomes a one-line UserError naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_host_tag()}.{os.getpid()}.", suffix=".tmp",
                                   dir=path.parent)
    except OSError as exc:
        if is_disk_full(exc):
            raise UserError(f"disk full while writing {path}; free space and rerun") from None
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; results are meant to be shared
        yield tmp_path
        with open(tmp_path, "rb") as fh:  # flush to disk before the rename
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if is_disk_full(exc) and not isinstance(exc, UserError):
            raise UserError(f"disk full while writing {path}; free space and rerun") from None
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` (renames) only if the block finishes."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # of a writer killed mid-way
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = path.with_name(f".{path.name}.{os.getpid()}.old.tmp")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# dvclive's VS Code signal file, written by ``Live.next_step`` and removed by ``Live.end`` at the DVC root.
DVCLIVE_STEP_SIGNAL = "DVCLIVE_STEP_COMPLETED"


@contextlib.contextmanager
def dvclive_log(path: str | os.PathLike):
    """A dvclive ``Live`` that writes into a temporary folder which replaces ``path`` when the block finishes.

    Every run of a study shares one DVC root, and ``Live.end`` removes the root's step signal file after checking
    that it exists: a run that ended between another run's check and removal got FileNotFoundError (seen with four
    trainings sharing one GPU), although its log was complete. That one error is not a failure of this log.
    """
    from dvclive import Live

    with atomic_dir(path) as tmp:
        try:
            with Live(dir=str(tmp), save_dvc_exp=False, dvcyaml=None, report=None) as live:
                yield live
        except FileNotFoundError as exc:
            if Path(exc.filename or "").name != DVCLIVE_STEP_SIGNAL:
                raise


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj: Any) -> None:
    """Strict JSON: a NaN or infinity (an undefined AUC, say) is written as null, never as bare NaN."""
    write_text(path, json.dumps(_finite(obj), indent=2, sort_keys=True, default=_json_default, allow_nan=False) + "\n")


def _finite(obj):
    if isinstance(obj, float) or isinstance(obj, np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    return obj


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_npz(path, compress: bool = False, **arrays) -> None:
    """Like np.savez (uncompressed by default: image arrays barely compress and load faster raw), but
    with a fixed timestamp on every member, so that equal arrays give equal bytes (and equal DVC hashes)."""
    import zipfile

    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED,
                             allowZip64=True) as zf:
            for name, arr in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(2024, 1, 1, 0, 0, 0))
                info.compress_type = zf.compression
                with zf.open(info, "w", force_zip64=True) as member:  # streamed: no second copy in memory
                    np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)


def write_csv(path, frame) -> None:
    """Write a pandas DataFrame atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def save_torch(path, obj) -> None:
    import torch

    with atomic_path(path) as tmp:
        # Through a Python file, so that a full disk surfaces as OSError(ENOSPC),
        # not as an opaque RuntimeError of torch's own writer.
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)


def load_torch(path, map_location="cpu"):
    """Load a checkpoint without executing code.

    ``weights_only=True`` only reconstructs tensors and plain containers; a
    pickle that would call anything else is refused before it runs.
    """
    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols it did not write; the refusal below says what matters
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} does not exist; run the training stage first")
    except pickle.UnpicklingError as exc:
        raise UserError(
            f"refusing checkpoint {path}: it is not a plain weights file ({_torch_reason(exc)}); "
            "only load checkpoints this pipeline wrote, or retrain"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise UserError(
            f"refusing checkpoint {path}: it is truncated or corrupt ({_torch_reason(exc)}); "
            "delete it and run the training stage again"
        ) from None


def _torch_reason(exc: BaseException, limit: int = 160) -> str:
    """The specific line of torch's multi-paragraph load error (not its advice to turn safety off)."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    specific = [ln for ln in lines if not ln.startswith(boilerplate)]
    text = (specific or lines or [type(exc).__name__])[0]
    text = text.replace("WeightsUnpickler error: ", "")
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " ..."
    return text or type(exc).__name__


def load_npz(path) -> dict[str, np.ndarray]:
    """Read every array of an .npz without unpickling objects."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise UserError(f"data file {path} does not exist; run the download/preprocess stage first")
    except ValueError as exc:
        raise UserError(f"data file {path} cannot be read without pickle ({exc}); replace it with an official file")
    except Exception as exc:  # zipfile.BadZipFile, EOFError, OSError on truncated files
        raise UserError(f"data file {path} is unreadable ({type(exc).__name__}: {exc}); delete it and download again")


def md5sum(path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
