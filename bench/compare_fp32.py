"""Issue 17 item 6: does the fast path compute what the plain fp32 step computes? (after bench/fp32_check.sh)

  python3 bench/compare_fp32.py --check-dir fp32-check --runs results/runs --out bench/results

1. Training: the fp32-trained run against the study's fast-path run of the same seed (OrganAMNIST-28, 5 epochs):
   test accuracy within ACC_POINTS percentage points.
2. Inference: one fast-path checkpoint evaluated again with the plain fp32 settings, beside the study's own
   evaluation of it. The study's evaluation computes its test logits without the fast path (``training.predict``
   without ``fast_path``: fp32; only validation during training runs under bf16 autocast), so the two must agree
   exactly. The tolerance checked is the bf16 one (bf16 keeps 8 significant bits, 2^-8 = 0.4% per rounding):
   relative L2 distance of the logits at most LOGITS_REL_L2, the same predicted class for at least
   ARGMAX_AGREEMENT of the test images.
Writes OUT/fp32_check_<gpu>.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ACC_POINTS = 1.0
LOGITS_REL_L2 = 0.02
ARGMAX_AGREEMENT = 0.99


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check-dir", default="fp32-check", help="what bench/fp32_check.sh wrote")
    p.add_argument("--runs", default="results/runs", help="the study's runs (fast path)")
    p.add_argument("--out", default="bench/results")
    args = p.parse_args(argv)
    check, runs = Path(args.check_dir), Path(args.runs)
    result = {"acc_points_tolerance": ACC_POINTS, "logits_rel_l2_tolerance": LOGITS_REL_L2,
              "argmax_agreement_tolerance": ARGMAX_AGREEMENT, "training": [], "inference": []}
    gpu = None
    for run in sorted(check.glob("train_*_s*")):
        model, seed = run.name.split("_")[1], int(run.name.rsplit("_s", 1)[1])
        fast = runs / f"organamnist_28_{model}_s{seed}"
        fp32_s, fast_s = _json(run / "train_summary.json"), _json(fast / "train_summary.json")
        gpu = gpu or fp32_s.get("device_name")
        a32, afast = _json(run / "metrics.json")["acc"], _json(fast / "metrics.json")["acc"]
        result["training"].append({
            "model": model, "seed": seed, "epochs": fp32_s["epochs_done"], "acc_fp32": a32, "acc_fast_path": afast,
            "points": round(100 * (afast - a32), 2), "within_tolerance": abs(100 * (afast - a32)) <= ACC_POINTS,
            "fast_path_fp32_run": fp32_s["fast_path"], "fast_path_study_run": fast_s["fast_path"],
            "train_seconds_fp32": fp32_s["train_seconds_total"], "train_seconds_fast_path": fast_s["train_seconds_total"],
            "device_fp32_run": fp32_s.get("device_name"), "device_study_run": fast_s.get("device_name")})
    for ev in sorted(check.glob("reeval_*_s*")):
        model, seed = ev.name.split("_")[1], int(ev.name.rsplit("_s", 1)[1])
        fast = runs / f"organamnist_28_{model}_s{seed}"
        z32, zbf = np.load(ev / "test_logits.npz"), np.load(fast / "test_logits.npz")
        if not np.array_equal(z32["indices"], zbf["indices"]):
            sys.exit(f"{ev} and {fast} hold logits of different test images; rerun bench/fp32_check.sh")
        l32, lbf = z32["logits"].astype(np.float64), zbf["logits"].astype(np.float64)
        rel = float(np.linalg.norm(lbf - l32) / np.linalg.norm(l32))
        agree = float((l32.argmax(1) == lbf.argmax(1)).mean())
        result["inference"].append({
            "model": model, "seed": seed, "n_test": int(len(l32)), "max_abs_diff": float(np.abs(lbf - l32).max()),
            "rel_l2": rel, "argmax_agreement": agree,
            "acc_fp32_eval": _json(ev / "metrics.json")["acc"], "acc_bf16_eval": _json(fast / "metrics.json")["acc"],
            "device_fp32_eval": _json(ev / "metrics.json").get("device_name"),
            "device_bf16_eval": _json(fast / "metrics.json").get("device_name"),
            "within_tolerance": rel <= LOGITS_REL_L2 and agree >= ARGMAX_AGREEMENT})
    if not result["training"] and not result["inference"]:
        sys.exit(f"nothing to compare in {check}: run bench/fp32_check.sh in the study's folder first")
    result["gpu"] = gpu
    out = Path(args.out) / f"fp32_check_{(gpu or 'cpu').replace(' ', '_').lower()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
