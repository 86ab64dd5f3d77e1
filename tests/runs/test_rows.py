"""The typed result row is the one place a column is declared: table, insert, DataFrame all follow it."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

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


def test_the_summary_read_from_its_columns_alone_is_the_summary_of_every_column(tmp_path):
    """The CLI reads back only SUMMARY_COLUMNS for its table: a column summary_table reads and the list
    misses would change (or break) the table here, which has errors, cache hits, unknown costs and repeats."""
    import numpy as np

    from orchestrator.analysis.summary import SUMMARY_COLUMNS, summary_table

    rng = np.random.default_rng(3)
    rows = []
    for i in range(40):
        for model in ("m/a", "m/b"):
            for repeat in range(2):
                failed = rng.random() < 0.15
                rows.append(
                    ResultRow(
                        run_id="r",
                        issue_id=f"o/r#{i}",
                        model=model,
                        mode="classify",
                        repeat=repeat,
                        score=None if failed else float(rng.random() < 0.6),
                        error_type="timeout" if failed else None,
                        cost_usd=None if rng.random() < 0.1 else float(rng.random() / 1000),
                        cost_saved_usd=float(rng.random() / 1000) if repeat else None,
                        from_cache=bool(repeat and rng.random() < 0.5),
                        latency_s=float(rng.random()),
                        ttft_s=float(rng.random() / 4),
                        output_tps=float(rng.random() * 100),
                        input_uncached=int(rng.integers(10, 99)),
                        cache_read=int(rng.integers(0, 9)),
                        cache_write=0,
                        output=int(rng.integers(1, 30)),
                        reasoning=int(rng.integers(0, 5)),
                    )
                )
    store = ResultStore(tmp_path / "r.sqlite")
    store.write_results(rows)
    whole = summary_table(store.results_df("r"), n_boot=200)
    narrow_df = store.results_df("r", columns=SUMMARY_COLUMNS)
    with pytest.raises(ValueError, match="no results column 'score; DROP TABLE results'"):
        store.results_df("r", columns=["score", "score; DROP TABLE results"])  # never put into the SQL
    assert len(store.results_df("r")) == len(rows) == store.count_results("r") == 160
    assert store.count_results("another run") == 0
    store.close()
    assert list(narrow_df.columns) == list(SUMMARY_COLUMNS)
    pd.testing.assert_frame_equal(summary_table(narrow_df, n_boot=200), whole)
