"""The typed result row is the one place a column is declared: table, insert, DataFrame all follow it."""

from __future__ import annotations

import sqlite3

import pandas as pd

from orchestrator.runs.rows import COLUMNS, DTYPES, KEY, REQUIRED, ResultRow
from orchestrator.runs.store import ResultStore


def test_the_table_and_the_frame_have_exactly_the_rows_columns(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    row = ResultRow(run_id="r", issue_id="a#1", model="m/x", mode="classify", repeat=0, text="bug",
                    parsed={"type": "bug"}, notes=["usage_missing"], from_cache=True, cost_usd=None)  # fmt: skip
    store.write_results([row])
    table = [r[1] for r in sqlite3.connect(tmp_path / "r.sqlite").execute("PRAGMA table_info(results)")]
    assert table == COLUMNS
    df = store.results_df("r")
    store.close()
    assert list(df.columns) == COLUMNS
    assert df.loc[0, "parsed"] == '{"type": "bug"}' and df.loc[0, "notes"] == '["usage_missing"]'
    assert pd.isna(df.loc[0, "cost_usd"]) and bool(df.loc[0, "from_cache"]) is True
    for name, dtype in DTYPES.items():
        if dtype in ("Int64", "float64", "bool", "string"):
            assert str(df[name].dtype) == dtype, name
        elif dtype == "datetime":
            assert str(df[name].dtype).startswith("datetime64"), name


def test_the_key_columns_are_required_and_unknown_columns_refused():
    assert list(KEY) == REQUIRED
    try:
        ResultRow.from_mapping(
            {"run_id": "r", "issue_id": "i", "model": "m", "mode": "x", "repeat": 0, "bogus": 1}
        )
    except TypeError as exc:
        assert "bogus" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("an unknown column was accepted")
