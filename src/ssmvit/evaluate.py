"""Evaluate a trained run on the test split with its best-on-validation checkpoint."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import paths
from .config import model_settings
from .datasets import load_processed, subset_indices
from .errors import UserError
from .fileio import dvclive_log, load_torch, write_csv, write_json, write_npz
from .metrics import classification_metrics
from .models import INPUT_LAYOUT, build_model, load_weights
from .training import DeviceData, predict, resolve_device, where_this_runs


def evaluate_run(cfg: dict, dataset: str, res: int, model_name: str, seed: int,
                 processed_npz=None, processed_meta=None, checkpoint=None, out_dir=None) -> dict:
    """Test metrics of ``checkpoint`` (default: best.pt in ``out_dir``); writes metrics.json,
    test_logits.npz and confusion_matrix.csv into ``out_dir`` (default paths: the pipeline's)."""
    where = {"dataset": dataset, "res": int(res)}
    processed_npz = processed_npz or paths.file(cfg["outdir"], paths.PROCESSED, **where)
    processed_meta = processed_meta or paths.file(cfg["outdir"], paths.PROCESSED_META, **where)
    out_dir = Path(out_dir or paths.file(cfg["outdir"], paths.RUN_DIR, model=model_name, seed=int(seed), **where))
    checkpoint = checkpoint or out_dir / "best.pt"
    device = resolve_device(cfg["train"]["device"])
    started_at = time.time()
    ckpt = load_torch(checkpoint)
    for key in ("model", "model_name", "settings", "n_channels", "n_classes", "image_size"):
        if key not in ckpt:
            raise UserError(f"checkpoint {checkpoint} lacks '{key}'; it was not written by this pipeline's training stage")
    if ckpt["model_name"] != model_name or int(ckpt["image_size"]) != int(res):
        raise UserError(f"checkpoint {checkpoint} is a {ckpt['model_name']} at {ckpt['image_size']}, not {model_name} at {res}")
    arrays, meta = load_processed(processed_npz, processed_meta)
    if int(ckpt["n_classes"]) != int(meta["n_classes"]) or int(ckpt["n_channels"]) != int(meta["n_channels"]):
        raise UserError(f"checkpoint {checkpoint} does not match {processed_npz} (classes/channels differ); retrain")
    expected = model_settings(cfg, model_name, int(meta["n_channels"]))
    if ckpt["settings"] != expected:
        differ = ", ".join(f"{k} {ckpt['settings'].get(k)!r} vs {expected.get(k)!r}"
                           for k in sorted(set(expected) | set(ckpt["settings"])) if ckpt["settings"].get(k) != expected.get(k))
        raise UserError(f"checkpoint {checkpoint} was trained with other models.{model_name} settings than this "
                        f"config's ({differ}); retrain, or evaluate with the config it was trained with")
    idx = subset_indices(len(arrays["test_labels"]), cfg["train"]["max_eval_samples"])
    test = DeviceData(arrays["test_images"][idx], arrays["test_labels"][idx], meta["mean"], meta["std"],
                      INPUT_LAYOUT[model_name], device)
    model = build_model(model_name, ckpt["n_channels"], ckpt["n_classes"], int(res), **ckpt["settings"]).to(device)
    load_weights(model, ckpt["model"], checkpoint)
    print(f"evaluating {checkpoint} (epoch {ckpt.get('epoch', '?')}) on {len(test)} test images on {device}", flush=True)
    logits, test_loss = predict(model, test, int(cfg["train"]["eval_batch_size"]))
    labels = test.labels.cpu().numpy()
    m = classification_metrics(labels, logits, int(meta["n_classes"]), meta.get("task", "multi-class"))
    result = {"dataset": dataset, "resolution": int(res), "model": model_name, "seed": int(seed),
              "test_loss": test_loss, "checkpoint_epoch": int(ckpt.get("epoch", 0)),
              "upsampled": bool(meta.get("upsampled")), "source_size": meta.get("source_size"),
              "official_data": bool(meta.get("official_md5", True)), "class_names": meta["class_names"],
              "device": str(device), "where": where_this_runs(device), "started_at": started_at, "ended_at": time.time(),
              **m}
    cm = pd.DataFrame(m["confusion_matrix"], columns=meta["class_names"])
    cm.insert(0, "true", meta["class_names"])
    # compressed: the reference study commits these files, and deflate takes about 30% off fp32 logits
    write_npz(out_dir / "test_logits.npz", compress=True, logits=logits.astype(np.float32),
              labels=labels.astype(np.int64), indices=idx.astype(np.int64), dataset=np.array(dataset),
              resolution=np.array(int(res)), model=np.array(model_name),
              seed=np.array(int(seed)))  # the run's identity travels with its logits
    write_csv(out_dir / "confusion_matrix.csv", cm)
    write_json(out_dir / "metrics.json", result)
    write_live_test(out_dir / "live" / "test", result)
    return result


def write_live_test(folder: Path, result: dict) -> None:
    """The run's test metrics as a dvclive summary (beside the training log in live/train)."""
    with dvclive_log(folder) as live:
        for name in ("acc", "auc", "macro_f1", "test_loss"):
            value = result.get(name)
            if value is not None and value == value:  # an undefined AUC (NaN) is left out
                live.log_metric(f"test/{name.removeprefix('test_')}", float(value), plot=False)
