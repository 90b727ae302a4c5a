# The study from raw MedMNIST files to paper/main.pdf.
#   snakemake --cores all                                  # the study in config.yaml
#   snakemake --cores all --configfile config/smoke.yaml   # a few minutes on a laptop CPU
# The config is validated against src/ssmvit/config.schema.json before any job runs.
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

from ssmvit import paths as P
from ssmvit.config import KNOWN_DATASETS
from ssmvit.pipeline import load_workflow_config, profiled_configs, source_size_for, stage_settings, trained_runs

configfile: "config.yaml"

# The last --configfile is the study; every stage script reads that same file,
# so Snakemake and the scripts cannot disagree about a setting.
CONFIG_FILE, CFG = load_workflow_config(workflow, config)
OUT = CFG["outdir"]
OUTP = "" if OUT in (".", "") else OUT.rstrip("/") + "/"  # prefix of every output path
PY = sys.executable
STUDY = CFG["study"]

wildcard_constraints:
    dataset="|".join(KNOWN_DATASETS),
    res="28|64|128|224",
    size="28|64|128|224",
    model="vit|s4d",
    seed=r"\d+",


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/profile.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        rules.paper.output.pdf,


onsuccess:
    # One look at the result without opening the PDF: test ACC/AUC per configuration.
    from ssmvit.pipeline import print_accuracy_summary

    print_accuracy_summary(f"{OUTP}{P.AGGREGATE_DIR}/accuracy.csv")
