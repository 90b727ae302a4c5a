"""The pipeline as a user runs it: Snakemake and DVC, end to end, on CPU.

The end-to-end tests work in a fresh git repository holding a copy of the
checkout (tracked and untracked, not ignored files), so the working tree is
never touched and `git status` there says what a run changed. They run the
synthetic smoke study (no data files needed) and, where the real
OrganAMNIST-28 is present, the smoke study on it under both Snakemake and DVC.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys

import pandas as pd
import pytest
import yaml

from conftest import REPO, SHARED_MEDMNIST, copy_repo, needs_real_organamnist, sh, snakemake

SYN = "config/smoke-synthetic.yaml"
SYN_OUT = "build/smoke-synthetic"
SMOKE = "config/smoke.yaml"
SMOKE_DVC = "pipelines/smoke/dvc.yaml"
needs_tex = pytest.mark.skipif(shutil.which("latexmk") is None, reason="latexmk not installed (run setup.sh)")


def jobs_planned(dry_run_output: str) -> dict:
    """Job counts from the 'Job stats' table of `snakemake -n`."""
    counts, inside = {}, False
    for line in dry_run_output.splitlines():
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


def snakemake_jobs(configfile: str, cwd, extra: str = "") -> list[dict]:
    """Every job of a study as `snakemake -n -p --forceall` prints it: rule, inputs, outputs, command."""
    out = snakemake(f"-n -p --forceall --cores 1 --configfile {configfile} {extra}", cwd).stdout
    jobs, job = [], None
    for line in out.splitlines():
        if line.startswith(("rule ", "localrule ")):
            job = {"rule": line.split()[1].rstrip(":"), "input": [], "output": []}
        elif job is not None and line.startswith(("    input: ", "    output: ")):
            key, _, value = line.strip().partition(": ")
            job[key] = [v.strip() for v in value.split(",")]
        elif job is not None and line.startswith("Shell command: "):
            job["cmd"] = line[len("Shell command: "):]
            if job["rule"] != "all":
                jobs.append(job)
            job = None
    return jobs


def command_args(cmd: str) -> tuple[str, dict, str | None]:
    """(stage, {option: value}, --settings JSON) of an `ssmvit` command, without its log redirection."""
    words = shlex.split(cmd.split(" > ")[0])
    assert words[0] == "ssmvit", cmd
    opts, key = {}, None
    for w in words[2:]:
        if w.startswith("--"):
            key = w
            opts[key] = []
        else:
            opts[key].append(w)
    settings = opts.pop("--settings", [None])[0]
    opts.pop("--config", None)
    return words[1], {k: tuple(v) for k, v in opts.items()}, settings


# ---------------------------------------------------------------- fast checks (working tree, dry runs)

def test_full_study_dry_run_lists_every_job():
    counts = jobs_planned(snakemake("-n --forceall --cores 1", REPO).stdout)
    runs = 3 * 2 * 3 * 3  # datasets x resolutions x models (ViT, S4D, ResNet-18) x seeds of config.yaml
    assert counts["train"] == runs and counts["evaluate"] == runs
    assert counts["profile"] == 2 * 3  # resolutions x models: each job measures every input shape once
    assert counts["compile"] == 2 * 3  # and compiles them ahead of it
    assert counts["download"] == 3 * 2 and counts["preprocess"] == 3 * 2
    for rule in ("aggregate", "plot", "paper", "all"):
        assert counts[rule] == 1


@pytest.mark.parametrize("bad, needle", [
    ({"train": {"epochz": 1}}, "unknown config key 'train.epochz'"),
    ({"study": {"models": ["mamba"]}}, "unknown model 'mamba'"),
    ({"study": {"datasets": ["organmnist"]}}, "did you mean 'organamnist'?"),
    ({"train": {"batch_size": 0}}, "train.batch_size"),
    ({"train": {"epochs": "many"}}, "train.epochs"),
])
def test_snakemake_rejects_bad_config_before_any_job(tmp_path, bad, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    r = snakemake(f"-n --cores 1 --configfile {REPO / SMOKE} {path}", REPO, check=False)
    assert r.returncode != 0
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0], r.stderr[-2000:]


@pytest.mark.parametrize("value, needle", [("models={s4d: {lr: .nan}}", "is not a finite number"),
                                           ("train={epochs: many}", "train.epochs"),
                                           ("study={datasets: [organmnist]}", "did you mean 'organamnist'?")])
def test_bad_command_line_config_is_one_line(value, needle):
    r = snakemake(f"-n --cores 1 --configfile {SMOKE} --config '{value}'", REPO, check=False)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert r.returncode != 0 and len(errors) == 1 and needle in errors[0], r.stderr[-2000:]


def test_command_line_config_and_stacked_configfiles_reach_the_jobs(tmp_path):
    """--config and a second --configfile change exactly what each job's command receives."""
    more = tmp_path / "more.yaml"
    more.write_text("study: {seeds: [0, 1]}\nmodels: {s4d: {n_layers: 3}}\n")
    jobs = snakemake_jobs(f"{SMOKE} {more}", REPO, extra="--config 'train={epochs: 2}'")
    trains = [j for j in jobs if j["rule"] == "train"]
    assert len(trains) == 1 * 2 * 2  # resolutions x models x the stacked file's two seeds
    for job in trains:
        _, opts, settings = command_args(job["cmd"])
        s = json.loads(settings)
        assert s["train"]["epochs"] == 2 and s["train"]["max_train_samples"] == 6144  # --config merged into the file's
        model = opts["--model"][0]
        assert set(s["models"]) == {model}  # a job receives only its own model's settings
        if model == "s4d":
            assert s["models"]["s4d"]["n_layers"] == 3 and s["models"]["s4d"]["d_state"] == 16
    downloads = [command_args(j["cmd"])[2] for j in jobs if j["rule"] == "download"]
    assert all("train" not in json.loads(s) for s in downloads)  # nothing a download does not read


def test_dvc_stages_run_the_commands_of_snakemake_jobs():
    """On the smoke study: every Snakemake job is one DVC stage with the same command (options and
    values, the config source aside), the same outputs, inputs under the stage's deps, the same
    config values, and DVC params that cover every value the job depends on."""
    from dvc.repo import Repo

    from ssmvit.config import from_settings, load

    study = load([SMOKE])
    jobs = snakemake_jobs(SMOKE, REPO)
    with Repo(str(REPO)) as repo:
        stages = [s for s in repo.index.stages if s.path_in_repo == SMOKE_DVC]
        assert len(stages) == len(jobs)

        def covers(outs, files):  # a DVC out is a file or a folder holding the job's files
            return all(any(f == o or f.startswith(o.rstrip("/") + "/") for o in outs) for f in files) and \
                all(any(f == o or f.startswith(o.rstrip("/") + "/") for f in files) for o in outs)

        for job in jobs:
            stage = next((s for s in stages if covers([o.def_path for o in s.outs], job["output"])), None)
            assert stage is not None, f"no DVC stage writes {job['output']}"
            sk_stage, sk_opts, settings = command_args(job["cmd"])
            dvc_stage, dvc_opts, _ = command_args(stage.cmd)
            assert (sk_stage, sk_opts) == (dvc_stage, dvc_opts), stage.addressing
            assert "--config config/smoke.yaml" in stage.cmd
            deps = [d.def_path for d in stage.deps if d not in stage.params]  # files, not the params file
            for f in job["input"]:
                assert any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps), (stage.addressing, f)
            for d in deps:
                assert any(f == d or f.startswith(d.rstrip("/") + "/") for f in job["input"]), (stage.addressing, d)
            # the job's values are the file's values, and DVC reruns the stage when any of them changes
            values = from_settings(settings)
            tracked = [k for p in stage.params for k in (p.params or [""])]

            def leaves(node, where=""):
                for k, v in node.items():
                    here = f"{where}.{k}" if where else str(k)
                    yield from leaves(v, here) if isinstance(v, dict) and v else [(here, v)]

            for key, value in leaves(values):
                node = study
                for part in key.split("."):
                    node = node[int(part) if part.isdigit() and int(part) in node else part]
                assert node == value or value == {}, (stage.addressing, key)  # {}: what the job asked for is absent
                assert key == "outdir" or any(t == "" or key == t or key.startswith(t + ".") for t in tracked), \
                    (stage.addressing, key, tracked)


# ---------------------------------------------------------------- end to end (a fresh repository)

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The synthetic smoke study built by Snakemake in a fresh repository."""
    root = copy_repo(tmp_path_factory.mktemp("repo"))
    snakemake(f"--cores 2 --configfile {SYN}", root)
    return root


def test_a_study_run_changes_nothing_git_tracks(built):
    assert sh("git status --porcelain", built).stdout == ""
    prov = json.loads((built / SYN_OUT / "results/aggregate/provenance.json").read_text())
    head = sh("git rev-parse HEAD", built).stdout.strip()
    assert prov["git_commit"] == head and prov["git_dirty"] is False and prov["git_dirty_files"] == []


def test_study_benchmark_says_where_each_gpu_jobs_time_goes(built):
    import importlib.util

    spec = importlib.util.spec_from_file_location("study_bench", REPO / "bench" / "study.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    outdir = built / SYN_OUT
    first = min(json.loads(f.read_text())["started_at"] for f in outdir.glob("results/runs/*/train_summary.json"))
    jobs, seconds, per_job = study.collect(outdir, first - 1.0)
    assert jobs["train"] == jobs["evaluate"] == len(list(outdir.glob("results/runs/*/metrics.json")))
    by = {(j["family"], j["job"]): j for j in per_job}
    for (family, job), j in by.items():
        if family in ("train", "evaluate", "compile", "profile"):
            assert 0 < j["work_s"] <= j["seconds"], (family, job)  # the job's own record lies inside the job
            assert j["ended_s"] - j["started_s"] == pytest.approx(j["work_s"], abs=1e-6) or family == "profile"
        if family == "evaluate":  # an evaluation starts after its training ended
            assert by[("train", job)]["ended_s"] <= j["started_s"]
        if family == "train":
            assert j["first_epoch_s"] > 0 and j["later_epoch_s"] > 0
            assert j["first_epoch_extra_s"] == pytest.approx(j["first_epoch_s"] - j["later_epoch_s"])
        if family == "profile":
            profiles = [json.loads(f.read_text()) for f in (outdir / "results/profile" / job).glob("*.json")]
            assert j["shapes_timed"] == len({p["n_channels"] for p in profiles}) > 0  # each input shape timed once
            assert {"phase_macs_s", "phase_fp32_train_s", "phase_fp32_inference_s"} <= set(j)
    costs = study.fixed_costs(per_job)
    assert {j["shapes_compiled"] for j in per_job if j["family"] == "compile"} == {0}  # on CPU: nothing to compile
    for family in ("train", "evaluate", "compile", "profile"):
        c = costs[family]
        assert c["job_s"] == pytest.approx(sum(j["seconds"] for j in per_job if j["family"] == family), abs=0.1)
        assert c["outside_work_s"] == pytest.approx(c["job_s"] - c["work_s"], abs=0.11) and c["outside_work_s"] > 0
    assert set(costs["profile"]["phases_s"]) == {"macs", "fp32_train", "fp32_inference"}  # on CPU: no as-trained phases
    assert "compile_cache" not in costs["profile"] and "compile_cache" not in costs["compile"]  # nor compiles
    rec = {}  # on a GPU: each shape's hits and misses, summed per job
    study._add_cache_counts(rec, [{"inductor_hits": 3, "inductor_misses": 0}, None, {"inductor_hits": 2, "inductor_misses": 1}])
    assert rec == {"cache_inductor_hits": 5, "cache_inductor_misses": 1}
    line = study.timeline(per_job)
    assert 0 < line["train"][0] < line["train"][1] <= line["evaluate"][1]


def test_without_a_gpu_gpu_jobs_share_the_cores(built):
    """On a host without a GPU the GPU rules are limited by the cores, not by one GPU slot: with `--cores 2` and
    the synthetic study's `train.threads: 1`, trainings and evaluations run two at a time, each on the threads it
    asked for."""
    from ssmvit.gpus import count_gpus

    runs = sorted((built / SYN_OUT / "results/runs").iterdir())
    trainings = [json.loads((r / "train_summary.json").read_text()) for r in runs]
    evaluations = [json.loads((r / "metrics.json").read_text()) for r in runs]
    assert yaml.safe_load((built / SYN).read_text())["train"]["threads"] == 1
    assert {t["where"]["torch_threads"] for t in trainings} == {1}
    assert {e["where"]["torch_threads"] for e in evaluations} == {1}
    if count_gpus() == 0:
        spans = sorted((j["started_at"], j["ended_at"]) for j in trainings + evaluations)
        assert any(b0 < a1 for (_, a1), (b0, _) in zip(spans, spans[1:])), "no two GPU-rule jobs ran at once"


@needs_tex
def test_smoke_paper_prints_the_numbers_of_the_csv_and_its_clean_commit(built):
    pdf = built / SYN_OUT / "paper/main.pdf"
    assert pdf.exists() and pdf.stat().st_size > 10_000
    text = " ".join(sh(["pdftotext", "-layout", str(pdf), "-"], built).stdout.split())
    acc = pd.read_csv(built / SYN_OUT / "results/aggregate/accuracy.csv")
    ok = acc[acc.status == "ok"]
    assert len(ok) == 2 * 2 * 2  # organamnist and bloodmnist, 28 and 64, vit and s4d
    for value in ok["acc_mean"]:
        assert f"{value:.3f}" in text
    assert "needs download" in text  # dermamnist is profile-only in this study
    assert "synthetic" in text.lower() and "upsampled" in text.lower()
    assert "built from a clean commit" in text and "uncommitted" not in text


def test_provenance_names_an_edited_source_file(built):
    src = built / "src/ssmvit/metrics.py"
    original = src.read_text()
    try:
        src.write_text(original + "\n# an uncommitted edit\n")
        snakemake(f"--cores 1 --configfile {SYN} --forcerun aggregate --until aggregate", built)
        prov = json.loads((built / SYN_OUT / "results/aggregate/provenance.json").read_text())
        assert prov["git_dirty"] is True and prov["git_dirty_files"] == ["src/ssmvit/metrics.py"]
    finally:
        src.write_text(original)
    snakemake(f"--cores 2 --configfile {SYN} --forcerun aggregate", built)  # clean again, for the tests after this one
    assert json.loads((built / SYN_OUT / "results/aggregate/provenance.json").read_text())["git_dirty"] is False


def test_snakemake_report_has_a_description_captions_tables_and_benchmarks(built):
    snakemake(f"--report report.html --configfile {SYN}", built)
    html = (built / "report.html").read_text(errors="replace")
    (built / "report.html").unlink()
    assert "curves_organamnist.pdf" in html and "Figures" in html and "Tables" in html
    assert "accuracy.csv" in html and "efficiency.csv" in html
    assert "is a state space model reading an image" in html  # the description page
    assert "The data are synthetic" in html
    assert "Training curves of organamnist" in html and "Test confusion matrices of" in html  # captions per figure
    bench = pd.read_csv(built / SYN_OUT / "benchmarks/train/organamnist_28_s4d_s0.tsv", sep="\t")
    assert {"s", "max_rss"} <= set(bench.columns) and bench["s"].iloc[0] > 0


def test_training_logs_and_dvclive_say_what_happened(built):
    run = built / SYN_OUT / "results/runs/organamnist_28_s4d_s0"
    log = (built / SYN_OUT / "logs/train/organamnist_28_s4d_s0.log").read_text()
    assert "epoch 1 of 2" in log and "left" in log and "epoch 2 of 2" in log
    assert "evaluating" in (built / SYN_OUT / "logs/evaluate/organamnist_28_s4d_s0.log").read_text()
    assert "timing fp32 eager inference" in (built / SYN_OUT / "logs/profile/28_s4d.log").read_text()
    live = json.loads((run / "live/train/metrics.json").read_text())
    hist = pd.read_csv(run / "history.csv")
    assert live["step"] == 2 and live["val"]["acc"] == pytest.approx(hist["val_acc"].iloc[-1])
    curve = pd.read_csv(run / "live/train/plots/metrics/val/acc.tsv", sep="\t")
    assert list(curve["step"]) == [1, 2] and list(curve["acc"]) == pytest.approx(list(hist["val_acc"]))
    for name in ("train/loss.tsv", "train/acc.tsv", "val/loss.tsv", "lr.tsv", "epoch_seconds.tsv"):
        assert (run / "live/train/plots/metrics" / name).exists(), name
    test = json.loads((run / "live/test/metrics.json").read_text())["test"]
    assert test["acc"] == pytest.approx(json.loads((run / "metrics.json").read_text())["acc"])


def test_second_snakemake_run_does_nothing(built):
    r = snakemake(f"-n --cores 1 --configfile {SYN}", built)
    assert "Nothing to be done" in r.stdout + r.stderr


def test_changing_one_value_reruns_exactly_the_jobs_that_depend_on_it(built):
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
        assert counts.get("profile") == counts.get("compile") == 2  # s4d's read models.s4d (one per resolution)
        assert counts.get("aggregate") == counts.get("plot") == counts.get("paper") == 1
    finally:
        cfg_path.write_text(original)
    # the same through --config: training length reaches training only, not data or profiles
    counts = jobs_planned(snakemake(f"-n --cores 1 --configfile {SYN} --config 'train={{epochs: 3}}'", built).stdout)
    assert counts.get("train") == counts.get("evaluate") == 2 * 2 * 2 * 2
    assert not {"download", "preprocess", "compile", "profile"} & set(counts), counts
    # one resolution's source file reaches that resolution's jobs only (28x28 made from the 64x64 file)
    counts = jobs_planned(snakemake(f"-n --cores 1 --configfile {SYN} --config 'data={{upsample_from: {{28: 64}}}}'",
                                    built).stdout)
    assert counts.get("download") == counts.get("preprocess") == 2, counts  # 28x28 of both datasets
    assert counts.get("train") == 2 * 2 * 2 and not {"compile", "profile"} & set(counts), counts


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


def test_single_stage_commands_write_only_untracked_files(built):
    """The README's single-stage commands, as a person types them: nothing git tracks changes."""
    env = {"MEDMNIST_ROOT": str(built / SYN_OUT / "nothing-here")}
    syn = ["--config", SYN]
    for args in (["download", "--dataset", "organamnist", "--res", "28", *syn],
                 ["preprocess", "--dataset", "organamnist", "--res", "64", *syn],
                 ["train", "--model", "s4d", "--dataset", "organamnist", "--res", "64", "--set", "train.epochs=1", *syn],
                 ["evaluate", "--model", "s4d", "--dataset", "organamnist", "--res", "64", *syn],
                 ["compile", "--model", "s4d", "--res", "28", *syn],
                 ["profile", "--model", "s4d", "--dataset", "organamnist", "--res", "28", "--repeats", "1", *syn],
                 ["train", "--model", "s4d", "--dataset", "bloodmnist", "--res", "28",
                  "--set", "data.synthetic=true", "--set", "train.epochs=1", "--set", "train.max_train_samples=64"]):
        sh(["ssmvit", *args, "--no-progress"] if args[0] == "train" else ["ssmvit", *args], built, env=env)
    assert sh("git status --porcelain", built).stdout == ""
    assert (built / "build/default/results/runs/bloodmnist_28_s4d_s0/best.pt").exists()  # config.yaml's outdir


def test_dvc_records_a_snakemake_run_and_both_tools_agree(tmp_path_factory):
    """The synthetic study as DVC stages: `dvc commit` records a Snakemake run, and both tools
    then have nothing to do. (The smoke study's own DVC pipeline is checked below.)"""
    root = copy_repo(tmp_path_factory.mktemp("dvcsyn"))
    text = (REPO / SMOKE_DVC).read_text().replace("config/smoke.yaml", SYN)
    (root / "pipelines/syn").mkdir(parents=True)
    (root / "pipelines/syn/dvc.yaml").write_text(text)
    cfg = yaml.safe_load((root / SYN).read_text())
    cfg["study"].update(datasets=["organamnist"], resolutions=[28], seeds=[0], profile_only=[])
    (root / SYN).write_text(yaml.safe_dump(cfg))
    sh("git add -A && git -c user.email=t@t -c user.name=t commit -qm 'one run per model'", root)
    snakemake(f"--cores 2 --configfile {SYN}", root)
    sh(f"dvc commit -f -q pipelines/syn/dvc.yaml && {sys.executable} -m snakemake --touch --cores 1 --configfile {SYN}",
       root)
    assert "up to date" in sh("dvc status pipelines/syn/dvc.yaml", root).stdout
    assert "Nothing to be done" in snakemake(f"-n --cores 1 --configfile {SYN}", root).stdout
    # readable DVC views: one summary metric set, one titled curve per run, the study's params beside them
    metrics = json.loads(sh("dvc metrics show --json", root).stdout)
    files = {f for rev in metrics.values() for f in rev["data"]}
    assert files == {f"{out}/results/aggregate/summary.json" for out in (SYN_OUT, "build/smoke", "build/default", ".")} \
        or files == {f"{out}/results/aggregate/summary.json" for out in (SYN_OUT, "build/smoke", "build/default")} | \
        {"results/aggregate/summary.json"}, files  # one summary per pipeline in the repository, nothing else
    summary = next(iter(metrics.values()))["data"][f"{SYN_OUT}/results/aggregate/summary.json"]["data"]
    assert set(summary["organamnist"]["28"]) == {"vit", "s4d"} and 0 <= summary["organamnist"]["28"]["s4d"]["acc"] <= 1
    plots = sh("dvc plots show --json", root).stdout
    assert f"{SYN_OUT}/results/runs/organamnist_28_s4d_s0/history.csv" in plots and "validation accuracy" in plots
    assert "s4d organamnist 28x28, seed 0" in plots
    keep = rf"Experiment$|{SYN_OUT}/.*\.acc$|{SYN}:(train\.epochs|models\..*\.lr)$"  # the README's readable view
    shown = sh(["dvc", "exp", "show", "--no-pager", "--csv", "--drop", ".*", "--keep", keep], root).stdout.splitlines()
    # the committed reference summary shares organamnist.28.*, so DVC names each such column by its file
    summary_file = f"{SYN_OUT}/results/aggregate/summary.json"
    assert shown[0].split(",") == ["Experiment", f"{summary_file}:organamnist.28.s4d.acc",
                                   f"{summary_file}:organamnist.28.vit.acc",
                                   f"{SYN}:models.s4d.lr", f"{SYN}:models.vit.lr", f"{SYN}:train.epochs"], shown[0]
    assert 0 <= float(shown[1].split(",")[1]) <= 1  # the workspace row (CSV leaves its name empty)
    # a parameter change makes DVC rerun only the stages that read it
    cfg["train"]["max_eval_samples"] = 40
    (root / SYN).write_text(yaml.safe_dump(cfg))
    changed = [ln.split(":")[1] for ln in sh("dvc status pipelines/syn/dvc.yaml", root).stdout.splitlines()
               if ln.startswith("pipelines/syn/dvc.yaml:")]
    # DVC tracks whole sections where the file does not spell a key out: every stage reading `train` reruns
    assert changed and all(s.startswith(("train@", "evaluate@", "compile@", "profile@", "paper")) for s in changed), changed
    assert not any(s.startswith(("download@", "preprocess@")) for s in changed), changed
    # push, clone, pull: data and checkpoints come back without retraining
    remote = tmp_path_factory.mktemp("remote")
    sh(f"git checkout -q {SYN} && dvc remote modify --local local url {remote} && dvc push pipelines/syn/dvc.yaml",
       root)
    sh("git add -A && git add -f pipelines/syn/dvc.lock && git -c user.email=t@t -c user.name=t commit -qm run", root)
    clone = tmp_path_factory.mktemp("clone") / "c"
    sh(f"git clone -q {root} {clone}", root)
    sh(f"dvc remote modify --local local url {remote} && dvc pull pipelines/syn/dvc.yaml", clone)
    assert (clone / SYN_OUT / "results/runs/organamnist_28_s4d_s0/best.pt").exists()
    assert "up to date" in sh("dvc status pipelines/syn/dvc.yaml", clone).stdout
    (clone / SYN_OUT / "paper/main.pdf").unlink()
    r = sh("dvc repro --force --single-item pipelines/syn/dvc.yaml:paper", clone)
    ran = [ln for ln in r.stdout.splitlines() if ln.startswith("Running stage")]
    assert len(ran) == 1 and ran[0].rstrip(":").endswith(":paper'"), ran
    assert (clone / SYN_OUT / "paper/main.pdf").exists()


@needs_real_organamnist
@needs_tex
def test_dvc_repro_and_snakemake_build_the_same_smoke_paper(smoke_by_snakemake, tmp_path_factory):
    """The README's smoke study on the real OrganAMNIST-28, once with each tool, each in a fresh repository."""
    env = {"MEDMNIST_ROOT": str(SHARED_MEDMNIST)}
    assert smoke_by_snakemake["configfile"] == SMOKE
    by_snakemake = smoke_by_snakemake["root"]
    by_dvc = copy_repo(tmp_path_factory.mktemp("dvc"))
    sh(f"dvc repro -q {SMOKE_DVC}", by_dvc, env=env)
    tables = []
    for root in (by_snakemake, by_dvc):
        out = root / "build/smoke"
        assert (out / "paper/main.pdf").exists()
        acc = pd.read_csv(out / "results/aggregate/accuracy.csv")
        assert set(acc["model"]) == {"vit", "s4d"} and set(acc["resolution"]) == {28}
        assert acc["official_data"].all() and not acc["upsampled"].any()
        assert acc.loc[acc.model == "s4d", "acc_mean"].item() >= 0.6  # the smoke paper shows learning
        text = sh(["pdftotext", "-layout", str(out / "paper/main.pdf"), "-"], root).stdout
        for value in acc["acc_mean"]:
            assert f"{value:.3f}" in text
        tables.append(pd.read_csv(out / "results/aggregate/runs.csv"))
    assert sh("git status --porcelain", by_snakemake).stdout == ""
    assert sh("git status --porcelain", by_dvc).stdout == f"?? {SMOKE_DVC.replace('.yaml', '.lock')}\n"  # DVC's record
    cols = ["dataset", "resolution", "model", "seed", "acc", "auc", "macro_f1", "test_loss", "params"]
    pd.testing.assert_frame_equal(tables[0][cols], tables[1][cols])  # CPU training is deterministic given the seed
