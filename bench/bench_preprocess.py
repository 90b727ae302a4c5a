"""The preprocess stage's per-channel mean and std: ``datasets.channel_mean_std`` against the float64 copy it replaced.

  python3 bench/bench_preprocess.py                 # PathMNIST's training split at 64x64 (89,996 x 3 x 64 x 64)
  python3 bench/bench_preprocess.py --shape 34561 1 64 64

Random uint8 images of the given shape; each way timed once (seconds) with its peak of newly allocated memory
(tracemalloc, which numpy reports to), the ratios, the largest difference of the results and whether they agree as
the float32 constants that training normalises with. CPU only; no files read or written.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from ssmvit.datasets import channel_mean_std  # noqa: E402


def float64_copy(images: np.ndarray) -> tuple[list[float], list[float]]:
    """The baseline: the whole split as float64 on the 0..1 scale, then numpy's mean and std."""
    x = images.astype(np.float64) / 255.0
    return list(x.mean(axis=(0, 2, 3))), list(x.std(axis=(0, 2, 3)))


def measure(fn, images) -> tuple[tuple, float, float]:
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn(images)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    return out, seconds, peak


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", type=int, nargs=4, default=[89996, 3, 64, 64], metavar=("N", "C", "H", "W"))
    args = p.parse_args(argv)
    images = np.random.default_rng(0).integers(0, 256, size=tuple(args.shape), dtype=np.uint8)
    (m0, s0), t0, mem0 = measure(float64_copy, images)
    (m1, s1), t1, mem1 = measure(channel_mean_std, images)
    diff = max(np.abs(np.subtract(m0, m1)).max(), np.abs(np.subtract(s0, s1)).max())
    same32 = bool((np.float32(m0) == np.float32(m1)).all() and (np.float32(s0) == np.float32(s1)).all())
    print(f"images {tuple(args.shape)} uint8, {images.nbytes / 2 ** 20:.0f} MiB")
    print(f"float64 copy:     {t0:7.2f} s, peak {mem0:8.0f} MiB allocated")
    print(f"channel_mean_std: {t1:7.2f} s, peak {mem1:8.0f} MiB allocated")
    print(f"speed-up {t0 / t1:.1f}x, memory {mem0 / max(mem1, 1e-9):.1f}x less; largest difference {diff:.1e}; "
          f"float32 constants {'identical' if same32 else 'DIFFERENT'}")
    return 0 if same32 else 1


if __name__ == "__main__":
    sys.exit(main())
