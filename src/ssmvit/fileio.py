"""Writing results so that no half-written file is ever visible, and reading
files that may come from elsewhere (a DVC remote, a colleague) safely."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if
    the block finishes. On any exception the temporary file is removed and the
    previous content of ``path`` (if any) is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; results are meant to be shared
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:  # flush to disk before the rename
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_npz(path, compress: bool = False, **arrays) -> None:
    """Uncompressed by default: image arrays barely compress and load faster raw."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            (np.savez_compressed if compress else np.savez)(fh, **arrays)


def write_csv(path, frame) -> None:
    """Write a pandas DataFrame atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def save_torch(path, obj) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path, map_location="cpu"):
    """Load a checkpoint without executing code.

    ``weights_only=True`` only reconstructs tensors and plain containers; a
    pickle that would call anything else is refused before it runs.
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} does not exist; run the training stage first")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"refusing checkpoint {path}: it is not a plain weights file ({first}); "
            "only load checkpoints this pipeline wrote, or retrain"
        ) from None


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
