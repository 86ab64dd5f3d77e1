"""The grid runner and the results store, against a real loopback server and a real SQLite file."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from helpers.fault_server import Action, FaultServer

from orchestrator.client import LLMClient
from orchestrator.config import config_from_dict
from orchestrator.modes import get_mode
from orchestrator.runs.runner import run_grid, run_grid_sync
from orchestrator.runs.store import RESULT_COLUMNS, ResultStore, export_results
from orchestrator.types import Gold, Issue

ROOT = Path(__file__).resolve().parents[2]


def answer_for(messages: list[dict]) -> str:
    """A valid classify label for the JSON prompt, else a fix that names a file and shows a change."""
    system = messages[0]["content"] if messages else ""
    if "JSON" in system:
        return json.dumps({"type": "bug", "component": "core", "severity": "high"})
    return "Change `src/app.py` to handle the missing key.\n```python\nvalue = config.get('port', 80)\n```"


def stub_server(latency_s: float = 0.0) -> FaultServer:
    """The shared OpenAI-compatible loopback server, answering each prompt as ``answer_for`` does."""
    return FaultServer(
        latency_s=latency_s,
        prompt_tokens=100,
        completion_tokens=20,
        script=lambda req: Action(content=answer_for(req.json["messages"])),
    )


def issue_counts(server: FaultServer) -> Counter[str]:
    """Requests per ``issue:mode:seed`` (the issue number from the prompt's 'Issue #N')."""
    counts: Counter[str] = Counter()
    for req in server.requests:
        body = req.json or {}
        match = re.search(r"Issue #(\S+):", body["messages"][-1]["content"])
        mode = "classify" if "JSON" in body["messages"][0]["content"] else "other"
        counts[f"{match.group(1) if match else '?'}:{mode}:{body.get('seed')}"] += 1
    return counts


def make_issues(n: int) -> list[Issue]:
    types = ["bug", "feature", "question", "docs"]
    return [
        Issue(
            repo="acme/app",
            number=i,
            title=f"Problem number {i}",
            body=f"Traceback in src/app.py line {i}",
            gold=Gold(
                type=types[i % 4],
                component="core",
                severity="high",
                files=["src/app.py"],
                summary="The app crashes.",
                key_points=["the app crashes"],
            ),
            split="dev" if i % 2 else "test",
        )
        for i in range(1, n + 1)
    ]


def write_config(tmp: Path, url: str, *, price: bool = True) -> Path:
    price_line = "price = { input = 10.0, output = 40.0, as_of = 2026-11-27 }" if price else ""
    cfg = tmp / "orchestrator.toml"
    cfg.write_text(f"""
[defaults]
model = "openai/stub"

[models."openai/stub"]
provider = "openai"
model = "stub"
base_url = "{url}"
max_tokens = 50
{price_line}

[models."baseline/rules"]
provider = "baseline"
""")
    return cfg


def write_dataset(tmp: Path, issues: list[Issue]) -> Path:
    path = tmp / "issues.jsonl"
    path.write_text("".join(i.model_dump_json(exclude={"extra"}) + "\n" for i in issues))
    return path


@pytest.fixture
def stub():
    server = stub_server(latency_s=0.0).start()
    yield server
    server.stop()


def client_for(cfg_path: Path, **kw) -> LLMClient:
    import tomllib

    return LLMClient(config_from_dict(tomllib.loads(cfg_path.read_text()), cfg_path), **kw)


def test_grid_writes_every_cell_with_scores_and_dtypes(tmp_path, stub, isolated_home):
    cfg = write_config(tmp_path, stub.url)
    client = client_for(cfg)
    issues = make_issues(4)
    summary = run_grid_sync(
        issues,
        ["openai/stub", "baseline/rules"],
        ["classify", "fix"],
        repeats=2,
        concurrency=3,
        client=client,
        progress=False,
        run_id="r1",
        dataset="issues.jsonl",
    )
    assert summary.status == "finished"
    assert summary.cells_run == 4 * 2 * 2 * 2
    store = ResultStore(isolated_home / "results.sqlite")
    df = store.results_df("r1")
    assert len(df) == 32 and list(df.columns) == RESULT_COLUMNS
    assert df.duplicated(["issue_id", "model", "mode", "repeat"]).sum() == 0
    assert df["from_cache"].dtype == bool and df["cost_usd"].dtype == "float64"
    assert str(df["input_uncached"].dtype) == "Int64"
    ok = df[df.model == "openai/stub"]
    assert (ok.error_type == "").all()
    # stub always answers "bug": classify is right exactly where gold is bug
    cls = ok[ok["mode"] == "classify"]
    assert (cls.score == (cls.gold_type == "bug").astype(float)).all()
    assert set(cls.pred_type) == {"bug"}
    # fix names src/app.py, the gold file
    assert (ok[ok["mode"] == "fix"].score == 1.0).all()
    # priced: 100 input + 20 output tokens at $10/$40 per million
    assert ok.cost_usd.iloc[0] == pytest.approx((100 * 10 + 20 * 40) / 1e6)
    # repeat 1 is a fresh sample: its own seed, hence its own request (never the cache entry of repeat 0)
    assert stub.count() == 4 * 2 * 2
    run = store.run("r1")
    assert run["status"] == "finished" and run["dataset"] == "issues.jsonl"
    assert "openai/stub" in run["config_snapshot"]["models"]
    assert set(run["config_snapshot"]["mode_versions"]) == {"classify", "fix"}
    store.close()


def test_cached_rerun_sends_nothing_and_resume_skips_finished(tmp_path, stub, isolated_home):
    cfg = write_config(tmp_path, stub.url)
    client = client_for(cfg)
    issues = make_issues(3)
    run_grid_sync(issues, ["openai/stub"], ["classify"], client=client, progress=False, run_id="a")
    sent = stub.count()
    # same run id: nothing to do
    s = run_grid_sync(issues, ["openai/stub"], ["classify"], client=client, progress=False, run_id="a")
    assert s.cells_run == 0 and s.cells_done_before == 3 and stub.count() == sent
    # a new run over the same cells is served from the cache: zero requests, cost 0 spent, list cost saved
    s = run_grid_sync(issues, ["openai/stub"], ["classify"], client=client, progress=False, run_id="b")
    assert s.cells_run == 3 and stub.count() == sent
    df = ResultStore(isolated_home / "results.sqlite").results_df("b")
    assert df.from_cache.all() and (df.cost_usd == 0).all() and (df.cost_saved_usd > 0).all()


def test_failed_cells_retried_only_with_retry_errors(tmp_path, isolated_home):
    cfg = write_config(tmp_path, "http://127.0.0.1:9/v1")  # nothing listens: connection refused
    from orchestrator.client import RetryPolicy

    client = client_for(cfg, retry=RetryPolicy(max_attempts=1))
    issues = make_issues(2)
    s = run_grid_sync(issues, ["openai/stub"], ["classify"], client=client, progress=False, run_id="e")
    assert s.errors == 2
    store = ResultStore(isolated_home / "results.sqlite")
    df = store.results_df("e")
    assert set(df.error_type) == {"connection"} and df.error_message.str.len().gt(0).all()
    server = stub_server().start()
    try:
        cfg2 = write_config(tmp_path, server.url)
        client2 = client_for(cfg2)
        s = run_grid_sync(issues, ["openai/stub"], ["classify"], client=client2, progress=False, run_id="e")
        assert s.cells_run == 0 and server.count() == 0  # failed cells are kept without --retry-errors
        s = run_grid_sync(
            issues,
            ["openai/stub"],
            ["classify"],
            client=client2,
            progress=False,
            run_id="e",
            retry_errors=True,
        )
        assert s.cells_run == 2 and server.count() == 2
        df = store.results_df("e")
        assert len(df) == 2 and (df.error_type == "").all()
    finally:
        server.stop()


def test_budget_stop_then_resume_with_higher_budget(tmp_path, stub, isolated_home):
    cfg = write_config(tmp_path, stub.url)
    issues = make_issues(10)
    # The budget reserves each call's worst case (prompt bytes as tokens at $10/M + 50 at $40/M), far
    # above its actual cost (100 in, 20 out = $0.0018): 1.5 worst cases let one call through at a time.
    probe = client_for(cfg, cache=False)
    mode = get_mode("classify")
    worst = probe._prepare(
        probe.config.model_spec("openai/stub"), mode.messages(issues[0]), mode, {}, 0
    ).worst_cost
    budget = 1.5 * worst
    s = run_grid_sync(
        issues,
        ["openai/stub"],
        ["classify"],
        client=client_for(cfg, cache=False),
        progress=False,
        run_id="b1",
        budget_usd=budget,
        concurrency=2,
        cache=False,
    )
    assert s.status == "budget_exhausted"
    store = ResultStore(isolated_home / "results.sqlite")
    df = store.results_df("b1")
    assert 0 < len(df) < 10 and df.cost_usd.sum() <= budget
    assert stub.count() == len(df)  # nothing was sent that is not in the store
    assert store.run("b1")["status"] == "budget_exhausted"
    s = run_grid_sync(
        issues,
        ["openai/stub"],
        ["classify"],
        client=client_for(cfg, cache=False),
        progress=False,
        run_id="b1",
        budget_usd=1.0,
        cache=False,
    )
    assert s.status == "finished"
    df = store.results_df("b1")
    assert len(df) == 10 and stub.count() == 10  # no cell billed twice


def test_kill_9_mid_run_then_resume_loses_nothing(tmp_path, isolated_home):
    server = stub_server(latency_s=0.4).start()
    try:
        cfg = write_config(tmp_path, server.url)
        issues = make_issues(12)
        data = write_dataset(tmp_path, issues)
        env = {**os.environ, "ORCHESTRATOR_HOME": str(isolated_home), "ORCHESTRATOR_PROGRESS": "off"}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator.cli",
                "--config",
                str(cfg),
                "run",
                "--dataset",
                str(data),
                "--models",
                "openai/stub",
                "--modes",
                "classify",
                "--concurrency",
                "2",
                "--run-id",
                "k9",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        db = isolated_home / "results.sqlite"
        deadline = time.monotonic() + 60
        written = 0
        while time.monotonic() < deadline:
            if db.exists():
                try:
                    with sqlite3.connect(db) as conn:
                        written = conn.execute("SELECT COUNT(*) FROM results WHERE run_id='k9'").fetchone()[0]
                except sqlite3.OperationalError:
                    written = 0
            if written >= 4:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with sqlite3.connect(db) as conn:
            before = {r[0] for r in conn.execute("SELECT issue_id FROM results WHERE run_id='k9'")}
        assert 4 <= len(before) < 12
        requests_before_resume = server.count()
        in_flight = requests_before_resume - len(before)
        assert 0 <= in_flight <= 2  # at most `concurrency` calls were in flight at the kill

        import tomllib

        client = LLMClient(config_from_dict(tomllib.loads(cfg.read_text()), cfg))
        s = run_grid_sync(
            issues, ["openai/stub"], ["classify"], client=client, progress=False, run_id="k9", concurrency=2
        )
        assert s.status == "finished" and s.cells_done_before == len(before)
        df = ResultStore(db).results_df("k9")
        assert len(df) == 12 and df.issue_id.is_unique
        # every cell finished before the kill was requested exactly once: none is billed twice
        for issue_id in before:
            number = issue_id.split("#")[1]
            assert issue_counts(server)[f"{number}:classify:None"] == 1
        assert server.count() == 12 + in_flight
    finally:
        server.stop()


def test_export_formats_and_cli(tmp_path, stub, isolated_home, capsys):
    from orchestrator.cli import main

    cfg = write_config(tmp_path, stub.url)
    data = write_dataset(tmp_path, make_issues(3))
    os.environ["ORCHESTRATOR_PROGRESS"] = "off"
    try:
        code = main(
            [
                "--config",
                str(cfg),
                "run",
                "--dataset",
                str(data),
                "--models",
                "openai/stub,baseline/rules",
                "--modes",
                "classify",
                "--run-id",
                "cli1",
            ]
        )
    finally:
        del os.environ["ORCHESTRATOR_PROGRESS"]
    out = capsys.readouterr().out
    assert code == 0 and "run id: cli1" in out and "openai/stub" in out and "baseline/rules" in out
    assert main(["--config", str(cfg), "runs"]) == 0
    assert "cli1" in capsys.readouterr().out
    for fmt in ("csv", "json", "parquet"):
        out_file = tmp_path / f"r.{fmt}"
        assert main(["--config", str(cfg), "results", "cli1", "--format", fmt, "-o", str(out_file)]) == 0
        if fmt == "csv":
            df = pd.read_csv(out_file)
        elif fmt == "json":
            rows = json.loads(out_file.read_text())
            assert isinstance(rows, list) and set(RESULT_COLUMNS) <= set(rows[0])
            df = pd.DataFrame(rows)
        else:
            df = pd.read_parquet(out_file)
        assert len(df) == 6 and list(df.columns) == RESULT_COLUMNS
    assert main(["--config", str(cfg), "results", "nope", "--format", "csv"]) == 2  # bad input
    assert "no run 'nope'" in capsys.readouterr().err


def test_rescore_without_new_calls(tmp_path, stub, isolated_home):
    cfg = write_config(tmp_path, stub.url)
    client = client_for(cfg)
    run_grid_sync(make_issues(3), ["openai/stub"], ["fix"], client=client, progress=False, run_id="s1")
    store = ResultStore(isolated_home / "results.sqlite")
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE results SET score = NULL WHERE run_id = 's1'")
    sent = stub.count()
    from orchestrator.runs.scoring import rescore_run

    n = client.run_sync(rescore_run(store, "s1", client=client))
    assert n == 3 and stub.count() == sent
    assert (store.results_df("s1").score == 1.0).all()


@pytest.mark.asyncio
async def test_async_form_and_bad_input(tmp_path, stub):
    cfg = write_config(tmp_path, stub.url)
    client = client_for(cfg)
    with pytest.raises(ValueError, match="unknown mode"):
        await run_grid(make_issues(1), ["openai/stub"], ["clasify"], client=client, progress=False)
    from orchestrator.errors import UnknownModelError

    with pytest.raises(UnknownModelError, match="known models"):
        await run_grid(make_issues(1), ["openai/nope"], ["classify"], client=client, progress=False)
    with pytest.raises(ValueError, match="duplicate issue ids"):
        await run_grid(make_issues(1) * 2, ["openai/stub"], ["classify"], client=client, progress=False)
    s = await run_grid(make_issues(2), ["openai/stub"], ["classify"], client=client, progress=False)
    assert s.status == "finished" and s.cells_run == 2


def test_export_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="unknown format"):
        export_results(pd.DataFrame(), tmp_path / "x", "xml")
