"""Small synthetic MedMNIST files in the official npz layout.

For tests and for the smoke pipeline on machines without the real data. The
images are learnable (each class has its own brightness pattern plus noise),
so a short training run shows a falling loss. Their md5 is not medmnist's;
metadata marks the data as not official, and the paper labels it synthetic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .catalog import describe
from .fileio import md5sum, write_npz

DEFAULT_SPLITS = {"train": 256, "val": 64, "test": 128}
CHUNK = 4096


def make_synthetic_medmnist(dataset: str, size: int, dest, splits: dict | None = None,
                            seed: int = 0) -> tuple[Path, str]:
    """Write a synthetic ``dataset`` file of ``size`` x ``size`` images at ``dest``; return (path, md5).

    The bytes depend only on the arguments (``write_npz`` fixes the zip timestamps),
    so the md5 is stable and DVC caches the file like any other.
    """
    desc = describe(dataset)
    c, k = desc["n_channels"], desc["n_classes"]
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / max(1, size - 1)
    arrays = {}
    for split, n in (splits or DEFAULT_SPLITS).items():
        labels = np.arange(n) % k  # every class present in every split
        rng.shuffle(labels)
        img = np.empty((n, size, size) + ((3,) if c == 3 else ()), dtype=np.uint8)
        for i in range(0, n, CHUNK):  # in chunks: official split sizes reach 165k images
            lab = labels[i:i + CHUNK]
            # Class j: a ramp whose angle and level depend on j, plus noise.
            angle = lab[:, None, None] * (np.pi / k)
            ramp = np.cos(angle) * xx[None] + np.sin(angle) * yy[None]
            level = 0.2 + 0.6 * lab[:, None, None] / max(1, k - 1)
            gray = (255 * np.clip(0.5 * ramp + 0.5 * level + 0.08 * rng.standard_normal((len(lab), size, size)), 0, 1)
                    ).astype(np.uint8)
            img[i:i + CHUNK] = np.stack([gray, np.flip(gray, axis=2), 255 - gray], axis=-1) if c == 3 else gray
        arrays[f"{split}_images"] = img
        arrays[f"{split}_labels"] = labels.reshape(-1, 1).astype(np.uint8)
    write_npz(dest, compress=True, **arrays)
    return Path(dest), md5sum(dest)
