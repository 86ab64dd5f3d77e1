"""The run against a broken or hostile world: a writer that fails, answers that cannot be stored, budgets
that must hold whatever the server sends, two processes on one run, and per-repeat seeds on the wire.

Every test drives the real grid (``run_grid``) against a real loopback server (``FaultServer``) and a real
SQLite database; a full disk is SQLite's own SQLITE_FULL, reached with ``PRAGMA max_page_count``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.fault_server import Action, FaultServer, Request, completion_body, config_for

from orchestrator import errors as E
from orchestrator.client import LLMClient, RetryPolicy
from orchestrator.client.limits import Limiter
from orchestrator.runs.runner import run_grid
from orchestrator.runs.store import ResultStore, default_db_path
from orchestrator.types import Gold, Issue

PRICE = {"input": 2.0, "output": 8.0}


@pytest.fixture(autouse=True)
def fresh_limiter(monkeypatch):
    monkeypatch.setattr("orchestrator.client.llm_client.LIMITER", Limiter())


def issues(n: int, body: str = "Traceback in src/app.py") -> list[Issue]:
    return [
        Issue(repo="acme/app", number=i, title=f"Crash [call:c{i:04d}]", body=body, gold=Gold(type="bug"))
        for i in range(n)
    ]


def model_config(url: str, **extra: Any):
    return config_for(
        {
            "fault/m": {
                "provider": "openai",
                "model": "m",
                "base_url": url,
                "max_tokens": 40,
                "timeout": 5,
                "price": PRICE,
                **extra,
            }
        }
    )


def client_for(cfg, **kw: Any) -> LLMClient:
    retry = RetryPolicy(max_attempts=2, base_delay_s=0.01, max_wait_s=0.5, max_total_wait_s=1.0)
    return LLMClient(cfg, retry=retry, **kw)


async def grid(cfg, cells: list[Issue], store: ResultStore | None = None, **kw: Any):
    client = client_for(cfg, cache=kw.pop("client_cache", True))
    try:
        return await run_grid(
            cells, ["fault/m"], ["summarize"], client=client, progress=False, store=store, **kw
        )
    finally:
        await client.aclose()
        client.close()


def true_cost(server: FaultServer) -> float:
    """What an honest provider billed: the true tokens of every answer it delivered, whatever it reported."""
    return server.true_cost(PRICE["input"], PRICE["output"])


# --------------------------------------------------------------------------------------- the writer


async def test_a_full_disk_stops_the_workers_and_fails_the_run_naming_the_cause(isolated_home):
    long_answer = Action(body=lambda req: completion_body(req, text="answer " + "y" * 3000))
    with FaultServer(latency_s=0.02, script=lambda req: long_answer) as server:
        cfg = model_config(server.url)
        store = ResultStore(default_db_path(isolated_home))
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
        # room for the run and its issues, then SQLite's own SQLITE_FULL after some 3 kB answers
        store._conn.execute(f"PRAGMA max_page_count = {pages + 60}")
        cells = issues(300)
        started = time.monotonic()
        summary = await asyncio.wait_for(grid(cfg, cells, store, run_id="full", concurrency=8), 60)
        elapsed = time.monotonic() - started
        sent_at_failure = server.count()
        stored = len(store.results_df("full"))
        store.close()
        assert summary.status == "failed", summary
        assert (
            "full" in summary.message and "resume" in summary.message and "results.sqlite" in summary.message
        )
        # the workers stopped at once: at most what was in flight, never the whole grid billed
        assert sent_at_failure <= stored + 8 * 4 + 64, (sent_at_failure, stored)
        assert sent_at_failure < len(cells)
        print(f"\nfull disk: {stored} stored, {sent_at_failure} sent, failed after {elapsed:.2f} s")

        # resume on a disk with room: completes, and answers paid for but not stored come from the cache
        summary = await grid(cfg, cells, run_id="full", concurrency=8)
        assert summary.status == "finished"
        assert summary.cells_done_before == stored
        store = ResultStore(default_db_path(isolated_home))
        df = store.results_df("full")
        store.close()
        assert len(df) == len(cells) and (df.error_type == "").all()
        assert max(server.counts.values()) == 1, "a cell was billed twice"


async def test_a_writer_that_raises_fails_the_run_and_keeps_what_was_written(isolated_home, monkeypatch):
    with FaultServer(latency_s=0.01) as server:
        cfg = model_config(server.url)
        store = ResultStore(default_db_path(isolated_home))
        real = store.write_results
        calls = {"n": 0}

        def failing(rows, **kw):
            calls["n"] += 1
            if calls["n"] == 3:
                raise E.StorageError("cannot write results.sqlite: injected failure")
            return real(rows, **kw)

        monkeypatch.setattr(store, "write_results", failing)
        summary = await asyncio.wait_for(grid(cfg, issues(200), store, run_id="w", concurrency=4), 60)
        assert summary.status == "failed" and "injected failure" in summary.message
        kept = len(store.results_df("w"))
        assert 0 < kept < 200 and server.count() < 200
        assert store.run("w")["status"] == "failed"
        assert "injected failure" in store.run("w")["message"]
        store.close()


async def test_an_answer_with_a_lone_surrogate_is_stored_repaired(isolated_home):
    def script(req: Request) -> Action:
        body = json.dumps(completion_body(req, text="broken emoji HOLE")).replace("HOLE", "\\ud83d")
        return Action(body=body)

    with FaultServer(script=script) as server:
        summary = await grid(model_config(server.url), issues(3), run_id="s")
        assert summary.status == "finished" and summary.errors == 0
    store = ResultStore(default_db_path(isolated_home))
    df = store.results_df("s")
    store.close()
    assert len(df) == 3
    assert all(t == "broken emoji \ufffd" for t in df.text)
    assert all("text_repaired" in json.loads(f) for f in df["notes"])


# ------------------------------------------------------------------------------------------ budget


async def test_answers_without_usage_count_their_worst_case_and_the_cap_holds(isolated_home):
    def script(req: Request) -> Action:
        body = completion_body(req)
        del body["usage"]
        return Action(body=body)

    with FaultServer(script=script) as server:
        summary = await grid(
            model_config(server.url), issues(128), run_id="nousage", budget_usd=0.05, concurrency=16
        )
        billed = true_cost(server)
        assert summary.status == "budget_exhausted"
        assert server.count() < 128, "every call ran: missing usage was counted as $0"
        assert billed <= 0.05 and summary.spent_usd <= 0.05
        assert summary.unknown_cost_calls == server.count()
    store = ResultStore(default_db_path(isolated_home))
    df = store.results_df("nousage")
    store.close()
    assert df.cost_usd.isna().all() and (df.charged_usd > 0).all()


async def test_an_honest_server_billing_a_token_per_byte_never_crosses_the_cap(isolated_home):
    """CJK and code come close to one token per byte; 16 concurrent reservations must still hold."""

    def script(req: Request) -> Action:
        body = req.json or {}
        prompt = sum(len(str(m.get("content") or "").encode()) for m in body.get("messages", []))
        return Action(body=completion_body(req, prompt_tokens=prompt, completion_tokens=10))

    cjk = "設定ファイルを読み込むとクラッシュします。" * 40
    with FaultServer(script=script) as server:
        cap = 0.05
        summary = await grid(
            model_config(server.url), issues(128, body=cjk), run_id="cjk", budget_usd=cap, concurrency=16
        )
        assert summary.status == "budget_exhausted"
        assert summary.spent_usd <= cap and true_cost(server) <= cap
        assert server.count() >= 5  # the server bills nearly the worst case: few calls fit


async def test_a_resumed_run_remembers_what_earlier_sessions_spent(isolated_home):
    with FaultServer() as server:
        cfg = model_config(server.url)
        cells = issues(60)
        cap = 0.01
        first = await grid(
            cfg, cells, run_id="again", budget_usd=cap, concurrency=4, cache=False, client_cache=False
        )
        assert first.status == "budget_exhausted"
        sent_first = server.count()
        second = await grid(
            cfg, cells, run_id="again", budget_usd=cap, concurrency=4, cache=False, client_cache=False
        )
        assert second.spent_before_usd == pytest.approx(first.spent_usd)
        assert first.spent_usd + second.spent_usd <= cap
        assert true_cost(server) <= cap
        # only what the first session left unspent (a few worst cases, held back for calls in flight)
        assert second.spent_usd <= cap - first.spent_usd + 1e-12
        assert server.count() - sent_first < sent_first / 2, "the same budget was spent again"
        third = await grid(
            cfg, cells, run_id="again", budget_usd=cap, concurrency=4, cache=False, client_cache=False
        )
        assert first.spent_usd + second.spent_usd + third.spent_usd <= cap and true_cost(server) <= cap


# ---------------------------------------------------------------------------------------- deadline


async def test_a_server_that_drips_is_cut_at_the_attempt_deadline():
    # one byte every 0.2 s: every read succeeds well within the 5 s read timeout, for a minute or more
    with FaultServer(script=lambda r: Action("drip"), drip_interval_s=0.2) as server:
        cfg = model_config(server.url, deadline=1.0)
        client = LLMClient(cfg, cache=False, retry=RetryPolicy(max_attempts=2, base_delay_s=0.01))
        started = time.monotonic()
        with pytest.raises(E.ProviderTimeoutError) as info:
            await client.complete("hello [call:d1]", model="fault/m")
        elapsed = time.monotonic() - started
        await client.aclose()
        assert server.billed_count() == 0  # the drip never finished: nothing delivered
    assert elapsed < 4, elapsed  # two attempts of 1 s, not two of a minute
    assert "deadline" in str(info.value) and info.value.maybe_billed and info.value.attempts == 2


def test_the_default_deadline_is_connect_plus_read_timeout():
    spec = model_config("http://127.0.0.1:9/v1", timeout=15, connect_timeout=3).model_spec("fault/m")
    assert spec.attempt_deadline == 18


# --------------------------------------------------------------------------------------- run lease


def _run_cli(tmp_path: Path, home: Path, url: str, run_id: str) -> subprocess.Popen:
    cfg = tmp_path / "orchestrator.toml"
    cfg.write_text(
        f'[models."fault/m"]\nprovider = "openai"\nmodel = "m"\nbase_url = "{url}"\nmax_tokens = 20\n'
    )
    data = tmp_path / "issues.jsonl"
    data.write_text("".join(i.model_dump_json() + "\n" for i in issues(40)))
    env = {**os.environ, "ORCHESTRATOR_HOME": str(home), "ORCHESTRATOR_PROGRESS": "off"}
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "--config", str(cfg), "run", "--dataset", str(data),
         "--models", "fault/m", "--modes", "summarize", "--concurrency", "2", "--run-id", run_id],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_a_second_process_on_a_live_run_is_refused_and_a_dead_holder_is_taken_over(tmp_path, isolated_home):
    with FaultServer(latency_s=0.3) as server:
        first = _run_cli(tmp_path, isolated_home, server.url, "shared")
        deadline = time.monotonic() + 30
        while server.count() < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        second = _run_cli(tmp_path, isolated_home, server.url, "shared")
        out, err = second.communicate(timeout=60)
        assert second.returncode == 1, err
        assert "being run by another process" in err and f"pid {first.pid}" in err and "Traceback" not in err
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        third = _run_cli(tmp_path, isolated_home, server.url, "shared")
        out, err = third.communicate(timeout=120)
        assert third.returncode == 0, err
    store = ResultStore(default_db_path(isolated_home))
    df = store.results_df("shared")
    store.close()
    assert len(df) == 40 and (df.error_type == "").all()
    # billed twice: at most the two cells in flight when the first process was killed
    assert sum(1 for n in server.counts.values() if n > 1) <= 2


# ---------------------------------------------------------------------------------- seeds on the wire


async def test_each_repeat_sends_its_own_seed(isolated_home):
    with FaultServer() as server:
        cfg = model_config(server.url, seed=7)
        client = client_for(cfg)
        await run_grid(issues(2), ["fault/m"], ["summarize"], repeats=3, client=client, progress=False)
        await client.aclose()
        client.close()
        seeds: dict[str, list[int]] = {}
        for r in server.requests:
            seeds.setdefault(r.call_id, []).append(r.json.get("seed"))
    assert {k: sorted(v) for k, v in seeds.items()} == {"c0000": [7, 8, 9], "c0001": [7, 8, 9]}


async def test_judge_calls_count_against_the_run_budget(isolated_home):
    """The answers are free (the rule baseline); only the judge is paid, and the cap must hold for it."""
    judge = Action(body=lambda req: completion_body(req, text="5", prompt_tokens=400, completion_tokens=5))
    with FaultServer(script=lambda r: judge) as server:
        cfg = config_for(
            {
                "baseline/rules": {"provider": "baseline"},
                "fault/judge": {"provider": "openai", "model": "j", "base_url": server.url, "price": PRICE,
                                "max_tokens": 16},
            }
        )  # fmt: skip
        client = client_for(cfg)
        cap = 0.01
        summary = await run_grid(
            issues(60), ["baseline/rules"], ["explain"], client=client, progress=False, budget_usd=cap,
            judge_model="fault/judge", concurrency=4,
        )  # fmt: skip
        await client.aclose()
        client.close()
        assert 0 < server.count() < 60  # the judge was stopped by the budget, not run on every cell
        assert summary.spent_usd <= cap and true_cost(server) <= cap
    store = ResultStore(default_db_path(isolated_home))
    assert store.run_spent(summary.run_id) == pytest.approx(summary.spent_usd)  # a resume counts it
    store.close()
