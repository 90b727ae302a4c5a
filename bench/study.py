"""The whole study, run as a user runs it and timed: `snakemake --cores all` with the default profile.

  python3 bench/study.py --config config/study-shape.yaml --seeds 0 --out bench/results [--omit-from paper]

Runs Snakemake in a fresh output folder per call and writes OUT/study_<gpu>_<n>seed.json: the GPU,
torch, how many trainings and profiles, the seeds, the wall time, the GPU slots Snakemake had, and
seconds per stage family (the sum of Snakemake's `benchmark:` records of that family's jobs, which
can exceed the wall time when jobs share the machine), and OUT/study_<gpu>_<n>seed_jobs.csv: the
seconds and peak RSS of each job. `--omit-from paper` leaves the paper out
(a GPU box without LaTeX); the JSON says so.
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

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("download", "preprocess", "train", "evaluate", "profile", "aggregate", "plot", "paper")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="config/study-shape.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--out", default="bench/results")
    p.add_argument("--outdir", default=None,
                   help="the study's output folder (default: the config's outdir + '-<n>seed', a fresh one per seed "
                        "count); '.' for config/reference.yaml run in a copy of the checkout")
    p.add_argument("--name", default="study", help="the JSON's name: NAME_<gpu>_<n>seed.json")
    p.add_argument("--commit", default=None, help="the git commit this checkout is (recorded; a box copy has no .git)")
    p.add_argument("--omit-from", default=None, help="a rule to leave out with everything after it (e.g. paper)")
    p.add_argument("--snakemake-args", default="", help="more Snakemake arguments, e.g. '--resources gpu_slots=1'")
    args = p.parse_args(argv)
    import torch

    from ssmvit.gpus import gpu_slots

    cfg = yaml.safe_load((ROOT / args.config).read_text())
    outdir = args.outdir or f"{cfg['outdir']}-{len(args.seeds)}seed"  # one folder per seed count: nothing reused
    seeds = ", ".join(map(str, args.seeds))
    cmd = [sys.executable, "-m", "snakemake", "--cores", "all", "--configfile", args.config,
           "--config", f"outdir={outdir}", f"study={{seeds: [{seeds}]}}"]
    if args.omit_from:
        cmd += ["--omit-from", args.omit_from]
    cmd += args.snakemake_args.split()
    print("#", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT)
    wall = time.perf_counter() - t0
    outdir = ROOT / outdir
    seconds, jobs, per_job = {}, {}, []
    for family in FAMILIES:
        records = sorted((outdir / "benchmarks" / family).glob("*.tsv")) + \
            [f for f in [outdir / "benchmarks" / f"{family}.tsv"] if f.exists()]  # one-job rules: benchmarks/<rule>.tsv
        jobs[family] = len(records)
        tables = [pd.read_csv(f, sep="\t") for f in records]
        seconds[family] = round(sum(float(t["s"].iloc[0]) for t in tables), 1)
        per_job += [{"family": family, "job": f.stem, "seconds": float(t["s"].iloc[0]),
                     "max_rss_mb": float(t["max_rss"].iloc[0])} for f, t in zip(records, tables)]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    result = {"gpu": gpu, "torch": torch.__version__, "config": args.config, "commit": args.commit, "seeds": args.seeds,
              "train_runs": jobs["train"], "profiles": jobs["profile"], "wall_s": round(wall, 1),
              "snakemake_exit": r.returncode, "gpu_slots": gpu_slots(), "jobs": jobs,
              "seconds_per_stage_family": seconds, "omitted_from": args.omit_from,
              "cpu_count": os.cpu_count(), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = ROOT / args.out / f"{args.name}_{gpu.replace(' ', '_').lower()}_{len(args.seeds)}seed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    pd.DataFrame(per_job).to_csv(out.with_name(out.stem + "_jobs.csv"), index=False)
    print(json.dumps(result, indent=2))
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
