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

from conftest import META, PROCESSED, RAW, REPO, RUN, run_ssmvit
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
    if how == "500":  # an error answer: urllib3's Retry retried it, within one attempt
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


# ------------------------------------------- 7. hostile and careless input

def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): md5sum(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _text_file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _bomb(levels=9) -> str:
    text = "a: &a [x, x, x, x, x, x, x, x, x]\n"
    for p, c in zip("abcdefghij"[:levels - 1], "bcdefghijk"):
        text += f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    return "train:\n  epochs: 1\n" + "models:\n  vit:\n    lr: 0.001\n" + text.replace("\n", "\n") + \
        "study:\n  seeds: *i\n"


# (label, how to set up the working folder -> extra arguments, the stage's arguments, the one line's needle)
HOSTILE = [
    ("config: YAML bomb (anchors and aliases) as a study file",
     lambda d: ["--config", _text_file(d / "bomb.yaml", _bomb())], ["train", *TRAIN_ARGS], "YAML alias"),
    ("config: YTE templating in a study file",
     lambda d: ["--config", _text_file(d / "yte.yaml", "__use_yte__: true\ntrain:\n  epochs: ?1+1\n")],
     ["train", *TRAIN_ARGS], "YTE templating"),
    ("config: --set value that is not YAML", lambda d: [], ["train", *TRAIN_ARGS, "--set", "train.epochs=[1"],
     "is not valid YAML"),
    ("config: --set with a !!python tag", lambda d: [],
     ["train", *TRAIN_ARGS, "--set", "train.epochs=!!python/object/apply:os.system [ls]"], "is not valid YAML"),
    ("config: NaN learning rate", lambda d: [], ["train", *TRAIN_ARGS, "--set", "models.s4d.lr=.nan"],
     "is not a finite number"),
    ("config: NaN weight decay", lambda d: [], ["train", *TRAIN_ARGS, "--set", "train.weight_decay=.nan"],
     "is not a finite number"),
    ("config: NaN dropout", lambda d: [], ["train", *TRAIN_ARGS, "--set", "models.s4d.dropout=.nan"],
     "is not a finite number"),
    ("config: the config path is a directory", lambda d: ["--config", d], ["train", *TRAIN_ARGS], "is not a regular file"),
    ("config: the config file is not UTF-8", lambda d: ["--config", _latin1(d)], ["train", *TRAIN_ARGS], "is not UTF-8"),
    ("run: negative seed", lambda d: [], ["train", *TRAIN_ARGS, "--seed", "-1"], "--seed -1 is negative"),
    ("run: model sizes no machine can allocate", lambda d: [],
     ["train", *TRAIN_ARGS, "--set", "models.s4d.d_model_grayscale=100000000000"], "need more memory"),
    ("bundle: the tarball does not exist", lambda d: [], ["bundle", "unpack", "missing.tgz"], "does not exist"),
    ("bundle: the tarball is not gzip", lambda d: _plain_bundle(d), ["bundle", "unpack", "plain.tgz"],
     "is not a complete gzip tarball"),
    ("bundle: the tarball is truncated", lambda d: _truncated_bundle(d), ["bundle", "unpack", "cut.tgz"],
     "is not a complete gzip tarball"),
]


def _latin1(d: Path) -> Path:
    p = d / "latin1.yaml"
    p.write_bytes("outdir: caf\xe9\n".encode("latin-1"))
    return p


def _plain_bundle(d: Path) -> list:
    (d / "plain.tgz").write_text("just text\n")
    return []


def _truncated_bundle(d: Path) -> list:
    import tarfile

    (d / "results/runs/x").mkdir(parents=True, exist_ok=True)
    (d / "results/runs/x/metrics.json").write_bytes(os.urandom(200_000))
    with tarfile.open(d / "whole.tgz", "w:gz") as tar:
        tar.add(d / "results", arcname="results")
    data = (d / "whole.tgz").read_bytes()
    (d / "cut.tgz").write_bytes(data[: len(data) // 2])
    shutil.rmtree(d / "results")
    (d / "whole.tgz").unlink()
    return []


@pytest.mark.parametrize("label, setup, args, needle", HOSTILE, ids=[h[0].split(": ", 1)[1][:40] for h in HOSTILE])
def test_hostile_input_is_one_line_and_changes_nothing(fault, prepared, in_tmp, label, setup, args, needle):
    fault.describe(label)
    _, cfg_file = prepared
    extra = [str(a) for a in setup(in_tmp)]
    before = _files(in_tmp)
    t0 = time.monotonic()
    r = run_ssmvit(*args, *(extra or ["--config", cfg_file]), cwd=in_tmp, timeout=120)
    elapsed = time.monotonic() - t0
    assert r.returncode == 2, r.stdout + r.stderr
    line = one_error_line(r.stderr)
    assert needle in line, line
    assert fault.lost(sum(1 for k, v in before.items() if _files(in_tmp).get(k) != v)) == 0
    assert set(_files(in_tmp)) == set(before), "the command wrote files"
    assert elapsed < 60, elapsed
    fault.handled(f"exit 2 in {elapsed:.1f} s, one line; nothing written")


def test_yaml_bomb_through_snakemake_is_one_line(fault, tmp_path):
    fault.describe("config: YAML bomb passed to Snakemake with --configfile")
    bomb = _text_file(tmp_path / "bomb.yaml", _bomb())
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(bomb)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert r.returncode != 0 and len(errors) == 1 and "repeats another node" in errors[0], r.stderr[-2000:]
    fault.handled(f"refused in {time.monotonic() - t0:.1f} s before any job")


@pytest.mark.parametrize("kind", ["directory", "fifo", "symlink to /dev/zero"])
def test_local_root_entry_that_is_not_a_regular_file_is_refused(fault, tiny_cfg, in_tmp, kind):
    fault.describe(f"data: the local root's organamnist.npz is a {kind}")
    root = in_tmp / "odd_root"
    root.mkdir()
    entry = root / "organamnist.npz"
    if kind == "directory":
        entry.mkdir()
    elif kind == "fifo":
        os.mkfifo(entry)
    else:
        entry.symlink_to("/dev/zero")
    cfg = copy.deepcopy(tiny_cfg)
    cfg["data"]["local_root"] = str(root)
    t0 = time.monotonic()
    with pytest.raises(UserError, match="is not a regular file"):
        fetch_raw(cfg, "organamnist", 28)
    assert time.monotonic() - t0 < 5 and not RAW("organamnist", 28).exists()
    fault.handled("refused at once, nothing copied")


def test_download_from_a_silent_server_ends_at_the_deadline(fault, tiny_cfg, in_tmp, fault_server):
    fault.describe("download: server accepts and never answers, many retries allowed (deadline)")
    srv = fault_server(b"", ["stall"])
    cfg = _download_cfg(tiny_cfg, srv.url, retries=20, timeout=0.5, backoff=0.01)
    cfg["data"]["download_deadline_s"] = 2.0
    t0 = time.monotonic()
    with pytest.raises(UserError) as exc:
        fetch_raw(cfg, "bloodmnist", 28)
    elapsed = time.monotonic() - t0
    assert "data.download_deadline_s" in str(exc.value) or "deadline" in str(exc.value), str(exc.value)
    assert elapsed < 2.0 + 2 * 0.5 + 1.0 and temp_leftovers(RAW("bloodmnist", 28).parent) == []
    fault.handled(f"gave up after {elapsed:.1f} s (deadline 2 s)")


def _bundle(d: Path, files: dict) -> Path:
    """A tarball of ``files`` (name under results/ -> bytes), as `ssmvit bundle pack` lays them out."""
    import io
    import tarfile

    path = d / "bundle.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def unpacked_study(tiny_cfg, in_tmp):
    """A study folder that already holds one result, and the config that names it."""
    cfg = copy.deepcopy(tiny_cfg)
    kept = in_tmp / "results/runs/organamnist_28_s4d_s0/metrics.json"
    kept.parent.mkdir(parents=True)
    kept.write_text('{"acc": 0.5}\n')
    return cfg, kept


@pytest.mark.parametrize("case", ["one file too big", "too many files", "disk full halfway"])
def test_bundle_unpack_checks_everything_before_it_replaces_a_file(fault, unpacked_study, in_tmp, monkeypatch, case):
    from ssmvit import bundle

    fault.describe(f"bundle: {case}")
    cfg, kept = unpacked_study
    snap = snapshot(kept)
    name = "results/runs/organamnist_28_s4d_s0/metrics.json"
    if case == "one file too big":  # a small tarball that expands to one huge file
        monkeypatch.setattr(bundle, "MAX_FILE_BYTES", 100_000)
        tarball, needle = _bundle(in_tmp, {name: bytes(1_000_000)}), "over the 100,000-byte limit"
        assert tarball.stat().st_size < 10_000
    elif case == "too many files":
        monkeypatch.setattr(bundle, "MAX_FILES", 50)
        tarball = _bundle(in_tmp, {f"results/junk/{i}.json": b"{}" for i in range(60)} | {name: b"{}"})
        needle = "over the limits (50 files"
    else:  # ENOSPC while staging the second file: the first must not have replaced anything yet
        tarball = _bundle(in_tmp, {"results/profile/a.json": b"{}" * 1000, name: b'{"acc": 0.9}'})
        real, calls = shutil.copyfileobj, []

        def full_disk(src, dst, length=0):
            calls.append(1)
            if len(calls) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(src, dst, length)

        monkeypatch.setattr(shutil, "copyfileobj", full_disk)
        needle = "disk full while unpacking"
    with pytest.raises(UserError) as exc:
        bundle.unpack(cfg, tarball)
    assert needle in str(exc.value) and "\n" not in str(exc.value), str(exc.value)
    assert fault.kept(snap) == 0
    assert not (in_tmp / "results/profile/a.json").exists() and not (in_tmp / "results/junk").exists()
    assert not [p for p in in_tmp.iterdir() if p.name.startswith(".bundle-")]  # no staging folder left
    fault.handled("one line; the existing result untouched; nothing staged left behind")


def test_evaluate_refuses_a_checkpoint_of_other_model_settings(fault, prepared, in_tmp):
    fault.describe("evaluate: best.pt trained with other model settings than the config's")
    cfg, cfg_file = prepared
    other = copy.deepcopy(cfg)
    other["models"]["s4d"]["d_model_grayscale"] = 8
    train_one_run(other, "organamnist", 28, "s4d", 0, progress=False)
    run = RUN("organamnist", 28, "s4d", 0)
    snap = snapshot(*final_files(run))
    r = run_ssmvit("evaluate", "--config", cfg_file, "--model", "s4d", "--dataset", "organamnist", "--res", "28",
                   cwd=in_tmp)
    assert r.returncode == 2
    line = one_error_line(r.stderr)
    assert "trained with other models.s4d settings" in line and "d_model 8 vs 16" in line, line
    assert fault.kept(snap) == 0 and not (run / "metrics.json").exists()
    fault.handled("refused with the differing setting named; no metrics written")


@pytest.mark.parametrize("damage", ["truncated metadata JSON", "labels out of range", "20x28 images under the 28 name",
                                    "weights that do not fit the settings"])
def test_damaged_pipeline_files_are_one_line_not_a_traceback(fault, prepared, in_tmp, damage):
    fault.describe(f"files: {damage}")
    cfg, cfg_file = prepared
    data, meta = PROCESSED("organamnist", 28), META("organamnist", 28)
    args = ["train", *TRAIN_ARGS]
    if damage == "truncated metadata JSON":
        meta.write_text(meta.read_text()[:40])
        needle = "is not valid JSON"
    elif damage in ("labels out of range", "20x28 images under the 28 name"):
        arrays = load_npz(data)
        if damage == "labels out of range":
            arrays["train_labels"][0] = 11
            needle = "is outside 0..10"
        else:
            arrays["train_images"] = arrays["train_images"][:, :, :20, :]
            needle = "(1, 20, 28), but"
        write_npz(data, **arrays)
    else:
        train_one_run(cfg, "organamnist", 28, "s4d", 0, progress=False)
        run = RUN("organamnist", 28, "s4d", 0)
        best = load_torch(run / "best.pt")
        best["model"] = {k: v[..., :1] if v.ndim else v for k, v in best["model"].items()}
        save_torch(run / "best.pt", best)
        args = ["evaluate", *TRAIN_ARGS[:-1]]
        needle = "do not fit the model"
    r = run_ssmvit(*args, "--config", cfg_file, cwd=in_tmp)
    assert r.returncode == 2, r.stderr[-2000:]
    line = one_error_line(r.stderr)
    assert needle in line, line
    assert "metrics.json" not in [p.name for p in final_files(RUN("organamnist", 28, "s4d", 0))]
    fault.handled("exit 2, one line naming the file and the fix")


def test_single_stage_commands_use_the_study_folder(fault, tiny_cfg, in_tmp):
    fault.describe("stages: single-stage defaults follow the config's outdir")
    cfg = copy.deepcopy(tiny_cfg)
    cfg["outdir"] = "elsewhere"
    cfg_file = _text_file(in_tmp / "study.yaml", yaml.safe_dump(cfg))
    for args in (["download", "--dataset", "organamnist", "--res", "28"],
                 ["preprocess", "--dataset", "organamnist", "--res", "28"],
                 ["train", *TRAIN_ARGS, "--data", "elsewhere/data/processed/organamnist_28.npz",
                  "--out-dir", "elsewhere/results/runs/x"]):
        r = run_ssmvit(*args, "--config", cfg_file, cwd=in_tmp)
        assert r.returncode == 0, r.stderr[-2000:]
    assert (in_tmp / "elsewhere/data/raw/organamnist_for_28.npz").exists()  # preprocess found the raw file there
    assert (in_tmp / "elsewhere/results/runs/x/train_summary.json").exists()  # train found the metadata beside --data
    assert not (in_tmp / "data").exists()
    fault.handled("download, preprocess and train read and wrote inside outdir")


def test_set_replaces_a_mapping(fault, in_tmp):
    from ssmvit.config import load

    fault.describe("config: --set on a mapping replaces it (data.upsample_from={})")
    study = REPO / "config/smoke-synthetic.yaml"
    assert load([study])["data"]["upsample_from"] == {64: 28}
    assert load([study], ["data.upsample_from={}"])["data"]["upsample_from"] == {}
    assert load([study], ["data.upsample_from={128: 28}"])["data"]["upsample_from"] == {128: 28}
    fault.handled("emptied and replaced, not merged")


def test_an_undefined_auc_is_written_as_json_null(fault, in_tmp):
    fault.describe("results: NaN (an undefined AUC) in a JSON result")
    write_json(in_tmp / "m.json", {"auc": float("nan"), "acc": 0.5, "per_class": [1.0, float("inf")]})
    assert json.loads((in_tmp / "m.json").read_text()) == {"auc": None, "acc": 0.5, "per_class": [1.0, None]}
    fault.handled("strict JSON: NaN and inf become null")
