"""The whole study, run as a user runs it and timed: `snakemake --cores all` with the default profile.

  python3 bench/study.py --config config/study-shape.yaml --seeds 0 --out bench/results [--omit-from paper]

Runs Snakemake in a fresh output folder per call and writes OUT/study_<gpu>_<n>seed.json: the GPU,
torch, how many trainings and profiles, the seeds, the wall time, the GPU slots Snakemake had, and
seconds per stage family (the sum of Snakemake's `benchmark:` records of that family's jobs, which
can exceed the wall time when jobs share the machine), and OUT/study_<gpu>_<n>seed_jobs.csv: the
seconds and peak RSS of each job. `--omit-from paper` leaves the paper out
(a GPU box without LaTeX); the JSON says so.

Where the time goes, from the files the jobs write (`fixed_costs` and `timeline_s` in the JSON; per job
in the CSV): a GPU job's seconds split into the work its own record times (a training's start to end,
an evaluation's, a compile job's, a profile's) and the rest (process start, imports, loading the data, writing);
a training's first epoch beyond its later epochs' median (compiling, capturing the CUDA graph,
cold caches); a profile's phases (`phase_seconds`); and when each GPU family started and ended,
in seconds from the study's start.
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
FAMILIES = ("download", "preprocess", "train", "evaluate", "compile", "profile", "aggregate", "plot", "paper")
GPU_FAMILIES = ("train", "evaluate", "compile", "profile")


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
    t0, started_at = time.perf_counter(), time.time()
    r = subprocess.run(cmd, cwd=ROOT)
    wall = time.perf_counter() - t0
    jobs, seconds, per_job = collect(ROOT / outdir, started_at)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    result = {"gpu": gpu, "torch": torch.__version__, "config": args.config, "commit": args.commit, "seeds": args.seeds,
              "train_runs": jobs["train"], "profiles": jobs["profile"], "wall_s": round(wall, 1),
              "snakemake_exit": r.returncode, "gpu_slots": gpu_slots(), "jobs": jobs,
              "seconds_per_stage_family": seconds, "fixed_costs": fixed_costs(per_job),
              "timeline_s": timeline(per_job), "omitted_from": args.omit_from,
              "cpu_count": os.cpu_count(), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = ROOT / args.out / f"{args.name}_{gpu.replace(' ', '_').lower()}_{len(args.seeds)}seed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    pd.DataFrame(per_job).to_csv(out.with_name(out.stem + "_jobs.csv"), index=False)
    print(json.dumps(result, indent=2))
    return r.returncode


def collect(outdir: Path, study_started_at: float) -> tuple[dict, dict, list[dict]]:
    """Jobs and seconds per stage family from Snakemake's benchmark records, and one row per job with what its own
    output says (``job_record``)."""
    seconds, jobs, per_job = {}, {}, []
    for family in FAMILIES:
        records = sorted((outdir / "benchmarks" / family).glob("*.tsv")) + \
            [f for f in [outdir / "benchmarks" / f"{family}.tsv"] if f.exists()]  # one-job rules: benchmarks/<rule>.tsv
        jobs[family] = len(records)
        tables = [pd.read_csv(f, sep="\t") for f in records]
        seconds[family] = round(sum(float(t["s"].iloc[0]) for t in tables), 1)
        per_job += [{"family": family, "job": f.stem, "seconds": float(t["s"].iloc[0]),
                     "max_rss_mb": float(t["max_rss"].iloc[0]), **job_record(outdir, family, f.stem, study_started_at)}
                    for f, t in zip(records, tables)]
    return jobs, seconds, per_job


def job_record(outdir: Path, family: str, job: str, study_started_at: float) -> dict:
    """What a GPU job's own output says about its time: start and end (seconds from the study's start), the seconds
    of its work, and per family the training's epochs or the profile's phases. Empty for the other families."""
    rec = {}
    if family in ("train", "evaluate"):
        run = outdir / "results" / "runs" / job
        own = run / ("train_summary.json" if family == "train" else "metrics.json")
        if not own.exists():
            return rec
        d = json.loads(own.read_text())
        rec.update(started_s=d["started_at"] - study_started_at, ended_s=d["ended_at"] - study_started_at,
                   work_s=d["ended_at"] - d["started_at"])
        if family == "train":
            epochs = pd.read_csv(run / "history.csv")["seconds"]
            later = float(epochs.iloc[1:].median()) if len(epochs) > 1 else None
            rec.update(first_epoch_s=float(epochs.iloc[0]), later_epoch_s=later,
                       first_epoch_extra_s=None if later is None else float(epochs.iloc[0]) - later,
                       graph_replays=d.get("graph_replays"), train_samples=d.get("train_samples"))
    elif family == "compile":
        own = outdir / "results" / "compile" / f"{job}.json"
        if own.exists():
            d = json.loads(own.read_text())
            rec.update(started_s=d["started_at"] - study_started_at, ended_s=d["ended_at"] - study_started_at,
                       work_s=d["ended_at"] - d["started_at"], shapes_compiled=len(d["shapes"]))
            _add_cache_counts(rec, [shape.get("compile_cache") for shape in d["shapes"]])
    elif family == "profile":
        timed = [json.loads(f.read_text()) for f in sorted((outdir / "results" / "profile" / job).glob("*.json"))]
        timed = [p for p in timed if p.get("seconds")]  # one per input shape; the other files share its timings
        if timed:
            rec.update(started_s=min(p["started_at"] for p in timed) - study_started_at,
                       ended_s=max(p["ended_at"] for p in timed) - study_started_at,
                       work_s=sum(p["seconds"] for p in timed), shapes_timed=len(timed))
            for p in timed:
                for phase, sec in (p.get("phase_seconds") or {}).items():
                    rec[f"phase_{phase}_s"] = rec.get(f"phase_{phase}_s", 0.0) + sec
            _add_cache_counts(rec, [p["train"].get("trained_compile_cache") for p in timed])
    return rec


def _add_cache_counts(rec: dict, counts: list[dict | None]) -> None:
    """The job's compile-cache hits and misses (``cache_<counter>`` columns), summed over its input shapes."""
    for c in counts:
        for name, n in (c or {}).items():
            rec[f"cache_{name}"] = rec.get(f"cache_{name}", 0) + n


def fixed_costs(per_job: list[dict]) -> dict:
    """Per GPU family: seconds of its jobs, of the work their own records time, and the rest; for trainings the
    first epochs' extra seconds, for profiles the seconds of each phase (sums over jobs)."""
    out = {}
    for family in GPU_FAMILIES:
        jobs = [j for j in per_job if j["family"] == family and j.get("work_s") is not None]
        if not jobs:
            continue
        job_s, work_s = sum(j["seconds"] for j in jobs), sum(j["work_s"] for j in jobs)
        entry = {"jobs": len(jobs), "job_s": round(job_s, 1), "work_s": round(work_s, 1),
                 "outside_work_s": round(job_s - work_s, 1),
                 "outside_work_s_per_job": round((job_s - work_s) / len(jobs), 1)}
        if family == "train":
            extra = [j["first_epoch_extra_s"] for j in jobs if j.get("first_epoch_extra_s") is not None]
            entry["first_epoch_extra_s"] = round(sum(extra), 1)
        caches = sorted({k for j in jobs for k in j if k.startswith("cache_")})
        if caches:  # a profile after its compile job should only hit
            entry["compile_cache"] = {k[len("cache_"):]: sum(j.get(k) or 0 for j in jobs) for k in caches}
        if family == "profile":
            phases = sorted({k for j in jobs for k in j if k.startswith("phase_")})
            entry["phases_s"] = {k[len("phase_"):-len("_s")]: round(sum(j.get(k) or 0.0 for j in jobs), 1)
                                 for k in phases}
        out[family] = entry
    out["note"] = ("job_s: Snakemake's benchmark seconds; work_s: the job's own start-to-end record (a training's "
                   "epochs with validation and checkpoints, an evaluation's test pass, a profile's measurements); "
                   "outside_work_s: process start, imports, reading the data, writing; a compile job's work is compiling the "
                   "profile's graphs into the study's inductor cache; first_epoch_extra_s: each "
                   "training's first epoch minus the median of its later ones (compile, graph capture, cold caches); "
                   "compile_cache: graphs the jobs loaded from the study's compile cache (hits) or compiled (misses)")
    return out


def timeline(per_job: list[dict]) -> dict:
    """First start and last end of each GPU family, seconds from the study's start."""
    out = {}
    for family in GPU_FAMILIES:
        jobs = [j for j in per_job if j["family"] == family and j.get("started_s") is not None]
        if jobs:
            out[family] = [round(min(j["started_s"] for j in jobs), 1), round(max(j["ended_s"] for j in jobs), 1)]
    return out


if __name__ == "__main__":
    sys.exit(main())
