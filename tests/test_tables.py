"""The aggregate tables: each is written with the columns ssmvit.tables names, and only those."""

import pandas as pd
import pytest

from conftest import REPO
from ssmvit import tables


def test_a_column_no_table_names_is_refused_and_a_missing_one_is_empty():
    with pytest.raises(KeyError, match="runs.csv has no column 'acc_typo'"):
        tables.frame("runs.csv", [{"dataset": "organamnist", "acc_typo": 0.9}])
    df = tables.frame("runs.csv", [{"dataset": "organamnist", "acc": 0.9}])
    assert list(df.columns) == tables.RUNS and df["auc"].isna().all()
    eff = tables.frame("efficiency.csv", [{"extra_b": 1, "dataset": "x", "extra_a": 2}])
    assert list(eff.columns) == tables.EFFICIENCY + ["extra_b", "extra_a"]  # open-ended: extras follow


def test_the_committed_reference_tables_have_exactly_the_named_columns():
    agg = REPO / "results" / "aggregate"
    for name, named in tables.COLUMNS.items():
        header = list(pd.read_csv(agg / name, nrows=0).columns)
        assert header[:len(named)] == named, name
        assert name in tables.OPEN_ENDED or header == named, name


def test_numeric_columns_hold_numbers_and_oom_is_said_in_its_own_column():
    eff = pd.read_csv(REPO / "results" / "aggregate" / "efficiency.csv")
    numeric = [c for c in eff.columns if c.startswith(("train_samples", "infer_", "latency", "macs_", "train_peak"))]
    for col in numeric:
        assert pd.api.types.is_numeric_dtype(eff[col]), col
    row = {"oom": "infer_samples_per_s_bs1024;train_samples_per_s_fp32"}
    assert tables.ran_out_of_memory(row, "train_samples_per_s_fp32")
    assert not tables.ran_out_of_memory(row, "infer_samples_per_s_bs64") and tables.oom_cells({"oom": None}) == set()
