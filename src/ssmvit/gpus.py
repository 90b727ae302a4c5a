"""GPU slots: how many GPU jobs run at once, and which card each one uses.

Training and evaluation at batch 64 leave a large card mostly idle (bench/README.md has the
measurements), so by default several GPU jobs share each card: ``jobs_per_gpu()`` allows
MAX_JOBS_PER_GPU per card, fewer where the card's free memory holds fewer JOB_MEMORY_MIB budgets,
and SSMVIT_JOBS_PER_GPU=k overrides it. The default profile gives Snakemake ``gpu_slots()``
slots (cards x jobs per card); train, evaluate and compile take one slot each, profile takes EXCLUSIVE
slots and threads, which Snakemake caps at all there are, so a profile never measures a card (or
a CPU) another job is using. Without a GPU the GPU rules run on the CPU, where cores are what they
share: ``gpu_slots()`` is then the core count, and each job's threads (Snakemake sets OMP_NUM_THREADS,
and so torch's threads, from them) decide how many run at once.

On a host with several GPUs each GPU job calls ``claim_gpu()`` first: it takes the first free
slot (an flock'ed file, released when the process ends, also on SIGKILL) and sets
CUDA_VISIBLE_DEVICES to that slot's card, so each job sees only its GPU. Nothing happens when
CUDA_VISIBLE_DEVICES is already set (SLURM, the user) or when the host has fewer than two GPUs.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path

_HELD = []  # open lock files: the claim lasts as long as the process
MAX_JOBS_PER_GPU = 4
JOB_MEMORY_MIB = 12 * 1024  # what one job at the study's sizes may take (their measured peaks are below it)
EXCLUSIVE = 1000  # slots (and threads) a job asks for to have every card (and core) to itself


def _nvidia_smi(*query: str) -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        return subprocess.run(["nvidia-smi", *query], capture_output=True, text=True, timeout=30).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return []


def free_memory_mib() -> list[int]:
    """Free memory of each card ($SSMVIT_GPU_FREE_MIB, comma-separated, if set)."""
    if os.environ.get("SSMVIT_GPU_FREE_MIB"):
        return [int(v) for v in os.environ["SSMVIT_GPU_FREE_MIB"].split(",")]
    out = _nvidia_smi("--query-gpu=memory.free", "--format=csv,noheader,nounits")
    return [int(line.strip()) for line in out if line.strip().isdigit()]


def jobs_per_gpu() -> int:
    """GPU jobs per card: $SSMVIT_JOBS_PER_GPU, else as many JOB_MEMORY_MIB budgets as the fullest card holds,
    at most MAX_JOBS_PER_GPU (1 without a GPU)."""
    if os.environ.get("SSMVIT_JOBS_PER_GPU"):
        return max(1, int(os.environ["SSMVIT_JOBS_PER_GPU"]))
    free = free_memory_mib()
    return max(1, min(MAX_JOBS_PER_GPU, min(free) // JOB_MEMORY_MIB)) if free else 1


def gpu_slots() -> int:
    """Snakemake's `gpu_slots` resource for this host: cards x jobs per card; without a GPU, the cores (the GPU
    rules then run on the CPU and --cores limits them)."""
    if count_gpus() == 0:
        return os.cpu_count() or 1
    return count_gpus() * jobs_per_gpu()


def count_gpus() -> int:
    """GPUs on this host: $SSMVIT_GPU_COUNT if set, else the lines of `nvidia-smi -L`."""
    if os.environ.get("SSMVIT_GPU_COUNT"):
        return int(os.environ["SSMVIT_GPU_COUNT"])
    return sum(1 for line in _nvidia_smi("-L") if line.startswith("GPU "))


def claim_gpu(lock_dir=None, poll_s: float = 1.0) -> int | None:
    """Pin this process to one GPU; returns its index, or None if nothing was changed."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return None
    n = count_gpus()
    if n < 2:
        return None
    per_gpu = jobs_per_gpu()
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
