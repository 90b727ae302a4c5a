# The config, validated once, and the helpers every rule file uses.
import glob
import os
import sys

# This checkout's package, whichever Python runs snakemake (the venv's, or one with the same dependencies),
# and for the jobs: its `ssmvit` command (workflow/bin) run by this Python, unless a rule's conda environment
# (--use-conda, workflow/envs/ssmvit.yaml) puts its own Python first.
SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, SRC)
os.environ.update(  # set for the jobs, not read from the user: nothing for an envvars directive to assert
    PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p),
    PATH=os.pathsep.join(
        (os.path.join(workflow.basedir, "workflow", "bin"), os.path.dirname(sys.executable), os.environ.get("PATH", ""))
    ),
)

from ssmvit import gpus, paths
from ssmvit.catalog import describe, known_datasets
from ssmvit.config import known_models, resolve, settings_json
from ssmvit.errors import UserError

try:
    # One validation: the schema's defaults filled into what Snakemake merged
    # (config.yaml or the --configfile files, stacked, then --config).
    RESOLVED = resolve(config)
except UserError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
config.clear()
config.update(RESOLVED)
STUDY = config["study"]


wildcard_constraints:
    dataset="|".join(known_datasets()),
    res="28|64|128|224",
    model="|".join(known_models()),
    seed=r"\d+",


def out(pattern):
    """A path of ssmvit.paths inside this study's output folder."""
    return paths.under(config["outdir"], pattern)


def log_file(name):
    return out(paths.LOG.format(name=name))


def settings(*keys):
    """The config values a job depends on, as the --settings JSON its command receives.

    As a param it is also the job's rerun trigger: a job reruns exactly when
    one of these values changes. {model} and {res} in a key are filled from the wildcards.
    """
    return lambda wildcards: settings_json(config, [k.format(**dict(wildcards.items())) for k in keys])


def run_dir(wildcards, output):
    """The run folder of a train or evaluate job (the folder of its first output)."""
    return os.path.dirname(output[0])


def train_priority(wildcards):
    """The longest trainings start first (training images x pixels), so that the longest is not the last to
    start while the others finish (seen on one H200: bench/README.md, the study with graphs)."""
    n = describe(wildcards.dataset)["n_samples"]["train"]
    n = min(n, config["train"]["max_train_samples"] or n)  # the images it trains on
    return n * int(wildcards.res) ** 2 / 1e6
