"""500+ calls through LLMClient against a server that fails 20 % of requests in every way it can.

Every call must end answered or with a typed ProviderError; no call may be retried beyond its policy
(the server counts requests per call id); the request rate the server measures must never exceed the
configured RPM over any sliding window; no more requests may be in flight than max_concurrency.
Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import pytest
from fault_server import FAULTS, FaultServer, config_for

from orchestrator import errors as E
from orchestrator.client import Breaker, LLMClient, RetryPolicy
from orchestrator.limits import Limiter

CALLS = 520
RPM = 6000  # 100 requests per second
CONCURRENCY = 32
POLICY = RetryPolicy(max_attempts=3, base_delay_s=0.02, max_wait_s=1.0, max_total_wait_s=3.0)


@pytest.fixture(autouse=True)
def fresh_limiter(monkeypatch):
    monkeypatch.setattr("orchestrator.client.LIMITER", Limiter())


@pytest.mark.timeout(120)
async def test_500_calls_at_20_percent_faults():
    with FaultServer(fault_rate=0.20, seed=20260101, slow_s=0.8) as server:
        cfg = config_for(
            {
                "fault/m": {
                    "provider": "openai",
                    "model": "m",
                    "base_url": server.url,
                    "timeout": 0.25,
                    "connect_timeout": 1.0,
                    "price": {"input": 0.5, "output": 1.5},
                    "limits": {"rpm": RPM, "max_concurrency": CONCURRENCY},
                }
            }
        )
        client = LLMClient(cfg, cache=False, retry=POLICY, breaker=Breaker(threshold=10**6), seed=1)
        started = time.monotonic()
        results = await asyncio.gather(
            *(client.complete(f"Summarize issue [call:c{i:04d}]", model="fault/m") for i in range(CALLS)),
            return_exceptions=True,
        )
        elapsed = time.monotonic() - started
        await client.aclose()

    answered = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    stray = [r for r in failed if not isinstance(r, E.ProviderError)]
    assert not stray, f"untyped exceptions escaped: {stray[:3]}"

    # no call retried beyond its policy, and attempts are reported exactly
    per_call = {f"c{i:04d}": server.count(f"c{i:04d}") for i in range(CALLS)}
    assert max(per_call.values()) <= POLICY.max_attempts
    for i, r in enumerate(results):
        reported = r.attempts if not isinstance(r, BaseException) else r.attempts
        assert reported == per_call[f"c{i:04d}"]
    for r in failed:  # a terminal error is one the policy gave up on, or one that is not retryable
        assert r.attempts == POLICY.max_attempts or not r.retryable

    # the rate the server saw: one request every 60/RPM s, so any 1 s window holds at most RPM/60 + 1
    limit = RPM / 60
    max_1s = server.max_rate(1.0)
    max_100ms = server.max_rate(0.1)
    assert max_1s <= limit + 1
    assert max_100ms <= limit * 0.1 + 1
    assert server.max_in_flight <= CONCURRENCY

    figures = {
        "calls": CALLS,
        "answered": len(answered),
        "terminal_by_kind": dict(Counter(type(r).__name__ for r in failed)),
        "server_requests": server.count(),
        "faults_injected": {k: v for k, v in server.actions.items() if k != "ok"},
        "max_attempts_observed": max(per_call.values()),
        "attempts_histogram": dict(sorted(Counter(per_call.values()).items())),
        "max_rate_1s": max_1s,
        "max_rate_100ms": max_100ms,
        "rate_limit_per_s": limit,
        "max_in_flight": server.max_in_flight,
        "elapsed_s": round(elapsed, 2),
    }
    print("\nfault injection:", json.dumps(figures))
    assert len(answered) + len(failed) == CALLS
    assert len(answered) >= CALLS * 0.95
    assert set(server.actions) - {"ok"} == set(FAULTS), "every fault kind was exercised"
