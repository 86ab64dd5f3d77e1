"""The results database: one SQLite file (WAL) under ORCHESTRATOR_HOME, written as each cell finishes.

Tables: ``runs`` (one row a run: status and why it ended, config snapshot without secrets, git commit,
parameters, what its sessions spent), ``results`` (one row a cell, unique on run_id, issue_id, model,
mode, repeat), ``run_issues`` (the issues a run used, with their gold labels, so a run can be re-scored
on its own) and ``run_locks`` (see :mod:`orchestrator.runs.lock`).

Text is stored as it is, except what UTF-8 cannot encode (lone surrogates): that is replaced with U+FFFD
and the cell's ``notes`` say so, so no answer ever fails to be stored. A database opened from an older
version gains the new columns on open. Commands that only read open it read-only, so a read-only
ORCHESTRATOR_HOME still lists and exports runs.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import errors as E
from ..client.cache import connect, connect_readonly
from .lock import SCHEMA as LOCK_SCHEMA
from .rows import COLUMNS, INSERT_SQL, SQL_TYPES, ResultRow, select_sql, with_dtypes
from .rows import CREATE_SQL as RESULTS_DDL

if TYPE_CHECKING:
    import pandas as pd

    from ..types import Issue

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    status TEXT NOT NULL,
    dataset TEXT,
    split TEXT,
    git_commit TEXT,
    params TEXT NOT NULL,
    config_snapshot TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    spent_usd REAL
);
CREATE TABLE IF NOT EXISTS run_issues (
    run_id TEXT NOT NULL,
    issue_id TEXT NOT NULL,
    issue TEXT NOT NULL,
    PRIMARY KEY (run_id, issue_id)
);
"""
    + RESULTS_DDL
    + LOCK_SCHEMA
)

RESULT_COLUMNS = COLUMNS  # the typed row's columns, in order (orchestrator.runs.rows)
# Columns added after the first release, with their SQL types: added to older databases on open.
_ADDED_COLUMNS = {
    "runs": {"message": "TEXT NOT NULL DEFAULT ''", "spent_usd": "REAL"},
    "results": {
        name: SQL_TYPES[name]
        for name in (
            "charged_usd",
            "notes",
            "task",
            "prompt",
            "prompt_version",
            "fallback_reasons",
            "ttft_s",
            "output_tps",
        )
    },
}


ISSUES_PER_COMMIT = 500


def now_iso() -> str:
    """UTC now, as ``2026-12-02T14:16:12.027991Z`` (isoformat, not strftime: a row takes two, and
    strftime with ``%f`` costs 3-5x more)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def default_db_path(home: Path) -> Path:
    return home / "results.sqlite"


class ResultStore:
    """Runs and results in one SQLite file; safe to share between threads of one process.

    ``readonly``: open without writing anything (a missing file reads as an empty database).
    Failing to open or write raises :class:`~orchestrator.errors.StorageError` naming the file.
    """

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.Lock()
        if readonly:
            self._conn = connect_readonly(self.path, SCHEMA)
            if self._missing_columns():  # an older database: read a migrated copy in memory
                copy = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
                self._conn.backup(copy)
                self._conn.close()
                self._conn = copy
                self._conn.executescript(SCHEMA)
                self._migrate()
            return
        self._conn = connect(self.path)
        try:
            self._conn.executescript(SCHEMA)
            self._migrate()
        except sqlite3.Error as exc:
            self._conn.close()
            raise storage_error(self.path, exc) from None

    def _missing_columns(self) -> bool:
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "runs" in tables and "run_locks" not in tables:
            return True
        for table, columns in _ADDED_COLUMNS.items():
            have = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            if have and set(columns) - have:
                return True
        return False

    def _migrate(self) -> None:
        for table, columns in _ADDED_COLUMNS.items():
            have = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            for name, sql_type in columns.items():
                if name not in have:
                    self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")

    # ---------------------------------------------------------------- runs

    def create_or_resume_run(
        self,
        run_id: str,
        *,
        params: dict[str, Any],
        config_snapshot: dict[str, Any],
        dataset: str | None,
        split: str | None,
        git_commit: str | None,
    ) -> bool:
        """Create the run, or mark an existing one running again. Returns True when it already existed."""
        now = now_iso()
        with self._lock:
            row = self._execute("SELECT id FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row:
                self._execute(
                    "UPDATE runs SET status = 'running', updated = ?, params = ?, config_snapshot = ? WHERE id = ?",
                    (now, json.dumps(params), json.dumps(config_snapshot), run_id),
                )
                return True
            self._execute(
                "INSERT INTO runs (id, created, updated, status, dataset, split, git_commit, params, config_snapshot)"
                " VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                (
                    run_id,
                    now,
                    now,
                    dataset,
                    split,
                    git_commit,
                    json.dumps(params),
                    json.dumps(config_snapshot),
                ),
            )
            return False

    def set_status(self, run_id: str, status: str, message: str = "", spent_usd: float | None = None) -> None:
        """Record how a run (session) ended, why, and what all its sessions spent so far."""
        with self._lock:
            self._execute(
                "UPDATE runs SET status = ?, updated = ?, message = ?, spent_usd = COALESCE(?, spent_usd) "
                "WHERE id = ?",
                (status, now_iso(), message, spent_usd, run_id),
            )

    def run_spent(self, run_id: str) -> float:
        """What a run's earlier sessions spent: the larger of the recorded total (which includes calls
        whose answer was never stored, and judge calls) and the sum of its stored cells' charges."""
        with self._lock:
            row = self._conn.execute(
                "SELECT COALESCE(r.spent_usd, 0), "
                "(SELECT COALESCE(SUM(COALESCE(x.charged_usd, x.cost_usd, 0)), 0) FROM results x "
                "WHERE x.run_id = r.id) FROM runs r WHERE r.id = ?",
                (run_id,),
            ).fetchone()
        return max(row) if row else 0.0

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise storage_error(self.path, exc) from None

    def run(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            cur = self._conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,))
            row = cur.fetchone()
            if row is None:
                return None
            data = dict(zip([d[0] for d in cur.description], row, strict=True))
        data["params"] = json.loads(data["params"])
        data["config_snapshot"] = json.loads(data["config_snapshot"])
        return data

    def runs(self) -> list[dict[str, Any]]:
        """Every run, newest first, with cell counts, errors and money spent."""
        # a run left 'running' by a process that died holds no lease: say it was interrupted
        sql = """
            SELECT r.id, r.created,
                   CASE WHEN r.status = 'running' AND NOT EXISTS
                        (SELECT 1 FROM run_locks l WHERE l.run_id = r.id) THEN 'interrupted'
                        ELSE r.status END AS status,
                   r.dataset, r.split,
                   COUNT(x.run_id) AS cells,
                   SUM(CASE WHEN x.error_type != '' THEN 1 ELSE 0 END) AS errors,
                   MAX(COALESCE(r.spent_usd, 0), COALESCE(SUM(COALESCE(x.charged_usd, x.cost_usd)), 0))
                       AS spent_usd,
                   r.message
            FROM runs r LEFT JOIN results x ON x.run_id = r.id
            GROUP BY r.id ORDER BY r.created DESC, r.id
        """
        with self._lock:
            cur = self._conn.execute(sql)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    # ---------------------------------------------------------------- issues

    def save_issues(self, run_id: str, issues: Iterable[Issue]) -> None:
        """Store the run's issues, :data:`ISSUES_PER_COMMIT` at a time: their JSON is never all in memory
        at once (a 10,000-cell run's peak over its issues: 10.8 -> 6.3 MB), and the writer never waits long for the lock."""
        sql = "INSERT OR REPLACE INTO run_issues (run_id, issue_id, issue) VALUES (?,?,?)"
        rows: list[tuple[str, str, str]] = []
        for issue in issues:
            rows.append((run_id, issue.id, _issue_json(issue)))
            if len(rows) >= ISSUES_PER_COMMIT:
                self._transaction(sql, rows)
                rows = []
        if rows:
            self._transaction(sql, rows)

    def _transaction(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """``executemany`` in one transaction, rolled back and raised as a StorageError on failure."""
        with self._lock:
            try:
                self._conn.execute("BEGIN")
                try:
                    self._conn.executemany(sql, rows)
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise storage_error(self.path, exc) from None

    def issues(self, run_id: str) -> dict[str, Issue]:
        from ..types import Issue

        with self._lock:
            rows = self._conn.execute(
                "SELECT issue_id, issue FROM run_issues WHERE run_id = ?", (run_id,)
            ).fetchall()
        return {issue_id: Issue.model_validate_json(blob) for issue_id, blob in rows}

    # ---------------------------------------------------------------- results

    def done_cells(self, run_id: str) -> dict[tuple[str, str, str, int], str]:
        """(issue_id, model, mode, repeat) → error_type ('' when the cell succeeded)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT issue_id, model, mode, repeat, error_type FROM results WHERE run_id = ?", (run_id,)
            ).fetchall()
        return {(r[0], r[1], r[2], r[3]): r[4] for r in rows}

    def write_result(self, row: ResultRow | Mapping[str, Any]) -> None:
        """Write one finished cell (committed at once: a killed run keeps it)."""
        self.write_results([row])

    def write_results(
        self,
        rows: Sequence[ResultRow | Mapping[str, Any]],
        *,
        run_id: str | None = None,
        run_spent_usd: float | None = None,
    ) -> None:
        """Write finished cells in one transaction (a group commit: one fsync-free WAL append), and
        with them what the run has spent so far (``run_spent_usd``), so a resumed run counts it.

        Raises :class:`~orchestrator.errors.StorageError` (nothing of this group written) when SQLite
        cannot write: a full disk, a read-only file.
        """
        if not rows:
            return
        values = [(r if isinstance(r, ResultRow) else ResultRow.from_mapping(r)).sql_values() for r in rows]
        with self._lock:
            try:
                self._conn.execute("BEGIN")
                try:
                    self._conn.executemany(INSERT_SQL, values)
                    if run_id is not None and run_spent_usd is not None:
                        self._conn.execute(
                            "UPDATE runs SET spent_usd = ? WHERE id = ?", (run_spent_usd, run_id)
                        )
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise storage_error(self.path, exc) from None

    def update_scores(
        self, run_id: str, updates: list[tuple[float | None, float | None, str, str, str, str, int]]
    ) -> None:
        """Rows of (score, judge_score, scores_json, issue_id, model, mode, repeat)."""
        self._transaction(
            "UPDATE results SET score = ?, judge_score = ?, scores = ? "
            "WHERE run_id = ? AND issue_id = ? AND model = ? AND mode = ? AND repeat = ?",
            [(s, j, d, run_id, i, m, md, r) for s, j, d, i, m, md, r in updates],
        )

    def count_results(self, run_id: str) -> int:
        """How many cells of ``run_id`` are stored."""
        with self._lock:
            (count,) = self._conn.execute(
                "SELECT COUNT(*) FROM results WHERE run_id = ?", (run_id,)
            ).fetchone()
        return count

    def results_df(self, run_id: str | None = None, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The results of one run (or every run) as a DataFrame with proper dtypes; only ``columns``
        (results columns) when given."""
        import pandas as pd

        sql = select_sql(COLUMNS if columns is None else columns)
        params: tuple[Any, ...] = ()
        if run_id is not None:
            sql += " WHERE run_id = ?"
            params = (run_id,)
        with self._lock:
            df = pd.read_sql_query(sql, self._conn, params=params)
        # rows written before tasks existed: the mode is the task, its prompt the default
        if len(df) and {"task", "mode"} <= set(df.columns):
            df["task"] = df["task"].where(df["task"].notna(), df["mode"].str.partition(":")[0])
        if len(df) and "prompt" in df:
            df["prompt"] = df["prompt"].fillna("default")
        return with_dtypes(df)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _issue_json(issue: Issue) -> str:
    """The issue as stored: pydantic's own serializer (20,000 issues: 0.31 -> 0.04 s, time the grid's
    event loop loses to the saving thread), and, for an issue it refuses (a lone surrogate in its text),
    every string repaired first."""
    from pydantic_core import PydanticSerializationError

    try:
        return issue.model_dump_json(fallback=str)
    except PydanticSerializationError:
        from ..safe_text import repair_value

        data, _ = repair_value(issue.model_dump(mode="python"))
        return json.dumps(data, ensure_ascii=False, default=str)


def storage_error(path: Path, exc: BaseException) -> E.StorageError:
    """A StorageError that names the file and says what to do for the usual causes."""
    text = str(exc)
    hint = ""
    lowered = text.lower()
    if "full" in lowered:
        hint = ": the disk (or the database's size limit) is full; free space and resume"
    elif "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        hint = f": {path.parent} must be writable (set ORCHESTRATOR_HOME to a writable folder)"
    return E.StorageError(f"cannot write {path}: {text}{hint}")


def results_df(
    run_id: str | None = None, *, home: str | Path | None = None, config: Any = None
) -> pd.DataFrame:
    """Results of ``run_id`` from the database under ORCHESTRATOR_HOME (or ``home``) as a DataFrame."""
    with open_store(home=home, config=config, readonly=True) as store:
        return store.results_df(run_id)


def open_store(*, home: str | Path | None = None, config: Any = None, readonly: bool = False) -> ResultStore:
    """The store under ``home``, else under the config's home (ORCHESTRATOR_HOME or beside the config);
    ``readonly`` for commands that only read."""
    if home is None:
        if config is None:
            from ..config import load_config

            config = load_config()
        home = config.home
    return ResultStore(default_db_path(Path(home)), readonly=readonly)


def export_results(df: pd.DataFrame, path: str | Path, fmt: str) -> Path:
    """Write results as csv, json (one array of row objects) or parquet."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        df.to_csv(out, index=False)
    elif fmt == "json":
        df.to_json(out, orient="records", date_format="iso", force_ascii=False, indent=1)
    elif fmt == "parquet":
        df.to_parquet(out, index=False)
    else:
        raise ValueError(f"unknown format {fmt!r}: use csv, json or parquet")
    return out
