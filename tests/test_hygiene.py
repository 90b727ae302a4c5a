"""The checks a contributor runs before pushing: Snakemake's linter, snakefmt and ruff, all clean.

Every rule names its software environment (workflow/envs/ssmvit.yaml, for --use-conda). No conda
channel can be reached from this project's machines, so that file is checked here against
pyproject.toml, not built; the README says so (section "Tests").
"""

import re
import subprocess
import sys

import yaml

from conftest import REPO


def run(*cmd):
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_snakemake_lint_is_clean():
    r = run(sys.executable, "-m", "snakemake", "--lint")
    assert r.returncode == 0 and "Congratulations, your workflow is in a good condition!" in r.stdout + r.stderr, \
        r.stdout + r.stderr


def test_the_conda_environment_of_the_rules_holds_every_runtime_dependency():
    env = yaml.safe_load((REPO / "workflow/envs/ssmvit.yaml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    have = {re.split(r"[=<>!]", d)[0].strip().lower(): d for d in conda + pip}
    have["torch"] = have.pop("pytorch")  # conda-forge's name for it
    project = (REPO / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*?)^\]", project, flags=re.S | re.M).group(1)
    wanted = [re.match(r'\s*"([^"]+)"', line).group(1) for line in deps.splitlines() if line.strip().startswith('"')]
    for spec in wanted:
        name = re.split(r"[=<>!]", spec)[0].strip().lower()
        assert name in have, f"{name} is a dependency in pyproject.toml but not in workflow/envs/ssmvit.yaml"
        assert spec.replace(" ", "")[len(name):] in have[name].replace(" ", ""), (spec, have[name])
    for f in sorted((REPO / "workflow/rules").glob("*.smk")):
        text = f.read_text()
        assert text.count("    shell:") == text.count('    conda:\n        "../envs/ssmvit.yaml"'), f.name


def test_snakefmt_leaves_the_workflow_as_it_is():
    r = run(sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_finds_nothing():
    r = run(sys.executable, "-m", "ruff", "check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_longest_trainings_are_scheduled_first():
    # Snakemake starts ready jobs by priority: PathMNIST at 64x64 (89,996 images of 4,096 pixels) before
    # DermaMNIST at 28x28 (7,007 of 784), so that the longest run is not the last to start.
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config/study-shape.yaml",
                          "--config", "outdir=build/priority-dry-run"],  # a dry run: nothing is written
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    jobs = re.findall(r"rule train:\n(?:    .*\n)*?    wildcards: dataset=(\w+), res=(\d+), model=\w+, seed=\d+\n"
                      r"(?:    .*\n)*?    priority: (\d+)", out.stdout)
    priority = {(d, int(r)): int(p) for d, r, p in jobs}
    assert len(jobs) == 12 and priority[("pathmnist", 64)] > priority[("organamnist", 64)] > priority[("dermamnist", 28)]
