"""The stage scripts as a user runs them: bad input stops with one line, writes nothing."""

import os

import pytest
import yaml

from conftest import REPO, run_script


@pytest.fixture
def cfg_file(tiny_cfg, tmp_path):
    p = tmp_path / "config.yaml"
    p.write_text(yaml.safe_dump(tiny_cfg))
    return p


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file() and p.name != "config.yaml")


@pytest.mark.parametrize("script, args, needle", [
    ("train.py", ["--model", "resnet", "--dataset", "organamnist", "--res", "28"], "unknown model 'resnet'; valid choices: vit, s4d"),
    ("train.py", ["--model", "s4d", "--dataset", "chestmnist", "--res", "28"], "unknown dataset 'chestmnist'; valid choices: organamnist, dermamnist, pathmnist, bloodmnist"),
    ("train.py", ["--model", "s4d", "--dataset", "../../etc", "--res", "28"], "unknown dataset '../../etc'"),
    ("train.py", ["--model", "s4d", "--dataset", "organamnist", "--res", "32"], "unknown resolution 32; valid choices: 28, 64, 128, 224"),
    ("train.py", ["--model", "s4d", "--dataset", "organamnist", "--res", "28", "--set", "train.epochs=0"], "out of range"),
    ("train.py", ["--model", "s4d", "--dataset", "organamnist", "--res", "28", "--set", "train.lr=0.1"], "unknown config key 'train.lr'"),
    ("train.py", ["--model", "s4d", "--dataset", "organamnist", "--res", "28"], "run the download/preprocess stage first"),
    ("evaluate.py", ["--model", "s4d", "--dataset", "organamnist", "--res", "28"], "run the training stage first"),
    ("preprocess.py", ["--dataset", "organamnist", "--res", "64"], "does not exist; run the download stage first"),
    ("download.py", ["--dataset", "organamnist", "--size", "30"], "unknown source size 30"),
])
def test_bad_input_is_one_line_and_writes_nothing(cfg_file, tmp_path, script, args, needle):
    r = run_script(script, "--config", cfg_file, *args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert files_under(tmp_path) == []


def test_stage_scripts_run_end_to_end(cfg_file, tmp_path):
    for script, args in [
        ("download.py", ["--dataset", "organamnist", "--size", "28"]),
        ("preprocess.py", ["--dataset", "organamnist", "--res", "28"]),
        ("train.py", ["--model", "s4d", "--dataset", "organamnist", "--res", "28", "--no-progress"]),
        ("evaluate.py", ["--model", "s4d", "--dataset", "organamnist", "--res", "28"]),
    ]:
        r = run_script(script, "--config", cfg_file, *args, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    assert "test ACC" in r.stdout
    assert (tmp_path / "results/runs/organamnist_28_s4d_s0/metrics.json").exists()
