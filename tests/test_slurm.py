"""The smoke pipeline on a real SLURM cluster, through `profiles/slurm`.

The module starts a single-node SLURM (Debian's slurmctld, slurmd, munge;
tests/slurm/start_slurm.sh installs them with apt-get when missing) with one
fake GPU of model "fake", so the GPU rules' `gpu=1` (and the profile's
optional gpu_model) become real `sbatch --gpus=fake:1` requests. It runs the
smoke study once locally and once through SLURM, each in its own copy of the
repository, and checks that every job was a SLURM job and that the results
are the same. The daemons it started are stopped by PID at the end.

Data: the real OrganAMNIST-28 where present (config/smoke.yaml as the README
runs it), else the same study on synthetic files in the official layout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, copy_repo, sh, smoke_config, snakemake
from test_pipeline import jobs_planned

HARNESS = REPO / "tests" / "slurm"
DAEMONS = ("munged", "slurmctld", "slurmd")
GPU_MODEL = "fake"
OUT = "build/smoke"
TIMINGS = {}  # wall times, printed in the test summary (conftest)

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0,
                       reason="a real SLURM needs Linux and root (slurmd); CI runs as root"),
    pytest.mark.skipif(shutil.which("latexmk") is None, reason="latexmk not installed (run setup.sh)"),
]


def _alive(pid: int, comm: str) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == comm
    except OSError:
        return False


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install -e .[workflow] (setup.sh)")
    # A short path: munge's socket path must fit in 108 bytes.
    state = Path(tempfile.mkdtemp(prefix="ssmvit-slurm-", dir="/tmp"))
    env = dict(os.environ, SLURM_HARNESS_GPUS="1", SLURM_HARNESS_GPU_TYPE=GPU_MODEL)
    t0 = time.perf_counter()
    r = subprocess.run([str(HARNESS / "start_slurm.sh"), str(state)], env=env, capture_output=True, text=True,
                       timeout=1200)
    TIMINGS["SLURM start (incl. apt-get if needed)"] = time.perf_counter() - t0
    pids = {}
    for d in DAEMONS:
        f = state / "run" / f"{d}.pid"
        if f.exists():
            pids[d] = int(f.read_text().strip())
    info = {"state": state, "conf": state / "etc" / "slurm.conf", "pids": pids}
    try:
        assert r.returncode == 0, f"start_slurm.sh failed:\n{r.stderr[-3000:]}"
        assert set(pids) == set(DAEMONS) and all(_alive(p, d) for d, p in pids.items())
        yield info
    finally:
        if not info.get("stopped"):
            subprocess.run([str(HARNESS / "stop_slurm.sh"), str(state)], capture_output=True, timeout=300,
                           env=dict(os.environ, SLURM_HARNESS_PURGE="1"))


def _squeue(cluster, *args) -> list[list[str]]:
    r = subprocess.run(["squeue", "-h", *args], capture_output=True, text=True, timeout=30, check=True,
                       env=dict(os.environ, SLURM_CONF=str(cluster["conf"])))
    return [line.rstrip().rstrip("|").split("|") for line in r.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def smoke(cluster, smoke_by_snakemake, tmp_path_factory):
    local, configfile, env = (smoke_by_snakemake[k] for k in ("root", "configfile", "env"))
    on_slurm = copy_repo(tmp_path_factory.mktemp("slurm_smoke"))
    smoke_config(on_slurm)
    planned = jobs_planned(snakemake(f"-n --forceall --cores 1 --configfile {configfile}", local, env=env).stdout)
    TIMINGS["smoke study, local (profiles/default, 2 cores)"] = smoke_by_snakemake["seconds"]

    before = {row[0] for row in _squeue(cluster, "--states=all", "-O", "JobID:|")}
    slurm_env = dict(env, SLURM_CONF=str(cluster["conf"]), SSMVIT_GPU_MODEL=GPU_MODEL,
                     SSMVIT_SLURM_STATUS_DELAY="5")
    t0 = time.perf_counter()
    # Snakemake ignores SIGTERM; SIGINT makes it scancel its jobs, KILL bounds the rest.
    r = sh(["timeout", "-s", "INT", "-k", "60", "1500", sys.executable, "-m", "snakemake",
            "--profile", "profiles/slurm", "--configfile", configfile, "--jobs", "4"],
           on_slurm, env=slurm_env, timeout=1700)
    TIMINGS["smoke study, SLURM (profiles/slurm, 1 node x 2 cores)"] = time.perf_counter() - t0
    # The executor writes rule_<rule>[_wildcards_<values>] into each job's comment; `--gpus` shows as tres-per-job.
    jobs = [row for row in _squeue(cluster, "--states=all", "-O",
                                   "JobID:|,Comment:|,State:|,tres-per-job:|,cpus-per-task:|")
            if row[0] not in before]
    return {"local": local, "slurm": on_slurm, "planned": planned, "jobs": jobs, "stdout": r.stdout + r.stderr,
            "configfile": configfile, "env": slurm_env}


def test_every_job_of_the_smoke_study_ran_as_a_slurm_job(smoke):
    planned = {rule: n for rule, n in smoke["planned"].items() if rule != "all"}  # `all` only collects
    ran = {}
    for job_id, comment, state, *_ in smoke["jobs"]:
        assert state == "COMPLETED", (job_id, comment, state)
        rule = comment.removeprefix("rule_").split("_wildcards_")[0]
        ran[rule] = ran.get(rule, 0) + 1
    assert ran == planned


def test_jobs_asked_slurm_for_the_rule_s_gpu_model_and_threads(smoke):
    asked = {}
    for _, comment, _, tres, cpus in smoke["jobs"]:
        asked.setdefault(comment.removeprefix("rule_").split("_wildcards_")[0], set()).add((tres, cpus))
    for rule in ("evaluate", "profile"):
        assert asked[rule] == {(f"gres:gpu:{GPU_MODEL}:1", "1")}, (rule, asked[rule])
    assert asked["train"] == {(f"gres:gpu:{GPU_MODEL}:1", "2")}, asked["train"]  # threads: 2 -> --cpus-per-task=2
    assert asked["compile"] == {(f"gres:gpu:{GPU_MODEL}:1", "2")}, asked["compile"]
    for rule in ("preprocess", "aggregate", "paper"):
        assert asked[rule] == {("N/A", "1")}, (rule, asked[rule])


def test_each_model_was_trained_inside_the_slurm_job_that_squeue_reported(smoke):
    by_id = {job_id: comment for job_id, comment, *_ in smoke["jobs"]}
    summaries = sorted((smoke["slurm"] / OUT / "results/runs").glob("*/train_summary.json"))
    assert len(summaries) == smoke["planned"]["train"]
    for path in summaries:
        where = json.loads(path.read_text())["where"]
        run = path.parent.name  # organamnist_28_vit_s0
        assert by_id[where["slurm_job_id"]].startswith("rule_train_wildcards_"), (run, where)
        dataset, res, model, seed = run.split("_")
        # the executor writes the wildcard values in rule order: dataset, res, model, seed
        assert by_id[where["slurm_job_id"]] == f"rule_train_wildcards_{dataset}_{res}_{model}_{seed[1:]}", (run, where)


def test_slurm_and_local_runs_give_the_same_results(smoke):
    local, slurm = smoke["local"] / OUT, smoke["slurm"] / OUT
    runs = sorted(p.name for p in (local / "results/runs").iterdir())
    assert runs and runs == sorted(p.name for p in (slurm / "results/runs").iterdir())
    for run in runs:
        assert (local / "results/runs" / run / "confusion_matrix.csv").read_bytes() == \
            (slurm / "results/runs" / run / "confusion_matrix.csv").read_bytes(), run
        ml, ms = (json.loads((d / "results/runs" / run / "metrics.json").read_text()) for d in (local, slurm))
        clock = {"started_at", "ended_at", "where"}  # when and where the job ran are all that may differ
        assert clock <= ml.keys() and ml["ended_at"] >= ml["started_at"], run
        assert ml["where"]["slurm_job_id"] is None and ms["where"]["slurm_job_id"] is not None, run
        assert {k: v for k, v in ml.items() if k not in clock} == {k: v for k, v in ms.items() if k not in clock}, run
        hl, hs = (pd.read_csv(d / "results/runs" / run / "history.csv") for d in (local, slurm))
        timing = [c for c in hl.columns if "second" in c]
        pd.testing.assert_frame_equal(hl.drop(columns=timing), hs.drop(columns=timing))
    al, as_ = (pd.read_csv(d / "results/aggregate/accuracy.csv") for d in (local, slurm))
    times = ["train_seconds_mean", "train_seconds_min", "train_seconds_max"]
    assert (al[times] > 0).all().all()  # measured each time: the columns allowed to differ
    pd.testing.assert_frame_equal(al.drop(columns=times), as_.drop(columns=times))
    assert (slurm / "paper/main.pdf").stat().st_size > 10_000


def test_job_logs_land_under_logs_and_slurm_logs(smoke):
    slurm = smoke["slurm"]
    for rule in ("train", "evaluate", "compile", "profile", "preprocess"):
        assert list((slurm / OUT / "logs" / rule).glob("*.log")), rule
    slurm_logs = list((slurm / ".snakemake/slurm_logs").rglob("*.log"))
    assert len(slurm_logs) == sum(n for rule, n in smoke["planned"].items() if rule != "all")


def test_a_failed_slurm_job_names_its_log_and_keeps_the_other_results(smoke):
    slurm, env = smoke["slurm"], smoke["env"]
    run = sorted((slurm / OUT / "results/runs").iterdir())[0]
    kept = (slurm / OUT / "results/aggregate/accuracy.csv").read_bytes()
    (run / "best.pt").write_bytes(b"not a checkpoint")  # newer than metrics.json: evaluate reruns, and fails
    r = sh(["timeout", "-s", "INT", "-k", "60", "600", sys.executable, "-m", "snakemake",
            "--profile", "profiles/slurm", "--configfile", smoke["configfile"], "--jobs", "4"],
           slurm, env=env, timeout=700, check=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    log = f"{OUT}/logs/evaluate/{run.name}.log"
    assert log in out, out[-3000:]
    assert "checkpoint" in (slurm / log).read_text().lower()
    assert ".snakemake/slurm_logs/rule_evaluate" in out
    assert (slurm / OUT / "results/aggregate/accuracy.csv").read_bytes() == kept


def test_stopping_the_cluster_stops_the_daemons_it_started(cluster):
    r = subprocess.run([str(HARNESS / "stop_slurm.sh"), str(cluster["state"])], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, SLURM_HARNESS_PURGE="1"))
    cluster["stopped"] = True
    assert r.returncode == 0, r.stderr
    assert not any(_alive(pid, d) for d, pid in cluster["pids"].items())
    assert not Path("/run/slurm/conf").is_symlink() or os.readlink("/run/slurm/conf") != str(cluster["state"] / "etc")
