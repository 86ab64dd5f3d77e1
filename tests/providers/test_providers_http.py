"""HTTP adapters (anthropic, openrouter, cohere, gemini, ollama) against a loopback server.

Every test goes through ``ADAPTER.send`` and the real ``HttpPool`` (aiohttp)
to a real socket. Request bodies are validated against the providers' own API descriptions, and
response fixtures are checked against them too, so that both sides stay spec-shaped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from helpers.provider_server import ProviderServer
from helpers.spec_validation import validate_request, validate_response

from orchestrator import errors as E
from orchestrator.config import ModelSpec
from orchestrator.modes import CLASSIFY_SCHEMA
from orchestrator.providers.anthropic import ADAPTER as ANTHROPIC
from orchestrator.providers.base import ChatRequest, HttpAdapter, ProviderResponse
from orchestrator.providers.cohere import ADAPTER as COHERE
from orchestrator.providers.gemini import ADAPTER as GEMINI
from orchestrator.providers.http import HttpPool
from orchestrator.providers.ollama import ADAPTER as OLLAMA
from orchestrator.providers.openrouter import ADAPTER as OPENROUTER
from orchestrator.types import Message

KEY = "sk-test-abcdefghijklmnop1234"
SYSTEM = "You label GitHub issues."
USER = "Issue #1: the parser crashes on empty input."
PARAMS = {"temperature": 0.2, "top_p": 0.9, "seed": 7, "max_tokens": 256}


@pytest.fixture
def server() -> Iterator[ProviderServer]:
    with ProviderServer() as srv:
        yield srv


@pytest.fixture
async def pool() -> AsyncIterator[HttpPool]:
    p = HttpPool()
    yield p
    await p.aclose()


def make_request(
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    model: str,
    base_url: str,
    *,
    params: dict[str, Any] | None = None,
    schema: dict[str, Any] | None = None,
    key: bool = True,
    **spec_kw: Any,
) -> ChatRequest:
    env = f"TEST_{provider.upper()}_KEY"
    if key:
        monkeypatch.setenv(env, KEY)
    spec = ModelSpec(
        id=f"{provider}/{model}",
        provider=provider,
        model=model,
        base_url=base_url,
        api_key_env=env if key else None,
        **spec_kw,
    )
    messages = [Message(role="system", content=SYSTEM), Message(role="user", content=USER)]
    return ChatRequest(
        spec=spec,
        messages=messages,
        params=dict(PARAMS if params is None else params),
        schema=schema,
        mode="classify" if schema else None,
    )


async def send(adapter: HttpAdapter, req: ChatRequest, pool: HttpPool) -> ProviderResponse:
    return await adapter.send(req, pool)


async def send_error(adapter: HttpAdapter, req: ChatRequest, pool: HttpPool) -> E.ProviderError:
    with pytest.raises(E.ProviderError) as info:
        await adapter.send(req, pool)
    exc = info.value
    assert KEY not in str(exc) and KEY not in repr(exc) and KEY not in (exc.body or "")
    assert exc.provider == adapter.name
    return exc


# ---------------------------------------------------------------------------------------------- anthropic


def anthropic_message(**usage: int) -> dict[str, Any]:
    body = {
        "id": "msg_01XYZ",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [
            {"type": "thinking", "thinking": "Crash on input: a bug.", "signature": "c2lnbmF0dXJl"},
            {"type": "text", "text": '{"type": "bug", ', "citations": None},
            {"type": "text", "text": '"severity": "high"}', "citations": None},
        ],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 20,
            "output_tokens": 9,
            "cache_creation_input_tokens": None,
            "cache_read_input_tokens": None,
            "cache_creation": None,
            "server_tool_use": None,
            "service_tier": "standard",
        },
    }
    body["usage"].update(usage)
    validate_response("anthropic", body)
    return body


async def test_anthropic_success_request_and_response(server, pool, monkeypatch) -> None:
    server.reply(200, anthropic_message(), headers={"request-id": "req_abc"})
    req = make_request(monkeypatch, "anthropic", "claude-sonnet-4-5", server.url, schema=CLASSIFY_SCHEMA)
    resp = await send(ANTHROPIC, req, pool)

    sent = server.last
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    body = sent.json
    validate_request("anthropic", body)
    assert body["model"] == "claude-sonnet-4-5"
    assert body["system"] == SYSTEM
    assert body["messages"] == [{"role": "user", "content": USER}]
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (256, 0.2, 0.9)
    assert "seed" not in body and "output_format" not in body  # neither exists on the Messages API
    assert ANTHROPIC.supports_schema(req.spec) is False

    assert resp.text == '{"type": "bug", "severity": "high"}'  # text blocks only, thinking left out
    assert (resp.usage.input_uncached, resp.usage.output, resp.usage.cache_read, resp.usage.cache_write) == (
        20,
        9,
        0,
        0,
    )
    assert resp.served_model == "claude-sonnet-4-5-20250929"
    assert resp.finish_reason == "stop"
    assert resp.request_id == "msg_01XYZ"


async def test_anthropic_version_override_and_max_tokens_always_sent(server, pool, monkeypatch) -> None:
    server.reply(200, anthropic_message())
    req = make_request(
        monkeypatch,
        "anthropic",
        "claude-x",
        server.url,
        params={"temperature": None},
        options={"anthropic_version": "2099-01-01"},
        max_tokens=77,
    )
    await send(ANTHROPIC, req, pool)
    assert server.last.headers["anthropic-version"] == "2099-01-01"
    body = server.last.json
    validate_request("anthropic", body)
    assert body["max_tokens"] == 77 and "temperature" not in body and "top_p" not in body


async def test_anthropic_cache_usage_axes(server, pool, monkeypatch) -> None:
    message = anthropic_message(
        input_tokens=12, output_tokens=40, cache_creation_input_tokens=1000, cache_read_input_tokens=5000
    )
    message["stop_reason"] = "max_tokens"
    server.reply(200, message)
    resp = await send(ANTHROPIC, make_request(monkeypatch, "anthropic", "claude-x", server.url), pool)
    u = resp.usage
    assert (u.input_uncached, u.cache_write, u.cache_read, u.output, u.reasoning) == (12, 1000, 5000, 40, 0)
    assert u.input_total == 6012
    assert u.raw == message["usage"]
    assert resp.finish_reason == "length"


def anthropic_error(etype: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_err"}


@pytest.mark.parametrize(
    ("status", "body", "headers", "cls", "retryable", "retry_after"),
    [
        (529, anthropic_error("overloaded_error", "Overloaded"), {}, E.OverloadedError, True, None),
        (
            429,
            anthropic_error(
                "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"
            ),
            {"retry-after": "7"},
            E.RateLimitedError,
            True,
            7.0,
        ),
        (
            429,
            anthropic_error(
                "rate_limit_error",
                "enforced_spend_limit_reached: this request would exceed "
                "your organization's monthly spend limit",
            ),
            {},
            E.QuotaExhaustedError,
            False,
            None,
        ),
        (
            400,
            anthropic_error(
                "invalid_request_error", "Your credit balance is too low to access the Anthropic API."
            ),
            {},
            E.QuotaExhaustedError,
            False,
            None,
        ),
        (
            400,
            anthropic_error("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
            {},
            E.ContextTooLongError,
            False,
            None,
        ),
        (
            401,
            anthropic_error("authentication_error", f"invalid x-api-key {KEY}"),
            {},
            E.AuthError,
            False,
            None,
        ),
        (
            404,
            anthropic_error("not_found_error", "model: claude-x"),
            {},
            E.UnknownProviderModelError,
            False,
            None,
        ),
        (500, anthropic_error("api_error", "Internal server error"), {}, E.OverloadedError, True, None),
    ],
)
async def test_anthropic_errors(
    server, pool, monkeypatch, status, body, headers, cls, retryable, retry_after
) -> None:
    server.reply(status, body, headers=headers)
    exc = await send_error(ANTHROPIC, make_request(monkeypatch, "anthropic", "claude-x", server.url), pool)
    assert type(exc) is cls
    assert exc.retryable is retryable
    assert exc.status == status
    assert exc.retry_after_s == retry_after


# --------------------------------------------------------------------------------------------- openrouter


def openrouter_completion(usage: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "gen-123",
        "object": "chat.completion",
        "created": 1767225600,
        "model": "anthropic/claude-3.5-sonnet",
        "provider": "Anthropic",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "logprobs": None,
                "message": {"role": "assistant", "content": "A crash on empty input.", "refusal": None},
            }
        ],
        "usage": usage or {"prompt_tokens": 30, "completion_tokens": 6, "total_tokens": 36},
    }
    validate_response("openrouter", body)
    return body


async def test_openrouter_success_request_and_response(server, pool, monkeypatch) -> None:
    server.reply(200, openrouter_completion())
    options = {
        "referer": "https://example.org/bench",
        "title": "orchestrator tests",
        "models": ["anthropic/claude-3.5-sonnet", "openai/gpt-4o-mini"],
        "provider": {"sort": "price", "allow_fallbacks": True},
    }
    req = make_request(
        monkeypatch,
        "openrouter",
        "openrouter/auto",
        f"{server.url}/api/v1",
        schema=CLASSIFY_SCHEMA,
        options=options,
    )
    resp = await send(OPENROUTER, req, pool)

    sent = server.last
    assert (sent.method, sent.path) == ("POST", "/api/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["http-referer"] == "https://example.org/bench"
    assert sent.headers["x-title"] == "orchestrator tests"
    body = sent.json
    validate_request("openrouter", body)
    assert body["model"] == "openrouter/auto"
    assert body["models"] == options["models"] and body["provider"] == options["provider"]
    assert body["usage"] == {"include": True}
    assert body["messages"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
    assert body["response_format"]["json_schema"]["schema"] == CLASSIFY_SCHEMA
    assert (body["temperature"], body["top_p"], body["seed"], body["max_tokens"]) == (0.2, 0.9, 7, 256)

    assert resp.text == "A crash on empty input."
    assert resp.served_model == "anthropic/claude-3.5-sonnet"
    assert resp.finish_reason == "stop"
    assert (resp.usage.input_uncached, resp.usage.output) == (30, 6)
    assert resp.provider_cost_usd is None  # none reported: the client falls back to its price table
    assert resp.extra["upstream_provider"] == "Anthropic"


async def test_openrouter_cost_and_cached_tokens(server, pool, monkeypatch) -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 200,
        "total_tokens": 1200,
        "cost": 0.0123,
        "prompt_tokens_details": {"cached_tokens": 600, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 50},
    }
    server.reply(200, openrouter_completion(usage))
    req = make_request(monkeypatch, "openrouter", "openai/o4-mini", server.url)
    resp = await send(OPENROUTER, req, pool)
    u = resp.usage
    assert (u.input_uncached, u.cache_read, u.output, u.reasoning) == (400, 600, 150, 50)
    assert resp.provider_cost_usd == pytest.approx(0.0123)
    assert u.raw == usage


def test_openrouter_byok_cost_adds_the_upstream_bill() -> None:
    from orchestrator.providers.openrouter import provider_cost

    assert provider_cost(
        {"cost": 0.001, "is_byok": True, "cost_details": {"upstream_inference_cost": 0.02}}
    ) == (pytest.approx(0.021))
    assert provider_cost({"cost": 0.001, "cost_details": {"upstream_inference_cost": 0.02}}) == 0.001
    assert provider_cost({"prompt_tokens": 3}) is None


async def test_openrouter_402_is_terminal_quota(server, pool, monkeypatch) -> None:
    server.reply(
        402,
        {
            "error": {
                "code": 402,
                "message": f"Insufficient credits for key {KEY}",
                "metadata": {"limit_source": "openrouter_credits"},
            }
        },
    )
    exc = await send_error(OPENROUTER, make_request(monkeypatch, "openrouter", "x/y", server.url), pool)
    assert type(exc) is E.QuotaExhaustedError and exc.retryable is False and exc.status == 402


async def test_openrouter_error_after_generation_started(server, pool, monkeypatch) -> None:
    body = openrouter_completion()
    body["choices"][0]["finish_reason"] = "error"  # OpenRouter-only value, outside OpenAI's enum
    body["choices"][0]["error"] = {"code": 502, "message": f"upstream disconnected ({KEY})"}
    server.reply(200, body)
    exc = await send_error(OPENROUTER, make_request(monkeypatch, "openrouter", "x/y", server.url), pool)
    assert type(exc) is E.OverloadedError and exc.retryable is True and exc.status == 200


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (429, E.RateLimitedError, True),
        (502, E.OverloadedError, True),
        (503, E.OverloadedError, True),
        (401, E.AuthError, False),
    ],
)
async def test_openrouter_status_errors(server, pool, monkeypatch, status, cls, retryable) -> None:
    server.reply(
        status,
        {
            "error": {
                "code": status,
                "message": f"failed for {KEY}",
                "metadata": {"provider_name": "Together", "raw": "upstream said no"},
            }
        },
        headers={"retry-after": "3"},
    )
    exc = await send_error(OPENROUTER, make_request(monkeypatch, "openrouter", "x/y", server.url), pool)
    assert type(exc) is cls and exc.retryable is retryable
    assert exc.retry_after_s == 3.0
    assert "Together" in str(exc)


# ------------------------------------------------------------------------------------------------- cohere


def cohere_response(usage: dict[str, Any] | None = None, finish: str = "COMPLETE") -> dict[str, Any]:
    body = {
        "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
        "finish_reason": finish,
        "message": {
            "role": "assistant",
            "content": [{"type": "text", "text": '{"type": "bug"'}, {"type": "text", "text": "}"}],
        },
        "usage": usage
        or {
            "billed_units": {"input_tokens": 31, "output_tokens": 8},
            "tokens": {"input_tokens": 31, "output_tokens": 8},
        },
    }
    validate_response("cohere", body)
    return body


async def test_cohere_success_request_and_response(server, pool, monkeypatch) -> None:
    server.reply(200, cohere_response())
    req = make_request(monkeypatch, "cohere", "command-r-plus-08-2024", server.url, schema=CLASSIFY_SCHEMA)
    resp = await send(COHERE, req, pool)

    sent = server.last
    assert (sent.method, sent.path) == ("POST", "/v2/chat")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    body = sent.json
    validate_request("cohere", body)
    assert body["model"] == "command-r-plus-08-2024"
    assert body["messages"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
    assert (body["max_tokens"], body["temperature"], body["p"], body["seed"]) == (256, 0.2, 0.9, 7)
    assert "top_p" not in body
    assert body["response_format"] == {"type": "json_object", "json_schema": CLASSIFY_SCHEMA}

    assert resp.text == '{"type": "bug"}'
    assert resp.finish_reason == "stop"
    assert resp.served_model == "command-r-plus-08-2024"
    assert (resp.usage.input_uncached, resp.usage.output) == (31, 8)
    assert resp.request_id == "c14c80c3-18eb-4519-9460-6c92edd8cfb4"


async def test_cohere_top_p_one_is_clamped_into_range(server, pool, monkeypatch) -> None:
    server.reply(200, cohere_response())
    req = make_request(monkeypatch, "cohere", "command-a", server.url, params={"top_p": 1.0})
    await send(COHERE, req, pool)
    validate_request("cohere", server.last.json)
    assert server.last.json["p"] == 0.99


async def test_cohere_billed_units_not_tokens(server, pool, monkeypatch) -> None:
    usage = {
        "billed_units": {"input_tokens": 50, "output_tokens": 20},
        "tokens": {"input_tokens": 180, "output_tokens": 21},
        "cached_tokens": 0,
    }
    server.reply(200, cohere_response(usage, finish="MAX_TOKENS"))
    resp = await send(COHERE, make_request(monkeypatch, "cohere", "command-a", server.url), pool)
    assert (resp.usage.input_uncached, resp.usage.output, resp.usage.cache_read) == (50, 20, 0)
    assert resp.usage.raw == usage  # tokens kept, not billed
    assert resp.finish_reason == "length"


@pytest.mark.parametrize(
    ("status", "message", "cls", "retryable"),
    [
        (401, f"invalid api token {KEY}", E.AuthError, False),
        (
            429,
            "You are using a Trial key, which is limited to 1000 API calls / month.",
            E.QuotaExhaustedError,
            False,
        ),
        (429, "too many requests", E.RateLimitedError, True),
        (498, "blocked output: please adjust your prompt", E.ContentFilteredError, False),
        (503, "service unavailable", E.OverloadedError, True),
    ],
)
async def test_cohere_errors(server, pool, monkeypatch, status, message, cls, retryable) -> None:
    server.reply(status, {"id": "err-1", "message": message})
    exc = await send_error(COHERE, make_request(monkeypatch, "cohere", "command-a", server.url), pool)
    assert type(exc) is cls and exc.retryable is retryable and exc.status == status


async def test_cohere_prefixless_key_is_redacted(server, pool, monkeypatch) -> None:
    """Cohere keys have no recognisable prefix: only the registration done by api_key() hides them."""
    cohere_key = "Xy7Qk2LmN9pR4sT6vW8zA1bC3dE5fG7hJ9kL2mN4"
    req = make_request(monkeypatch, "cohere", "command-a", server.url)
    monkeypatch.setenv("TEST_COHERE_KEY", cohere_key)
    server.reply(401, {"message": f"invalid api token: {cohere_key}"})
    with pytest.raises(E.AuthError) as info:
        await COHERE.send(req, pool)
    assert server.last.headers["authorization"] == f"Bearer {cohere_key}"
    assert cohere_key not in str(info.value) and cohere_key not in repr(info.value)
    assert cohere_key not in (info.value.body or "")


# ------------------------------------------------------------------------------------------------- gemini


def gemini_response(
    usage: dict[str, Any] | None = None, finish: str = "STOP", parts: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body = {
        "candidates": [
            {
                "index": 0,
                "finishReason": finish,
                "content": {
                    "role": "model",
                    "parts": parts
                    if parts is not None
                    else [
                        {"text": "thinking about severity", "thought": True},
                        {"text": '{"type": "bug", '},
                        {"text": '"severity": "high"}'},
                    ],
                },
            }
        ],
        "usageMetadata": usage or {"promptTokenCount": 25, "candidatesTokenCount": 11, "totalTokenCount": 36},
        "modelVersion": "gemini-2.5-flash-preview-09-2025",
        "responseId": "mJ3Lx-resp",
    }
    validate_response("gemini", body)
    return body


async def test_gemini_success_request_and_response(server, pool, monkeypatch) -> None:
    server.reply(200, gemini_response())
    req = make_request(
        monkeypatch, "gemini", "gemini-2.5-flash", f"{server.url}/v1beta", schema=CLASSIFY_SCHEMA
    )
    resp = await send(GEMINI, req, pool)

    sent = server.last
    assert (sent.method, sent.path) == ("POST", "/v1beta/models/gemini-2.5-flash:generateContent")
    assert "?" not in sent.path and KEY not in sent.path  # the key travels in a header only
    assert sent.headers["x-goog-api-key"] == KEY
    assert "authorization" not in sent.headers
    body = sent.json
    validate_request("gemini", body)
    assert "model" not in body  # in the URL path, not the body
    assert body["systemInstruction"] == {"parts": [{"text": SYSTEM}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": USER}]}]
    assert body["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "maxOutputTokens": 256,
        "seed": 7,
        "responseMimeType": "application/json",
        "responseJsonSchema": CLASSIFY_SCHEMA,
    }

    assert resp.text == '{"type": "bug", "severity": "high"}'  # the thought part is not answer text
    assert resp.served_model == "gemini-2.5-flash-preview-09-2025"
    assert resp.finish_reason == "stop"
    assert resp.request_id == "mJ3Lx-resp"
    assert (resp.usage.input_uncached, resp.usage.output) == (25, 11)


async def test_gemini_cached_and_thought_tokens(server, pool, monkeypatch) -> None:
    usage = {
        "promptTokenCount": 1000,
        "cachedContentTokenCount": 600,
        "candidatesTokenCount": 100,
        "thoughtsTokenCount": 250,
        "totalTokenCount": 1350,
    }
    server.reply(200, gemini_response(usage, finish="MAX_TOKENS"))
    resp = await send(GEMINI, make_request(monkeypatch, "gemini", "gemini-2.5-pro", server.url), pool)
    u = resp.usage
    assert (u.input_uncached, u.cache_read, u.cache_write, u.output, u.reasoning) == (400, 600, 0, 100, 250)
    assert u.input_total == 1000 and u.output_total == 350
    assert u.raw == usage
    assert resp.finish_reason == "length"


def quota_429(quota_id: str, delay: str = "17s") -> dict[str, Any]:
    return {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "message": f"You exceeded your current quota (key {KEY}).",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                            "quotaId": quota_id,
                            "quotaDimensions": {"model": "gemini-2.5-pro", "location": "global"},
                            "quotaValue": "50",
                        }
                    ],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.Help",
                    "links": [{"description": "quota", "url": "https://ai.google.dev/"}],
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
            ],
        }
    }


async def test_gemini_429_retry_delay_is_honoured(server, pool, monkeypatch) -> None:
    server.reply(429, quota_429("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"))
    exc = await send_error(GEMINI, make_request(monkeypatch, "gemini", "gemini-2.5-pro", server.url), pool)
    assert type(exc) is E.RateLimitedError and exc.retryable is True
    assert exc.retry_after_s == 17


async def test_gemini_429_per_day_quota_is_terminal(server, pool, monkeypatch) -> None:
    server.reply(429, quota_429("GenerateRequestsPerDayPerProjectPerModel-FreeTier", delay="1.5s"))
    exc = await send_error(GEMINI, make_request(monkeypatch, "gemini", "gemini-2.5-pro", server.url), pool)
    assert type(exc) is E.QuotaExhaustedError and exc.retryable is False and exc.status == 429
    assert exc.retry_after_s == 1.5
    assert "PerDay" in str(exc)


@pytest.mark.parametrize(
    ("status", "error", "cls"),
    [
        (
            400,
            {
                "code": 400,
                "status": "INVALID_ARGUMENT",
                "message": "API key not valid.",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                    }
                ],
            },
            E.AuthError,
        ),
        (
            400,
            {"code": 400, "status": "INVALID_ARGUMENT", "message": "Invalid value at 'contents[0]'"},
            E.BadRequestError,
        ),
        (
            403,
            {"code": 403, "status": "PERMISSION_DENIED", "message": "Permission denied"},
            E.PermissionDeniedError,
        ),
        (
            404,
            {"code": 404, "status": "NOT_FOUND", "message": "models/gemini-9 is not found"},
            E.UnknownProviderModelError,
        ),
        (
            503,
            {"code": 503, "status": "UNAVAILABLE", "message": "The model is overloaded."},
            E.OverloadedError,
        ),
    ],
)
async def test_gemini_status_errors(server, pool, monkeypatch, status, error, cls) -> None:
    error = {**error, "message": f"{error['message']} ({KEY})"}
    server.reply(status, {"error": error})
    exc = await send_error(GEMINI, make_request(monkeypatch, "gemini", "gemini-9", server.url), pool)
    assert type(exc) is cls and exc.status == status


async def test_gemini_safety_block_is_content_filtered(server, pool, monkeypatch) -> None:
    server.reply(200, gemini_response(finish="SAFETY", parts=[]))
    server.reply(
        200,
        {
            "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
            "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
        },
    )
    req = make_request(monkeypatch, "gemini", "gemini-2.5-flash", server.url)
    exc = await send_error(GEMINI, req, pool)
    assert type(exc) is E.ContentFilteredError and "SAFETY" in str(exc)
    exc = await send_error(GEMINI, req, pool)
    assert type(exc) is E.ContentFilteredError and "PROHIBITED_CONTENT" in str(exc)


# ------------------------------------------------------------------------------------------------- ollama


def ollama_response(**fields: Any) -> dict[str, Any]:
    body = {
        "model": "qwen2.5:0.5b",
        "created_at": "2026-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": '{"type": "bug"}'},
        "done": True,
        "done_reason": "stop",
        "total_duration": 5_191_566_416,
        "load_duration": 2_154_458,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 383_809_000,
        "eval_count": 7,
        "eval_duration": 4_799_921_000,
        **fields,
    }
    validate_response("ollama", body)
    return body


async def test_ollama_success_request_and_response(server, pool, monkeypatch) -> None:
    server.reply(200, ollama_response())
    req = make_request(
        monkeypatch,
        "ollama",
        "qwen2.5:0.5b",
        server.url,
        schema=CLASSIFY_SCHEMA,
        key=False,
        options={"num_ctx": 8192},
    )
    resp = await send(OLLAMA, req, pool)

    sent = server.last
    assert (sent.method, sent.path) == ("POST", "/api/chat")
    assert "authorization" not in sent.headers  # no key needed
    body = sent.json
    validate_request("ollama", body)
    assert body["model"] == "qwen2.5:0.5b" and body["stream"] is False
    assert body["messages"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
    assert body["options"] == {
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "num_predict": 256,
        "num_ctx": 8192,
    }
    assert body["format"] == CLASSIFY_SCHEMA

    assert resp.text == '{"type": "bug"}'
    assert resp.served_model == "qwen2.5:0.5b"
    assert resp.finish_reason == "stop"
    assert (resp.usage.input_uncached, resp.usage.output) == (26, 7)


async def test_ollama_durations_separate_cold_start(server, pool, monkeypatch) -> None:
    server.reply(
        200,
        ollama_response(
            load_duration=3_000_000_000,
            total_duration=3_600_000_000,
            prompt_eval_duration=100_000_000,
            eval_duration=500_000_000,
        ),
    )
    resp = await send(
        OLLAMA, make_request(monkeypatch, "ollama", "qwen2.5:0.5b", server.url, key=False), pool
    )
    durations = {
        "total_duration": 3_600_000_000,
        "load_duration": 3_000_000_000,
        "prompt_eval_duration": 100_000_000,
        "eval_duration": 500_000_000,
    }
    assert resp.extra == durations
    assert resp.usage.raw == {"prompt_eval_count": 26, "eval_count": 7, **durations}


async def test_ollama_unknown_model(server, pool, monkeypatch) -> None:
    server.reply(404, {"error": f"model 'nope' not found (auth {KEY})"})
    req = make_request(monkeypatch, "ollama", "nope", server.url)  # a configured key is sent, never leaked
    exc = await send_error(OLLAMA, req, pool)
    assert server.last.headers["authorization"] == f"Bearer {KEY}"
    assert type(exc) is E.UnknownProviderModelError and exc.retryable is False and exc.status == 404
    assert "model 'nope' not found" in str(exc)


# ------------------------------------------------------------------------------ the validation harness


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        (
            "anthropic",
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "seed": 1},
        ),
        ("anthropic", {"model": "m", "messages": [{"role": "user", "content": "x"}]}),
        (
            "cohere",
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_schema"},
            },
        ),
        ("cohere", {"model": "m", "messages": [{"role": "robot", "content": "x"}]}),
        ("gemini", {"contents": "x"}),
        ("ollama", {"model": "m", "messages": [], "options": {"num_ctx": "big"}}),
        ("openai", {"model": "m", "messages": []}),
    ],
)
def test_spec_validation_rejects_bad_bodies(provider: str, body: dict[str, Any]) -> None:
    from jsonschema import ValidationError

    with pytest.raises(ValidationError):
        validate_request(provider, body)


def test_spec_validation_needs_no_specs(monkeypatch, tmp_path) -> None:
    """The committed contracts (tests/contracts/) validate with ../shared/specs absent: no skip."""
    from helpers import spec_validation
    from jsonschema import ValidationError

    monkeypatch.setattr(spec_validation, "SPECS_DIR", tmp_path / "absent")
    with pytest.raises(ValidationError):
        validate_request("anthropic", {})
