"""The fault soak: 1,000 grid cells at 30 % mixed faults, with the results writer failing once mid-run.

Against one loopback server that draws every fault it knows (429s, 5xx, resets, garbled and truncated
bodies, slow answers, drips, gzip bombs, junk streams, key echoes, missing or lying usage, lone
surrogates, non-string answers, redirects, huge error pages), the grid must:

- end every cell stored, answered or with a typed error kind, never "internal";
- end the first session ``failed`` with a message naming the writer's failure, keeping what it stored;
- complete on resume, and never bill a cell twice once it had a usable answer (counted on the server);
- never spend more than the cap, by its own ledger or by what the server really billed;
- store no echoed key and no unstorable text.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import pytest
from helpers.fault_server import FAULTS, HOSTILE_FAULTS, FaultServer, config_for

from orchestrator import errors as E
from orchestrator.client import Breaker, LLMClient, RetryPolicy
from orchestrator.client.limits import Limiter
from orchestrator.runs.runner import run_grid
from orchestrator.runs.store import ResultStore, default_db_path
from orchestrator.types import Gold, Issue

CELLS = 1000
PRICE = {"input": 1.0, "output": 4.0}
CAP = 1.0  # USD: well above what 1,000 small answers cost, so the run completes under it
KEY = "soak-credential-0123456789"  # not sk- shaped: only the configured value finds it
# Kinds whose answer the client can use: once one of these is billed for a cell, it is never asked again.
USABLE = {"ok", "slow", "echo", "no_usage", "surrogate"}
POLICY = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_wait_s=0.3, max_total_wait_s=1.0)


@pytest.fixture(autouse=True)
def fresh_limiter(monkeypatch):
    monkeypatch.setattr("orchestrator.client.llm_client.LIMITER", Limiter())


def cells() -> list[Issue]:
    return [
        Issue(repo="soak/app", number=i, title=f"Issue {i} [call:s{i:04d}]", body="Traceback: KeyError 'x'",
              gold=Gold(type="bug", summary="A crash."))
        for i in range(CELLS)
    ]  # fmt: skip


def soak_config(url: str, monkeypatch) -> Any:
    monkeypatch.setenv("SOAK_CREDENTIAL", KEY)
    return config_for(
        {
            "soak/m": {
                "provider": "openai",
                "model": "m",
                "base_url": url,
                "api_key_env": "SOAK_CREDENTIAL",
                "max_tokens": 32,
                "timeout": 1.0,
                "connect_timeout": 1.0,
                "deadline": 1.5,
                "max_response_bytes": 256 * 1024,
                "price": PRICE,
            }
        }
    )


async def session(cfg, store: ResultStore | None = None) -> Any:
    client = LLMClient(cfg, retry=POLICY, breaker=Breaker(threshold=10**6), seed=7)
    try:
        return await run_grid(
            cells(),
            ["soak/m"],
            ["summarize"],
            client=client,
            store=store,
            run_id="soak",
            budget_usd=CAP,
            concurrency=32,
            progress=False,
        )
    finally:
        await client.aclose()
        client.close()


@pytest.mark.slow
@pytest.mark.timeout(420)
async def test_fault_soak(isolated_home, monkeypatch):
    with FaultServer(
        fault_rate=0.30,
        faults=FAULTS + HOSTILE_FAULTS,
        seed=11,
        slow_s=2.0,  # above the 1 s read timeout
        drip_interval_s=0.05,  # a ~400-byte body takes ~20 s: only the 1.5 s deadline stops it
        bomb_decoded_bytes=64 << 20,  # 64 MiB from ~64 kB of gzip: far above the 256 kB cap
        junk_bytes=2_000_000,
        huge_error_bytes=1_000_000,
    ) as server:
        cfg = soak_config(server.url, monkeypatch)

        # session 1: the writer fails once, mid-run (a real disk would say SQLITE_FULL; see
        # test_run_hardening for that one)
        store = ResultStore(default_db_path(isolated_home))
        real_write = store.write_results
        writes = {"n": 0}

        def write_once_failing(rows, **kw):
            writes["n"] += 1
            if writes["n"] == 8:
                raise E.StorageError(f"cannot write {store.path}: injected failure mid-run")
            return real_write(rows, **kw)

        monkeypatch.setattr(store, "write_results", write_once_failing)
        started = time.monotonic()
        first = await asyncio.wait_for(session(cfg, store), 300)
        stored_first = len(store.results_df("soak"))
        status_first = store.run("soak")
        store.close()
        assert first.status == "failed", first
        assert "injected failure mid-run" in first.message and "--run-id soak" in first.message
        assert status_first["status"] == "failed" and "injected failure" in status_first["message"]
        assert 0 < stored_first < CELLS

        # session 2: resume completes the grid
        second = await asyncio.wait_for(session(cfg), 300)
        elapsed = time.monotonic() - started
        assert second.status == "finished", second
        assert second.cells_done_before == stored_first
        store = ResultStore(default_db_path(isolated_home))
        df = store.results_df("soak")
        db_files = [p.read_bytes() for p in isolated_home.iterdir() if p.is_file()]
        store.close()

        bills = list(server.bills)
        true_spend = server.true_cost(PRICE["input"], PRICE["output"])
        drawn = Counter(r.kind for r in server.requests)

    # every cell ends stored, answered or typed-failed
    assert len(df) == CELLS and df.issue_id.is_unique
    kinds = Counter(df.error_type)
    assert "internal" not in kinds, df[df.error_type == "internal"].error_message.head().tolist()
    assert set(kinds) - {""} <= set(E.ERROR_KINDS), kinds
    assert kinds[""] >= CELLS * 0.9

    # no cell billed twice once it had a usable answer
    usable = Counter(b.call_id for b in bills if b.kind in USABLE)
    twice = {cid: n for cid, n in usable.items() if n > 1}
    assert not twice, f"cells billed twice after a usable answer: {twice}"

    # the cap held, by the ledger (both sessions) and by what the server really billed
    spent = first.spent_usd + second.spent_usd
    assert spent <= CAP and true_spend <= CAP
    assert true_spend <= spent + 1e-9, "the ledger counted less than the server billed"

    # nothing unstorable or secret was stored
    assert not any(KEY.encode() in blob for blob in db_files)
    answered = df[df.error_type == ""]
    notes = Counter(f for raw in answered["notes"].dropna() for f in json.loads(raw))
    assert notes["usage_missing"] > 0 and notes["secret_redacted"] > 0 and notes["text_repaired"] > 0

    hostile = set(HOSTILE_FAULTS) | set(FAULTS)
    assert hostile <= set(drawn) | {"reset"}, f"not every fault kind was drawn: {hostile - set(drawn)}"
    print(
        "\nfault soak:",
        json.dumps(
            {
                "cells": CELLS,
                "first_session": {
                    "status": first.status,
                    "stored": stored_first,
                    "spent": round(first.spent_usd, 5),
                },
                "second_session": {
                    "status": second.status,
                    "run": second.cells_run,
                    "spent": round(second.spent_usd, 5),
                },
                "error_kinds": {k: v for k, v in kinds.items() if k},
                "notes": dict(notes),
                "server_requests": len(server.requests),
                "drawn": dict(drawn),
                "billed": len(bills),
                "true_spend_usd": round(true_spend, 5),
                "ledger_spend_usd": round(spent, 5),
                "elapsed_s": round(elapsed, 1),
            }
        ),
    )
