import contextlib
import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import META, RAW, RUN, needs_real_organamnist
from ssmvit.datasets import fetch_raw, preprocess
from ssmvit.errors import UserError
from ssmvit.evaluate import evaluate_run
from ssmvit.fileio import load_torch
from ssmvit.training import NonFiniteLoss, train_one_run


@pytest.fixture
def prepared(tiny_cfg, in_tmp):
    fetch_raw(tiny_cfg, "organamnist", 28)
    preprocess(tiny_cfg, "organamnist", 28, RAW("organamnist", 28))
    return tiny_cfg


@pytest.mark.parametrize("model", ["s4d", "vit"])
def test_short_training_lowers_loss_and_writes_outputs(prepared, model):
    cfg = copy.deepcopy(prepared)
    cfg["train"]["epochs"] = 4
    s = train_one_run(cfg, "organamnist", 28, model, 0, progress=False)
    run = RUN("organamnist", 28, model, 0)
    hist = pd.read_csv(run / "history.csv")
    assert list(hist.columns) == ["dataset", "resolution", "model", "seed", "epoch", "train_loss", "train_acc",
                                  "val_loss", "val_acc", "lr", "seconds"]
    assert set(hist["model"]) == {model} and set(hist["seed"]) == {0}  # the run names itself in its history
    assert len(hist) == 4 and hist["epoch"].tolist() == [1, 2, 3, 4]
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    assert hist["lr"].iloc[-1] < hist["lr"].iloc[0]  # cosine schedule decays
    for name in ("best.pt", "last.pt", "train_summary.json"):
        assert (run / name).exists()
    best = load_torch(run / "best.pt")
    assert best["val_acc"] == hist["val_acc"].max() and best["epoch"] == s["best_epoch"]
    assert s["finished"] and s["params"] > 0


def test_training_is_deterministic_given_seed(prepared, tmp_path):
    train_one_run(prepared, "organamnist", 28, "s4d", 3, out_dir=tmp_path / "a", progress=False)
    train_one_run(prepared, "organamnist", 28, "s4d", 3, out_dir=tmp_path / "b", progress=False)
    wa, wb = load_torch(tmp_path / "a" / "last.pt")["model"], load_torch(tmp_path / "b" / "last.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ha, hb = pd.read_csv(tmp_path / "a" / "history.csv"), pd.read_csv(tmp_path / "b" / "history.csv")
    assert np.array_equal(ha["val_loss"], hb["val_loss"])
    train_one_run(prepared, "organamnist", 28, "s4d", 4, out_dir=tmp_path / "c", progress=False)
    wc = load_torch(tmp_path / "c" / "last.pt")["model"]
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


@pytest.mark.parametrize("model", ["s4d", "vit"])
def test_interrupted_training_resumes_to_the_same_result(prepared, tmp_path, model):
    cfg = copy.deepcopy(prepared)
    cfg["train"]["epochs"] = 3
    train_one_run(cfg, "organamnist", 28, model, 1, out_dir=tmp_path / "full", progress=False)
    part = train_one_run(cfg, "organamnist", 28, model, 1, out_dir=tmp_path / "cut", stop_after_epochs=1, progress=False)
    assert part["epochs_done"] == 1 and not part["finished"]
    assert not (tmp_path / "cut" / "train_summary.json").exists()  # an unfinished run has no summary
    train_one_run(cfg, "organamnist", 28, model, 1, out_dir=tmp_path / "cut", progress=False)
    full, cut = load_torch(tmp_path / "full" / "last.pt"), load_torch(tmp_path / "cut" / "last.pt")
    assert all(torch.equal(full["model"][k], cut["model"][k]) for k in full["model"])
    hf = pd.read_csv(tmp_path / "full" / "history.csv").drop(columns="seconds")
    hc = pd.read_csv(tmp_path / "cut" / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(hf, hc)


def test_nonfinite_loss_names_epoch_and_step(prepared):
    _poison_training_data()
    with pytest.raises(NonFiniteLoss) as exc:
        train_one_run(prepared, "organamnist", 28, "s4d", 0, progress=False)
    msg = str(exc.value)
    assert "at epoch 1, step 1;" in msg and "lower the learning rate" in msg
    assert not (RUN("organamnist", 28, "s4d", 0) / "last.pt").exists()


def _poison_training_data():
    """A std of 0 in the metadata makes every normalised input infinite."""
    meta_path = META("organamnist", 28)
    meta = json.loads(meta_path.read_text())
    meta["std"] = [0.0]
    meta_path.write_text(json.dumps(meta))


def test_evaluate_writes_metrics_logits_and_confusion(prepared):
    train_one_run(prepared, "organamnist", 28, "s4d", 0, progress=False)
    m = evaluate_run(prepared, "organamnist", 28, "s4d", 0)
    run = RUN("organamnist", 28, "s4d", 0)
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["acc"] == m["acc"] and 0 <= m["acc"] <= 1 and 0 <= m["auc"] <= 1
    logits = np.load(run / "test_logits.npz")
    assert logits["logits"].shape == (128, 11) and logits["labels"].shape == (128,)
    cm = pd.read_csv(run / "confusion_matrix.csv")
    assert cm.shape == (11, 12) and cm.drop(columns="true").to_numpy().sum() == 128
    assert np.isclose(m["acc"], (logits["logits"].argmax(1) == logits["labels"]).mean())
    assert m["official_data"] is False


def test_evaluate_refuses_checkpoint_of_another_model(prepared):
    train_one_run(prepared, "organamnist", 28, "s4d", 0, progress=False)
    with pytest.raises(UserError, match="is a s4d at 28, not vit at 28"):
        evaluate_run(prepared, "organamnist", 28, "vit", 0,
                     checkpoint=RUN("organamnist", 28, "s4d", 0) / "best.pt")


def test_malicious_checkpoint_is_refused_without_running(prepared, tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "best.pt"
    bad.write_bytes(pickle.dumps({"model": Evil()}))
    with pytest.raises(UserError, match="refusing checkpoint"):
        evaluate_run(prepared, "organamnist", 28, "s4d", 0, checkpoint=bad)
    assert not marker.exists()


@needs_real_organamnist
def test_real_organamnist_short_run_learns(in_tmp, monkeypatch):
    from conftest import SHARED_MEDMNIST, TINY_MODELS
    from ssmvit.config import resolve

    monkeypatch.setenv("MEDMNIST_ROOT", str(SHARED_MEDMNIST))
    cfg = resolve({"outdir": ".", "models": copy.deepcopy(TINY_MODELS),
                   "train": {"epochs": 1, "max_train_samples": 1024, "max_eval_samples": 512, "device": "cpu"}})
    fetch_raw(cfg, "organamnist", 28)
    preprocess(cfg, "organamnist", 28, RAW("organamnist", 28))
    train_one_run(cfg, "organamnist", 28, "vit", 0, progress=False)
    m = evaluate_run(cfg, "organamnist", 28, "vit", 0)
    assert m["n_test"] == 512 and m["acc"] > 1 / 11 + 0.05  # better than chance after one short epoch


def test_a_slow_cpu_epoch_is_announced_up_front_and_epochs_say_what_is_left(prepared, monkeypatch, capsys):
    from ssmvit import training

    monkeypatch.setattr(training, "PACE_STEPS", 2)
    monkeypatch.setattr(training, "SLOW_EPOCH_S", 0.0)  # any epoch counts as slow here
    train_one_run(prepared, "organamnist", 28, "s4d", 0, progress=False)
    out = capsys.readouterr().out.splitlines()
    warning = [ln for ln in out if ln.startswith("warning: training on the CPU: about")]
    assert len(warning) == 1 and "per epoch" in warning[0] and "at the pace of the first 2 steps" in warning[0]
    assert out.index(warning[0]) < next(i for i, ln in enumerate(out) if "epoch 1 of 2" in ln)  # before epoch 1 ends
    assert "left" in next(ln for ln in out if "epoch 1 of 2" in ln)
    assert "left" not in next(ln for ln in out if "epoch 2 of 2" in ln)
    monkeypatch.setattr(training, "SLOW_EPOCH_S", 1e9)
    train_one_run(prepared, "organamnist", 28, "s4d", 1, progress=False)
    assert "warning" not in capsys.readouterr().out


def test_dvclive_logs_survive_runs_ending_together_in_one_repository(tmp_path, monkeypatch):
    """Trainings sharing a GPU end their dvclive logs in one DVC root; dvclive removes the root's step signal after
    checking it exists, so another run's removal in between raised FileNotFoundError and failed a finished run
    (seen on the GPU). Here a thread writes and removes that signal as fast as it can, as other runs do."""
    import subprocess
    import threading

    from ssmvit.training import write_live

    subprocess.run("git init -q && git -c user.email=t@t -c user.name=t commit -q --allow-empty -m init && "
                   "python3 -m dvc init -q", shell=True, cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    signal = tmp_path / ".dvc/tmp/exps/run/DVCLIVE_STEP_COMPLETED"
    signal.parent.mkdir(parents=True, exist_ok=True)
    done = threading.Event()

    def other_runs():
        while not done.is_set():
            signal.write_text("{}")
            with contextlib.suppress(FileNotFoundError):
                signal.unlink()

    history = [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.5, "lr": 1e-3,
                "seconds": 1.0} for e in (1, 2, 3)]
    thread = threading.Thread(target=other_runs, daemon=True)
    thread.start()
    try:
        for _ in range(150):  # without the fix about 5% of these writes failed
            write_live(tmp_path / "run/live/train", history)
    finally:
        done.set()
        thread.join()
    curve = pd.read_csv(tmp_path / "run/live/train/plots/metrics/train/loss.tsv", sep="\t")
    assert curve["step"].tolist() == [1, 2, 3]
    assert json.loads((tmp_path / "run/live/train/metrics.json").read_text())["step"] == 3
