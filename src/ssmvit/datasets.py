"""MedMNIST files: find or download, verify, preprocess, load, raster-scan.

File names, URLs and md5 sums come from ``medmnist.INFO`` (``ssmvit.catalog``).
medmnist's ``download()`` goes through torchvision, which cannot be imported
beside the CPU torch build used here, so the HTTP transfer is done in
``download_file`` with the same URLs and md5 check, plus what long runs on
clusters need: a timeout, bounded retries with backoff, and a file that
appears under its final name only once its md5 is right.
"""

from __future__ import annotations

import math
import os
import shutil
import stat
import time
from pathlib import Path

import numpy as np

from . import paths
from .catalog import SIZES, check_choice, check_dataset, describe, official_name, official_url_md5
from .errors import UserError
from .fileio import atomic_path, load_npz, md5sum, write_json, write_npz
from .synthetic import make_synthetic_medmnist

SPLITS = ("train", "val", "test")


def source_size_for(cfg: dict, res: int) -> int:
    """Official size a resolution is made from: itself, unless data.upsample_from says otherwise."""
    check_choice("resolution", int(res), SIZES)
    return int(cfg["data"]["upsample_from"].get(int(res), int(res)))


def is_synthetic(cfg: dict, dataset: str) -> bool:
    """Whether ``dataset`` is made synthetic (data.synthetic: true, or a list naming it)."""
    syn = cfg["data"]["synthetic"]
    return syn is True or (isinstance(syn, list) and dataset in syn)


def expected_md5(cfg: dict, dataset: str, size: int) -> tuple[str, bool]:
    """(md5 to verify against, whether it is medmnist's official one)."""
    _, official = official_url_md5(dataset, size)
    override = cfg["data"]["checksums"].get(official_name(dataset, size))
    if override and override != official:
        return override, False
    return official, True


def source_url(cfg: dict, dataset: str, size: int) -> str:
    url, _ = official_url_md5(dataset, size)
    mirror = cfg["data"].get("mirror_url")
    if mirror:
        return mirror.rstrip("/") + "/" + official_name(dataset, size)
    return url


def local_root(cfg: dict) -> Path | None:
    """$MEDMNIST_ROOT overrides ``data.local_root``."""
    root = os.environ.get("MEDMNIST_ROOT") or cfg["data"].get("local_root")
    return Path(root).expanduser() if root else None


# A transfer slower than this for a whole timeout window counts as stalled
# (a server trickling bytes would otherwise never hit the socket timeout).
MIN_DOWNLOAD_RATE_B_S = 1024
MAX_BACKOFF_S = 60.0
RETRY_STATUS = (408, 425, 429, *range(500, 600))  # other 4xx are final (wrong URL, no access)


class _BadChecksum(Exception):
    pass


def _session(retries: int, backoff_s: float):
    """requests with urllib3's Retry: refused connections and 5xx/408/425/429 answers are retried (exponential
    backoff); a silent server and a transfer cut off mid-body are retried by the caller, which keeps the deadline."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(total=retries - 1, connect=retries - 1, read=0, status=retries - 1, other=0,
                  allowed_methods=frozenset({"GET"}), status_forcelist=RETRY_STATUS, backoff_factor=backoff_s,
                  backoff_max=MAX_BACKOFF_S, raise_on_status=True, respect_retry_after_header=False)
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


def download_file(url: str, dest: Path, md5: str, timeout: float = 20.0, retries: int = 3,
                  backoff_s: float = 1.0, deadline_s: float = 3600.0) -> None:
    """Fetch ``url`` to ``dest`` with a progress bar; the file appears under ``dest`` only with the right md5.

    HTTP through ``requests``: urllib3's ``Retry`` retries a refused connection
    and 5xx/408/425/429 answers; ``timeout`` seconds without an answer, a
    transfer cut short (``timeout`` seconds without a byte, less than
    MIN_DOWNLOAD_RATE_B_S over a ``timeout`` window, fewer bytes than
    Content-Length) or a wrong md5 is retried here; ``retries`` attempts of
    each kind, waiting backoff_s, 2*backoff_s, ... (at most MAX_BACKOFF_S)
    between them. Nothing takes longer than ``deadline_s`` in all. A server
    that accepts and never answers fails after about ``retries`` x ``timeout``
    seconds. A failed attempt leaves nothing under ``dest`` and no temporary
    file; so does the final error, one line naming the file, the URL, the
    expected md5 and the time spent.
    """
    import requests
    from tqdm import tqdm

    dest, retries, t0 = Path(dest), max(1, int(retries)), time.monotonic()
    last, attempts = "no attempt made", 0
    with _session(retries, float(backoff_s)) as session:
        for attempt in range(1, retries + 1):
            left = deadline_s - (time.monotonic() - t0)
            if left <= 0:
                last = f"{last}; the {deadline_s:.0f} s deadline (data.download_deadline_s) was reached"
                break
            attempts = attempt
            wait = min(float(timeout), left)
            try:
                with atomic_path(dest) as tmp:
                    with session.get(url, stream=True, timeout=(wait, wait)) as resp:
                        resp.raise_for_status()
                        length = resp.headers.get("Content-Length", "")
                        expected = int(length) if length.isdigit() else None
                        with open(tmp, "wb") as out, tqdm(total=expected, unit="B", unit_scale=True, desc=dest.name,
                                                          disable=None, mininterval=5.0) as bar:
                            got = _stream(resp, out, bar, wait, t0 + deadline_s)
                    if expected is not None and got != expected:
                        raise ConnectionError(f"connection dropped after {got} of {expected} bytes")
                    found = md5sum(tmp)
                    if found != md5:
                        raise _BadChecksum(f"received a file with md5 {found}")
                return
            except UserError:  # disk full: retrying cannot help
                raise
            except requests.exceptions.RetryError as exc:  # urllib3 retried the status already
                last = f"HTTP {_status_of(exc)}, retried by urllib3"
                break
            except requests.exceptions.HTTPError as exc:  # a final 4xx
                last = f"HTTP {exc.response.status_code} {exc.response.reason}"
                break
            except _BadChecksum as exc:
                last = str(exc)
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:  # before any byte
                text = " ".join(str(exc).split())
                silent = "read timed out" in text.lower()
                last = f"TimeoutError: no answer within {wait:g} s" if silent else f"ConnectionError: {text[:160]}"
                if "Max retries" in text and not silent:
                    break  # urllib3 retried the connection already
            except (requests.exceptions.RequestException, OSError, ValueError) as exc:
                last = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
            if attempt < retries:
                time.sleep(min(MAX_BACKOFF_S, float(backoff_s) * 2 ** (attempt - 1)))
    raise UserError(
        f"download of {dest} from {url} failed after {attempts} attempt{'s' if attempts > 1 else ''} "
        f"in {time.monotonic() - t0:.0f} s ({last}); expected md5 {md5}. Check the network or data.mirror_url, "
        "or put the official file in the local root ($MEDMNIST_ROOT)"
    )


def _stream(resp, out, bar, timeout: float, deadline: float) -> int:
    """Copy the body; raise TimeoutError on a stall, a trickle or the deadline, ConnectionError on a cut."""
    import requests
    import urllib3

    got, window_start, window_bytes = 0, time.monotonic(), 0
    try:
        # read1 returns what has arrived (iter_content would wait for a whole chunk, which a trickle never fills);
        # each socket read waits at most `timeout`
        for block in iter(lambda: resp.raw.read1(1 << 20, decode_content=True), b""):
            out.write(block)
            bar.update(len(block))
            got += len(block)
            window_bytes += len(block)
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"deadline reached after {got} bytes")
            if now - window_start >= timeout:
                if window_bytes < MIN_DOWNLOAD_RATE_B_S * (now - window_start):
                    raise TimeoutError(f"transfer stalled below {MIN_DOWNLOAD_RATE_B_S} B/s after {got} bytes")
                window_start, window_bytes = now, 0
    except (requests.exceptions.ConnectionError, urllib3.exceptions.HTTPError, OSError) as exc:
        if isinstance(exc, TimeoutError) and "after" in str(exc):
            raise
        if "timed out" in str(exc).lower() or isinstance(exc, (TimeoutError, urllib3.exceptions.TimeoutError)):
            raise TimeoutError(f"no byte for {timeout:.0f} s after {got} bytes") from None
        raise ConnectionError(f"connection dropped after {got} bytes") from None
    return got


def fetch_raw(cfg: dict, dataset: str, res: int, dest=None) -> dict:
    """Put the official file that ``res`` is made from at ``dest`` (default: the pipeline's raw file).

    A file in the local root is used without network if its md5 is right,
    and refused (not replaced by a download) if it is wrong or not a regular file.
    """
    check_dataset(dataset)
    dest = Path(dest) if dest else paths.file(cfg["outdir"], paths.RAW, dataset=dataset, res=res)
    size = source_size_for(cfg, res)
    name = official_name(dataset, size)
    facts = {"dataset": dataset, "resolution": int(res), "size": size, "file": name, "path": str(dest)}
    if is_synthetic(cfg, dataset):
        splits = describe(dataset)["n_samples"] if cfg["data"]["synthetic_splits"] == "official" else None
        _, md5 = make_synthetic_medmnist(dataset, size, dest, splits=splits)
        return {**facts, "md5": md5, "official_md5": False,
                "origin": f"synthetic (data.synthetic, {cfg['data']['synthetic_splits']} split sizes)"}
    md5, official = expected_md5(cfg, dataset, size)
    root = local_root(cfg)
    local = root / name if root else None
    if local is not None and (local.exists() or local.is_symlink()):
        _check_regular_file(local)
        found = md5sum(local)
        if found != md5:
            raise UserError(
                f"{local} has md5 {found}, expected {md5} (truncated or not the official file); "
                f"delete it or replace it with the official {name}"
            )
        with atomic_path(dest) as tmp:
            shutil.copyfile(local, tmp)
        origin = str(local)
    else:
        url = source_url(cfg, dataset, size)
        download_file(url, dest, md5, timeout=float(cfg["data"]["download_timeout_s"]),
                      retries=int(cfg["data"]["download_retries"]),
                      backoff_s=float(cfg["data"]["download_backoff_s"]),
                      deadline_s=float(cfg["data"]["download_deadline_s"]))
        origin = url
    return {**facts, "md5": md5, "official_md5": official, "origin": origin}


def _check_regular_file(path: Path) -> None:
    """A directory, FIFO or device under a data file's name would crash or hang the md5: refuse it."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise UserError(f"{path} cannot be read ({exc.strerror}); replace it with the official file") from None
    if not stat.S_ISREG(mode):
        raise UserError(f"{path} is not a regular file; put the official .npz file there or remove it")


def validate_raw(arrays: dict, dataset: str, size: int, where: str) -> None:
    """Check keys, shapes, dtypes and label range of an official-layout npz."""
    desc = describe(dataset)
    needed = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels")]
    missing = [k for k in needed if k not in arrays]
    if missing:
        raise UserError(f"{where} lacks key(s) {', '.join(missing)}; an official MedMNIST file has {', '.join(needed)}")
    c = desc["n_channels"]
    want = (size, size) if c == 1 else (size, size, 3)
    for split in SPLITS:
        img, lab = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if img.ndim != 1 + len(want) or tuple(img.shape[1:]) != want:
            raise UserError(f"{where}: {split}_images has shape {img.shape}, expected (N, {', '.join(map(str, want))}) "
                            f"for {dataset} at {size}x{size}")
        if img.dtype != np.uint8:
            raise UserError(f"{where}: {split}_images has dtype {img.dtype}, expected uint8")
        if lab.shape not in ((img.shape[0], 1), (img.shape[0],)):
            raise UserError(f"{where}: {split}_labels has shape {lab.shape}, expected ({img.shape[0]}, 1)")
        if not np.issubdtype(lab.dtype, np.integer):
            raise UserError(f"{where}: {split}_labels has dtype {lab.dtype}, expected integers")
        if img.shape[0] == 0:
            raise UserError(f"{where}: the {split} split is empty")
        if lab.min() < 0 or lab.max() >= desc["n_classes"]:
            raise UserError(f"{where}: {split}_labels range {int(lab.min())}..{int(lab.max())} is outside "
                            f"0..{desc['n_classes'] - 1} for {dataset}")


def to_nchw(images: np.ndarray) -> np.ndarray:
    """(N,H,W) or (N,H,W,C) uint8 -> (N,C,H,W) uint8, contiguous."""
    if images.ndim == 3:
        images = images[:, None]
    else:
        images = images.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(images)


def resize_uint8(images: np.ndarray, res: int, chunk: int = 4096) -> np.ndarray:
    """Bilinear, antialiased resize of (N,C,H,W) uint8 to (N,C,res,res), in chunks."""
    import torch
    import torch.nn.functional as F

    n, c = images.shape[:2]
    out = np.empty((n, c, res, res), dtype=np.uint8)
    for i in range(0, n, chunk):
        x = torch.from_numpy(images[i:i + chunk]).float()
        y = F.interpolate(x, size=(res, res), mode="bilinear", antialias=True, align_corners=False)
        out[i:i + chunk] = y.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out


def channel_mean_std(images: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) standard deviation of uint8 (N,C,H,W) images on the 0..1 scale.

    From exact integer sums of the pixels and of their squares, a chunk at a time: a float64 copy of the
    split would take 8 bytes per pixel (8.8 GB for PathMNIST's training split at 64x64, 108 GB at 224x224)
    and most of the preprocess stage's time. The variance (n * sum(x^2) - sum(x)^2) / n^2 is formed in
    integers, so the only rounding is the final division and square root.
    """
    n_channels = images.shape[1]
    s1, s2 = [0] * n_channels, [0] * n_channels
    for i in range(0, images.shape[0], chunk):
        block = images[i:i + chunk].astype(np.int64)
        for c, (a, b) in enumerate(zip(block.sum(axis=(0, 2, 3)), (block * block).sum(axis=(0, 2, 3)))):
            s1[c] += int(a)
            s2[c] += int(b)
    n = images.shape[0] * images.shape[2] * images.shape[3]
    mean = [a / (255 * n) for a in s1]
    std = [math.sqrt((n * b - a * a) / (n * n)) / 255 for a, b in zip(s1, s2)]
    return mean, std


def preprocess(cfg: dict, dataset: str, res: int, raw_path=None, out_npz=None, out_meta=None) -> dict:
    """Official-layout npz -> uint8 NCHW splits at ``res`` and a metadata JSON (default paths: the pipeline's)."""
    res = int(res)
    check_dataset(dataset)
    where = {"dataset": dataset, "res": res}
    raw_path = raw_path or paths.file(cfg["outdir"], paths.RAW, **where)
    out_npz = out_npz or paths.file(cfg["outdir"], paths.PROCESSED, **where)
    out_meta = out_meta or paths.file(cfg["outdir"], paths.PROCESSED_META, **where)
    src_size = source_size_for(cfg, res)
    raw_path = Path(raw_path)
    md5, official = expected_md5(cfg, dataset, src_size)
    synthetic = is_synthetic(cfg, dataset)
    if synthetic:  # generated by the download stage; there is no official md5 to compare with
        official = False
    found = md5sum(raw_path) if raw_path.exists() else None
    if found is None:
        raise UserError(f"data file {raw_path} does not exist; run the download stage first")
    if found != md5 and not synthetic:
        raise UserError(f"{raw_path} has md5 {found}, expected {md5}; delete it and run the download stage again")
    arrays = load_npz(raw_path)
    validate_raw(arrays, dataset, src_size, str(raw_path))
    desc = describe(dataset)
    out = {}
    for split in SPLITS:
        img = to_nchw(arrays[f"{split}_images"])
        if src_size != res:
            img = resize_uint8(img, res)
        out[f"{split}_images"] = img
        out[f"{split}_labels"] = arrays[f"{split}_labels"].reshape(-1).astype(np.int64)
    mean, std = channel_mean_std(out["train_images"])
    meta = {
        **desc,
        "resolution": res,
        "source_size": src_size,
        "upsampled": src_size < res,
        "resized": src_size != res,
        "resize_method": "bilinear, antialiased (torch.nn.functional.interpolate)" if src_size != res else None,
        "source_file": official_name(dataset, src_size),
        "source_md5": found,
        "official_md5": official,
        "synthetic": synthetic,
        "split_sizes": {s: int(out[f"{s}_labels"].shape[0]) for s in SPLITS},
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "layout": "uint8 NCHW",
    }
    write_npz(out_npz, **out)
    write_json(out_meta, meta)
    return meta


def load_processed(npz_path, meta_path=None) -> tuple[dict, dict]:
    """(arrays, metadata) of a preprocessed dataset; arrays stay numpy uint8/int64."""
    import json

    npz_path = Path(npz_path)
    meta_path = Path(meta_path) if meta_path else npz_path.with_suffix(".json")
    arrays = load_npz(npz_path)
    again = "delete it and run the preprocess stage again"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise UserError(f"metadata {meta_path} does not exist; run the preprocess stage again") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"metadata {meta_path} is not valid JSON (truncated?); {again}") from None
    needed = ("dataset", "resolution", "n_channels", "n_classes", "split_sizes", "mean", "std")
    if not isinstance(meta, dict) or any(k not in meta for k in needed):
        raise UserError(f"metadata {meta_path} lacks {', '.join(k for k in needed if k not in (meta or {}))}; {again}")
    res, c, k = int(meta["resolution"]), int(meta["n_channels"]), int(meta["n_classes"])
    for split in SPLITS:
        if f"{split}_images" not in arrays or f"{split}_labels" not in arrays:
            raise UserError(f"{npz_path} lacks the {split} split; run the preprocess stage again")
        img, lab = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        # The file must be what its metadata says: a wrong shape or label would train silently or crash mid-run.
        if img.dtype != np.uint8 or img.shape[1:] != (c, res, res):
            raise UserError(f"{npz_path}: {split}_images are {img.dtype} {tuple(img.shape[1:])}, but {meta_path} says "
                            f"uint8 ({c}, {res}, {res}); {again}")
        if lab.shape != (img.shape[0],) or not np.issubdtype(lab.dtype, np.integer):
            raise UserError(f"{npz_path}: {split}_labels do not match {split}_images (shape {lab.shape}); {again}")
        if len(lab) and (lab.min() < 0 or lab.max() >= k):
            raise UserError(f"{npz_path}: {split}_labels range {int(lab.min())}..{int(lab.max())} is outside 0..{k - 1} "
                            f"({meta['dataset']} has {k} classes); {again}")
        if int(meta["split_sizes"].get(split, -1)) != img.shape[0]:
            raise UserError(f"{npz_path}: the {split} split has {img.shape[0]} images, {meta_path} says "
                            f"{meta['split_sizes'].get(split)}; {again}")
    return arrays, meta


def subset_indices(n: int, limit: int | None) -> np.ndarray:
    """A fixed subset (independent of the training seed, so every model sees the same images)."""
    if limit is None or limit >= n:
        return np.arange(n)
    rng = np.random.default_rng(12345)
    return np.sort(rng.permutation(n)[:limit])


def raster_scan(x):
    """(B, C, H, W) -> (B, H*W, C): pixels in row-major order, row by row, left to right."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h * w).transpose(1, 2)


def _status_of(exc) -> str:
    """The status code in urllib3's 'too many 500 error responses'."""
    import re

    m = re.search(r"too many (\d{3}) error", str(exc))
    return m.group(1) if m else "error"
