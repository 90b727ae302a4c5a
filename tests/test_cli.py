"""The ``ssmvit`` command as a person runs it: bad input stops with one line and writes nothing;
a stage on a fresh folder makes the files it needs at the pipeline's paths."""

import json

import pytest
import yaml

from conftest import run_ssmvit


@pytest.fixture
def cfg_file(tiny_cfg, tmp_path):
    p = tmp_path / "config.yaml"
    p.write_text(yaml.safe_dump(tiny_cfg))
    return p


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file() and p.name != "config.yaml")


RUN = ["--model", "s4d", "--dataset", "organamnist", "--res", "28"]


@pytest.mark.parametrize("args, needle", [
    (["train", "--model", "mamba", "--dataset", "organamnist", "--res", "28"], "unknown model 'mamba'; valid choices: vit, s4d, resnet18"),
    (["train", "--model", "s4d", "--dataset", "organmnist", "--res", "28"], "unknown dataset 'organmnist'; did you mean 'organamnist'?"),
    (["train", "--model", "s4d", "--dataset", "chestmnist", "--res", "28"], "chestmnist is multi-label, binary-class"),
    (["train", "--model", "s4d", "--dataset", "organmnist3d", "--res", "28"], "organmnist3d is a 3D dataset"),
    (["train", "--model", "s4d", "--dataset", "../../etc", "--res", "28"], "unknown dataset '../../etc'"),
    (["train", "--model", "s4d", "--dataset", "organamnist", "--res", "32"], "unknown resolution 32; valid choices: 28, 64, 128, 224"),
    (["train", *RUN, "--seed", "-1"], "--seed -1 is negative"),
    (["train", *RUN, "--set", "train.epochs=0"], "out of range"),
    (["train", *RUN, "--set", "train.lr=0.1"], "unknown config key 'train.lr'"),
    (["train", *RUN, "--set", "train.epochs"], "is not KEY=VALUE"),
    (["train", *RUN, "--set", "train.epochs=!!python/object:os.system ls"], "is not valid YAML"),
    (["train", *RUN, "--set", "models.vit.lr=.nan"], "is not a finite number"),
    (["train", *RUN, "--settings", "{}", "--set", "train.epochs=1"], "--settings replaces --config and --set"),
    (["train", *RUN, "--settings", "{not json"], "--settings is not valid JSON"),
    (["evaluate", *RUN], "run the training stage first"),
    (["compile", "--model", "s4d", "--res", "28", "--dataset", "organmnist"], "did you mean 'organamnist'?"),
    (["compile", "--model", "s4d", "--res", "28", "--device", "tpu"], "--device 'tpu' is not one of auto, cpu, cuda"),
    (["preprocess", "--dataset", "organamnist", "--res", "64", "--raw", "missing.npz"], "does not exist; run the download stage first"),
])
def test_bad_input_is_one_line_and_writes_nothing(cfg_file, tmp_path, args, needle):
    r = run_ssmvit(*args, "--config", cfg_file, cwd=tmp_path) if "--settings" not in args else \
        run_ssmvit(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert files_under(tmp_path) == []


def test_unreachable_data_says_what_to_do_in_one_line(cfg_file, tmp_path):
    cfg = yaml.safe_load(cfg_file.read_text())
    cfg["data"].update(local_root=None, mirror_url="http://127.0.0.1:9/", download_retries=1)
    cfg_file.write_text(yaml.safe_dump(cfg))
    r = run_ssmvit("train", *RUN, "--config", cfg_file, cwd=tmp_path)
    assert r.returncode == 2
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: download of data/raw/organamnist_for_28.npz") and "$MEDMNIST_ROOT" in line, r.stderr
    assert files_under(tmp_path) == []


def test_train_on_a_fresh_folder_makes_what_it_needs_at_the_pipeline_paths(cfg_file, tmp_path):
    """`ssmvit train` alone: download and preprocessing first, into the files the pipeline uses."""
    r = run_ssmvit("train", *RUN, "--no-progress", "--config", cfg_file, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "preparing it" in r.stdout and "downloading it first" in r.stdout
    made = files_under(tmp_path)
    for f in ("data/raw/organamnist_for_28.npz", "data/processed/organamnist_28.npz", "data/processed/organamnist_28.json",
              "results/runs/organamnist_28_s4d_s0/best.pt", "results/runs/organamnist_28_s4d_s0/history.csv",
              "results/runs/organamnist_28_s4d_s0/train_summary.json"):
        assert f in made, made
    r = run_ssmvit("evaluate", *RUN, "--config", cfg_file, cwd=tmp_path)
    assert r.returncode == 0 and "test ACC" in r.stdout, r.stderr
    m = json.loads((tmp_path / "results/runs/organamnist_28_s4d_s0/metrics.json").read_text())
    assert (m["dataset"], m["resolution"], m["model"], m["seed"]) == ("organamnist", 28, "s4d", 0)


def test_stacked_config_files_and_set_apply_in_order(cfg_file, tmp_path):
    from ssmvit.config import load

    extra = tmp_path / "more.yaml"
    extra.write_text("train: {epochs: 3}\nstudy: {seeds: [4]}\n")
    cfg = load([cfg_file, extra], ["train.epochs=7", "data.upsample_from={}"])
    assert cfg["train"]["epochs"] == 7 and cfg["study"]["seeds"] == [4]
    assert cfg["train"]["batch_size"] == 32  # from the first file, untouched by the second
    cfg = load([cfg_file], ["data.upsample_from={64: 28}"])
    assert load([cfg_file], ["data.upsample_from={64: 28}", "data.upsample_from={}"])["data"]["upsample_from"] == {}
    assert cfg["data"]["upsample_from"] == {64: 28}
