"""The pipeline's training jobs on 1 GPU, on 1 GPU shared by 2 jobs, and on 2 GPUs.

Runs the training and evaluation stages of one study config through
Snakemake (`--until evaluate`) once per mode, each in its own output folder,
and records the wall time of each and, per run, which card trained it (from
train_summary.json: CUDA_VISIBLE_DEVICES, the card's UUID, start and end).
Optionally also the same study with the fast path off (plain fp32 step), for
the accuracy check of the fast path. Needs a host with >= 2 GPUs for mode
`2gpu`, the study's data in $MEDMNIST_ROOT.

  python3 bench/pipeline_gpus.py --config config/fastpath-check.yaml --out build/pipeline_gpus \
      --modes 2gpu fp32-2gpu 1gpu 1gpu-2jobs

Writes OUT/runs.csv (one row per mode x run) and OUT/modes.csv (wall time
per mode), and prints both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from ssmvit.fastpath import default_fast_path

ROOT = Path(__file__).resolve().parents[1]

# Every on/off part of the fast path (a new part joins both without an edit here).
FP32 = {k: False for k, v in default_fast_path().items() if isinstance(v, bool)}
COMPILED = {k: True for k in FP32}  # whole-model compile with CUDA graphs
# mode -> (CUDA_VISIBLE_DEVICES or None to leave the host's cards visible, --resources gpu=N,
#          train.fast_path replacing the config's, or None to keep it)
MODES = {
    "2gpu": (None, 2, None),             # two jobs at once, each pinned to its own card (ssmvit.gpus)
    "1gpu": ("0", 1, None),              # one job at a time on card 0
    "1gpu-2jobs": ("0", 2, None),        # two jobs at once, both on card 0
    "fp32-1gpu": ("0", 1, FP32),          # as 1gpu, with the plain fp32 step
    "fp32-2gpu": (None, 2, FP32),        # as 2gpu, with the plain fp32 step (no autocast, no fused AdamW, FFT S4D)
    "compiled-1gpu": ("0", 1, COMPILED),  # one job at a time, torch.compile + CUDA graphs
}


def run_mode(mode: str, cfg: dict, out: Path, cores: int) -> dict:
    visible, gpus, fast_path = MODES[mode]
    cfg = json.loads(json.dumps(cfg))
    cfg["outdir"] = str((out / mode).relative_to(ROOT))  # the config wants a path relative to the repository
    if fast_path is not None:
        cfg["train"]["fast_path"] = dict(fast_path)
    cfg_path = out / f"{mode}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = dict(os.environ, SSMVIT_GPU_LOCK_DIR=str(out / f"{mode}.gpu-slots"))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--resources", f"gpu={gpus}", f"gpu_slots={gpus}",
           "--configfile", str(cfg_path), "--until", "evaluate", "--scheduler", "greedy", "--quiet", "rules"]
    print(f"# {mode}: {' '.join(cmd)}", flush=True)
    t0 = time.time()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if r.returncode != 0:
        print(r.stdout[-4000:], r.stderr[-4000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"{mode}: snakemake failed ({r.returncode})")
    print(f"# {mode}: {wall:.1f} s", flush=True)
    rows = []
    for summary in sorted((out / mode / "results" / "runs").glob("*/train_summary.json")):
        s = json.loads(summary.read_text())
        metrics = json.loads((summary.parent / "metrics.json").read_text())
        log = out / mode / "logs" / "train" / f"{summary.parent.name}.log"
        claim = next((ln.strip() for ln in log.read_text().splitlines() if ln.startswith("gpu: ")), "")
        rows.append({"mode": mode, "run": summary.parent.name, "model": s["model"], "seed": s["seed"],
                     "cuda_visible_devices": s["where"].get("cuda_visible_devices"),
                     "gpu_uuid": s["where"].get("gpu_uuid"), "gpu_claim_log": claim,
                     "started_utc": s["started_utc"], "ended_utc": s["ended_utc"],
                     "train_seconds": round(s["train_seconds_total"], 1),
                     "epoch_seconds": " ".join(f"{v:.1f}" for v in pd.read_csv(summary.parent / "history.csv")["seconds"]),
                     "fast_path": json.dumps(s["fast_path"]), "fast_path_note": s.get("fast_path_note"),
                     "test_acc": metrics["acc"], "test_auc": metrics["auc"], "device_name": s["device_name"]})
    return {"mode": mode, "gpus_visible": visible or "all", "resources_gpu": gpus,
            "fast_path": json.dumps(cfg["train"].get("fast_path", "config default")),
            "wall_s": round(wall, 1), "runs": len(rows)}, rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="config/fastpath-check.yaml")
    p.add_argument("--out", default="build/pipeline_gpus")
    p.add_argument("--modes", nargs="+", default=["2gpu", "1gpu"], choices=list(MODES))
    p.add_argument("--cores", type=int, default=os.cpu_count() or 4)
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="replace the config's study.seeds")
    args = p.parse_args(argv)
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((ROOT / args.config).read_text())
    if args.seeds:
        cfg["study"]["seeds"] = args.seeds
    modes, runs = [], []
    for mode in args.modes:
        m, rows = run_mode(mode, cfg, out, args.cores)
        modes.append(m)
        runs.extend(rows)
        # Written after every mode: a later mode that fails or times out keeps the earlier ones.
        pd.DataFrame(modes).to_csv(out / "modes.csv", index=False)
        pd.DataFrame(runs).to_csv(out / "runs.csv", index=False)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 60):
        print(pd.DataFrame(modes).to_string(index=False))
        print(pd.DataFrame(runs).drop(columns=["fast_path", "gpu_uuid"]).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
