"""The results database when ORCHESTRATOR_HOME is read-only, or was written by an older version.

A read-only home must not crash commands that only read (``runs``, ``results``), nor ``ask`` (which then
answers without a cache); commands that must write say which folder is not writable, without a traceback.
Root ignores file modes, so as root the CLI runs without the capabilities that let it (util-linux's
``setpriv`` drops CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER from the bounding set).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.runs.store import RESULT_COLUMNS, ResultStore, default_db_path

DROP_CAPS = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
OLD_SCHEMA = """
CREATE TABLE runs (id TEXT PRIMARY KEY, created TEXT NOT NULL, updated TEXT NOT NULL, status TEXT NOT NULL,
    dataset TEXT, split TEXT, git_commit TEXT, params TEXT NOT NULL, config_snapshot TEXT NOT NULL);
CREATE TABLE run_issues (run_id TEXT NOT NULL, issue_id TEXT NOT NULL, issue TEXT NOT NULL,
    PRIMARY KEY (run_id, issue_id));
CREATE TABLE results (run_id TEXT NOT NULL, issue_id TEXT NOT NULL, model TEXT NOT NULL, mode TEXT NOT NULL,
    repeat INTEGER NOT NULL, repo TEXT, split TEXT, request_hash TEXT, text TEXT, parsed TEXT, parse_error TEXT,
    input_uncached INTEGER, cache_read INTEGER, cache_write INTEGER, output INTEGER, reasoning INTEGER,
    cost_usd REAL, cost_saved_usd REAL, latency_s REAL, attempts INTEGER, served_model TEXT, fallback_path TEXT,
    from_cache INTEGER, finish_reason TEXT, error_type TEXT NOT NULL DEFAULT '', error_message TEXT NOT NULL
    DEFAULT '', score REAL, judge_score REAL, scores TEXT, gold_type TEXT, pred_type TEXT, started_at TEXT,
    finished_at TEXT, UNIQUE (run_id, issue_id, model, mode, repeat));
"""


def old_database(home: Path) -> Path:
    """A results database as the first release wrote it: one finished run with one cell."""
    home.mkdir(parents=True, exist_ok=True)
    path = default_db_path(home)
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA)
    conn.execute(
        "INSERT INTO runs VALUES ('old-run', '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z', 'finished', "
        "'datasets/sample.jsonl', NULL, NULL, '{}', '{}')"
    )
    conn.execute(
        "INSERT INTO results (run_id, issue_id, model, mode, repeat, text, cost_usd, error_type) "
        "VALUES ('old-run', 'a#1', 'baseline/rules', 'classify', 0, 'bug', 0.002, '')"
    )
    conn.commit()
    conn.close()
    return path


def test_an_older_database_gains_the_new_columns_on_open(tmp_path) -> None:
    old_database(tmp_path)
    store = ResultStore(default_db_path(tmp_path))
    df = store.results_df("old-run")
    assert set(RESULT_COLUMNS) <= set(df.columns) and df.text.tolist() == ["bug"]
    assert store.run_spent("old-run") == pytest.approx(0.002)  # cells without charged_usd count their cost
    assert [r["status"] for r in store.runs()] == ["finished"]
    store.close()


def test_an_older_database_reads_read_only_without_being_changed(tmp_path) -> None:
    path = old_database(tmp_path)
    before = path.read_bytes()
    store = ResultStore(path, readonly=True)
    assert store.results_df("old-run").text.tolist() == ["bug"]
    assert store.runs()[0]["id"] == "old-run"
    store.close()
    assert path.read_bytes() == before


def test_a_missing_database_reads_as_empty(tmp_path) -> None:
    store = ResultStore(tmp_path / "none" / "results.sqlite", readonly=True)
    assert store.runs() == [] and store.results_df().empty and store.count_results("r") == 0
    store.close()
    assert not (tmp_path / "none").exists()


# ---------------------------------------------------------------------------------- read-only home


@pytest.fixture
def readonly_home() -> Iterator[Path]:
    """A home holding a finished run, which the CLI below cannot write (mode 0555, or as nobody)."""
    base = Path(tempfile.mkdtemp(prefix="orch-ro-"))
    os.chmod(base, 0o755)
    home = base / "home"
    old_database(home)
    store = ResultStore(default_db_path(home))  # migrate it and leave WAL files behind, as real use does
    store.close()
    (base / "orchestrator.toml").write_text('[models."baseline/rules"]\nprovider = "baseline"\n')
    for p in [home, *home.iterdir()]:
        os.chmod(p, 0o555 if p.is_dir() else 0o444)
    os.chmod(base / "orchestrator.toml", 0o444)
    yield home
    for p in [home, *home.iterdir()]:
        os.chmod(p, 0o755)
    subprocess.run(["rm", "-rf", str(base)], check=False)


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(ORCHESTRATOR_HOME=str(home), ORCHESTRATOR_PROGRESS="off", HOME=str(home.parent))
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:  # pragma: no cover
            pytest.skip("running as root without util-linux's setpriv: file modes cannot be enforced")
        prefix = DROP_CAPS
    return subprocess.run(
        [
            *prefix,
            sys.executable,
            "-m",
            "orchestrator.cli",
            "--config",
            str(home.parent / "orchestrator.toml"),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(home.parent),
        timeout=120,
    )


def test_read_only_home_still_lists_and_exports_runs(readonly_home) -> None:
    proc = cli(readonly_home, "runs")
    assert proc.returncode == 0, proc.stderr
    assert "old-run" in proc.stdout and "Traceback" not in proc.stderr
    proc = cli(readonly_home, "results", "old-run", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["text"] == "bug"


def test_read_only_home_ask_answers_without_a_cache(readonly_home) -> None:
    proc = cli(
        readonly_home, "ask", "--model", "baseline/rules", "--mode", "classify", "It crashes: Traceback"
    )
    assert proc.returncode == 0, proc.stderr
    assert "cache disabled" in proc.stderr and str(readonly_home) in proc.stderr
    assert "Traceback (most recent call last)" not in proc.stderr


def test_read_only_home_run_says_which_folder_is_not_writable(readonly_home, tmp_path) -> None:
    data = readonly_home.parent / "issues.jsonl"
    os.chmod(readonly_home.parent, 0o755)
    data.write_text(json.dumps({"id": "a#1", "title": "It crashes"}) + "\n")
    os.chmod(data, 0o444)
    proc = cli(readonly_home, "run", "--dataset", str(data), "--models", "baseline/rules")
    assert proc.returncode == 1, proc.stdout
    assert str(readonly_home) in proc.stderr and "writable" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_store_is_a_context_manager_that_closes_even_when_the_body_raises(tmp_path) -> None:
    path = old_database(tmp_path / "home")
    with pytest.raises(RuntimeError), ResultStore(path) as store:
        assert store.run("old-run") is not None
        raise RuntimeError("body failed")
    with pytest.raises(sqlite3.ProgrammingError):
        store._conn.execute("SELECT 1")


def test_a_runs_issues_read_back_as_saved_a_lone_surrogate_repaired(tmp_path, monkeypatch) -> None:
    from orchestrator.runs import store as store_module
    from orchestrator.types import Comment, Gold, Issue

    kept = Issue(
        id="o/r#1",
        repo="o/r",
        number=1,
        title="Crash ✓ on save",
        body="KeyError",
        created_at="2026-01-02T03:04:05Z",
        comments=[Comment(author="a", body="same here")],
        gold=Gold(type="bug", files=["a.py"]),
        extra={"reactions": {"+1": 3}},
    )
    broken = Issue(id="o/r#2", repo="o/r", number=2, title="half an emoji \ud83d", body="b\udc80")
    many = [Issue(repo="o/r", number=i, title=f"Crash {i}") for i in range(3, 8)]
    monkeypatch.setattr(store_module, "ISSUES_PER_COMMIT", 2)  # three commits, the last one short
    with ResultStore(default_db_path(tmp_path)) as store:
        store.save_issues("r", [kept, broken, *many])
        back = store.issues("r")
    assert len(back) == 7 and [back[i.id] for i in many] == many
    assert back["o/r#1"] == kept
    assert back["o/r#2"].title == "half an emoji \ufffd" and back["o/r#2"].body == "b\ufffd"


def test_row_timestamps_are_utc_to_the_microsecond_with_a_z(monkeypatch) -> None:
    import re
    from datetime import UTC, datetime

    from orchestrator.runs import store

    stamp = store.now_iso()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp), stamp
    assert abs((datetime.fromisoformat(stamp) - datetime.now(UTC)).total_seconds()) < 5

    class OnTheSecond(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 12, 2, 14, 16, 12, 0, tzinfo=tz)

    monkeypatch.setattr(store, "datetime", OnTheSecond)
    assert store.now_iso() == "2026-12-02T14:16:12.000000Z"  # the microseconds kept when they are 0
