"""The checks a contributor runs before pushing: Snakemake's linter, snakefmt and ruff, all clean.

One lint is allowed: "Specify a conda environment or container for each rule". No conda
channel can be reached from this project's machines, so no environment file could be
tested; the README says so (section "Tests").
"""

import re
import subprocess
import sys

from conftest import REPO

ALLOWED_LINT = "Specify a conda environment or container for each rule."


def run(*cmd):
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_snakemake_lint_finds_only_the_software_environment_lint():
    r = run(sys.executable, "-m", "snakemake", "--lint")
    titles = re.findall(r"^\s+\* (.+?):?\s*$", r.stdout + r.stderr, flags=re.M)
    assert titles, r.stdout + r.stderr  # the linter ran and printed its lints
    assert set(titles) == {ALLOWED_LINT}, sorted(set(titles))


def test_snakefmt_leaves_the_workflow_as_it_is():
    r = run(sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_finds_nothing():
    r = run(sys.executable, "-m", "ruff", "check", ".")
    assert r.returncode == 0, r.stdout + r.stderr
