"""One GPU per job on a multi-GPU host.

Snakemake's `--resources gpu=N` lets N GPU jobs run at once but does not say
which card each should use. Each stage script calls ``claim_gpu()`` first: it
takes the first free slot (an flock'ed file, released when the process ends,
also on SIGKILL) and sets CUDA_VISIBLE_DEVICES to that slot's card, so each
job sees only its GPU. With SSMVIT_JOBS_PER_GPU=k, k jobs share each card.
Nothing happens when CUDA_VISIBLE_DEVICES is already set (SLURM, the user) or
when the host has fewer than two GPUs.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path

_HELD = []  # open lock files: the claim lasts as long as the process


def count_gpus() -> int:
    """GPUs on this host: $SSMVIT_GPU_COUNT if set, else the lines of `nvidia-smi -L`."""
    if os.environ.get("SSMVIT_GPU_COUNT"):
        return int(os.environ["SSMVIT_GPU_COUNT"])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def claim_gpu(lock_dir=None, poll_s: float = 1.0) -> int | None:
    """Pin this process to one GPU; returns its index, or None if nothing was changed."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return None
    n = count_gpus()
    if n < 2:
        return None
    per_gpu = max(1, int(os.environ.get("SSMVIT_JOBS_PER_GPU", "1")))
    lock_dir = Path(lock_dir or os.environ.get("SSMVIT_GPU_LOCK_DIR", "/tmp/ssmvit-gpu-slots"))
    lock_dir.mkdir(parents=True, exist_ok=True)
    while True:  # more jobs than slots (a scheduler set --resources too high): wait for a slot
        for slot in range(n * per_gpu):
            fh = open(lock_dir / f"slot{slot}.lock", "w")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            _HELD.append(fh)
            gpu = slot % n
            os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
            fh.write(f"{os.getpid()}\n")
            fh.flush()
            print(f"gpu: this job uses GPU {gpu} (slot {slot} of {n * per_gpu})", flush=True)
            return gpu
        time.sleep(poll_s)
