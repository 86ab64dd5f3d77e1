"""Provider details a validating mock found (issue: hostile world): each against a real loopback server.

Gemini's unused block reason, out-of-range sampling values refused before sending, answers whose text is
not a string, error bodies of any size and shape, redirects to another host, and usage counts that are
negative, non-numeric or missing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from helpers.fault_server import config_for
from helpers.provider_server import ProviderServer
from test_providers_http import (
    KEY,
    anthropic_message,
    cohere_response,
    gemini_response,
    make_request,
    ollama_response,
    send,
    send_error,
)

from orchestrator import errors as E
from orchestrator.client import LLMClient
from orchestrator.providers.anthropic import ADAPTER as ANTHROPIC
from orchestrator.providers.cohere import ADAPTER as COHERE
from orchestrator.providers.gemini import ADAPTER as GEMINI
from orchestrator.providers.http import HttpPool
from orchestrator.providers.ollama import ADAPTER as OLLAMA
from orchestrator.providers.openai import ADAPTER as OPENAI


@pytest.fixture
def server() -> Iterator[ProviderServer]:
    with ProviderServer() as srv:
        yield srv


@pytest.fixture
async def pool() -> AsyncIterator[HttpPool]:
    p = HttpPool()
    yield p
    await p.aclose()


def openai_body(content: Any = "fine", usage: Any = "default") -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
    }
    if usage == "default":
        body["usage"] = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    elif usage is not None:
        body["usage"] = usage
    return body


# ------------------------------------------------------------------------------------------ gemini


async def test_gemini_unspecified_block_reason_is_not_a_block(server, pool, monkeypatch) -> None:
    body = gemini_response()
    body["promptFeedback"] = {"blockReason": "BLOCK_REASON_UNSPECIFIED"}
    server.reply(200, body)
    resp = await send(GEMINI, make_request(monkeypatch, "gemini", "gemini-2.5-flash", server.url), pool)
    assert resp.text == '{"type": "bug", "severity": "high"}'


# ------------------------------------------------------------------------- text that is not a string


def hostile(provider: str) -> dict[str, Any]:
    """A spec-shaped answer of ``provider`` whose text is then replaced by something that is not a string
    (the specs forbid it; servers send it anyway)."""
    if provider == "anthropic":
        body = anthropic_message()
        body["content"] = [{"type": "text", "text": 5}]
    elif provider == "cohere":
        body = cohere_response()
        body["message"]["content"] = 12
    elif provider == "gemini":
        body = gemini_response()
        body["candidates"][0]["content"]["parts"] = [{"text": ["a", "b"]}]
    elif provider == "ollama":
        body = ollama_response()
        body["message"]["content"] = ["x"]
    elif provider == "openai-int":
        body = openai_body(content=7)
    else:
        body = openai_body(content=[1, 2, 3])
    return body


@pytest.mark.parametrize(
    ("adapter", "provider"),
    [
        (OPENAI, "openai"),
        (OPENAI, "openai-int"),
        (ANTHROPIC, "anthropic"),
        (COHERE, "cohere"),
        (GEMINI, "gemini"),
        (OLLAMA, "ollama"),
    ],
)
async def test_non_string_text_is_a_typed_malformed_response(
    server, pool, monkeypatch, adapter, provider
) -> None:
    server.reply(200, hostile(provider))
    provider = provider.split("-")[0]
    req = make_request(monkeypatch, provider, "m", server.url)
    exc = await send_error(adapter, req, pool)
    assert type(exc) is E.MalformedResponseError and exc.maybe_billed
    assert "not a string" in str(exc) or "unexpected response shape" in str(exc)


async def test_non_string_text_falls_back_to_the_next_model(server) -> None:
    server.reply(200, openai_body(content={"nested": True}))
    cfg = config_for(
        {
            "p/m": {
                "provider": "openai",
                "model": "m",
                "base_url": server.url,
                "fallbacks": ["baseline/rules"],
            },
            "baseline/rules": {"provider": "baseline"},
        }
    )
    client = LLMClient(cfg, cache=False)
    with pytest.warns(UserWarning, match="no price"):
        c = await client.complete("Crash on start: Traceback ...", model="p/m", mode="classify")
    await client.aclose()
    assert c.model == "baseline/rules" and c.fallback_path == ["p/m", "baseline/rules"]


# ------------------------------------------------------------------------------------- error bodies


async def test_error_body_without_error_or_message_keys_is_capped(server, pool, monkeypatch) -> None:
    junk = {"detail": "x" * 1_000_000, "trace": ["y" * 1000] * 50}
    server.reply(500, junk)
    server.reply(502, "<html>" + "z" * 500_000 + "</html>", headers={"content-type": "text/html"})
    exc = await send_error(OPENAI, make_request(monkeypatch, "openai", "m", server.url), pool)
    assert type(exc) is E.OverloadedError
    assert len(str(exc)) < 1300 and "more characters" in str(exc) and "detail" in str(exc)
    assert len(exc.body or "") <= 2000
    exc = await send_error(OPENAI, make_request(monkeypatch, "openai", "m", server.url), pool)
    assert type(exc) is E.OverloadedError and "<html>zzz" in str(exc)  # the start of a non-JSON page
    assert len(str(exc)) < 500 and len(exc.body or "") <= 2000


async def test_redirect_to_another_host_says_so_and_is_not_followed(server, pool, monkeypatch) -> None:
    server.reply(302, "", headers={"location": "http://other-host.invalid/v1/chat/completions"})
    exc = await send_error(OPENAI, make_request(monkeypatch, "openai", "m", server.url), pool)
    assert type(exc) is E.BadRequestError and exc.status == 302
    assert "another host" in str(exc) and "other-host.invalid" in str(exc) and "base_url" in str(exc)
    assert len(server.requests) == 1  # nothing was sent to the other host (it does not resolve anyway)


# ------------------------------------------------------------------------------------- usage counts


@pytest.mark.parametrize(
    ("usage", "field"),
    [
        ({"prompt_tokens": -5, "completion_tokens": 3}, "usage.prompt_tokens"),
        ({"prompt_tokens": "12", "completion_tokens": 3}, "usage.prompt_tokens"),
        ({"prompt_tokens": 12, "completion_tokens": 2.5}, "usage.completion_tokens"),
        ({"prompt_tokens": 12, "completion_tokens": True}, "usage.completion_tokens"),
        ({"prompt_tokens": 1e30, "completion_tokens": 3}, "usage.prompt_tokens"),
    ],
)
async def test_bad_usage_counts_are_malformed_not_negative_costs(
    server, pool, monkeypatch, usage, field
) -> None:
    server.reply(200, openai_body(usage=usage))
    exc = await send_error(OPENAI, make_request(monkeypatch, "openai", "m", server.url), pool)
    assert type(exc) is E.MalformedResponseError and field in str(exc)


async def test_nan_usage_is_malformed(server, pool, monkeypatch) -> None:
    text = json.dumps(openai_body(usage={"prompt_tokens": 1, "completion_tokens": 1})).replace(
        '"completion_tokens": 1', '"completion_tokens": NaN'
    )
    server.reply(200, text)
    exc = await send_error(OPENAI, make_request(monkeypatch, "openai", "m", server.url), pool)
    assert type(exc) is E.MalformedResponseError and "completion_tokens" in str(exc)


async def test_integral_float_counts_are_accepted(server, pool, monkeypatch) -> None:
    server.reply(200, openai_body(usage={"prompt_tokens": 12.0, "completion_tokens": 3}))
    resp = await send(OPENAI, make_request(monkeypatch, "openai", "m", server.url), pool)
    assert resp.usage is not None and resp.usage.input_uncached == 12


# ----------------------------------------------------------------- sampling values refused before sending


def strict_config(url: str, provider: str) -> Any:
    return config_for(
        {
            f"{provider}/m": {
                "provider": provider,
                "model": "m",
                "base_url": url,
                "api_key_env": "DETAILS_TEST_KEY",
                "price": {"input": 1.0, "output": 2.0},
            }
        }
    )


@pytest.mark.parametrize(
    ("provider", "params", "words"),
    [
        ("anthropic", {"temperature": 1.5}, "temperature 1.5"),
        ("anthropic", {"top_p": 1.2}, "top_p"),
        ("cohere", {"temperature": 1.7}, "temperature 1.7"),
        ("cohere", {"seed": -1}, "seed"),
    ],
)
async def test_out_of_range_sampling_is_refused_before_sending(
    server, monkeypatch, provider, params, words
) -> None:
    monkeypatch.setenv("DETAILS_TEST_KEY", KEY)
    client = LLMClient(strict_config(server.url, provider), cache=False)
    with pytest.raises(E.BadRequestError) as info:
        await client.complete("hello", model=f"{provider}/m", **params)
    await client.aclose()
    assert words in str(info.value) and provider in str(info.value) and "not sent" in str(info.value)
    assert server.requests == []


async def test_an_in_range_override_is_sent(server, monkeypatch) -> None:
    monkeypatch.setenv("DETAILS_TEST_KEY", KEY)
    server.reply(200, anthropic_message())
    client = LLMClient(strict_config(server.url, "anthropic"), cache=False)
    c = await client.complete("hello", model="anthropic/m", temperature=0.9)
    await client.aclose()
    assert server.last.json["temperature"] == 0.9 and c.text


# --------------------------------------------------------------------------------- usage missing


async def test_missing_usage_is_unknown_cost_charged_at_its_worst_case(server) -> None:
    server.reply(200, openai_body(usage=None))
    cfg = config_for(
        {
            "p/m": {
                "provider": "openai",
                "model": "m",
                "base_url": server.url,
                "price": {"input": 2.0, "output": 8.0},
            }
        }
    )
    client = LLMClient(cfg, cache=False)
    c = await client.complete("What does this stack trace mean?", model="p/m", max_tokens=100)
    await client.aclose()
    assert c.cost_usd is None and "usage_missing" in c.notes
    # the worst case: every UTF-8 byte a token (plus template tokens) at $2/M, 100 output tokens at $8/M
    assert c.charged_usd is not None and c.charged_usd > 100 * 8 / 1e6
    assert client.ledger.spent_usd == pytest.approx(c.charged_usd)
    assert client.ledger.totals().unknown_cost_calls == 1
