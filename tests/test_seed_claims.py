"""The seed study's table and claims against our profiles: the verdicts follow the data.

On the committed reference profiles the regime-free figures are exact (parameters, torchinfo's
Mult-Adds for S4D); synthetic efficiency rows then show that each verdict turns with the numbers.
"""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO
from ssmvit import aggregate
from ssmvit.errors import UserError
from ssmvit.seed_claims import ABSENT, MIXED, NOT_JUDGED, NOT_MEASURED, NOT_REPRODUCED, REPRODUCED, read_seed_table, seed_claims

SEED_TABLE = REPO / "paper/seed_study.csv"
CONFIGS = [("organamnist", 28), ("dermamnist", 64)]


def committed_efficiency() -> pd.DataFrame:
    return aggregate.efficiency_table(sorted((REPO / "results/profile").glob("*/*.json")))


def by_id(table: pd.DataFrame) -> dict:
    return {r["id"]: r for _, r in table.iterrows()}


def test_seed_table_is_the_printed_one():
    seed = read_seed_table(SEED_TABLE)
    assert list(zip(seed["dataset"], seed["model"], seed["resolution"])) == [
        ("organamnist", "s4d", 28), ("organamnist", "vit", 28), ("dermamnist", "s4d", 64), ("dermamnist", "vit", 64)]
    assert list(seed["mult_adds_text"]) == ["103.57 MB", "122.45 MB", "2.16 GB", "410.26 MB"]
    assert list(seed["throughput_samples_s"]) == [1766.26, 1126.30, 176.13, 235.52]
    assert seed["source"].str.contains("S4-vs-VIT-on-Medical-MNIST").all()


def test_committed_profiles_reproduce_params_and_the_s4d_mult_adds_exactly():
    t = by_id(seed_claims(read_seed_table(SEED_TABLE), committed_efficiency()))
    for dataset, res in CONFIGS:
        for model in ("s4d", "vit"):
            assert t[f"{dataset} {res}x{res} {model} params"]["verdict"] == REPRODUCED
            assert t[f"{dataset} {res}x{res} {model} peak_vram_mb"]["verdict"] == NOT_JUDGED
        assert t[f"{dataset} {res}x{res} s4d mult-adds"]["verdict"] == REPRODUCED  # torchinfo, the seed's counter
        assert t[f"{dataset} {res}x{res} vit mult-adds"]["verdict"] == NOT_REPRODUCED
    assert t["organamnist 28x28 s4d mult-adds"]["train_fp32"] == 103_565_963
    assert t["dermamnist 64x64 s4d mult-adds"]["train_fp32"] == 2_155_877_127
    assert "no counter gives 122.45 M" in t["organamnist 28x28 vit mult-adds"]["reason"]
    assert t["params"]["verdict"] == REPRODUCED and 99 < t["params"]["train_fp32"] < 121
    # counted the same way for both models, S4D needs fewer MACs at 64x64 RGB, not 5x more
    assert t["macs-64"]["verdict"] == NOT_REPRODUCED and t["macs-64"]["train_fp32"] < 1 < t["macs-64"]["seed"]


def efficiency_rows(s4d: dict, vit: dict) -> pd.DataFrame:
    """Minimal efficiency rows for the two seed configurations; ``s4d``/``vit`` override the columns."""
    base = {"device_type": "cuda", "params": 1e6, "macs_analytic": 1e8, "macs_torchinfo": 1e7, "macs_thop": 1e8, "macs_flopcounter": 1e8,
            "train_batch_size": 64, "train_peak_allocated_mb": 100.0, "train_peak_allocated_mb_trained": 80.0,
            "infer_peak_allocated_mb_bs64": 20.0, "train_samples_per_s_fp32": 1000.0,
            "train_samples_per_s_trained": 2000.0, "infer_samples_per_s_bs64": 5000.0,
            "infer_samples_per_s_bs64_trained": 10000.0, "infer_peak_allocated_mb_bs64_trained": 15.0}
    rows = []
    for dataset, res in CONFIGS:
        for model, over in (("s4d", s4d), ("vit", vit)):
            rows.append({"dataset": dataset, "resolution": res, "model": model} | base | over)
    return pd.DataFrame(rows)


THROUGHPUT = ("train_samples_per_s_fp32", "train_samples_per_s_trained", "infer_samples_per_s_bs64",
              "infer_samples_per_s_bs64_trained")


@pytest.mark.parametrize(("s4d_faster_in", "verdict_28", "verdict_64"), [
    (THROUGHPUT, REPRODUCED, NOT_REPRODUCED),   # the seed: S4D faster at 28, ViT faster at 64
    ((), NOT_REPRODUCED, REPRODUCED),
    (THROUGHPUT[:1], MIXED, MIXED),
])
def test_throughput_verdicts_turn_with_the_measurements(s4d_faster_in, verdict_28, verdict_64):
    s4d = {c: (2.0 if c in s4d_faster_in else 0.5) * 1000 for c in THROUGHPUT}
    vit = dict.fromkeys(THROUGHPUT, 1000.0)
    t = by_id(seed_claims(read_seed_table(SEED_TABLE), efficiency_rows(s4d, vit)))
    assert (t["throughput-28"]["verdict"], t["throughput-64"]["verdict"]) == (verdict_28, verdict_64)
    assert t["throughput-28"]["train_fp32"] == pytest.approx(s4d["train_samples_per_s_fp32"] / 1000)


def test_inference_is_judged_at_the_largest_profiled_batch():
    """At small batches the fast path's inference is bound by launches; the claims read the largest batch."""
    s4d = {"infer_samples_per_s_bs64": 500.0, "infer_samples_per_s_bs1024": 8000.0,
           "infer_samples_per_s_bs64_trained": 500.0, "infer_samples_per_s_bs1024_trained": 9000.0}
    vit = {"infer_samples_per_s_bs64": 1000.0, "infer_samples_per_s_bs1024": 4000.0,
           "infer_samples_per_s_bs64_trained": 1000.0, "infer_samples_per_s_bs1024_trained": 3000.0}
    t = by_id(seed_claims(read_seed_table(SEED_TABLE), efficiency_rows(s4d, vit)))
    assert t["throughput-28"]["infer_fp32"] == pytest.approx(2.0)
    assert t["throughput-28"]["infer_trained"] == pytest.approx(3.0)


def test_mult_adds_and_params_claims_follow_the_counts():
    # S4D 5x ViT's MACs at both sizes: the 64x64 claim holds, "about the same at 28" does not
    t = by_id(seed_claims(read_seed_table(SEED_TABLE),
                          efficiency_rows({"macs_analytic": 5e8, "params": 1e5}, {"macs_analytic": 1e8, "params": 1.1e7})))
    assert t["macs-64"]["verdict"] == REPRODUCED and t["macs-28"]["verdict"] == NOT_REPRODUCED
    assert t["params"]["verdict"] == REPRODUCED  # 110x, the seed's 110.7x within 10%
    t = by_id(seed_claims(read_seed_table(SEED_TABLE),
                          efficiency_rows({"macs_analytic": 1e8, "params": 1e6}, {"macs_analytic": 1.2e8, "params": 1.1e7})))
    assert t["macs-28"]["verdict"] == REPRODUCED and t["macs-64"]["verdict"] == NOT_REPRODUCED
    assert t["params"]["verdict"] == NOT_REPRODUCED and t["params"]["reason"] == "ours 11.0x"


def test_a_profiled_configuration_without_a_count_is_not_measured_not_absent():
    eff = efficiency_rows({}, {}).assign(macs_torchinfo=float("nan"), macs_thop=float("nan"))
    t = by_id(seed_claims(read_seed_table(SEED_TABLE), eff))
    assert t["organamnist 28x28 s4d mult-adds"]["verdict"] == NOT_MEASURED
    assert "nan" not in " ".join(str(r) for r in t["macs-28"]["reason"])


def test_a_configuration_outside_the_study_is_said_so():
    eff = efficiency_rows({}, {})
    t = by_id(seed_claims(read_seed_table(SEED_TABLE), eff[eff["dataset"] == "organamnist"]))
    assert t["vram-64"]["verdict"] == ABSENT and t["dermamnist 64x64 s4d params"]["verdict"] == ABSENT
    assert t["throughput-28"]["verdict"] != ABSENT
    assert (seed_claims(read_seed_table(SEED_TABLE), None)["verdict"] == ABSENT).all()
    cpu = efficiency_rows({}, {}).assign(train_peak_allocated_mb=None, train_peak_allocated_mb_trained=None,
                                         infer_peak_allocated_mb_bs64=None,
                                         infer_peak_allocated_mb_bs64_trained=None)  # a CPU profile: no VRAM
    t = by_id(seed_claims(read_seed_table(SEED_TABLE), cpu))
    assert t["vram-64"]["verdict"] == NOT_MEASURED and t["dermamnist 64x64 s4d peak_vram_mb"]["verdict"] == NOT_MEASURED
    t = by_id(seed_claims(read_seed_table(SEED_TABLE), efficiency_rows({}, {}).assign(device_type="cpu")))
    for cid in ("throughput-28", "throughput-64", "vram-64"):  # the seed's figures are GPU figures
        assert (t[cid]["verdict"], t[cid]["reason"]) == (NOT_JUDGED, "measured on a CPU, not a GPU"), cid
    assert t["params"]["verdict"] == NOT_REPRODUCED  # judged on a CPU too (ratio 1 here, not 110): counts need no GPU


def test_a_broken_seed_table_is_one_line_naming_the_fix(tmp_path):
    bad = tmp_path / "seed_study.csv"
    bad.write_text("dataset,model\norganamnist,s4d\n")
    with pytest.raises(UserError, match=r"lacks column\(s\) resolution_stated, .*restore paper/seed_study.csv"):
        read_seed_table(bad)
    out = subprocess.run([sys.executable, "-m", "ssmvit", "aggregate", "--config", str(REPO / "config/reference.yaml"),
                          "--seed-study", str(tmp_path / "missing.csv"), "--out-dir", str(tmp_path / "agg")],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "cannot read the seed study's table" in out.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "agg").exists()  # nothing half-written
