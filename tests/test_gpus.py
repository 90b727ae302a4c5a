import os
import subprocess
import sys
import time

from ssmvit.gpus import claim_gpu

HOLD = ("import os, sys, time; from ssmvit.gpus import claim_gpu; claim_gpu(sys.argv[1]); "
        "print('CVD=' + str(os.environ.get('CUDA_VISIBLE_DEVICES')), flush=True); time.sleep(float(sys.argv[2]))")


def _gpu_of(proc) -> str:
    for line in proc.stdout:
        if line.startswith("CVD="):
            return line.strip()[4:]
    raise AssertionError("no CVD line")


def _start(lock_dir, hold_s, env):
    return subprocess.Popen([sys.executable, "-c", HOLD, str(lock_dir), str(hold_s)], env=env,
                            stdout=subprocess.PIPE, text=True)


def test_concurrent_jobs_get_different_gpus_and_release_them(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["SSMVIT_GPU_COUNT"] = "2"
    a = _start(tmp_path, 5, env)
    first = _gpu_of(a)
    b = _start(tmp_path, 0, env)
    second = _gpu_of(b)
    assert {first, second} == {"0", "1"}
    b.wait()
    a.kill()  # even SIGKILL releases the slot (flock dies with the process)
    a.wait()
    c = _start(tmp_path, 0, env)
    assert _gpu_of(c) == "0"
    c.wait()


def test_jobs_per_gpu_shares_cards(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(SSMVIT_GPU_COUNT="2", SSMVIT_JOBS_PER_GPU="2")
    procs = [_start(tmp_path, 3, env) for _ in range(4)]
    seen = sorted(_gpu_of(p) for p in procs)
    for p in procs:
        p.kill()
        p.wait()
    assert seen == ["0", "0", "1", "1"]


def test_nothing_changes_with_one_gpu_or_a_scheduler_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("SSMVIT_GPU_COUNT", "1")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert claim_gpu(tmp_path) is None and "CUDA_VISIBLE_DEVICES" not in os.environ
    monkeypatch.setenv("SSMVIT_GPU_COUNT", "4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert claim_gpu(tmp_path) is None and os.environ["CUDA_VISIBLE_DEVICES"] == "3"
