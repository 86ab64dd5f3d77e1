"""Retries, retry hints, fallback chains, the circuit breaker, rate limits, timeouts and secrets.

Real sockets on 127.0.0.1 (tests/helpers/fault_server.py); the rate limiter's unit tests use a fake clock.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
import time
from email.utils import formatdate

import pytest
from helpers.fault_server import Action, FaultServer, Sleeps, completion_body, config_for

from orchestrator import errors as E
from orchestrator.client import Breaker, LLMClient, RetryPolicy
from orchestrator.client.limits import SPAN_S, Bucket, BucketPaused, Gate, Limiter

FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_wait_s=5.0, max_total_wait_s=10.0)


def model(url: str, name: str = "m", **extra) -> dict:
    return {
        "provider": "openai",
        "model": name,
        "base_url": url,
        "timeout": 2.0,
        "connect_timeout": 1.0,
        "price": {"input": 1.0, "output": 2.0},
        **extra,
    }


def first_then_ok(action: Action):
    """A script: ``action`` for each call's first request, a normal answer after."""
    return lambda req: action if req.attempt == 1 else None


@pytest.fixture(autouse=True)
def fresh_limiter(monkeypatch):
    """A fresh process-wide limiter per test (a port reused by a later server must not inherit a pause)."""
    monkeypatch.setattr("orchestrator.client.llm_client.LIMITER", Limiter())


@pytest.fixture
def server():
    srv = FaultServer().start()
    yield srv
    srv.stop()


async def client_for(cfg, **kw) -> LLMClient:
    kw.setdefault("cache", False)
    kw.setdefault("retry", FAST)
    return LLMClient(cfg, **kw)


# ---------------------------------------------------------------------------------------- retry hints


async def test_retry_after_seconds_is_waited(server):
    server.script = first_then_ok(Action.error(429, "slow down", {"retry-after": "2"}))
    sleeps = Sleeps()
    client = await client_for(config_for({"t/m": model(server.url)}), sleep=sleeps)
    started = time.monotonic()
    c = await client.complete("hi [call:a]", model="t/m")
    assert sleeps.waits == [2.0]
    assert c.attempts == 2 and server.count("a") == 2
    # the bucket pause the 429 set is the one this task already slept through: no second, real wait
    assert time.monotonic() - started < 1.5
    await client.aclose()


async def test_retry_after_http_date(server):
    when = formatdate(time.time() + 3, usegmt=True)
    server.script = first_then_ok(Action.error(429, "slow down", {"retry-after": when}))
    sleeps = Sleeps()
    client = await client_for(config_for({"t/m": model(server.url)}), sleep=sleeps)
    c = await client.complete("hi [call:a]", model="t/m")
    assert len(sleeps.waits) == 1 and 1.0 <= sleeps.waits[0] <= 3.0  # an HTTP date has 1 s resolution
    assert c.attempts == 2
    await client.aclose()


async def test_retry_after_ms_wins(server):
    server.script = first_then_ok(
        Action.error(429, "slow down", {"retry-after-ms": "1500", "retry-after": "9"})
    )
    sleeps = Sleeps()
    client = await client_for(config_for({"t/m": model(server.url)}), sleep=sleeps)
    c = await client.complete("hi [call:a]", model="t/m")
    assert sleeps.waits == [1.5] and c.attempts == 2
    await client.aclose()


async def test_gemini_retry_delay(server, monkeypatch):
    monkeypatch.setenv("GEMINI_TEST_KEY", "gm-test-key-123456")
    body = {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "message": "quota",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3.5s"}],
        }
    }
    ok = {
        "candidates": [{"content": {"parts": [{"text": "fine"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2},
    }
    server.script = lambda req: Action.error(429, body=body) if req.attempt == 1 else Action(body=ok)
    sleeps = Sleeps()
    cfg = config_for(
        {
            "gemini/x": {
                "provider": "gemini",
                "model": "gemini-x",
                "base_url": server.url,
                "api_key_env": "GEMINI_TEST_KEY",
                "price": {"input": 1.0, "output": 2.0},
            }
        }
    )
    client = await client_for(cfg, sleep=sleeps)
    c = await client.complete("hi [call:g]", model="gemini/x")
    assert c.text == "fine" and sleeps.waits == [3.5] and c.attempts == 2
    await client.aclose()


async def test_x_should_retry_false_is_not_retried(server):
    server.script = lambda req: Action.error(503, "down", {"x-should-retry": "false"})
    sleeps = Sleeps()
    client = await client_for(config_for({"t/m": model(server.url)}), sleep=sleeps)
    with pytest.raises(E.OverloadedError) as info:
        await client.complete("hi [call:a]", model="t/m")
    assert server.count("a") == 1 and sleeps.waits == [] and info.value.attempts == 1
    await client.aclose()


async def test_x_should_retry_true_retries_a_409(server):
    server.script = first_then_ok(Action.error(400, "transient", {"x-should-retry": "true"}))
    sleeps = Sleeps()
    client = await client_for(config_for({"t/m": model(server.url)}), sleep=sleeps)
    c = await client.complete("hi [call:a]", model="t/m")
    assert c.attempts == 2 and len(sleeps.waits) == 1
    await client.aclose()


async def test_hint_above_cap_goes_to_fallback_without_sleeping(server):
    server.script = lambda req: (
        Action.error(429, "later", {"retry-after": "60"}) if req.json["model"] == "p" else None
    )
    sleeps = Sleeps()
    cfg = config_for({"t/p": model(server.url, "p", fallbacks=["t/f"]), "t/f": model(server.url, "f")})
    client = await client_for(cfg, sleep=sleeps)
    c = await client.complete("hi [call:a]", model="t/p")
    assert sleeps.waits == []
    assert c.fallback_path == ["t/p", "t/f"] and c.model == "t/f"
    assert len(c.fallback_reasons) == 1 and c.fallback_reasons[0].startswith("t/p: rate_limited: ")
    assert c.attempts == 2  # one request to each model
    # the primary's bucket is paused for the hint: the next call does not even send to it
    c2 = await client.complete("hi [call:b]", model="t/p")
    assert c2.model == "t/f" and [r.json["model"] for r in server.requests].count("p") == 1
    await client.aclose()


async def test_backoff_is_exponential_with_jitter_and_capped(server):
    server.script = lambda req: Action.error(500) if req.attempt <= 3 else None
    sleeps = Sleeps()
    policy = RetryPolicy(max_attempts=4, base_delay_s=0.1, max_wait_s=0.15, max_total_wait_s=10)
    client = await client_for(config_for({"t/m": model(server.url)}), sleep=sleeps, retry=policy, seed=7)
    c = await client.complete("hi [call:a]", model="t/m")
    assert c.attempts == 4 and len(sleeps.waits) == 3
    for n, wait in enumerate(sleeps.waits, start=1):
        assert 0 <= wait <= min(0.15, 0.1 * 2 ** (n - 1))
    await client.aclose()


async def test_attempts_never_exceed_policy_and_total_wait_is_capped(server):
    server.script = lambda req: Action.error(500)
    sleeps = Sleeps()
    client = await client_for(config_for({"t/m": model(server.url)}), sleep=sleeps)
    with pytest.raises(E.OverloadedError) as info:
        await client.complete("hi [call:a]", model="t/m")
    assert server.count("a") == FAST.max_attempts == info.value.attempts
    # total cap: hints of 0.4 s under a total of 1 s allow two waits, then the call gives up
    server.script = lambda req: Action.error(503, "busy", {"retry-after-ms": "400"})
    sleeps.waits.clear()
    policy = RetryPolicy(max_attempts=10, base_delay_s=0.01, max_wait_s=5, max_total_wait_s=1.0)
    client2 = await client_for(config_for({"t/m": model(server.url)}), sleep=sleeps, retry=policy)
    with pytest.raises(E.OverloadedError):
        await client2.complete("hi [call:b]", model="t/m")
    assert sleeps.waits == [0.4, 0.4] and server.count("b") == 3
    await client.aclose()
    await client2.aclose()


# ---------------------------------------------------------------------------------------- fallback


async def test_outage_falls_back_and_path_shows_both(server):
    server.script = lambda req: Action.error(503) if req.json["model"] == "p" else None
    cfg = config_for({"t/p": model(server.url, "p", fallbacks=["t/f"]), "t/f": model(server.url, "f")})
    client = await client_for(cfg, sleep=Sleeps())
    c = await client.complete("hi [call:a]", model="t/p")
    assert c.fallback_path == ["t/p", "t/f"] and c.model == "t/f" and c.text == "answer a"
    assert c.attempts == FAST.max_attempts + 1
    await client.aclose()


async def test_fallback_too_small_for_the_prompt_is_skipped(server):
    server.script = lambda req: Action.error(503) if req.json["model"] == "p" else None
    cfg = config_for(
        {
            "t/p": model(server.url, "p", fallbacks=["t/small", "t/big"]),
            "t/small": model(server.url, "small", context_window=200, max_tokens=64),
            "t/big": model(server.url, "big", context_window=100_000),
        }
    )
    client = await client_for(cfg, sleep=Sleeps())
    c = await client.complete("x" * 2000 + " [call:a]", model="t/p")  # ~500 tokens: too many for 200
    assert c.fallback_path == ["t/p", "t/big"]
    assert "small" not in {r.json["model"] for r in server.requests}
    await client.aclose()


@pytest.mark.parametrize(
    "action, falls_back",
    [
        (Action.error(400, "This model's maximum context length is 8192 tokens"), True),
        (Action(body={"choices": [{"message": {"content": ""}, "finish_reason": "content_filter"}]}), True),
        (Action.error(400, "invalid temperature"), False),
    ],
    ids=["context_window", "content_filter", "bad_request"],
)
async def test_typed_fallback_triggers(server, action, falls_back):
    server.script = lambda req: action if req.json["model"] == "p" else None
    cfg = config_for({"t/p": model(server.url, "p", fallbacks=["t/f"]), "t/f": model(server.url, "f")})
    client = await client_for(cfg, sleep=Sleeps())
    if falls_back:
        c = await client.complete("hi [call:a]", model="t/p")
        assert c.fallback_path == ["t/p", "t/f"]
    else:
        with pytest.raises(E.BadRequestError) as info:
            await client.complete("hi [call:a]", model="t/p")
        assert info.value.fallback_path == ["t/p"]
        assert "f" not in {r.json["model"] for r in server.requests}
    assert server.count("a") == (2 if falls_back else 1)  # none of these is retried
    await client.aclose()


async def test_every_model_failing_raises_all_failed(server):
    server.script = lambda req: Action.error(503)
    cfg = config_for({"t/p": model(server.url, "p", fallbacks=["t/f"]), "t/f": model(server.url, "f")})
    client = await client_for(cfg, sleep=Sleeps())
    with pytest.raises(E.AllModelsFailedError) as info:
        await client.complete("hi [call:a]", model="t/p")
    err = info.value
    assert err.fallback_path == ["t/p", "t/f"] and [e.model for e in err.errors] == ["t/p", "t/f"]
    assert all(isinstance(e, E.OverloadedError) for e in err.errors)
    assert err.attempts == 2 * FAST.max_attempts == server.count("a")
    await client.aclose()


async def test_circuit_breaker_skips_a_failing_model_without_a_request(server):
    server.script = lambda req: Action.error(503) if req.json["model"] == "p" else None
    cfg = config_for({"t/p": model(server.url, "p", fallbacks=["t/f"]), "t/f": model(server.url, "f")})
    client = await client_for(
        cfg, sleep=Sleeps(), retry=RetryPolicy(max_attempts=1), breaker=Breaker(threshold=2, cooldown_s=0.3)
    )

    def primary_requests() -> int:
        return sum(1 for r in server.requests if r.json["model"] == "p")

    for i in range(2):
        c = await client.complete(f"hi [call:{i}]", model="t/p")
        assert c.fallback_path == ["t/p", "t/f"]
    assert primary_requests() == 2
    for i in range(2, 6):  # open: skipped without a request
        c = await client.complete(f"hi [call:{i}]", model="t/p")
        assert c.fallback_path == ["t/f"] and c.attempts == 1
    assert primary_requests() == 2
    await asyncio.sleep(0.35)  # cooldown over: one trial call goes to the primary (half open)
    server.script = None
    c = await client.complete("hi [call:z]", model="t/p")
    assert c.fallback_path == ["t/p"] and primary_requests() == 3
    await client.aclose()


# ---------------------------------------------------------------------------------------- timeouts


async def test_read_timeout_per_model(server):
    server.script = lambda req: Action("slow", delay_s=1.0)
    cfg = config_for({"t/m": model(server.url, timeout=0.2)})
    client = await client_for(cfg, retry=RetryPolicy(max_attempts=1))
    started = time.monotonic()
    with pytest.raises(E.ProviderTimeoutError):
        await client.complete("hi [call:a]", model="t/m")
    assert time.monotonic() - started < 0.9
    await client.aclose()


async def test_connect_timeout_per_model():
    # A listener whose accept queue is full: the kernel drops further SYNs, so connect() hangs.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    cfg = config_for({"t/m": model(f"http://127.0.0.1:{port}/v1", timeout=30.0, connect_timeout=0.3)})
    client = await client_for(cfg, retry=RetryPolicy(max_attempts=1))
    started = time.monotonic()
    try:
        with pytest.raises((E.ProviderTimeoutError, E.ConnectionFailedError)):
            await client.complete("hi [call:a]", model="t/m")
        assert time.monotonic() - started < 5
    finally:
        await client.aclose()
        for s in fillers:
            s.close()
        lsock.close()


async def test_connection_refused_is_typed():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    client = await client_for(
        config_for({"t/m": model(f"http://127.0.0.1:{port}/v1")}),
        retry=RetryPolicy(max_attempts=2, base_delay_s=0.01),
    )
    try:
        with pytest.raises(E.ConnectionFailedError) as info:
            await client.complete("hi", model="t/m")
        # both tries were made, and neither request reached a server: nothing was sent, nothing billed
        assert info.value.tries == 2 and info.value.attempts == 0 and not info.value.maybe_billed
    finally:
        await client.aclose()


def test_timeout_defaults_are_sane():
    cfg = config_for({"t/m": {"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:1/v1"}})
    spec = cfg.model_spec("t/m")
    assert 30 <= spec.timeout <= 600 and 1 <= spec.connect_timeout <= 30


# ---------------------------------------------------------------------------------------- rate limits


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def test_rpm_spaces_requests_evenly():
    clock = FakeClock()
    limiter = Limiter(clock=clock, sleep=clock.sleep)
    b = limiter.bucket("rpm", rpm=60)
    sent = []
    for _ in range(5):
        await limiter.acquire([b], 1)
        sent.append(clock.now)
    assert [round(t - sent[0], 6) for t in sent] == [0, 1, 2, 3, 4]


async def test_rpm_spacing_under_concurrency():
    clock = FakeClock()
    limiter = Limiter(clock=clock, sleep=clock.sleep)
    b = limiter.bucket("rpm", rpm=120)
    waits = [b.reserve(1, clock.now) for _ in range(4)]
    assert waits == [0, 0.5, 1.0, 1.5]


async def test_tpm_reserves_then_reconciles():
    clock = FakeClock()
    limiter = Limiter(clock=clock, sleep=clock.sleep)
    b = limiter.bucket("tpm", tpm=600)  # 600 tokens in any sliding minute
    await limiter.acquire([b], 400)
    assert clock.sleeps == []
    # 400 released + 400 > 600: wait until the first leaves the window (60 s + the slack)
    assert b.earliest(400, clock.now) - clock.now == pytest.approx(SPAN_S)
    # the first call used 100 tokens, not 400: the next one fits at once
    limiter.reconcile([b], 400, 100)
    assert b.earliest(400, clock.now) == clock.now
    await limiter.acquire([b], 400)
    assert clock.sleeps == []
    # a request larger than a minute's budget goes alone, once the window is empty
    wait = b.earliest(5000, clock.now) - clock.now
    assert wait == pytest.approx(SPAN_S)  # both released now: both leave the window in 60.1 s


async def test_429_pause_delays_others_and_caps():
    clock = FakeClock()
    limiter = Limiter(clock=clock, sleep=clock.sleep)
    b = limiter.bucket("p", rpm=600)
    until = limiter.pause(b, 5.0)
    await limiter.acquire([b], 1)
    assert clock.now == pytest.approx(until)
    limiter.pause(b, 60.0)
    with pytest.raises(BucketPaused):
        await limiter.acquire([b], 1, max_pause=30.0)
    # the task that slept through its own hint is not held again by that pause
    start = clock.now
    await limiter.acquire([b], 1, max_pause=30.0, honoured=b.paused_until)
    assert clock.now - start < 1


async def test_slot_taken_before_a_pause_is_given_up():
    """A request holding a slot inside a pause waits for the pause and then for a fresh, spaced slot."""
    clock = FakeClock()
    slept = asyncio.Event()
    release = asyncio.Event()

    async def sleep(seconds: float) -> None:
        slept.set()
        await release.wait()
        clock.now += seconds

    limiter = Limiter(clock=clock, sleep=sleep)
    b = limiter.bucket("p", rpm=60)
    await limiter.acquire([b], 1)  # slot at t0, next at t0+1
    t0 = clock.now - 0
    task = asyncio.create_task(limiter.acquire([b], 1))  # slot t0+1: sleeps
    await slept.wait()
    limiter.pause(b, 3.0)  # a 429 until t0+3
    release.set()
    slept.clear()
    await task
    # woke at t0+1 inside the pause: re-reserved at the end of the pause (t0+3)
    assert clock.now == pytest.approx(t0 + 3.0)


async def test_gate_limits_concurrency_and_survives_cancellation():
    gate = Gate(2)
    inside = 0
    peak = 0

    async def work() -> None:
        nonlocal inside, peak
        await gate.acquire()
        try:
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.01)
            inside -= 1
        finally:
            gate.release()

    waiter = asyncio.ensure_future(asyncio.gather(*(work() for _ in range(10))))
    await asyncio.sleep(0)
    extra = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    extra.cancel()
    await waiter
    assert peak == 2 and gate.in_use == 0


async def test_max_concurrency_counted_on_the_server(server):
    server.latency_s = 0.05
    cfg = config_for({"t/m": model(server.url, limits={"max_concurrency": 3})})
    client = await client_for(cfg)
    await asyncio.gather(*(client.complete(f"hi [call:{i}]", model="t/m") for i in range(20)))
    assert server.max_in_flight == 3
    await client.aclose()


async def test_account_limits_shared_by_models_and_clients(server):
    server.latency_s = 0.05
    shared = {"account_limits": {"max_concurrency": 2}}
    cfg = config_for(
        {
            "t/a": model(server.url, "a", api_key_env=None, options=shared),
            "t/b": model(server.url, "b", api_key_env=None, options=shared),
        }
    )
    c1, c2 = await client_for(cfg), await client_for(cfg)
    calls = [c.complete(f"hi [call:{i}]", model=m) for i in range(6) for c, m in ((c1, "t/a"), (c2, "t/b"))]
    await asyncio.gather(*calls)
    assert server.max_in_flight == 2
    await c1.aclose()
    await c2.aclose()


async def test_limits_hold_across_event_loops(server):
    """complete_sync runs on the client's own loop (a thread): it shares the limits with async callers."""
    server.latency_s = 0.05
    cfg = config_for({"t/m": model(server.url, limits={"max_concurrency": 2})})
    client = await client_for(cfg)
    sync_calls = [asyncio.to_thread(client.complete_sync, f"s [call:s{i}]", model="t/m") for i in range(6)]
    async_calls = [client.complete(f"a [call:a{i}]", model="t/m") for i in range(6)]
    results = await asyncio.gather(*sync_calls, *async_calls)
    assert len(results) == 12 and server.max_in_flight == 2
    await client.aclose()
    client.close()


async def test_rpm_shared_by_every_client_in_the_process(server):
    cfg = config_for({"t/m": model(server.url, limits={"rpm": 1200})})  # 20/s: one every 50 ms
    clients = [await client_for(cfg) for _ in range(3)]
    for (
        c
    ) in clients:  # each client's first call builds its HTTP pool (TLS context): keep that out of the burst
        await c.complete("warm-up", model="t/m")
    server.requests.clear()
    await asyncio.gather(
        *(c.complete(f"hi [call:{i}-{j}]", model="t/m") for j, c in enumerate(clients) for i in range(10))
    )
    times = sorted(r.t for r in server.requests)
    assert len(times) == 30
    assert server.max_rate(0.5) <= 0.5 * 1200 / 60 + 1
    assert times[-1] - times[0] >= 29 * 0.05 * 0.9
    for c in clients:
        await c.aclose()


async def test_rate_limit_429_pauses_the_bucket_for_every_task(server):
    paused_at = []

    def script(req):
        if req.call_id == "first" and req.attempt == 1:
            paused_at.append(req.t)
            return Action.error(429, "slow down", {"retry-after-ms": "300"})
        return None

    server.script = script
    cfg = config_for({"t/m": model(server.url)})
    client = await client_for(cfg)
    first = asyncio.create_task(client.complete("hi [call:first]", model="t/m"))
    while not server.count("first"):
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)  # the 429 is back: the bucket is paused
    await asyncio.gather(*(client.complete(f"hi [call:{i}]", model="t/m") for i in range(5)), first)
    later = [r.t for r in server.requests if r.call_id != "first"]
    assert min(later) >= paused_at[0] + 0.28
    await client.aclose()


def test_bucket_reserve_is_a_plain_function():
    b = Bucket(rpm=60)
    assert b.reserve(1, 0.0) == 0 and b.reserve(1, 0.0) == 1.0


# ---------------------------------------------------------------------------------------- secrets

KEY = "sk-test-PLANTEDkey0123456789abcdef"


async def test_the_key_leaks_nowhere(server, monkeypatch, caplog, isolated_home):
    monkeypatch.setenv("FAKE_PROVIDER_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    for name in ("orchestrator", "httpx", "httpcore", "aiohttp"):
        caplog.set_level(logging.DEBUG, logger=name)

    def echo(req):
        auth = req.headers.get("authorization", "")
        if req.call_id.startswith("e401"):
            return Action.error(
                401,
                f"bad key {auth}",
                body={"error": {"message": f"Incorrect API key: {auth}"}, "echo": dict(req.headers)},
            )
        if req.call_id.startswith("e500"):
            return Action.error(500, body=f"upstream saw headers {req.headers}")
        if req.call_id.startswith("e429"):
            return Action.error(429, f"slow down {auth}", {"retry-after": "120"})
        return Action(body=completion_body(req, text="ok"))

    server.script = echo
    extra = {"api_key_env": "FAKE_PROVIDER_API_KEY"}
    cfg = config_for(
        {"t/p": model(server.url, "p", fallbacks=["t/f"], **extra), "t/f": model(server.url, "f", **extra)}
    )
    client = LLMClient(cfg, retry=FAST, sleep=Sleeps())
    texts: list[str] = []
    ok = await client.complete("hi [call:ok]", model="t/f")
    texts += [repr(ok), str(ok), ok.model_dump_json()]
    for call in ("e401", "e500", "e429"):
        try:
            await client.complete(f"hi [call:{call}]", model="t/f")
        except E.ProviderError as exc:
            texts += [str(exc), repr(exc), str(exc.body), repr(exc.args)]
    try:
        await client.complete("hi [call:e500-chain]", model="t/p")
    except E.AllModelsFailedError as exc:
        texts += [str(exc), repr(exc), *(repr(e) for e in exc.errors), *(str(e.body) for e in exc.errors)]
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"  # the server did get it
    assert len(texts) > 10
    for text in texts:
        assert KEY not in text
    assert KEY not in caplog.text
    await client.aclose()
    client.close()
    blobs = b""
    for path in isolated_home.rglob("*"):
        if path.is_file():
            blobs += path.read_bytes()
    assert blobs and KEY.encode() not in blobs
    rows = sqlite3.connect(isolated_home / "cache.sqlite").execute("SELECT * FROM responses").fetchall()
    assert rows and all(KEY not in repr(row) for row in rows)
