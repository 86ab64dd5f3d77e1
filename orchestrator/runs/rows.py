"""The typed result row: one grid cell as the runner fills it, the store writes it and pandas reads it.

Its columns, their SQL types, the results table's DDL, the insert statement and the DataFrame dtypes are
all derived from :class:`ResultRow`'s fields, so a column is added in exactly one place (and older
databases gain it on open, see :mod:`orchestrator.runs.store`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from ..safe_text import repair_text

KEY = ("run_id", "issue_id", "model", "mode", "repeat")  # one row a cell


def _col(sql: str, dtype: str | None = None, default: Any = None) -> Any:
    """A column: its SQL type and its DataFrame dtype (None: pandas decides)."""
    return field(default=default, metadata={"sql": sql, "dtype": dtype})


@dataclass(slots=True)
class ResultRow:
    """One cell of a run: what was asked, what came back, what it cost, how it scored."""

    run_id: str = field(metadata={"sql": "TEXT NOT NULL", "dtype": None})
    issue_id: str = field(metadata={"sql": "TEXT NOT NULL", "dtype": None})
    model: str = field(metadata={"sql": "TEXT NOT NULL", "dtype": "string"})
    mode: str = field(metadata={"sql": "TEXT NOT NULL", "dtype": "string"})
    repeat: int = field(metadata={"sql": "INTEGER NOT NULL", "dtype": "Int64"})
    repo: str | None = _col("TEXT", "string")
    split: str | None = _col("TEXT", "string")
    request_hash: str | None = _col("TEXT")
    text: str | None = _col("TEXT")
    parsed: dict[str, Any] | None = _col("TEXT")  # JSON
    parse_error: str | None = _col("TEXT")
    input_uncached: int | None = _col("INTEGER", "Int64")
    cache_read: int | None = _col("INTEGER", "Int64")
    cache_write: int | None = _col("INTEGER", "Int64")
    output: int | None = _col("INTEGER", "Int64")
    reasoning: int | None = _col("INTEGER", "Int64")
    cost_usd: float | None = _col("REAL", "float64")  # None: unknown, never 0
    cost_saved_usd: float | None = _col("REAL", "float64")
    latency_s: float | None = _col("REAL", "float64")
    attempts: int | None = _col("INTEGER", "Int64")
    served_model: str | None = _col("TEXT")
    fallback_path: list[str] | None = _col("TEXT")  # JSON
    from_cache: bool | None = _col("INTEGER", "bool")
    finish_reason: str | None = _col("TEXT")
    error_type: str = _col("TEXT NOT NULL DEFAULT ''", "str", "")  # '' when the cell was answered
    error_message: str = _col("TEXT NOT NULL DEFAULT ''", "str", "")
    score: float | None = _col("REAL", "float64")
    judge_score: float | None = _col("REAL", "float64")
    scores: str | None = _col("TEXT")  # JSON: the scorer's details
    gold_type: str | None = _col("TEXT")
    pred_type: str | None = _col("TEXT")
    started_at: str | None = _col("TEXT", "datetime")  # ISO 8601, UTC
    finished_at: str | None = _col("TEXT", "datetime")
    charged_usd: float | None = _col("REAL", "float64")  # what the budget counted (worst cases included)
    notes: list[str] | None = _col("TEXT")  # JSON: usage_missing, text_repaired, secret_redacted
    task: str | None = _col("TEXT", "string")  # the task the mode answers (the mode's name for a built-in)
    prompt: str | None = _col("TEXT", "string")  # the prompt variant ("default" for a built-in mode)
    prompt_version: str | None = _col("TEXT")  # the hash of everything that shaped the prompt
    fallback_reasons: list[str] | None = _col("TEXT")  # JSON: why each model before the answering one did not
    ttft_s: float | None = _col("REAL", "float64")  # seconds to the first token; None when not streamed
    output_tps: float | None = _col("REAL", "float64")  # output tokens/s after the first token (streamed)

    def update(self, values: Mapping[str, Any]) -> ResultRow:
        """Set several columns at once (a scorer's output, say); unknown names raise AttributeError."""
        for name, value in values.items():
            setattr(self, name, value)
        return self

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ResultRow:
        """A row from a dict of columns (unknown keys raise TypeError)."""
        return cls(**values)

    def sql_values(self) -> tuple[Any, ...]:
        """The values for :data:`INSERT_SQL`; text UTF-8 cannot hold is repaired and noted in ``notes``."""
        values = []
        repaired = 0
        for name in COLUMNS:
            value = getattr(self, name)
            if isinstance(value, str):
                if not value.isascii():
                    value, n = repair_text(value)
                    repaired += n
            elif isinstance(value, (dict, list)):
                value, n = repair_text(json.dumps(value, ensure_ascii=False))
                repaired += n
            elif isinstance(value, bool):
                value = int(value)
            values.append(value)
        if repaired:
            notes = json.loads(values[_NOTES_AT]) if values[_NOTES_AT] else []
            if "text_repaired" not in notes:
                notes.append("text_repaired")
            values[_NOTES_AT] = json.dumps(notes)
        return tuple(values)


COLUMNS: list[str] = [f.name for f in fields(ResultRow)]
SQL_TYPES: dict[str, str] = {f.name: f.metadata["sql"] for f in fields(ResultRow)}
DTYPES: dict[str, str | None] = {f.name: f.metadata["dtype"] for f in fields(ResultRow)}
REQUIRED: list[str] = [f.name for f in fields(ResultRow) if f.default is MISSING]
_NOTES_AT = COLUMNS.index("notes")

CREATE_SQL = (
    "CREATE TABLE IF NOT EXISTS results (\n    "
    + ",\n    ".join(f"{name} {SQL_TYPES[name]}" for name in COLUMNS)
    + f",\n    UNIQUE ({', '.join(KEY)})\n);\n"
    + "CREATE INDEX IF NOT EXISTS results_run ON results (run_id);\n"
)
INSERT_SQL = (
    f"INSERT OR REPLACE INTO results ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
)


def select_sql(columns: Sequence[str] = COLUMNS) -> str:
    """``SELECT`` of ``columns`` (results columns; a ValueError names any other) from the results table."""
    unknown = sorted(set(columns) - set(COLUMNS))
    if unknown:
        raise ValueError(f"no results column {', '.join(map(repr, unknown))}")
    return f"SELECT {', '.join(dict.fromkeys(columns))} FROM results"


def with_dtypes(df: Any) -> Any:
    """A results DataFrame with the dtypes :class:`ResultRow` declares (pandas is imported by the caller)."""
    import pandas as pd

    for name, dtype in DTYPES.items():
        if dtype is None or name not in df:
            continue
        if dtype == "Int64":
            df[name] = pd.to_numeric(df[name], errors="coerce").astype("Int64")
        elif dtype == "float64":
            df[name] = pd.to_numeric(df[name], errors="coerce").astype("float64")
        elif dtype == "bool":
            df[name] = df[name].fillna(0).astype(bool)
        elif dtype == "str":
            df[name] = df[name].fillna("").astype(str)
        elif dtype == "datetime":
            df[name] = pd.to_datetime(df[name], utc=True, errors="coerce", format="ISO8601")
        else:
            df[name] = df[name].astype(dtype)
    return df
