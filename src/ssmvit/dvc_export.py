"""Generate dvc.yaml from the Snakemake workflow: one source of truth for the stage graph.

Snakemake builds the job graph for a study config; every job becomes one DVC
stage with the same shell command, the same inputs (deps) and outputs (outs),
and the config keys it depends on (params). Test metrics become DVC metrics and
training histories DVC plots. For the reference study (outdir '.') the small
text results are kept in git, not in the DVC cache; a study writing under an
ignored folder (build/...) caches everything, so push/pull restores it all. The committed
dvc.yaml is checked by a test that regenerates it and fails when it is stale.
"""

from __future__ import annotations

import contextlib
import io
import shlex
import sys
from pathlib import Path

import yaml

from .pipeline import stage_param_keys

HEADER = """\
# GENERATED from the Snakefile by `python workflow/scripts/export_dvc.py --configfile {config}`.
# Do not edit: change the Snakefile or {config} and regenerate (a test fails when this file is stale).
"""


def snakemake_jobs(snakefile="Snakefile", configfile="config.yaml", workdir=".") -> list[dict]:
    """Every job of the study's DAG (as if nothing were built yet), via Snakemake's API."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import (ConfigSettings, DAGSettings, OutputSettings,
                                          ResourceSettings, StorageSettings)

    with contextlib.redirect_stdout(io.StringIO()), SnakemakeApi(
            OutputSettings(quiet={Quietness.ALL})) as api:
        wapi = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[Path(configfile)]),
            storage_settings=StorageSettings(),
            snakefile=Path(snakefile),
            workdir=Path(workdir),
        )
        dag_api = wapi.dag(DAGSettings(forceall=True))
        workflow = dag_api.workflow_api._workflow
        workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
        workflow._build_dag()
        jobs = []
        for job in workflow.dag.jobs:
            jobs.append({
                "rule": job.rule.name,
                "wildcards": dict(job.wildcards.items()),
                "input": [str(f) for f in job.input],
                "output": [str(f) for f in job.output],
                "log": [str(f) for f in job.log],
                "shellcmd": (job.shellcmd or "").strip(),
            })
    return sorted(jobs, key=lambda j: (j["rule"], sorted(j["wildcards"].items())))


def _has_key(values: dict, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(values, dict) or part not in values:
            return False
        values = values[part]
    return True


def stage_name(job: dict) -> str:
    wc = job["wildcards"]
    return job["rule"] if not wc else job["rule"] + "-" + "-".join(str(v) for v in wc.values())


def to_dvc(jobs: list[dict], configfile: str, python: str = sys.executable, wdir: str = ".") -> dict:
    """DVC stages for ``jobs``; ``wdir`` is the project root as seen from the dvc.yaml's folder."""
    file_values = yaml.safe_load(Path(configfile).read_text()) or {}
    in_git = (file_values.get("outdir") or ".") in (".", "")  # small results tracked by git?
    stages = {}
    for job in jobs:
        if job["rule"] == "all":
            continue
        # DVC runs the command with whatever `python` is on PATH (the project's environment).
        cmd = job["shellcmd"].replace(f"'{python}'", "python").replace(python, "python")
        log_dirs = sorted({str(Path(f).parent) for f in job.get("log", [])})
        if log_dirs:  # Snakemake makes log folders itself; under DVC the command must
            cmd = f"mkdir -p {' '.join(shlex.quote(d) for d in log_dirs)} && {cmd}"
        stage = {"cmd": cmd}
        if wdir != ".":
            stage["wdir"] = wdir
        stage["deps"] = list(dict.fromkeys(job["input"]))
        model = job["wildcards"].get("model")
        if job["rule"] in ("download", "preprocess", "train", "evaluate", "profile"):
            # DVC reads params from the file; keys left to the code's defaults are not in it.
            keys = [k for k in stage_param_keys(job["rule"], model) if _has_key(file_values, k)]
            if keys:
                stage["params"] = [{configfile: keys}]
        outs, metrics, plots = [], [], []
        for f in job["output"]:
            # Data and checkpoints always live in the DVC cache; in the reference study the
            # results (JSON, CSV, logits, figures, paper) are committed to git instead.
            props = {} if (f.startswith("data/") or f.endswith(".pt") or not in_git) else {"cache": False}
            entry = {f: props} if props else f
            if f.endswith("metrics.json"):
                metrics.append(entry)
            elif f.endswith("history.csv"):
                plots.append(entry)
            else:
                outs.append(entry)
        if outs:
            stage["outs"] = outs
        if metrics:
            stage["metrics"] = metrics
        if plots:
            stage["plots"] = plots
        stages[stage_name(job)] = stage
    histories = [f for job in jobs for f in job["output"] if f.endswith("history.csv")]
    out = {"stages": stages}
    if histories:
        # Top-level plot definitions: `dvc plots show` / `dvc plots diff` draw every run's curve.
        out["plots"] = [{f"{name} per epoch": {"x": "epoch", "y": {h: column for h in histories}}}
                        for name, column in (("validation accuracy", "val_acc"), ("training loss", "train_loss"))]
    return out


def render(configfile: str, out: str = "dvc.yaml", snakefile="Snakefile") -> str:
    """dvc.yaml text for the study in ``configfile``, to be written at ``out`` (relative to the root)."""
    import os

    wdir = os.path.relpath(".", Path(out).parent) if Path(out).parent != Path(".") else "."
    dvc = to_dvc(snakemake_jobs(snakefile, configfile), configfile, wdir=wdir)
    header = HEADER.format(config=configfile).replace("--configfile", f"--out {out} --configfile" if out != "dvc.yaml" else "--configfile")
    return header + yaml.safe_dump(dvc, sort_keys=False, width=200)
