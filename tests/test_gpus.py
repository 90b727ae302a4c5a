import os
import subprocess
import sys

from ssmvit.gpus import claim_gpu

HOLD = ("import os, sys, time; from ssmvit.gpus import claim_gpu; claim_gpu(sys.argv[1]); "
        "print('CVD=' + str(os.environ.get('CUDA_VISIBLE_DEVICES')), flush=True); time.sleep(float(sys.argv[2]))")


def _gpu_of(proc) -> str:
    for line in proc.stdout:
        if line.startswith("CVD="):
            return line.strip()[4:]
    raise AssertionError("no CVD line")


def _start(lock_dir, hold_s, env):
    return subprocess.Popen([sys.executable, "-c", HOLD, str(lock_dir), str(hold_s)], env=env,
                            stdout=subprocess.PIPE, text=True)


def test_concurrent_jobs_get_different_gpus_and_release_them(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["SSMVIT_GPU_COUNT"] = "2"
    a = _start(tmp_path, 5, env)
    first = _gpu_of(a)
    b = _start(tmp_path, 0, env)
    second = _gpu_of(b)
    assert {first, second} == {"0", "1"}
    b.wait()
    a.kill()  # even SIGKILL releases the slot (flock dies with the process)
    a.wait()
    c = _start(tmp_path, 0, env)
    assert _gpu_of(c) == "0"
    c.wait()


def test_jobs_per_gpu_shares_cards(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(SSMVIT_GPU_COUNT="2", SSMVIT_JOBS_PER_GPU="2")
    procs = [_start(tmp_path, 3, env) for _ in range(4)]
    seen = sorted(_gpu_of(p) for p in procs)
    for p in procs:
        p.kill()
        p.wait()
    assert seen == ["0", "0", "1", "1"]


def test_nothing_changes_with_one_gpu_or_a_scheduler_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("SSMVIT_GPU_COUNT", "1")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert claim_gpu(tmp_path) is None and "CUDA_VISIBLE_DEVICES" not in os.environ
    monkeypatch.setenv("SSMVIT_GPU_COUNT", "4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert claim_gpu(tmp_path) is None and os.environ["CUDA_VISIBLE_DEVICES"] == "3"


def test_pipeline_gpus_bench_records_which_card_ran_each_job(tmp_path):
    """bench/pipeline_gpus.py on CPU with two faked cards: modes run, each run says where it ran."""
    import pandas as pd
    import yaml

    from conftest import TINY_MODELS
    from test_pipeline import copy_repo

    root = copy_repo(tmp_path / "repo")
    cfg = yaml.safe_load((root / "config/smoke-synthetic.yaml").read_text())
    cfg["study"].update({"datasets": ["organamnist"], "resolutions": [28], "seeds": [0], "profile_only": []})
    cfg["data"]["upsample_from"] = {}
    cfg["train"].update({"epochs": 1, "max_train_samples": 64, "max_eval_samples": 64})
    cfg["models"] = TINY_MODELS
    (root / "config/tiny-gpus.yaml").write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "MEDMNIST_ROOT")}
    env["SSMVIT_GPU_COUNT"] = "2"
    r = subprocess.run([sys.executable, "bench/pipeline_gpus.py", "--config", "config/tiny-gpus.yaml",
                        "--out", "build/pg", "--modes", "2gpu", "1gpu", "--cores", "2"],
                       cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    modes = pd.read_csv(root / "build/pg/modes.csv")
    assert list(modes["mode"]) == ["2gpu", "1gpu"] and (modes["runs"] == 2).all() and (modes["wall_s"] > 0).all()
    runs = pd.read_csv(root / "build/pg/runs.csv", dtype={"cuda_visible_devices": str, "gpu_claim_log": str},
                       keep_default_na=False)
    assert sorted(runs["model"]) == ["s4d", "s4d", "vit", "vit"]
    two = runs[runs["mode"] == "2gpu"]
    for _, row in two.iterrows():  # each job claimed a card and ran with only that card visible
        assert row["gpu_claim_log"] == f"gpu: this job uses GPU {row['cuda_visible_devices']} " \
                                       f"(slot {row['cuda_visible_devices']} of 2)", row.to_dict()
    one = runs[runs["mode"] == "1gpu"]
    assert (one["cuda_visible_devices"] == "0").all() and (one["gpu_claim_log"] == "").all()  # already pinned
    # the same runs give the same test accuracy whatever the scheduling
    assert sorted(two["test_acc"]) == sorted(one["test_acc"])


def test_jobs_per_card_follow_free_memory_and_the_override(monkeypatch):
    from ssmvit import gpus

    monkeypatch.delenv("SSMVIT_JOBS_PER_GPU", raising=False)
    monkeypatch.setenv("SSMVIT_GPU_COUNT", "2")
    for free, per_card in (("140000,140000", 4), ("30000,140000", 2), ("8000,8000", 1)):
        monkeypatch.setenv("SSMVIT_GPU_FREE_MIB", free)
        assert gpus.jobs_per_gpu() == per_card and gpus.gpu_slots() == 2 * per_card, free
    monkeypatch.setenv("SSMVIT_JOBS_PER_GPU", "3")
    assert gpus.jobs_per_gpu() == 3 and gpus.gpu_slots() == 6
    monkeypatch.setenv("SSMVIT_GPU_COUNT", "0")
    monkeypatch.delenv("SSMVIT_JOBS_PER_GPU")
    monkeypatch.setenv("SSMVIT_GPU_FREE_MIB", "")
    monkeypatch.setattr(gpus, "_nvidia_smi", lambda *q: [])
    assert gpus.gpu_slots() == os.cpu_count()  # no GPU: the GPU rules run on the CPU, as many at once as cores


def test_gpu_jobs_share_slots_and_profiles_run_alone(tmp_path):
    """The synthetic study with two GPU slots (as a card with room for two jobs would have): trainings and
    evaluations overlap, no profile overlaps any other GPU job (its compile job included), and the profiles, which need no data, wait
    for the trainings and their evaluations instead of taking the idle card at the start."""
    import json

    import yaml

    from conftest import TINY_MODELS
    from test_pipeline import copy_repo

    root = copy_repo(tmp_path / "repo")
    cfg = yaml.safe_load((root / "config/smoke-synthetic.yaml").read_text())
    cfg["study"].update({"datasets": ["organamnist"], "resolutions": [28], "seeds": [0], "profile_only": ["bloodmnist"]})
    cfg["train"].update({"epochs": 2})
    cfg["models"] = TINY_MODELS
    (root / "config/slots.yaml").write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "MEDMNIST_ROOT")}
    env.update(SSMVIT_GPU_COUNT="1", SSMVIT_JOBS_PER_GPU="2")
    r = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "4", "--configfile", "config/slots.yaml",
                        "--omit-from", "aggregate"], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "gpu_slots=2" in r.stdout + r.stderr  # the default profile gave Snakemake two slots
    out = root / "build/smoke-synthetic/results"
    trainings = [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/train_summary.json"))]
    jobs = trainings + [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/metrics.json"))]
    profiles = [json.loads(p.read_text()) for p in sorted(out.glob("profile/*/*.json"))]
    compiles = [json.loads(p.read_text()) for p in sorted(out.glob("compile/*.json"))]
    assert len(jobs) == 4 and len(profiles) == 4 and len(compiles) == 2

    def overlap(a, b):
        return a["started_at"] < b["ended_at"] and b["started_at"] < a["ended_at"]

    assert any(overlap(a, b) for i, a in enumerate(jobs) for b in jobs[i + 1:])  # the slots were shared
    for p in profiles:
        assert not any(overlap(p, j) for j in jobs + compiles + [q for q in profiles if q is not p]), p["model"]
        assert all(c["ended_at"] <= p["started_at"] for c in compiles
                   if (c["model"], c["resolution"]) == (p["model"], p["resolution"])), p["model"]
        assert all(j["ended_at"] <= p["started_at"] for j in jobs), p["model"]  # evaluations too
