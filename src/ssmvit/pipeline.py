"""What the Snakefile (and the DVC export) need to know about the study.

The Snakefile stays declarative: which runs exist, which config values each
stage depends on (so that changing one reruns only what depends on it), and
the config check that must pass before any job starts.
"""

from __future__ import annotations

import itertools
import json
import os
import sys

from .config import DEFAULTS, deep_merge, load_config, schema_path, validate
from .datasets import source_size_for  # noqa: F401  (used by the Snakefile)
from .errors import UserError

# Config keys each stage depends on; '{model}' is filled in per job.
STAGE_PARAM_KEYS = {
    "download": ["data.local_root", "data.mirror_url", "data.checksums", "data.synthetic"],
    "preprocess": ["data.upsample_from", "data.checksums", "data.synthetic"],
    "train": ["train.epochs", "train.batch_size", "train.weight_decay", "train.scheduler",
              "train.max_train_samples", "train.max_eval_samples", "models.{model}"],
    "evaluate": ["train.max_eval_samples"],
    "profile": ["profile", "train.batch_size", "models.{model}"],
}


def stage_param_keys(stage: str, model: str | None = None) -> list[str]:
    return [k.format(model=model) for k in STAGE_PARAM_KEYS[stage]]


def _get(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def stage_settings(cfg: dict, stage: str, model: str | None = None, res=None) -> str:
    """The config values a stage depends on, as a stable string for Snakemake's params trigger."""
    values = {k: _get(cfg, k) for k in stage_param_keys(stage, model)}
    if res is not None and stage in ("preprocess", "train"):
        values["source_size"] = source_size_for(cfg, int(res))
        values.pop("data.upsample_from", None)
    return json.dumps(values, sort_keys=True, default=str)


def trained_runs(cfg: dict):
    s = cfg["study"]
    return list(itertools.product(s["datasets"], s["resolutions"], s["models"], s["seeds"]))


def profiled_configs(cfg: dict):
    s = cfg["study"]
    datasets = list(s["datasets"]) + [d for d in s["profile_only"] if d not in s["datasets"]]
    return list(itertools.product(datasets, s["resolutions"], s["models"]))


def _first_difference(a, b, where=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{where}{key}"
            found = _first_difference(a[key], b[key], f"{where}{key}.")
            if found:
                return found
        return None
    return None if a == b else where.rstrip(".")


def load_workflow_config(workflow, snakemake_config: dict) -> tuple[str, dict]:
    """(study config file, validated config) for the Snakefile; exits with one line on error."""
    from snakemake.utils import validate as snakemake_validate

    try:
        overrides = getattr(getattr(workflow, "config_settings", None), "config", None)
        if overrides:
            raise UserError("settings given with --config do not reach the stage scripts; "
                            "put them in a study file and pass it with --configfile")
        files = [str(f) for f in (workflow.overwrite_configfiles or [])]
        config_file = files[-1] if files else "config.yaml"
        if os.path.isabs(config_file) and not os.path.relpath(config_file).startswith(".."):
            config_file = os.path.relpath(config_file)  # commands stay portable across checkouts
        try:
            # JSON round trip: YAML gives int keys (upsample_from), the schema speaks JSON.
            snakemake_validate(json.loads(json.dumps(snakemake_config)), str(schema_path()), set_default=False)
        except Exception as exc:  # snakemake's WorkflowError wraps jsonschema's message
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            validate(deep_merge(DEFAULTS, snakemake_config))  # our one-line message, if it has one
            raise UserError(f"config does not match the schema: {lines[1] if len(lines) > 1 else lines[0]}")
        cfg = load_config(config_file)
        merged = validate(deep_merge(DEFAULTS, snakemake_config))
        diff = _first_difference(json.loads(json.dumps(cfg)), json.loads(json.dumps(merged)))
        if diff:
            raise UserError(f"{config_file} does not set '{diff}' that config.yaml sets; a study file passed "
                            "with --configfile must be complete (copy config.yaml and edit it)")
        return config_file, cfg
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2)


def print_accuracy_summary(accuracy_csv) -> None:
    """Print test ACC/AUC (mean over seeds) per dataset/resolution/model, if the table exists."""
    from pathlib import Path

    import pandas as pd

    if not Path(accuracy_csv).exists():
        return
    acc = pd.read_csv(accuracy_csv)
    print(f"test metrics ({accuracy_csv}):")
    for row in acc.itertuples():
        if row.status == "ok":
            print(f"  {row.dataset:12s} {row.resolution:>3d} {row.model:4s} ACC {row.acc_mean:.4f} "
                  f"AUC {row.auc_mean:.4f}  ({row.n_seeds} seed{'s' if row.n_seeds > 1 else ''})")
        else:
            print(f"  {row.dataset:12s} {row.resolution:>3d} {row.model:4s} {row.status}")
