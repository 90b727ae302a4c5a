import math

import numpy as np
import pytest

from ssmvit.metrics import classification_metrics, softmax


def test_metrics_against_hand_computed_values():
    labels = np.array([0, 0, 1, 1, 2, 2])
    # predictions: 0, 1, 1, 1, 2, 0  -> 4 of 6 right
    logits = np.log(np.array([
        [0.8, 0.1, 0.1],
        [0.3, 0.6, 0.1],
        [0.1, 0.8, 0.1],
        [0.2, 0.7, 0.1],
        [0.1, 0.1, 0.8],
        [0.5, 0.2, 0.3],
    ]))
    m = classification_metrics(labels, logits, 3)
    assert m["acc"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["per_class_acc"] == pytest.approx([0.5, 1.0, 0.5])
    # F1 per class: c0 p=1/2 r=1/2 -> 1/2; c1 p=2/3 r=1 -> 4/5; c2 p=1 r=1/2 -> 2/3
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # One-vs-rest AUC per class, averaged (medmnist's getAUC):
    # c0 scores pos {.8,.3} neg {.1,.2,.1,.5}: pairs won 4 + 3 = 7 of 8 -> .875
    # c1 pos {.7,.8} neg {.1,.6,.1,.2}: 8 of 8 -> 1
    # c2 pos {.8,.3} neg {.1,.1,.1,.1}: 8 of 8 -> 1
    assert m["auc"] == pytest.approx((0.875 + 1 + 1) / 3)
    assert m["n_test"] == 6


def test_auc_is_missing_not_zero_when_a_class_is_absent():
    labels = np.array([0, 0, 1])
    m = classification_metrics(labels, np.zeros((3, 3)), 3)
    assert math.isnan(m["auc"]) and "2 of 3 classes" in m["auc_note"]


def test_softmax_is_stable():
    p = softmax(np.array([[1000.0, 0.0], [0.0, 0.0]]))
    assert np.allclose(p, [[1, 0], [0.5, 0.5]])


def test_seed_comparison_is_welchs_t_over_seeds_for_each_pair_of_models():
    import pandas as pd

    from ssmvit.aggregate import seed_comparison

    accs = {"vit": [0.80, 0.82, 0.84], "s4d": [0.70, 0.71, 0.72], "resnet18": [0.90]}
    runs = pd.DataFrame([{"dataset": "organamnist", "resolution": 28, "model": m, "seed": s, "acc": a}
                         for m, v in accs.items() for s, a in enumerate(v)])
    t = seed_comparison(runs, ["vit", "s4d", "resnet18"])
    assert list(zip(t["model_a"], t["model_b"])) == [("vit", "s4d"), ("vit", "resnet18"), ("s4d", "resnet18")]
    row = t.iloc[0]
    # by hand: standard errors^2 0.0004/3 and 0.0001/3; t = 0.11 / sqrt(0.0005/3); Welch-Satterthwaite df
    va, vb = 0.0004 / 3, 0.0001 / 3
    assert row["diff_a_minus_b"] == pytest.approx(0.11)
    assert row["welch_t"] == pytest.approx(0.11 / math.sqrt(va + vb))
    assert row["welch_df"] == pytest.approx((va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2))
    assert 0.003 < row["welch_p"] < 0.004  # two-sided, t = 8.52 on 2.94 df
    assert t.iloc[1][["welch_t", "welch_p"]].isna().all()  # one ResNet-18 seed: no test, not a zero


def test_a_run_is_flagged_when_other_jobs_used_its_gpu_while_it_trained():
    import pandas as pd

    from ssmvit.aggregate import _any_shared, shared_gpu_jobs

    gpu0, gpu1 = {"host": "h", "gpu_uuid": "GPU-0"}, {"host": "h", "gpu_uuid": "GPU-1"}
    run = {"where": gpu0, "started_at": 100.0, "ended_at": 200.0}
    others = [run,
              {"where": gpu0, "started_at": 150.0, "ended_at": 250.0},   # same card, overlapping: counted
              {"where": gpu0, "started_at": 200.0, "ended_at": 300.0},   # same card, after it: not counted
              {"where": gpu1, "started_at": 120.0, "ended_at": 180.0},   # another card: not counted
              {"where": {"host": "h"}, "started_at": 120.0, "ended_at": 180.0}]  # a CPU job: not counted
    assert shared_gpu_jobs(run, others) == 1
    assert shared_gpu_jobs({"where": {"host": "h"}, "started_at": 1.0, "ended_at": 2.0}, others) is None  # CPU
    assert shared_gpu_jobs({"where": gpu0}, others) is None  # times not recorded (an older file)
    assert _any_shared(pd.Series([0, 1])) is True and _any_shared(pd.Series([0, 0])) is False
    assert _any_shared(pd.Series([None, None])) is None
