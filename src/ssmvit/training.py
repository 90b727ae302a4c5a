"""One training run: one model on one dataset/resolution with one seed.

The dataset lives in memory as uint8 tensors (on the training device) and is
normalised inside the step; no DataLoader, no per-sample Python transforms.
A run is deterministic given its seed, and resumable: after every epoch the
full state (weights, optimiser, scheduler, RNG, history) is written to
``last.pt``; a rerun picks it up and ends with the same result as an
uninterrupted run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import paths, tables
from .config import model_settings
from .datasets import load_processed, raster_scan, subset_indices
from .errors import UserError
from .fastpath import FastPath, make_train_step, resolve_fast_path
from .fileio import dvclive_log, load_torch, md5sum, save_torch, write_csv, write_json
from .models import INPUT_LAYOUT, build_model, count_params, load_weights

# The run's identity leads every row, so a history file says which run it belongs to.
# How often (in steps) the loss is checked for NaN/inf: each check syncs the GPU.
FINITE_CHECK_EVERY = 50
# On a CPU, the pace of the first PACE_STEPS steps says how long an epoch takes; over SLOW_EPOCH_S, a warning.
PACE_STEPS, SLOW_EPOCH_S = 10, 600.0


class NonFiniteLoss(UserError):
    pass


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' was requested but CUDA is not available; use train.device=auto or cpu")
    return dev


class DeviceData:
    """One split as uint8 images and int64 labels on the device, normalised per batch."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean, std, layout: str, device):
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(device)
        self.labels = torch.from_numpy(np.ascontiguousarray(labels)).to(device)
        c = self.images.shape[1]
        self.scale = (1.0 / (255.0 * torch.tensor(std, dtype=torch.float32, device=device))).view(1, c, 1, 1)
        self.shift = (torch.tensor(mean, dtype=torch.float32, device=device)
                      / torch.tensor(std, dtype=torch.float32, device=device)).view(1, c, 1, 1)
        self.layout = layout

    def __len__(self) -> int:
        return self.labels.shape[0]

    def batch(self, idx) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[idx].float() * self.scale - self.shift  # (x/255 - mean) / std
        if self.layout == "sequence":
            x = raster_scan(x)
        return x, self.labels[idx]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, ssm_lr: float | None, fused: bool = False):
    """AdamW; parameters marked ``_ssm_param`` (S4D's step, A, C) get their own lr and no weight decay.

    ``fused=True`` (CUDA parameters only) runs the update as one fused kernel (``train.fast_path.fused_optimizer``).
    """
    ssm = [p for p in model.parameters() if getattr(p, "_ssm_param", False)]
    rest = [p for p in model.parameters() if not getattr(p, "_ssm_param", False)]
    groups = [{"params": rest, "lr": lr, "weight_decay": weight_decay}]
    if ssm:
        groups.append({"params": ssm, "lr": min(lr, ssm_lr if ssm_lr is not None else lr), "weight_decay": 0.0})
    if fused:
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, fused=True)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


def build_scheduler(optimizer, total_steps: int, kind: str):
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def run_fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def use_study_compile_cache(cfg: dict) -> None:
    """One inductor cache for all jobs of a study (also across SLURM nodes on a shared filesystem): a shape
    compiled once loads from it in seconds (bench/README.md has the seconds). The user's setting wins."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(paths.under(cfg["outdir"], paths.COMPILE_CACHE)).resolve()))


@torch.no_grad()
def predict(model: nn.Module, data: DeviceData, batch_size: int,
            fast_path: FastPath | None = None) -> tuple[np.ndarray, float]:
    """(logits as float32 numpy, mean cross-entropy) over the whole split.

    ``fast_path``: the training run's active fast path; its bf16 autocast (if
    active) applies to the forward pass. None: fp32, as ``evaluate`` uses it.
    """
    model.eval()
    out, loss_sum = [], 0.0
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)), device=data.labels.device)
        x, y = data.batch(idx)
        with fast_path.autocast() if fast_path is not None else contextlib.nullcontext():
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        out.append(logits.cpu())
    return torch.cat(out).numpy(), loss_sum / max(1, len(data))


def train_one_run(cfg: dict, dataset: str, res: int, model_name: str, seed: int,
                  processed_npz=None, processed_meta=None, out_dir=None,
                  stop_after_epochs: int | None = None, progress: bool = True) -> dict:
    """Train, keeping best-on-validation and last checkpoints and a per-epoch history.

    ``stop_after_epochs`` ends the call early (as an interruption would) after
    that many epochs in total; a later call resumes from ``last.pt``.
    """
    from tqdm import tqdm

    where = {"dataset": dataset, "res": int(res)}
    processed_npz = processed_npz or paths.file(cfg["outdir"], paths.PROCESSED, **where)
    processed_meta = processed_meta or paths.file(cfg["outdir"], paths.PROCESSED_META, **where)
    out_dir = Path(out_dir or paths.file(cfg["outdir"], paths.RUN_DIR, model=model_name, seed=int(seed), **where))
    tcfg = cfg["train"]
    if tcfg.get("threads"):
        torch.set_num_threads(int(tcfg["threads"]))
    device = resolve_device(tcfg["device"])
    arrays, meta = load_processed(processed_npz, processed_meta)
    if int(meta["resolution"]) != int(res) or meta["dataset"] != dataset:
        raise UserError(f"{processed_npz} holds {meta['dataset']} at {meta['resolution']}, not {dataset} at {res}; run preprocess again")

    settings = model_settings(cfg, model_name, meta["n_channels"])
    lr = float(cfg["models"][model_name]["lr"])
    ssm_lr = cfg["models"][model_name].get("ssm_lr")
    layout = INPUT_LAYOUT[model_name]
    tr_idx = subset_indices(len(arrays["train_labels"]), tcfg["max_train_samples"])
    va_idx = subset_indices(len(arrays["val_labels"]), tcfg["max_eval_samples"])
    train = DeviceData(arrays["train_images"][tr_idx], arrays["train_labels"][tr_idx], meta["mean"], meta["std"], layout, device)
    val = DeviceData(arrays["val_images"][va_idx], arrays["val_labels"][va_idx], meta["mean"], meta["std"], layout, device)
    del arrays

    fingerprint_src = {"dataset": dataset, "res": int(res), "model": model_name, "seed": int(seed),
                       "settings": settings, "lr": lr, "ssm_lr": ssm_lr, "train": {k: tcfg[k] for k in (
                           "epochs", "batch_size", "weight_decay", "scheduler", "max_train_samples", "max_eval_samples")},
                       "source_md5": meta["source_md5"],
                       # the preprocessed file itself: a change of preprocessing must not resume old state
                       "data_md5": md5sum(processed_npz)}
    # The fast path changes the arithmetic (bf16, fused update): a run resumes only under the same
    # active parts. Nothing is active on CPU, so CPU fingerprints are those of plain runs.
    fast_path = resolve_fast_path(tcfg.get("fast_path"), device)
    if fast_path.any:
        fingerprint_src["fast_path"] = fast_path.as_dict()
    fingerprint = run_fingerprint(fingerprint_src)

    torch.manual_seed(seed)
    model = build_model(model_name, meta["n_channels"], meta["n_classes"], int(res), **settings).to(device)
    batch_size = int(tcfg["batch_size"])
    epochs = int(tcfg["epochs"])
    steps_per_epoch = math.ceil(len(train) / batch_size)
    optimizer = build_optimizer(model, lr, float(tcfg["weight_decay"]), ssm_lr, fused=fast_path.fused_optimizer)
    scheduler = build_scheduler(optimizer, steps_per_epoch * epochs, tcfg["scheduler"])

    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    history: list[dict] = []
    best_val, start_epoch, best = -1.0, 0, None
    if last_path.exists():
        state = load_torch(last_path)
        if state.get("fingerprint") != fingerprint:
            print(f"note: {last_path} was written with other settings or data; starting this run from scratch")
        elif state["epoch"] >= epochs:
            # A finished run is only asked for again when its inputs changed (Snakemake/DVC
            # removed its outputs): retrain rather than hand back the old result.
            print(f"note: {last_path} holds a finished run; training again from scratch")
        else:
            load_weights(model, state["model"], last_path)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            _set_rng_state(state["rng"], device)
            history, best_val, start_epoch = state["history"], state["best_val_acc"], state["epoch"]
            best = state.get("best")
            print(f"resuming {out_dir} after epoch {start_epoch}")
    if fast_path.compile:
        use_study_compile_cache(cfg)
    train_step = make_train_step(model, optimizer, fast_path, device)  # forward, loss, backward, update
    fast_path = train_step.fast_path

    t_run = time.perf_counter()
    started_utc, started_at = _utc_now(), time.time()
    for epoch in range(start_epoch, epochs):
        if stop_after_epochs is not None and epoch >= stop_after_epochs:
            break
        model.train()
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(seed * 100003 + epoch)  # shuffle depends on (seed, epoch) only
        perm = torch.randperm(len(train), generator=gen).to(device)
        losses = torch.zeros(steps_per_epoch, device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        bar = tqdm(range(steps_per_epoch), desc=f"{model_name} {dataset}-{res} s{seed} epoch {epoch + 1}/{epochs}",
                   disable=not progress, leave=False, mininterval=2.0)
        for step in bar:
            idx = perm[step * batch_size:(step + 1) * batch_size]
            x, y = train.batch(idx)
            loss, logits = train_step(x, y)
            scheduler.step()
            losses[step] = loss * y.shape[0]
            correct += (logits.argmax(1) == y).sum()
            if (step + 1) % FINITE_CHECK_EVERY == 0 or step + 1 == steps_per_epoch:
                _check_finite(losses[: step + 1], epoch, out_dir)
            if step + 1 == PACE_STEPS and epoch == start_epoch and device.type == "cpu" and steps_per_epoch > 2 * PACE_STEPS:
                per_epoch = (time.perf_counter() - t0) / PACE_STEPS * steps_per_epoch
                if per_epoch > SLOW_EPOCH_S:  # say so up front, not after an hour
                    print(f"warning: training on the CPU: about {_duration(per_epoch)} per epoch, "
                          f"{_duration(per_epoch * (epochs - epoch))} for the {epochs - epoch} epoch(s) left, at the pace "
                          f"of the first {PACE_STEPS} steps; these model sizes are meant for a GPU "
                          "(config/smoke.yaml runs small ones)", flush=True)
        train_loss = float(losses.sum().item() / len(train))
        train_acc = float(correct.item() / len(train))
        val_logits, val_loss = predict(model, val, int(tcfg["eval_batch_size"]), fast_path)
        val_acc = float((val_logits.argmax(1) == val.labels.cpu().numpy()).mean())
        row = {"dataset": dataset, "resolution": int(res), "model": model_name, "seed": int(seed),
               "epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
               "val_acc": val_acc, "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
        history.append(row)
        done_now = [r["seconds"] for r in history[start_epoch:]]
        left = (epochs - epoch - 1) * sum(done_now) / len(done_now)
        print(f"{model_name} {dataset}-{res} s{seed} epoch {epoch + 1} of {epochs}: train loss {train_loss:.4f} "
              f"acc {train_acc:.4f} | val loss {val_loss:.4f} acc {val_acc:.4f} | {row['seconds']:.1f}s"
              + (f" | about {_duration(left)} left" if left > 0 else ""), flush=True)
        if val_acc > best_val:
            best_val = val_acc
            best = {"model": _cpu_state(model), "model_name": model_name, "settings": settings,
                    "n_channels": meta["n_channels"], "n_classes": meta["n_classes"], "image_size": int(res),
                    "epoch": epoch + 1, "val_acc": val_acc, "fingerprint": fingerprint}
            save_torch(best_path, best)
        # last.pt (written after best.pt) carries the best checkpoint too: Snakemake and DVC delete a
        # job's declared outputs (best.pt) before rerunning it, and a resumed run must not lose it.
        save_torch(last_path, {"model": _cpu_state(model), "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict(), "rng": _rng_state(device),
                               "epoch": epoch + 1, "history": history, "best_val_acc": best_val,
                               "best": best, "fingerprint": fingerprint})
        write_csv(out_dir / "history.csv", pd.DataFrame(history, columns=tables.HISTORIES))  # a killed run keeps its curve
        write_live(out_dir / "live" / "train", history)

    finished = len(history) >= epochs
    if best is not None and not best_path.exists():
        save_torch(best_path, best)
    summary = {"dataset": dataset, "resolution": int(res), "model": model_name, "seed": int(seed),
               "params": count_params(model), "settings": settings, "lr": lr, "ssm_lr": ssm_lr,
               "epochs_done": len(history), "epochs": epochs, "finished": finished,
               "best_epoch": int(max(history, key=lambda r: r["val_acc"])["epoch"]) if history else None,
               "best_val_acc": best_val, "train_samples": len(train), "val_samples": len(val),
               "train_seconds_this_call": time.perf_counter() - t_run,
               "train_seconds_total": float(sum(r["seconds"] for r in history)),
               "device": str(device), "device_name": _device_name(device), "torch": torch.__version__,
               "fast_path": fast_path.as_dict(), "fast_path_requested": tcfg.get("fast_path"),
               "graph_replays": train_step.graph_replays,
               "fast_path_note": "; ".join(n for n in (train_step.compile_error, train_step.graph_error) if n) or None,
               "python": platform.python_version(), "fingerprint": fingerprint,
               "upsampled": bool(meta.get("upsampled")), "source_size": meta.get("source_size"),
               "official_data": bool(meta.get("official_md5", True)),
               # Where and when this call ran: on a cluster or a multi-GPU host this
               # says which job and which card trained the model.
               "where": where_this_runs(device), "started_utc": started_utc, "ended_utc": _utc_now(),
               "started_at": started_at, "ended_at": time.time()}
    if finished:
        write_json(out_dir / "train_summary.json", summary)
    return summary


def write_live(folder: Path, history: list[dict]) -> None:
    """The run's curves as a dvclive log (step = epoch), rewritten whole from the history after every epoch,
    so that a resumed run's log is the same as an uninterrupted one's."""
    with dvclive_log(folder) as live:
        for row in history:
            live.step = int(row["epoch"])
            for name in ("train_loss", "train_acc", "val_loss", "val_acc"):
                live.log_metric(name.replace("_", "/", 1), float(row[name]))
            live.log_metric("lr", float(row["lr"]))
            live.log_metric("epoch_seconds", float(row["seconds"]))
            live.next_step()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _check_finite(losses: torch.Tensor, epoch: int, out_dir: Path) -> None:
    bad = ~torch.isfinite(losses)
    if bool(bad.any()):
        step = int(bad.nonzero()[0].item())
        raise NonFiniteLoss(f"training {out_dir} stopped: loss is {losses[step].item()} at epoch {epoch + 1}, "
                            f"step {step + 1}; lower the learning rate or check the input data")


def _cpu_state(model: nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def where_this_runs(device: torch.device) -> dict:
    """Host, SLURM job, GPU (its UUID, whatever CUDA_VISIBLE_DEVICES numbers it) and CPU threads of this process
    (a CPU run's speed depends on them; Snakemake sets them from the job's threads through OMP_NUM_THREADS)."""
    where = {"host": socket.gethostname(), "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
             "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        where["gpu_uuid"] = str(torch.cuda.get_device_properties(device).uuid)
    return where


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
