"""Fault injection: nothing lost, nothing silently wrong.

Each test injects one fault (a killed process, a misbehaving server, a
damaged or hostile file, a full disk, a diverging loss) and asserts the
outcome: a clear one-line error or a correct recovery, earlier outputs
untouched, no half-written file under a final name, no temporary leftovers.
Each test records itself through the ``fault`` fixture (tests/fault_report.py);
the run ends with a line like ``faults: N tried, N handled, 0 outputs lost``.
"""

from __future__ import annotations

import copy
import errno
import http.server
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import META, PROCESSED, RAW, RUN, run_ssmvit
from fault_report import snapshot
from ssmvit import datasets, fileio, training
from ssmvit.datasets import fetch_raw, preprocess
from ssmvit.errors import UserError
from ssmvit.fileio import load_npz, load_torch, md5sum, save_torch, write_csv, write_json, write_npz
from ssmvit.synthetic import make_synthetic_medmnist
from ssmvit.training import NonFiniteLoss, train_one_run

RESULT_SUFFIXES = (".pt", ".csv", ".json", ".npz")
TRAIN_ARGS = ["--model", "s4d", "--dataset", "organamnist", "--res", "28", "--no-progress"]


# ---------------------------------------------------------------- helpers

def temp_leftovers(folder) -> list[str]:
    """Hidden temporary files of the atomic writer (``.{name}.*.tmp``) in ``folder``."""
    folder = Path(folder)
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))


def final_files(folder) -> list[Path]:
    folder = Path(folder)
    if not folder.exists():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix in RESULT_SUFFIXES)


def loads_fine(path: Path) -> bool:
    """Whether a result file is complete: it parses with the loader a later stage uses."""
    try:
        if path.suffix == ".pt":
            load_torch(path)  # weights_only=True
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".csv":
            pd.read_csv(path)
        elif path.suffix == ".npz":
            load_npz(path)
        return True
    except FileNotFoundError:
        return True  # replaced between listing and reading: nothing partial was seen
    except Exception:
        return False


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


class Evil:
    """A pickle that runs a shell command when loaded; the test checks the marker never appears."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _prepare(cfg: dict, cwd: Path) -> Path:
    """Local root -> data/raw -> data/processed under ``cwd``; return a config file for the scripts."""
    fetch_raw(cfg, "organamnist", 28)
    preprocess(cfg, "organamnist", 28, RAW("organamnist", 28))
    cfg_file = cwd / "config.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    return cfg_file


@pytest.fixture
def prepared(tiny_cfg, in_tmp):
    """The small synthetic organamnist preprocessed under the working folder, and its config file."""
    return tiny_cfg, _prepare(tiny_cfg, in_tmp)


# ------------------------------------------- 1. SIGKILL during training

@pytest.fixture
def long_run(tiny_cfg, in_tmp):
    """A run whose epochs take about a second on one thread, so it can be killed mid-epoch."""
    root = in_tmp / "root768"
    _, md5 = make_synthetic_medmnist("organamnist", 28, root / "organamnist.npz",
                                     splits={"train": 768, "val": 64, "test": 64})
    cfg = copy.deepcopy(tiny_cfg)
    cfg["data"].update(local_root=str(root), checksums={"organamnist.npz": md5})
    cfg["train"].update(epochs=3, threads=1)
    return _prepare(cfg, in_tmp), in_tmp


def _popen_train(cfg_file, cwd, out_dir, log):
    return subprocess.Popen([sys.executable, "-m", "ssmvit", "train", "--config",
                             str(cfg_file), *TRAIN_ARGS, "--out-dir", str(out_dir)],
                            cwd=cwd, stdout=open(log, "w"), stderr=subprocess.STDOUT)


def _watch(proc, run: Path, unreadable: set, until=None, limit_s: float = 60.0) -> None:
    """Load every final-named result while ``proc`` runs; stop when ``until()`` is true."""
    deadline = time.monotonic() + limit_s
    while proc.poll() is None and time.monotonic() < deadline:
        unreadable.update(p.name for p in final_files(run) if not loads_fine(p))
        if until is not None and until():
            return
        time.sleep(0.03)


def _epoch_saved(run: Path):
    last = run / "last.pt"
    return lambda: last.exists() and load_torch(last)["epoch"] >= 1


def test_sigkill_mid_epoch_then_rerun_gives_the_uninterrupted_result(fault, long_run):
    fault.describe("training: SIGKILL during epoch 2 of 3, then rerun")
    cfg_file, cwd = long_run
    full, cut = cwd / "full", cwd / "cut"
    reference = _popen_train(cfg_file, cwd, full, cwd / "full.log")  # same seed, never interrupted
    victim = _popen_train(cfg_file, cwd, cut, cwd / "cut.log")
    unreadable: set = set()
    try:
        _watch(victim, cut, unreadable, until=_epoch_saved(cut))
        time.sleep(0.3)  # into epoch 2's steps
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    assert victim.returncode == -signal.SIGKILL, (cwd / "cut.log").read_text()
    state = load_torch(cut / "last.pt")
    assert state["epoch"] == 1 and len(state["history"]) == 1  # killed before epoch 2 was saved
    unreadable.update(p.name for p in final_files(cut) if not loads_fine(p))
    # no summary of an unfinished run; its history holds the epochs it finished
    assert {p.name for p in final_files(cut)} == {"best.pt", "last.pt", "history.csv"}
    assert list(pd.read_csv(cut / "history.csv")["epoch"]) == [1]

    # What a kill during a save leaves: temporary files of the dead writer (and an old one of a former format).
    host = fileio._host_tag()
    planted = [f".last.pt.{host}.{victim.pid}.k1ll3d00.tmp", f".best.pt.{host}.{victim.pid}.k1ll3d01.tmp",
               f".train_summary.json.{host}.{victim.pid}.k1ll3d02.tmp", ".history.csv.abc12345.tmp"]
    for name in planted:
        (cut / name).write_bytes((cut / "last.pt").read_bytes()[:500])
    old = time.time() - 2 * fileio.STALE_TMP_AGE_S
    os.utime(cut / planted[-1], (old, old))

    rerun = _popen_train(cfg_file, cwd, cut, cwd / "rerun.log")
    _watch(rerun, cut, unreadable)
    assert rerun.wait(timeout=60) == 0, (cwd / "rerun.log").read_text()
    assert "after epoch 1" in (cwd / "rerun.log").read_text()
    assert reference.wait(timeout=60) == 0, (cwd / "full.log").read_text()
    unreadable.update(p.name for p in final_files(cut) if not loads_fine(p))
    assert fault.lost(len(unreadable)) == 0, f"partial or unreadable under a final name: {sorted(unreadable)}"

    for ckpt in ("last.pt", "best.pt"):
        a, b = load_torch(full / ckpt)["model"], load_torch(cut / ckpt)["model"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), ckpt
    pd.testing.assert_frame_equal(pd.read_csv(full / "history.csv").drop(columns="seconds"),
                                  pd.read_csv(cut / "history.csv").drop(columns="seconds"))
    sa, sb = (json.loads((d / "train_summary.json").read_text()) for d in (full, cut))
    for key in ("epochs_done", "finished", "best_epoch", "best_val_acc", "fingerprint"):
        assert sa[key] == sb[key], key
    assert temp_leftovers(cut) == [] and temp_leftovers(full) == []
    fault.handled("resumed after epoch 1; weights and history equal to the uninterrupted run; stale temps removed")


def test_stale_temp_files_are_removed_only_when_their_writer_is_gone(fault, tmp_path):
    fault.describe("temp files left by killed writers (same host, other host, old format)")
    out = tmp_path / "metrics.json"
    host = fileio._host_tag()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        old = time.time() - 2 * fileio.STALE_TMP_AGE_S
        files = {
            f".metrics.json.{host}.{dead.pid}.aaaa1111.tmp": ("fresh", False),   # dead writer here: stale
            f".metrics.json.{host}.{alive.pid}.bbbb2222.tmp": ("fresh", True),   # live writer: keep
            ".metrics.json.otherhost.4242.cccc3333.tmp": ("fresh", True),       # other host, recent: keep
            ".metrics.json.otherhost.4243.dddd4444.tmp": ("old", False),        # other host, long untouched
            ".metrics.json.eeee5555.tmp": ("old", False),                       # former name format, old
            ".metrics.json.ffff6666.tmp": ("fresh", True),                      # former format, recent: keep
            f".metrics.json.x.{host}.{dead.pid}.gggg7777.tmp": ("fresh", True),  # belongs to metrics.json.x
        }
        for name, (age, _) in files.items():
            (tmp_path / name).write_text("partial")
            if age == "old":
                os.utime(tmp_path / name, (old, old))
        write_json(out, {"acc": 0.5})
        expected = sorted(n for n, (_, keep) in files.items() if keep)
        assert temp_leftovers(tmp_path) == expected
        assert json.loads(out.read_text()) == {"acc": 0.5}
    finally:
        alive.kill()
        alive.wait()
    fault.handled("dead writers' temps removed by the next write; live or unknown writers' kept")


# ------------------------------------------------------------ 2. downloads

STALL_S = 5.0  # far past the test timeout; cut short when the test ends


class _FaultServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, body: bytes, plan: list[str]):
        super().__init__(("127.0.0.1", 0), _FaultHandler)
        self.body, self.plan = body, list(plan)
        self.requests = 0
        self.lock, self.stop = threading.Lock(), threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def next_behaviour(self) -> str:
        with self.lock:
            self.requests += 1
            return self.plan[min(self.requests, len(self.plan)) - 1]

    def handle_error(self, request, client_address):
        pass  # the client hanging up on a stalled answer is what these tests provoke


class _FaultHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        srv, body = self.server, self.server.body
        how = srv.next_behaviour()
        if how in ("500", "404"):
            self.send_error(int(how))
            return
        if how == "stall":  # accept, then say nothing
            srv.stop.wait(STALL_S)
            return
        if how == "corrupt":
            body = bytearray(body)
            body[len(body) // 2] ^= 0xFF
            body = bytes(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if how == "drop":  # promise len(body), send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        elif how == "stall_body":
            self.wfile.write(body[: len(body) // 2])
            srv.stop.wait(STALL_S)
        elif how == "trickle":  # 20 bytes/s: never silent for a whole timeout, but hopeless
            for i in range(len(body)):
                self.wfile.write(body[i:i + 1])
                if srv.stop.wait(0.05):
                    return
        else:
            self.wfile.write(body)


@pytest.fixture
def fault_server(monkeypatch):
    """Start a local server (127.0.0.1 only) that answers request k with plan[k] (the last one repeats)."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    servers = []

    def start(body: bytes, plan: list[str]) -> _FaultServer:
        srv = _FaultServer(body, plan)
        assert srv.server_address[0] == "127.0.0.1"
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop.set()
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def waits(monkeypatch):
    """Record the backoff sleeps of download_file (without sleeping them)."""
    slept: list[float] = []

    class Clock:
        monotonic = staticmethod(time.monotonic)

        @staticmethod
        def sleep(s):
            slept.append(round(s, 6))

    monkeypatch.setattr(datasets, "time", Clock)
    return slept


def _download_cfg(cfg: dict, url: str, retries=3, timeout=0.5, backoff=0.05) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg["data"].update(local_root=None, mirror_url=url, download_retries=retries,
                       download_timeout_s=timeout, download_backoff_s=backoff)
    return cfg


FAILING_DOWNLOADS = [
    ("500", "HTTP 500 on every request", "HTTP 500"),
    ("stall", "server stalls before answering (past the timeout)", "TimeoutError"),
    ("stall_body", "server stalls halfway through the body", "TimeoutError"),
    ("trickle", "server trickles 20 B/s, never a full timeout of silence", "stalled below"),
    ("drop", "connection dropped halfway (short body)", "connection dropped after"),
    ("corrupt", "corrupted file (wrong md5)", "received a file with md5"),
]


@pytest.mark.parametrize("how, label, needle", FAILING_DOWNLOADS, ids=[f[0] for f in FAILING_DOWNLOADS])
def test_failing_download_retries_boundedly_then_stops_with_one_line(fault, tiny_cfg, in_tmp, fault_server,
                                                                    waits, how, label, needle):
    fault.describe(f"download: {label}")
    body = (Path(tiny_cfg["data"]["local_root"]) / "bloodmnist.npz").read_bytes()
    md5 = tiny_cfg["data"]["checksums"]["bloodmnist.npz"]
    srv = fault_server(body, [how])
    cfg = _download_cfg(tiny_cfg, srv.url)
    dest = RAW("bloodmnist", 28)
    t0 = time.monotonic()
    with pytest.raises(UserError) as exc:
        fetch_raw(cfg, "bloodmnist", 28)
    elapsed = time.monotonic() - t0
    msg = str(exc.value)
    assert srv.requests == 3  # == data.download_retries
    if how in ("500", "stall"):  # no answer or an error answer: urllib3's Retry retried, within one attempt
        assert "after 1 attempt " in msg and waits == [], msg
    else:  # a cut transfer or a wrong md5: this module's attempts, with doubling backoff
        assert "after 3 attempts" in msg and waits == [0.05, 0.1], msg
    assert "\n" not in msg and needle in msg, msg
    assert str(dest) in msg and f"{srv.url}/bloodmnist.npz" in msg and f"expected md5 {md5}" in msg, msg
    assert not dest.exists() and temp_leftovers(dest.parent) == []
    assert elapsed < 3 * (2 * 0.5 + 0.5) + 1.0  # each attempt ends within ~2 timeouts
    fault.handled(f"UserError after {srv.requests} requests in {elapsed:.1f}s; nothing under the final name")


def test_download_404_is_not_retried(fault, tiny_cfg, in_tmp, fault_server, waits):
    fault.describe("download: HTTP 404 (wrong URL)")
    srv = fault_server(b"", ["404"])
    with pytest.raises(UserError) as exc:
        fetch_raw(_download_cfg(tiny_cfg, srv.url), "bloodmnist", 28)
    assert srv.requests == 1 and waits == []
    assert "HTTP 404" in str(exc.value) and "after 1 attempt " in str(exc.value)
    assert temp_leftovers(RAW("bloodmnist", 28).parent) == []
    fault.handled("UserError after one request")


@pytest.mark.parametrize("first", ["500", "drop", "corrupt"])
def test_download_succeeds_after_one_failure(fault, tiny_cfg, in_tmp, fault_server, waits, first):
    fault.describe(f"download: first request fails ({first}), second is fine")
    body = (Path(tiny_cfg["data"]["local_root"]) / "bloodmnist.npz").read_bytes()
    srv = fault_server(body, [first, "ok"])
    info = fetch_raw(_download_cfg(tiny_cfg, srv.url), "bloodmnist", 28)
    dest = RAW("bloodmnist", 28)
    assert srv.requests == 2 and waits == ([] if first == "500" else [0.05])  # a 500 is urllib3's to retry
    assert md5sum(dest) == tiny_cfg["data"]["checksums"]["bloodmnist.npz"] == info["md5"]
    assert temp_leftovers(dest.parent) == []
    fault.handled("downloaded on the second request, md5 right")


# ------------------------------------------------- 3. damaged local data

@pytest.mark.parametrize("damage", ["truncated", "one byte changed"])
def test_damaged_local_file_is_refused_with_both_md5s_and_the_fix(fault, tiny_cfg, in_tmp, damage):
    fault.describe(f"local data file {damage}")
    cfg = copy.deepcopy(tiny_cfg)
    good = (Path(cfg["data"]["local_root"]) / "organamnist.npz").read_bytes()
    if damage == "truncated":
        bad = good[: len(good) // 2]
    else:
        bad = bytearray(good)
        bad[len(bad) // 3] ^= 0x01
    bad_root = in_tmp / "bad_root"
    bad_root.mkdir()
    bad_file = bad_root / "organamnist.npz"
    bad_file.write_bytes(bytes(bad))
    cfg["data"].update(local_root=str(bad_root), mirror_url="http://127.0.0.1:9/never-contacted")
    before = snapshot(bad_root)
    with pytest.raises(UserError) as exc:
        fetch_raw(cfg, "organamnist", 28)
    msg = str(exc.value)
    expected, found = cfg["data"]["checksums"]["organamnist.npz"], md5sum(bad_file)
    assert "\n" not in msg and str(bad_file) in msg
    assert f"has md5 {found}" in msg and f"expected {expected}" in msg, msg
    assert "delete it or replace it with the official organamnist.npz" in msg, msg
    assert not RAW("organamnist", 28).exists() and temp_leftovers(RAW("organamnist", 28).parent) == []
    assert fault.kept(before) == 0  # the user's file is reported, not deleted or replaced
    fault.handled("refused: expected and found md5 and the fix named")


# --------------------------------------------------- 4. non-finite loss

def test_nonfinite_loss_stops_train_script_with_one_line(fault, prepared, in_tmp):
    fault.describe("training: NaN loss from the first step (train.py)")
    _, cfg_file = prepared
    meta_path = META("organamnist", 28)
    meta = json.loads(meta_path.read_text())
    meta["std"] = [0.0]  # every normalised input becomes inf/NaN
    meta_path.write_text(json.dumps(meta))
    r = run_ssmvit("train", "--config", cfg_file, *TRAIN_ARGS, cwd=in_tmp)
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    assert "at epoch 1, step 1;" in line and "lower the learning rate" in line, line
    run = RUN("organamnist", 28, "s4d", 0)
    assert final_files(run) == [] and temp_leftovers(run) == []
    fault.handled("exit 2, one line naming epoch 1, step 1; nothing written")


def test_nonfinite_loss_in_epoch_2_keeps_epoch_1_checkpoint(fault, prepared, monkeypatch):
    fault.describe("training: NaN loss in epoch 2, step 3")
    cfg, _ = prepared
    n_train = len(load_npz(PROCESSED("organamnist", 28))["train_labels"])
    steps = -(-n_train // int(cfg["train"]["batch_size"]))
    assert n_train != len(load_npz(PROCESSED("organamnist", 28))["val_labels"])  # tells the splits apart
    calls = {"n": 0}
    original = training.DeviceData.batch

    def poisoned(self, idx):
        x, y = original(self, idx)
        if len(self) == n_train:
            calls["n"] += 1
            if calls["n"] == steps + 3:
                x = x * float("nan")
        return x, y

    monkeypatch.setattr(training.DeviceData, "batch", poisoned)
    with pytest.raises(NonFiniteLoss) as exc:
        train_one_run(cfg, "organamnist", 28, "s4d", 0, progress=False)
    assert "at epoch 2, step 3;" in str(exc.value)
    run = RUN("organamnist", 28, "s4d", 0)
    unreadable = [p.name for p in final_files(run) if not loads_fine(p)]
    assert fault.lost(len(unreadable)) == 0
    state = load_torch(run / "last.pt")
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert temp_leftovers(run) == []
    fault.handled("NonFiniteLoss naming epoch 2, step 3; epoch-1 checkpoint intact and finite")


# --------------------------------------------------------- 5. disk full

WRITERS = {
    "json": (write_json, {"acc": 0.5}, {"acc": [0.1] * 20000}),
    "csv": (write_csv, pd.DataFrame({"a": [1]}), pd.DataFrame({"a": np.arange(40000)})),
    "npz": (write_npz, {"a": np.zeros(3)}, {"a": np.random.default_rng(0).random(40000)}),
    "torch": (save_torch, {"w": torch.zeros(3)}, {"w": torch.rand(40000)}),
}


def _write(kind: str, path: Path, payload) -> None:
    writer = WRITERS[kind][0]
    if kind == "npz":
        writer(path, **payload)
    else:
        writer(path, payload)


def _disk_full_case(fault, path: Path, kind: str, outcome: str) -> None:
    before = snapshot(path)
    with pytest.raises(UserError) as exc:
        _write(kind, path, WRITERS[kind][2])
    assert str(exc.value) == f"disk full while writing {path}; free space and rerun"
    assert fault.kept(before) == 0  # the earlier output keeps its content
    assert loads_fine(path) and temp_leftovers(path.parent) == []
    fault.handled(outcome)


@pytest.mark.parametrize("point", ["fsync", "replace"])
@pytest.mark.parametrize("kind", list(WRITERS))
def test_disk_full_while_writing_keeps_the_earlier_output(fault, tmp_path, monkeypatch, kind, point):
    fault.describe(f"disk full (ENOSPC at {point}) writing a {kind} result")
    path = tmp_path / f"out.{'pt' if kind == 'torch' else kind}"
    _write(kind, path, WRITERS[kind][1])

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, point, no_space)
    _disk_full_case(fault, path, kind, "one-line UserError; old file unchanged; no temp left")


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs (root only; skipped where mounting is not permitted)."""
    mnt = tmp_path / "tiny_disk"
    mnt.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mnt
    if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.parametrize("kind", list(WRITERS))
def test_real_full_disk_keeps_the_earlier_output(fault, small_tmpfs, kind):
    fault.describe(f"disk full (real 64 KiB tmpfs) writing a {kind} result")
    path = small_tmpfs / f"out.{'pt' if kind == 'torch' else kind}"
    _write(kind, path, WRITERS[kind][1])
    free = os.statvfs(small_tmpfs).f_bavail
    _disk_full_case(fault, path, kind, "one-line UserError; old file unchanged; space given back")
    assert os.statvfs(small_tmpfs).f_bavail == free  # the partial temporary file is gone


def test_disk_full_during_training_keeps_the_last_complete_checkpoint(fault, prepared, monkeypatch):
    fault.describe("training: disk full when saving epoch 2's checkpoint, then rerun")
    cfg, _ = prepared
    run = RUN("organamnist", 28, "s4d", 0)
    real_replace, saves = os.replace, {"n": 0}

    def replace(src, dst, *a, **k):
        if Path(dst).name == "last.pt":
            saves["n"] += 1
            if saves["n"] == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(UserError) as exc:
        train_one_run(cfg, "organamnist", 28, "s4d", 0, progress=False)
    assert str(exc.value) == f"disk full while writing {run / 'last.pt'}; free space and rerun"
    unreadable = [p.name for p in final_files(run) if not loads_fine(p)]
    assert fault.lost(len(unreadable)) == 0
    assert load_torch(run / "last.pt")["epoch"] == 1 and temp_leftovers(run) == []
    monkeypatch.setattr(os, "replace", real_replace)
    s = train_one_run(cfg, "organamnist", 28, "s4d", 0, progress=False)
    assert s["finished"] and s["epochs_done"] == 2
    fault.handled("one-line UserError; epoch-1 checkpoint kept; rerun resumed and finished")


# ---------------------------------------------------- 6. untrusted files

def test_malicious_checkpoint_is_refused_by_evaluate_script(fault, prepared, in_tmp):
    fault.describe("untrusted: code-running pickle as best.pt (evaluate.py)")
    _, cfg_file = prepared
    marker = in_tmp / "pwned"
    run = RUN("organamnist", 28, "s4d", 0)
    run.mkdir(parents=True)
    (run / "best.pt").write_bytes(pickle.dumps({"model": Evil(marker)}))
    r = run_ssmvit("evaluate", "--config", cfg_file, "--model", "s4d", "--dataset", "organamnist", "--res", "28",
                   cwd=in_tmp)
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    assert "refusing checkpoint" in line and "best.pt" in line, line
    assert not marker.exists()
    assert [p.name for p in run.iterdir()] == ["best.pt"]  # no metrics written
    fault.handled("exit 2, refused before unpickling; payload never ran")


def test_malicious_torch_checkpoint_is_refused_on_resume(fault, prepared, in_tmp):
    fault.describe("untrusted: code-running object inside a torch-format last.pt (resume)")
    cfg, _ = prepared
    marker = in_tmp / "pwned"
    run = RUN("organamnist", 28, "s4d", 0)
    run.mkdir(parents=True)
    torch.save({"model": {}, "epoch": 1, "fingerprint": Evil(marker)}, run / "last.pt")
    with pytest.raises(UserError, match="refusing checkpoint"):
        train_one_run(cfg, "organamnist", 28, "s4d", 0, progress=False)
    assert not marker.exists()
    fault.handled("refused by weights_only loading; payload never ran")


def test_npz_with_object_arrays_is_refused(fault, prepared, in_tmp):
    fault.describe("untrusted: npz with a pickled object array")
    cfg, _ = prepared
    marker = in_tmp / "pwned"
    arrays = dict(np.load(PROCESSED("organamnist", 28)))
    arrays["train_images"] = np.array([Evil(marker)], dtype=object)
    bad = in_tmp / "hostile.npz"
    np.savez(bad, **arrays)
    with pytest.raises(UserError) as exc:
        train_one_run(cfg, "organamnist", 28, "s4d", 0, processed_npz=bad,
                      processed_meta=META("organamnist", 28), progress=False)
    assert "cannot be read without pickle" in str(exc.value) and str(bad) in str(exc.value)
    assert not marker.exists()
    assert final_files(RUN("organamnist", 28, "s4d", 0)) == []
    fault.handled("refused (allow_pickle=False); payload never ran")
