"""The response cache, the budget, the ledger and prices, against a real loopback server."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import warnings

import pytest
from helpers.fault_server import Action, FaultServer, completion_body, config_for

from orchestrator import errors as E
from orchestrator import modes
from orchestrator.client import LLMClient, RetryPolicy
from orchestrator.client.ledger import Ledger
from orchestrator.client.limits import Limiter
from orchestrator.client.pricing import list_cost, worst_case_cost
from orchestrator.types import Message, Usage

PRICE = {"input": 2.0, "output": 8.0, "cache_read": 0.5}  # USD per million tokens


@pytest.fixture(autouse=True)
def fresh_limiter(monkeypatch):
    monkeypatch.setattr("orchestrator.client.llm_client.LIMITER", Limiter())


@pytest.fixture
def server():
    srv = FaultServer(completion_tokens=20).start()
    yield srv
    srv.stop()


def priced(url: str, name: str = "m", **extra) -> dict:
    return {"provider": "openai", "model": name, "base_url": url, "timeout": 5.0, "price": PRICE, **extra}


async def shut(client: LLMClient) -> None:
    await client.aclose()
    client.close()


def client_for(cfg, **kw) -> LLMClient:
    kw.setdefault("retry", RetryPolicy(max_attempts=1))
    return LLMClient(cfg, **kw)


# ---------------------------------------------------------------------------------------- cache


async def test_second_identical_batch_sends_nothing(server):
    client = client_for(config_for({"t/m": priced(server.url)}))
    prompts = [f"issue {i} [call:{i}]" for i in range(10)]
    first = await asyncio.gather(*(client.complete(p, model="t/m") for p in prompts))
    assert server.count() == 10 and all(not c.from_cache for c in first)
    second = await asyncio.gather(*(client.complete(p, model="t/m") for p in prompts))
    assert server.count() == 10  # zero new requests
    for a, b in zip(first, second, strict=True):
        assert b.from_cache and b.cost_usd == 0 and b.attempts == 0
        assert a.cost_usd and b.cost_saved_usd == pytest.approx(a.cost_usd)
        assert b.text == a.text and b.usage.input_total == a.usage.input_total
        assert b.fallback_path == ["t/m"]
    assert client.ledger.spent_usd == pytest.approx(sum(c.cost_usd for c in first))
    assert client.ledger.saved_usd == pytest.approx(sum(c.cost_usd for c in first))
    await shut(client)


def edited_shipped_variant(task: str, old: str, new: str):
    """The default variant of the shipped ``task`` with ``old`` replaced by ``new`` in its file."""
    import tomllib

    from orchestrator.tasks.builtin import PINS, SHIPPED_DIR
    from orchestrator.tasks.loader import task_from_data

    path = SHIPPED_DIR / f"{task}.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    text = text.replace(old, new, 1)
    return task_from_data(path, tomllib.loads(text), text, shipped=True, pins=PINS).variant()


async def test_whatever_changes_the_answer_misses(server, monkeypatch):
    client = client_for(config_for({"t/m": priced(server.url, temperature=0.2, seed=1)}))
    msgs = [Message(role="user", content="classify me [call:k]")]

    async def call(**kw):
        kw.setdefault("messages", msgs)
        return await client.complete(model="t/m", **kw)

    base = await call(mode="classify")
    assert (await call(mode="classify")).from_cache
    assert not (await call(mode="classify", seed=2)).from_cache
    assert not (await call(mode="classify", temperature=0.9)).from_cache
    assert not (await call(mode="classify", top_p=0.5)).from_cache
    assert not (await call(mode="classify", max_tokens=77)).from_cache
    assert not (await call(mode="classify", repeat=1)).from_cache
    assert not (await call(mode="summarize")).from_cache  # another mode: other defaults, no schema
    # same messages, same parameters, a new version of the mode's prompt
    original = modes.get_mode("classify")
    changed = dataclasses.replace(
        original, variant=edited_shipped_variant("classify", "unclear.", "unclear. Be terse.")
    )
    assert changed.version != original.version
    monkeypatch.setitem(modes.MODES, "classify", changed)
    assert not (await call(mode="classify")).from_cache
    requests = server.count()
    monkeypatch.setitem(modes.MODES, "classify", original)
    again = await call(mode="classify")
    assert again.from_cache and again.request_hash == base.request_hash and server.count() == requests
    await shut(client)


async def test_cache_key_ignores_the_key_and_headers(server, monkeypatch):
    cfg = config_for({"t/m": priced(server.url, api_key_env="CACHE_TEST_API_KEY")})
    monkeypatch.setenv("CACHE_TEST_API_KEY", "sk-test-one-11111111111")
    client = client_for(cfg)
    await client.complete("x [call:a]", model="t/m")
    monkeypatch.setenv("CACHE_TEST_API_KEY", "sk-test-two-22222222222")
    assert (await client.complete("x [call:a]", model="t/m")).from_cache
    await shut(client)


async def test_refresh_calls_again_and_off_neither_reads_nor_writes(server):
    client = client_for(config_for({"t/m": priced(server.url)}))
    await client.complete("a [call:r]", model="t/m")
    fresh = await client.complete("a [call:r]", model="t/m", cache="refresh")
    assert not fresh.from_cache and server.count("r") == 2
    assert (await client.complete("a [call:r]", model="t/m")).from_cache
    assert server.count("r") == 2
    rows = client.cache.count()
    off = await client.complete("a [call:r]", model="t/m", cache="off")
    assert not off.from_cache and server.count("r") == 3
    await client.complete("b [call:o]", model="t/m", cache="off")
    assert client.cache.count() == rows
    assert not (await client.complete("b [call:o]", model="t/m")).from_cache  # "off" stored nothing
    await shut(client)


async def test_ttl_expiry(server):
    client = client_for(config_for({"t/m": priced(server.url)}))
    await client.complete("t [call:t]", model="t/m", ttl_s=0.3)
    assert (await client.complete("t [call:t]", model="t/m")).from_cache
    await asyncio.sleep(0.35)
    assert not (await client.complete("t [call:t]", model="t/m")).from_cache
    assert server.count("t") == 2
    await shut(client)


async def test_errors_are_never_cached(server):
    server.script = lambda req: Action.error(500) if req.attempt == 1 else None
    client = client_for(config_for({"t/m": priced(server.url)}))
    with pytest.raises(E.OverloadedError):
        await client.complete("e [call:e]", model="t/m")
    assert client.cache.count() == 0
    c = await client.complete("e [call:e]", model="t/m")
    assert not c.from_cache and server.count("e") == 2
    await shut(client)


async def test_cache_survives_a_new_client(server):
    cfg = config_for({"t/m": priced(server.url)})
    c1 = client_for(cfg)
    first = await c1.complete("p [call:p]", model="t/m")
    await shut(c1)
    c2 = client_for(cfg)
    hit = await c2.complete("p [call:p]", model="t/m")
    assert hit.from_cache and hit.cost_saved_usd == pytest.approx(first.cost_usd) and server.count("p") == 1
    await shut(c2)


# ---------------------------------------------------------------------------------------- budget


async def test_budget_caps_a_concurrent_batch(server):
    # estimate per call: 0 input price, max_tokens 100 at $10/M = $0.001; actual usage: 100 output tokens
    server.completion_tokens = 100
    server.latency_s = 0.05
    cfg = config_for(
        {
            "t/m": {
                "provider": "openai",
                "model": "m",
                "base_url": server.url,
                "max_tokens": 100,
                "price": {"input": 0.0, "output": 10.0},
            }
        }
    )
    cap = 0.0055
    client = client_for(cfg, budget_usd=cap, cache=False)
    results = await asyncio.gather(
        *(client.complete(f"q{i} [call:b{i}]", model="t/m") for i in range(20)), return_exceptions=True
    )
    done = [r for r in results if not isinstance(r, BaseException)]
    stopped = [r for r in results if isinstance(r, E.BudgetExceededError)]
    assert len(done) == 5 and len(stopped) == 15 and len(done) + len(stopped) == 20
    assert server.count() == 5  # a call that could cross the cap is never sent
    assert client.ledger.spent_usd <= cap
    assert client.ledger.spent_usd == pytest.approx(sum(c.cost_usd for c in done)) == pytest.approx(0.005)
    assert all(c.text.startswith("answer b") for c in done)  # the work already done is kept
    assert "budget" in str(stopped[0]) and client.ledger.reserved_usd == 0
    # a cache hit costs nothing and is still served once the budget is spent
    cached_client = client_for(cfg, budget_usd=0.0015)
    await cached_client.complete("c [call:c]", model="t/m")
    hit = await cached_client.complete("c [call:c]", model="t/m")
    assert hit.from_cache
    with pytest.raises(E.BudgetExceededError):
        await cached_client.complete("other [call:d]", model="t/m")
    await shut(client)
    await shut(cached_client)


async def test_run_ledger_budget_and_totals(server):
    server.completion_tokens = 100  # $0.001 a call, as estimated
    cfg = config_for(
        {
            "t/m": {
                "provider": "openai",
                "model": "m",
                "base_url": server.url,
                "max_tokens": 100,
                "price": {"input": 0.0, "output": 10.0},
            }
        }
    )
    client = client_for(cfg, cache=False)
    run = Ledger(budget_usd=0.0025)
    for i in range(2):
        await client.complete(f"r{i} [call:r{i}]", model="t/m", ledger=run)
    with pytest.raises(E.BudgetExceededError):
        await client.complete("r3 [call:r3]", model="t/m", ledger=run)
    assert server.count() == 2
    assert run.spent_usd == pytest.approx(client.ledger.spent_usd) == pytest.approx(2 * 100 * 10 / 1e6)
    await client.complete("free [call:f]", model="t/m")  # the client itself has no cap
    assert len(run.lines) == 1 and run.lines[("t/m", "")].calls == 2
    await shut(client)


async def test_budget_stop_is_not_hidden_by_fallbacks(server):
    cfg = config_for(
        {
            "t/p": {
                "provider": "openai",
                "model": "p",
                "base_url": server.url,
                "max_tokens": 1000,
                "price": {"input": 0.0, "output": 10.0},
                "fallbacks": ["t/f"],
            },
            "t/f": {
                "provider": "openai",
                "model": "f",
                "base_url": server.url,
                "max_tokens": 1000,
                "price": {"input": 0.0, "output": 10.0},
            },
        }
    )
    client = client_for(cfg, budget_usd=0.001, cache=False)
    with pytest.raises(E.BudgetExceededError):
        await client.complete("big [call:x]", model="t/p")
    assert server.count() == 0
    await shut(client)


async def test_unknown_price_is_none_with_one_warning_per_model(server):
    cfg = config_for(
        {
            "t/a": {"provider": "openai", "model": "a", "base_url": server.url},
            "t/b": {"provider": "openai", "model": "b", "base_url": server.url},
        }
    )
    client = client_for(cfg, budget_usd=1.0, cache=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = [
            await client.complete(f"u{i} [call:u{i}{m}]", model=f"t/{m}") for m in "ab" for i in range(3)
        ]
    assert all(c.cost_usd is None for c in results)
    priced_warnings = [str(w.message) for w in caught if "no price" in str(w.message)]
    assert len(priced_warnings) == 2
    assert any("'t/a'" in w for w in priced_warnings) and any("'t/b'" in w for w in priced_warnings)
    assert client.ledger.spent_usd == 0 and client.ledger.lines[("t/a", "")].unpriced_calls == 3
    await shut(client)


async def test_provider_reported_cost_is_preferred(server, monkeypatch):
    monkeypatch.setenv("OPENROUTER_TEST_KEY", "sk-or-test-123456789")
    server.script = lambda req: Action(
        body=completion_body(req, prompt_tokens=1000, completion_tokens=100, cost=0.0123)
    )
    cfg = config_for(
        {
            "openrouter/x": {
                "provider": "openrouter",
                "model": "x/y",
                "base_url": server.url,
                "api_key_env": "OPENROUTER_TEST_KEY",
                "price": PRICE,
            }
        }
    )
    client = client_for(cfg)
    c = await client.complete("or [call:o]", model="openrouter/x")
    assert c.cost_usd == pytest.approx(0.0123) and c.provider_cost_usd == pytest.approx(0.0123)
    hit = await client.complete("or [call:o]", model="openrouter/x")
    assert hit.cost_saved_usd == pytest.approx(0.0123)
    await shut(client)


# ---------------------------------------------------------------------------------------- ledger, prices


def usage_body(req, cached=0, reasoning=0, prompt=1000, completion=300):
    body = completion_body(req, prompt_tokens=prompt, completion_tokens=completion)
    body["usage"]["prompt_tokens_details"] = {"cached_tokens": cached}
    body["usage"]["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return body


async def test_ledger_by_model_and_mode_on_every_axis(server):
    server.script = lambda req: Action(body=usage_body(req, cached=400, reasoning=100))
    cfg = config_for({"t/a": priced(server.url, "a"), "t/b": priced(server.url, "b")})
    client = client_for(cfg)
    run = Ledger()
    for m in ("t/a", "t/b"):
        for mode in ("classify", "summarize"):
            await client.complete(f"issue [call:{m}{mode}]", model=m, mode=mode, ledger=run)
    hit = await client.complete("issue [call:t/aclassify]", model="t/a", mode="classify", ledger=run)
    assert hit.from_cache

    # one call: 600 uncached input, 400 cache read, 200 output, 100 reasoning; no token priced twice
    one = (600 * 2.0 + 400 * 0.5 + 200 * 8.0 + 100 * 8.0) / 1e6
    for ledger in (client.ledger, run):
        line = ledger.lines[("t/a", "classify")]
        assert (line.calls, line.cache_hits, line.errors) == (2, 1, 0)
        assert (line.input_uncached, line.cache_read, line.cache_write, line.output, line.reasoning) == (
            600,
            400,
            0,
            200,
            100,
        )
        assert line.spent_usd == pytest.approx(one) and line.saved_usd == pytest.approx(one)
        assert ledger.spent_usd == pytest.approx(4 * one) and ledger.saved_usd == pytest.approx(one)
        by_model = ledger.by("model")
        assert set(by_model) == {"t/a", "t/b"} and by_model["t/b"].output == 400
        by_mode = ledger.by("mode")
        assert set(by_mode) == {"classify", "summarize"} and by_mode["classify"].input_total == 2000
        assert ledger.totals().calls == 5
        rows = ledger.to_rows()
        assert {(r["model"], r["mode"]) for r in rows} == {
            (m, md) for m in ("t/a", "t/b") for md in ("classify", "summarize")
        }
    # errors are counted on the line too
    server.script = lambda req: Action.error(500)
    with pytest.raises(E.OverloadedError):
        await client.complete("boom [call:z]", model="t/b", mode="classify", cache="off")
    assert client.ledger.lines[("t/b", "classify")].errors == 1
    await shut(client)


def test_list_cost_uses_disjoint_axes():
    cfg = config_for(
        {
            "t/m": {
                "provider": "openai",
                "model": "m",
                "base_url": "http://x/v1",
                "price": {"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75},
            }
        }
    )
    spec = cfg.model_spec("t/m")
    usage = Usage(input_uncached=1000, cache_read=2000, cache_write=500, output=400, reasoning=100)
    expected = (1000 * 3 + 2000 * 0.3 + 500 * 3.75 + 400 * 15 + 100 * 15) / 1e6
    assert list_cost(spec, usage) == pytest.approx(expected)
    # the worst case prices input at the dearest input axis (cache write 3.75) and output at the dearest output axis
    assert worst_case_cost(spec, 4000, 200) == pytest.approx((4000 * 3.75 + 200 * 15) / 1e6)
    unpriced = config_for(
        {"t/u": {"provider": "openai", "model": "u", "base_url": "http://x/v1"}}
    ).model_spec("t/u")
    assert list_cost(unpriced, usage) is None and worst_case_cost(unpriced, 10, 10) is None
    local = config_for({"local/x": {"provider": "local", "model": "x"}}).model_spec("local/x")
    assert list_cost(local, usage) == 0.0


def test_cache_put_get_roundtrip_and_purge(tmp_path):
    from orchestrator.client.cache import ResponseCache
    from orchestrator.types import Completion

    cache = ResponseCache(tmp_path / "c.sqlite")
    comp = Completion(text="hi", model="m", provider="openai", cost_usd=0.1, raw={"big": "body"})
    cache.put("k1", comp)
    cache.put("k2", comp, ttl_s=0.01)
    cache.put("k3", comp, ttl_s=0)  # expires at once: not stored
    got = cache.get("k1")
    assert got is not None and got.text == "hi" and got.raw is None
    time.sleep(0.02)
    assert cache.get("k2") is None and cache.get("k3") is None
    assert cache.purge_expired() == 1 and cache.count() == 1
    cache.close()
