#!/usr/bin/env python3
"""Does the CUDA-graphed training step compute what the ungraphed one does? One GPU.

    python3 bench/check_graph_step.py --out bench/results/graph_step_check.csv

For each model and resolution (grayscale OrganAMNIST shapes) it trains three copies of the same
weights on the same batches with the same cosine learning-rate schedule, through
``ssmvit.fastpath.make_train_step`` exactly as ``training.train_one_run`` does: twice without CUDA
graphs (``ref``, ``ref2``: their difference is the run-to-run floor of the GPU kernels) and once
with ``cuda_graphs`` (``graph``). The batches are ``--steps`` full ones with one smaller batch four
before the end (an epoch's last batch, which the graphed step runs ungraphed; replays follow).
Dropout is set to 0 for the check: a captured graph draws its dropout masks from other offsets of
the same generator, so with dropout the runs differ by design, not by error. Written per
configuration: the largest relative loss difference over the steps and the relative L2 of the final
parameters, graph vs ref and ref2 vs ref, and whether graph vs ref stays within ``--tol`` (bf16
operands: 1e-2). Exit status 1 if any configuration fails.
"""

from __future__ import annotations

import argparse
import copy
import csv
import sys
from pathlib import Path

import torch

from ssmvit.config import model_settings, resolve
from ssmvit.fastpath import make_train_step, resolve_fast_path
from ssmvit.models import INPUT_LAYOUT, build_model
from ssmvit.training import DeviceData, build_optimizer, build_scheduler

N_CHANNELS, N_CLASSES = 1, 11  # OrganAMNIST's shapes


def train_copy(model_name, res, settings, state, data, batches, lr, ssm_lr, wd, fast_path, device):
    torch.manual_seed(123)
    model = build_model(model_name, N_CHANNELS, N_CLASSES, res, **settings)
    model.load_state_dict(state, strict=True)
    model.to(device).train()
    fp = resolve_fast_path(fast_path, device)
    optimizer = build_optimizer(model, lr, wd, ssm_lr, fused=fp.fused_optimizer)
    scheduler = build_scheduler(optimizer, len(batches), "cosine")
    step = make_train_step(model, optimizer, fp, device)
    losses = []
    for idx in batches:
        loss, _ = step(*data.batch(idx))
        scheduler.step()
        losses.append(float(loss))
    params = torch.cat([p.detach().float().flatten() for p in model.parameters()])
    note = step.graph_error or step.compile_error
    return torch.tensor(losses, dtype=torch.float64), params, note, step.graph_replays


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["s4d", "vit", "resnet18"])
    p.add_argument("--res", type=int, nargs="+", default=[28, 64])
    p.add_argument("--compile", nargs="+", choices=["off", "on"], default=["off"])
    p.add_argument("--steps", type=int, default=12, help="full batches (the first few run ungraphed, as warm-up)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--tol", type=float, default=1e-2)
    p.add_argument("--out", default="bench/results/graph_step_check.csv")
    p.add_argument("--device", default="cuda", help="cpu: a smoke run of the script (no graphs there)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cfg = resolve({})
    rows, failed = [], False
    for model_name in args.models:
        for res in args.res:
            for comp in args.compile:
                torch._dynamo.reset()
                settings = model_settings(cfg, model_name, N_CHANNELS)
                if "dropout" in settings:
                    settings["dropout"] = 0.0
                torch.manual_seed(0)
                init = build_model(model_name, N_CHANNELS, N_CLASSES, res, **settings)
                state = copy.deepcopy(init.state_dict())
                p_init = torch.cat([q.detach().float().flatten() for q in init.parameters()]).to(device)
                n = args.steps * args.batch + args.batch // 4 + 1
                g = torch.Generator().manual_seed(1)
                images = torch.randint(0, 256, (n, N_CHANNELS, res, res), generator=g, dtype=torch.uint8).numpy()
                labels = torch.randint(0, N_CLASSES, (n,), generator=g).numpy()
                data = DeviceData(images, labels, [0.5], [0.25], INPUT_LAYOUT[model_name], device)
                perm = torch.randperm(n, generator=g).to(device)
                # an epoch's smaller last batch (ungraphed) in the middle: replays after it must go on as before
                full = [perm[i:i + args.batch] for i in range(0, args.steps * args.batch, args.batch)]
                batches = full[:args.steps - 4] + [perm[args.steps * args.batch:]] + full[args.steps - 4:]
                mcfg = cfg["models"][model_name]
                common = (model_name, res, settings, state, data, batches, float(mcfg["lr"]), mcfg.get("ssm_lr"),
                          float(cfg["train"]["weight_decay"]))
                base_fp = {**cfg["train"]["fast_path"], "compile": comp == "on"}
                l_ref, p_ref, _, _ = train_copy(*common, {**base_fp, "cuda_graphs": False}, device)
                torch._dynamo.reset()
                l_ref2, p_ref2, _, _ = train_copy(*common, {**base_fp, "cuda_graphs": False}, device)
                torch._dynamo.reset()
                l_g, p_g, note, replays = train_copy(*common, {**base_fp, "cuda_graphs": True}, device)
                loss_graph = float(((l_g - l_ref).abs() / l_ref.abs()).max())
                loss_floor = float(((l_ref2 - l_ref).abs() / l_ref.abs()).max())
                row = {"model": model_name, "res": res, "compile": comp, "steps": len(batches),
                       "small_batch": len(batches[args.steps - 4]), "loss_first": float(l_ref[0]), "loss_last": float(l_ref[-1]),
                       "loss_max_rel_graph": loss_graph, "loss_max_rel_floor": loss_floor,
                       "params_rel_l2_graph": rel(p_g, p_ref), "params_rel_l2_floor": rel(p_ref2, p_ref),
                       "params_moved_rel_l2": rel(p_ref, p_init),
                       "graph_replays": replays, "graph_note": note or "", "tol": args.tol}
                graphed = replays > 0 or device.type != "cuda"
                row["ok"] = bool(not note and graphed and torch.isfinite(l_g).all() and loss_graph <= args.tol
                                 and row["params_rel_l2_graph"] <= args.tol)
                failed |= not row["ok"]
                rows.append(row)
                print(", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                      flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
