"""500+ calls through LLMClient against a server that fails 20 % of requests in every way it can.

Every call must end answered or with a typed ProviderError; no call may be retried beyond its policy
(the server counts requests per call id); the request rate the server measures must never exceed the
configured RPM over any sliding window; no more requests may be in flight than max_concurrency.
Every call's reported attempts must equal the requests the server counted for it (at head arrival).
Run with ``-s`` to see the figures.

Why the pool is warmed first: starting 520 calls at once blocks the client's event loop for 0.6-3 s on
a loaded machine (their synchronous preparation and first-use setup; ``max_loop_lag_s`` shows what is
left of it after the warm-up). A connection being opened during that block misses aiohttp's connect
bound (the read ``timeout``, 0.25 s, not ``connect_timeout``: httpx's pool timeout becomes aiohttp's
``connect``), and the client used to report that attempt although not one byte of it was sent (the
server saw an empty connection): that was the flakiness, "reported 2, counted 1". The client now counts
only requests that reached a server, asserted on its own by ``test_connect_timeout_is_not_an_attempt``;
the warm-up keeps this test about the faults it injects rather than about connect timing under load.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import pytest
from helpers.fault_server import FAULTS, Action, Blackhole, FaultServer, Sleeps, config_for

from orchestrator import errors as E
from orchestrator.client import Breaker, LLMClient, RetryPolicy
from orchestrator.client.limits import Limiter

CALLS = 520
RPM = 6000  # 100 requests per second
CONCURRENCY = 32
POLICY = RetryPolicy(max_attempts=3, base_delay_s=0.02, max_wait_s=1.0, max_total_wait_s=3.0)
WARM = 8  # keep-alive connections opened before the burst (at most ~4 requests are in flight)
LAGS: list[float] = []


async def loop_lag(period_s: float = 0.005) -> None:
    """Record how late the loop wakes a 5 ms sleep: how long it was blocked."""
    LAGS.clear()
    while True:
        t0 = time.monotonic()
        await asyncio.sleep(period_s)
        LAGS.append(time.monotonic() - t0 - period_s)


@pytest.fixture(autouse=True)
def fresh_limiter(monkeypatch):
    monkeypatch.setattr("orchestrator.client.llm_client.LIMITER", Limiter())


@pytest.mark.timeout(120)
async def test_500_calls_at_20_percent_faults():
    # warm-up calls are answered after 0.1 s (below the 0.25 s timeout) so that they overlap and leave
    # WARM keep-alive connections in the pool; every other call is drawn
    def warm_slow(req):
        return Action("slow", delay_s=0.1) if req.call_id.startswith("warm") else None

    with FaultServer(fault_rate=0.20, seed=20260101, slow_s=0.8, script=warm_slow) as server:
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
        warm = (client.complete(f"warm up [call:warm{i}]", model="fault/m") for i in range(WARM))
        await asyncio.gather(*warm, return_exceptions=True)  # their outcome does not matter
        warm_requests, warm_connections = server.count(), server.connections
        lag = asyncio.ensure_future(loop_lag())
        started = time.monotonic()
        results = await asyncio.gather(
            *(client.complete(f"Summarize issue [call:c{i:04d}]", model="fault/m") for i in range(CALLS)),
            return_exceptions=True,
        )
        elapsed = time.monotonic() - started
        lag.cancel()
        await client.aclose()
        max_lag = max(LAGS, default=0.0)

    answered = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    stray = [r for r in failed if not isinstance(r, E.ProviderError)]
    assert not stray, f"untyped exceptions escaped: {stray[:3]}"

    # no call retried beyond its policy, and attempts are reported exactly
    per_call = {f"c{i:04d}": server.count(f"c{i:04d}") for i in range(CALLS)}
    assert max(per_call.values()) <= POLICY.max_attempts
    mismatched = {
        f"c{i:04d}": (r.attempts, per_call[f"c{i:04d}"], type(r).__name__)
        for i, r in enumerate(results)
        if r.attempts != per_call[f"c{i:04d}"]
    }
    assert not mismatched, (
        f"attempts reported != requests the server counted, as (reported, counted, result): {mismatched}; "
        f"the server saw {server.empty_connections} connection(s) closed before any request byte and "
        f"{sum(not r.complete for r in server.requests)} request(s) whose body never arrived; "
        f"the client's loop lagged up to {max_lag:.2f} s"
    )
    for r in failed:  # a terminal error is one the policy gave up on, or one that is not retryable
        assert r.attempts == POLICY.max_attempts or not r.retryable

    # the rate the server saw: one request every 60/RPM s, so any 1 s window holds at most RPM/60 + 1
    limit = RPM / 60
    max_1s = server.max_rate(1.0)
    max_100ms = server.max_rate(0.1)
    assert max_1s <= limit + 1
    # Smoothness, not the configured window (a minute, held exactly: tests/client/test_limits_window.py): releases
    # are spaced 10 ms apart, but on a loaded machine the path from a release to the socket write (building
    # the request, a GC pause, the loop's lag) can move one write next to the one before it.
    assert max_100ms <= limit * 0.1 + 2
    assert server.max_in_flight <= CONCURRENCY

    drawn = Counter(r.kind for r in server.requests if not r.call_id.startswith("warm"))
    figures = {
        "calls": CALLS,
        "answered": len(answered),
        "terminal_by_kind": dict(Counter(type(r).__name__ for r in failed)),
        "server_requests": server.count() - warm_requests,
        "empty_connections": server.empty_connections,
        "warm_connections": warm_connections,
        "faults_injected": {k: v for k, v in drawn.items() if k != "ok"},
        "max_attempts_observed": max(per_call.values()),
        "attempts_histogram": dict(sorted(Counter(per_call.values()).items())),
        "max_rate_1s": max_1s,
        "max_rate_100ms": max_100ms,
        "rate_limit_per_s": limit,
        "max_in_flight": server.max_in_flight,
        "elapsed_s": round(elapsed, 2),
        "max_loop_lag_s": round(max_lag, 3),
    }
    print("\nfault injection:", json.dumps(figures))
    assert len(answered) + len(failed) == CALLS
    assert len(answered) >= CALLS * 0.95
    assert set(drawn) - {"ok"} == set(FAULTS), "every fault kind was exercised"


async def test_connect_timeout_is_not_an_attempt():
    """A host whose connect never completes receives no request: a call to it reports 0 attempts.

    What made the 500-call test flaky under load: a connect that missed its bound during the burst was
    reported as an attempt the server never counted (reported 2, counted 1). The policy still counts
    such an attempt (``max_attempts`` is not unbounded against a dead host): three tries, none sent.
    """
    with Blackhole() as hole:
        cfg = config_for(
            {
                "hole/m": {
                    "provider": "openai",
                    "model": "m",
                    "base_url": hole.url,
                    "timeout": 0.25,
                    "connect_timeout": 0.2,
                    "price": {"input": 0.5, "output": 1.5},
                }
            }
        )
        sleeps = Sleeps()
        client = LLMClient(
            cfg, cache=False, retry=POLICY, breaker=Breaker(threshold=10**6), seed=1, sleep=sleeps
        )
        with pytest.raises(E.ProviderTimeoutError) as info:
            await client.complete("Summarize issue [call:hole]", model="hole/m")
        await client.aclose()
    assert info.value.maybe_billed is False  # the adapter knows that nothing was sent
    assert info.value.attempts == 0, "no request reached any server"
    assert len(sleeps.waits) == POLICY.max_attempts - 1  # yet every try the policy allows was made
