"""The pipeline as a user runs it: Snakemake and DVC, end to end, on CPU.

The end-to-end tests work in a copy of the repository (tracked and untracked,
not ignored files) so that the working tree is never touched; they run the
synthetic smoke study (no network, no data files) and, where the real
OrganAMNIST-28 is present, the smoke study on it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, SHARED_MEDMNIST, needs_real_organamnist

SYN = "config/smoke-synthetic.yaml"
SYN_OUT = "build/smoke-synthetic"
SYN_DVC = "pipelines/smoke-synthetic/dvc.yaml"
needs_tex = pytest.mark.skipif(shutil.which("latexmk") is None, reason="latexmk not installed (run setup.sh)")


def sh(cmd, cwd, timeout=1200, check=True, env=None):
    e = dict(os.environ)
    e.pop("MEDMNIST_ROOT", None)
    e.update(env or {})
    r = subprocess.run(cmd, cwd=cwd, shell=isinstance(cmd, str), capture_output=True, text=True,
                       timeout=timeout, env=e)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def snakemake(args, cwd, **kw):
    return sh(f"{sys.executable} -m snakemake {args}", cwd, **kw)


def copy_repo(dest: Path) -> Path:
    """A fresh checkout-like copy with its own git repository (DVC needs one)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    sh("git init -q && git add -A && git -c user.email=t@t -c user.name=t commit -qm copy", dest)
    return dest


def jobs_planned(dry_run_output: str) -> dict:
    """Job counts from the 'Job stats' table of `snakemake -n`."""
    lines = dry_run_output.splitlines()
    counts, inside = {}, False
    for line in lines:
        if line.startswith("job ") and "count" in line:
            inside = True
            continue
        if inside:
            parts = line.split()
            if not parts or set(line.strip()) <= {"-", " "}:
                if counts:
                    break
                continue
            if parts[0] == "total":
                break
            counts[parts[0]] = int(parts[1])
    return counts


# ---------------------------------------------------------------- fast checks (working tree, dry runs)

def test_full_study_dry_run_lists_every_job():
    r = snakemake("-n --forceall --cores 1", REPO)  # every job, whatever this checkout has built
    counts = jobs_planned(r.stdout)
    runs = 3 * 2 * 2 * 3  # datasets x resolutions x models x seeds of config.yaml
    assert counts["train"] == runs and counts["evaluate"] == runs
    assert counts["profile"] == 3 * 2 * 2
    assert counts["download"] == 3 * 2 and counts["preprocess"] == 3 * 2
    for rule in ("aggregate", "plot", "paper_inputs", "paper", "all"):
        assert counts[rule] == 1


@pytest.mark.parametrize("bad, needle", [
    ({"train": {"epochz": 1}}, "unknown config key 'train.epochz'"),
    ({"study": {"models": ["resnet"]}}, "valid choices: vit, s4d"),
    ({"train": {"batch_size": 0}}, "train.batch_size"),
    ({"train": {"epochs": "many"}}, "train.epochs"),
])
def test_snakemake_rejects_bad_config_before_any_job(tmp_path, bad, needle):
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    for section, values in bad.items():
        cfg[section].update(values)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = snakemake(f"-n --cores 1 --configfile {path}", REPO, check=False)
    assert r.returncode != 0
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0], r.stderr[-2000:]


def test_snakemake_refuses_command_line_config_that_scripts_would_not_see():
    r = snakemake("-n --cores 1 --config outdir=elsewhere", REPO, check=False)
    assert r.returncode != 0 and "--configfile" in r.stderr


@pytest.mark.parametrize("configfile, dvc_yaml", [
    ("config.yaml", "dvc.yaml"),
    ("config/smoke.yaml", "pipelines/smoke/dvc.yaml"),
    (SYN, SYN_DVC),
])
def test_dvc_yaml_is_generated_from_the_snakefile_and_up_to_date(configfile, dvc_yaml):
    r = sh([sys.executable, "workflow/scripts/export_dvc.py", "--configfile", configfile, "--out", dvc_yaml,
            "--check"], REPO, check=False)
    assert r.returncode == 0, r.stderr


def test_dvc_stages_agree_with_snakemake_jobs():
    """Same stages, inputs and outputs: every Snakemake job is one DVC stage."""
    from ssmvit.dvc_export import snakemake_jobs, stage_name

    jobs = {stage_name(j): j for j in snakemake_jobs("Snakefile", SYN) if j["rule"] != "all"}
    stages = yaml.safe_load((REPO / SYN_DVC).read_text())["stages"]
    assert set(stages) == set(jobs)
    for name, stage in stages.items():
        outs = [next(iter(o)) if isinstance(o, dict) else o
                for key in ("outs", "metrics", "plots") for o in stage.get(key, [])]
        assert sorted(outs) == sorted(jobs[name]["output"]), name
        assert sorted(stage["deps"]) == sorted(set(jobs[name]["input"])), name


# ---------------------------------------------------------------- end to end (a copy of the repository)

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The synthetic smoke study built by Snakemake in a copy of the repository."""
    root = copy_repo(tmp_path_factory.mktemp("repo"))
    snakemake(f"--cores 2 --configfile {SYN}", root)
    return root


@needs_tex
def test_smoke_paper_prints_the_numbers_of_the_csv(built):
    pdf = built / SYN_OUT / "paper/main.pdf"
    assert pdf.exists() and pdf.stat().st_size > 10_000
    text = sh(["pdftotext", "-layout", str(pdf), "-"], built).stdout
    acc = pd.read_csv(built / SYN_OUT / "results/aggregate/accuracy.csv")
    ok = acc[acc.status == "ok"]
    assert len(ok) == 2 * 2 * 2  # organamnist and bloodmnist, 28 and 64, vit and s4d
    for value in ok["acc_mean"]:
        assert f"{value:.3f}" in text
    assert "needs download" in text  # dermamnist is profile-only in this study
    assert "synthetic" in text.lower() and "upsampled" in text.lower()


def test_snakemake_report_holds_the_figures(built):
    snakemake(f"--report report.html --configfile {SYN}", built)
    html = (built / "report.html").read_text(errors="replace")
    assert "curves_organamnist.pdf" in html and "Figures" in html


def test_second_snakemake_run_does_nothing(built):
    r = snakemake(f"-n --cores 1 --configfile {SYN}", built)
    assert "Nothing to be done" in r.stdout + r.stderr


def test_changing_one_parameter_reruns_only_what_depends_on_it(built):
    cfg_path = built / SYN
    original = cfg_path.read_text()
    try:
        cfg = yaml.safe_load(original)
        cfg["models"]["s4d"]["lr"] = 0.005
        cfg_path.write_text(yaml.safe_dump(cfg))
        counts = jobs_planned(snakemake(f"-n --cores 1 --configfile {SYN}", built).stdout)
        runs_s4d = 2 * 2 * 2  # datasets x resolutions x seeds
        assert counts.get("train") == runs_s4d and counts.get("evaluate") == runs_s4d
        assert "download" not in counts and "preprocess" not in counts
        assert counts.get("profile") == 3 * 2  # s4d profiles depend on models.s4d (3 datasets x 2 res)
        assert counts.get("paper") == 1
    finally:
        cfg_path.write_text(original)


def test_after_a_crash_the_rerun_redoes_only_the_incomplete_job(built):
    """A run whose training crashed has no outputs (Snakemake removes them), and nothing
    downstream of it exists yet: the rerun redoes that run and the report stages only."""
    out = built / SYN_OUT
    run = out / "results/runs/bloodmnist_64_vit_s1"
    for name in ("best.pt", "history.csv", "train_summary.json", "metrics.json", "test_logits.npz",
                 "confusion_matrix.csv"):
        (run / name).unlink()
    for gone in (out / "results/aggregate", out / "results/figures", out / "paper/generated", out / "paper/main.pdf"):
        shutil.rmtree(gone) if gone.is_dir() else gone.unlink()
    counts = jobs_planned(snakemake(f"-n --cores 1 --configfile {SYN}", built).stdout)
    assert counts.get("train") == 1 and counts.get("evaluate") == 1, counts
    assert "download" not in counts and "preprocess" not in counts and "profile" not in counts
    assert counts.get("paper") == 1
    snakemake(f"--cores 2 --configfile {SYN}", built)  # the rerun
    assert (out / "paper/main.pdf").exists() and (run / "metrics.json").exists()
    r = snakemake(f"-n --cores 1 --configfile {SYN}", built)
    assert "Nothing to be done" in r.stdout + r.stderr


def test_dvc_records_a_snakemake_run_and_both_tools_agree(built):
    r = sh(f"dvc commit -f {SYN_DVC} && {sys.executable} -m snakemake --touch --cores 1 --configfile {SYN}", built)
    status = sh(f"dvc status {SYN_DVC}", built).stdout
    assert "up to date" in status, status
    r = snakemake(f"-n --cores 1 --configfile {SYN}", built)
    assert "Nothing to be done" in r.stdout + r.stderr
    # DVC sees the test metrics and the training curves
    metrics = sh("dvc metrics show --json", built).stdout
    assert f'{SYN_OUT}/results/runs/organamnist_28_s4d_s0/metrics.json' in metrics and '"acc"' in metrics
    plots = sh("dvc plots show --json", built).stdout
    assert f"{SYN_OUT}/results/runs/organamnist_28_s4d_s0/history.csv" in plots and "val_acc" in plots
    # a parameter change makes DVC rerun only the stages that read it
    cfg_path = built / SYN
    original = cfg_path.read_text()
    try:
        cfg = yaml.safe_load(original)
        cfg["train"]["max_eval_samples"] = 40
        cfg_path.write_text(yaml.safe_dump(cfg))
        changed = [ln.split(":")[1] for ln in sh(f"dvc status {SYN_DVC}", built).stdout.splitlines()
                   if ln.startswith(SYN_DVC + ":")]
        # train and evaluate read train.max_eval_samples; the paper's setup text reads the whole config
        assert changed and all(s.startswith(("train-", "evaluate-", "paper_inputs")) for s in changed), changed
        assert any(s.startswith("evaluate-") for s in changed)
    finally:
        cfg_path.write_text(original)


def test_dvc_push_pull_restores_data_and_checkpoints_without_retraining(built, tmp_path):
    remote = tmp_path / "remote"
    sh(f"dvc commit -f -q {SYN_DVC} && dvc remote modify --local local url {remote} && dvc push -q {SYN_DVC}", built)
    sh("git add -A && (git diff --cached --quiet || git -c user.email=t@t -c user.name=t commit -qm 'record the run')",
       built)  # the clone needs dvc.lock
    clone = tmp_path / "clone"
    sh(f"git clone -q {built} {clone}", tmp_path)
    sh(f"dvc remote modify --local local url {remote} && dvc pull -q {SYN_DVC}", clone)
    ckpt = clone / SYN_OUT / "results/runs/organamnist_28_s4d_s0/best.pt"
    assert ckpt.exists() and (clone / SYN_OUT / "data/processed/bloodmnist_64.npz").exists()
    status = sh(f"dvc status {SYN_DVC}", clone).stdout
    assert "up to date" in status, status
    (clone / SYN_OUT / "paper/main.pdf").unlink()
    # Rebuild the paper stage itself (a plain `dvc repro` would just check the PDF out of the cache).
    r = sh(f"dvc repro --force --single-item {SYN_DVC}:paper", clone)
    ran = [ln for ln in r.stdout.splitlines() if ln.startswith("Running stage")]
    assert any(ln.rstrip(":").endswith(":paper'") for ln in ran), r.stdout
    assert not any("train-" in ln or "evaluate-" in ln for ln in ran), ran
    assert (clone / SYN_OUT / "paper/main.pdf").exists()


@needs_tex
def test_dvc_repro_from_a_fresh_copy_builds_the_same_smoke_paper(built, tmp_path):
    fresh = copy_repo(tmp_path)
    sh(f"dvc repro -q {SYN_DVC}", fresh, timeout=1800)
    assert (fresh / SYN_OUT / "paper/main.pdf").exists()
    a = pd.read_csv(built / SYN_OUT / "results/aggregate/runs.csv")
    b = pd.read_csv(fresh / SYN_OUT / "results/aggregate/runs.csv")
    cols = ["dataset", "resolution", "model", "seed", "acc", "auc", "macro_f1", "test_loss", "params"]
    pd.testing.assert_frame_equal(a[cols], b[cols])  # CPU training is deterministic given the seed
    sh(f"{sys.executable} -m snakemake --touch --cores 1 --configfile {SYN}", fresh)  # DVC relinks by content
    r = snakemake(f"-n --cores 1 --configfile {SYN}", fresh)
    assert "Nothing to be done" in r.stdout + r.stderr


@needs_real_organamnist
@needs_tex
def test_smoke_study_on_real_organamnist(tmp_path):
    root = copy_repo(tmp_path)
    snakemake("--cores 2 --configfile config/smoke.yaml", root, env={"MEDMNIST_ROOT": str(SHARED_MEDMNIST)})
    acc = pd.read_csv(root / "build/smoke/results/aggregate/accuracy.csv")
    assert set(acc["model"]) == {"vit", "s4d"} and set(acc["resolution"]) == {28, 64}
    assert acc["official_data"].all() and acc.loc[acc.resolution == 64, "upsampled"].all()
    text = sh(["pdftotext", "-layout", str(root / "build/smoke/paper/main.pdf"), "-"], root).stdout
    for value in acc["acc_mean"]:
        assert f"{value:.3f}" in text
