"""What MedMNIST offers: dataset names, shapes, class names, file names, URLs and md5 sums.

Everything comes from ``medmnist.INFO`` (the medmnist package's own table);
nothing about a dataset is typed in here. The pipeline trains single-label
classifiers, so it takes every 2D dataset whose task is single-label
(multi-class, binary-class, and ordinal-regression, which MedMNIST v2
benchmarks as classification too) at every size INFO lists a file for.
"""

from __future__ import annotations

import difflib

from .errors import UserError

SIZES = (28, 64, 128, 224)  # the MedMNIST+ image sizes
SINGLE_LABEL_TASKS = ("multi-class", "binary-class", "ordinal-regression")


def _info() -> dict:
    from medmnist.info import INFO  # the table only: no torchvision involved

    return INFO


def _is_2d(flag: str) -> bool:
    return not flag.endswith("3d")


def known_datasets() -> tuple[str, ...]:
    """The 2D single-label datasets, in medmnist.INFO's order."""
    return tuple(f for f, i in _info().items() if _is_2d(f) and i["task"] in SINGLE_LABEL_TASKS)


def check_choice(kind: str, value, choices) -> None:
    """One line naming the unknown value and its nearest valid names, or else the valid choices."""
    if value in choices:
        return
    if isinstance(value, str):
        scores = {c: difflib.SequenceMatcher(None, value, str(c)).ratio() for c in choices}
        best = max(scores.values(), default=0.0)
        near = [c for c in choices if scores[c] == best and best >= 0.75]  # ties in the registry's order
        if near:
            also = f" (also close: {', '.join(near[1:])})" if len(near) > 1 else ""
            raise UserError(f"unknown {kind} {value!r}; did you mean {near[0]!r}?{also}")
    raise UserError(f"unknown {kind} {value!r}; valid choices: {', '.join(map(str, choices))}")


def check_dataset(name: str) -> None:
    info = _info()
    if name in info and not _is_2d(name):
        raise UserError(f"{name} is a 3D dataset; this pipeline reads 2D images, choose one of {', '.join(known_datasets())}")
    if name in info and info[name]["task"] not in SINGLE_LABEL_TASKS:
        raise UserError(f"{name} is {info[name]['task']} (several labels per image); this pipeline trains "
                        "single-label classifiers with cross-entropy, so choose another dataset")
    check_choice("dataset", name, known_datasets())


def describe(dataset: str) -> dict:
    """Shapes and names that models, preprocessing and profiling need (no images)."""
    check_dataset(dataset)
    info = _info()[dataset]
    labels = info["label"]
    return {
        "dataset": dataset,
        "title": info["python_class"],
        "n_channels": int(info["n_channels"]),
        "n_classes": len(labels),
        "class_names": [labels[str(i)] for i in range(len(labels))],
        "task": info["task"],
        "n_samples": dict(info["n_samples"]),
        "source": _first_sentence(info.get("description", "")),
    }


def dataset_label(name: str) -> str:
    """MedMNIST's own spelling (medmnist.INFO's class name: OrganAMNIST), else the name as given."""
    try:
        return describe(str(name))["title"]
    except Exception:  # noqa: BLE001  a name outside the catalogue (a test's) is shown as it is
        return str(name)


def _first_sentence(text: str) -> str:
    """The first sentence of medmnist.INFO's description: where the images come from (modality, source data)."""
    head, dot, _ = text.strip().partition(". ")
    return (head + ".") if dot else head


def official_name(dataset: str, size: int) -> str:
    """The file name medmnist uses: ``organamnist.npz`` for 28, ``organamnist_64.npz`` otherwise."""
    return f"{dataset}.npz" if int(size) == 28 else f"{dataset}_{int(size)}.npz"


def official_url_md5(dataset: str, size: int) -> tuple[str, str]:
    check_dataset(dataset)
    check_choice("source size", int(size), SIZES)
    info = _info()[dataset]
    suffix = "" if int(size) == 28 else f"_{int(size)}"
    if f"url{suffix}" not in info:
        raise UserError(f"medmnist lists no {size}x{size} file for {dataset}; choose a resolution it offers")
    return info[f"url{suffix}"], info[f"MD5{suffix}"]
