# The study from raw MedMNIST files to its paper.
#   snakemake --cores all                                  # the study in config.yaml (writes build/default/)
#   snakemake --cores all --configfile config/smoke.yaml   # a few minutes on a laptop CPU
#   snakemake --cores all --configfile config/smoke.yaml --config 'train={epochs: 2}'
from snakemake.utils import min_version

min_version("9.27")  # a function as a rule's priority (train)


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
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
    from ssmvit.cli import print_accuracy_summary

    print_accuracy_summary(rules.aggregate.output.accuracy)
