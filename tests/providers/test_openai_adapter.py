"""The ``openai`` adapter against real servers on loopback: llama.cpp's own HTTP server, and a tiny
stdlib server that answers configured statuses (for the error taxonomy) or forwards to llama.cpp while
recording what it received (for request validation against ``CreateChatCompletionRequest``).
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from helpers.spec_validation import validate_request

from orchestrator import errors as E
from orchestrator.client import LLMClient
from orchestrator.config import Config, ModelSpec, config_from_dict
from orchestrator.modes import CLASSIFY_SCHEMA, get_mode
from orchestrator.providers.base import ChatRequest
from orchestrator.providers.http import HttpPool
from orchestrator.providers.openai import ADAPTER, openai_usage
from orchestrator.types import ISSUE_TYPES, SEVERITIES, Issue, Message

PLANTED = "sk-test-PLANTED0123456789abcdef"
KEY_ENV = "ORCH_TEST_OPENAI_KEY"
MODEL_ID = "llamacpp/smollm2-test"

ISSUE = Issue(
    repo="acme/widgets",
    number=42,
    title="App crashes with KeyError when saving an empty project",
    body="Steps: create a project, save it without files. Traceback: KeyError: 'files' in "
    "widgets/storage.py line 88. Expected: the project saves.",
    labels=["bug"],
)


# --------------------------------------------------------------------------- spec validation


def validate_openai_request(body: dict[str, Any]) -> None:
    """Against ``CreateChatCompletionRequest`` in the committed contract ``tests/contracts/openai.json``."""
    validate_request("openai", body)


# --------------------------------------------------------------------------- loopback server


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    body: bytes | dict[str, Any] | str = b"{}"
    headers: dict[str, str] = field(default_factory=dict)


class Loopback:
    """ThreadingHTTPServer on 127.0.0.1:0 that records each request; ``respond`` decides the answer.

    ``respond`` is either a fixed :class:`Answer` or a callable ``Received -> Answer`` (a proxy).
    """

    def __init__(self, respond: Answer | Callable[[Received], Answer]) -> None:
        self.respond = respond
        self.received: list[Received] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                length = int(self.headers.get("content-length") or 0)
                rec = Received(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)
                )
                outer.received.append(rec)
                ans = outer.respond(rec) if callable(outer.respond) else outer.respond
                payload = ans.body
                if isinstance(payload, dict):
                    payload = json.dumps(payload).encode()
                elif isinstance(payload, str):
                    payload = payload.encode()
                self.send_response(ans.status)
                headers = {"content-type": "application/json", **ans.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Loopback:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def forward_to(target: str) -> Callable[[Received], Answer]:
    """A recording proxy: pass the request on to ``target`` (http://host:port) and relay its answer."""
    parts = urlsplit(target)

    def respond(rec: Received) -> Answer:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        try:
            conn.request("POST", rec.path, body=rec.body, headers={"content-type": "application/json"})
            resp = conn.getresponse()
            return Answer(resp.status, resp.read(), {})
        finally:
            conn.close()

    return respond


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def llama(gguf_path: Path):
    """The GGUF loaded once in-process; llama.cpp's own HTTP server listens on 127.0.0.1."""
    from orchestrator.providers.local import engine_for

    engine = engine_for(ModelSpec(id="local/t", provider="local"))
    assert engine.listening_address.startswith("http://127.0.0.1:")
    return engine


def make_config(base_url: str, **extra: Any) -> Config:
    table = {
        "provider": "openai",
        "model": "smollm2",
        "base_url": base_url,
        "temperature": 0.0,
        "seed": 0,
        "max_tokens": 32,
        "price": {"input": 0.0, "output": 0.0},
        **extra,
    }
    return config_from_dict({"defaults": {"model": MODEL_ID}, "models": {MODEL_ID: table}}, Path("test.toml"))


@pytest.fixture(scope="module")
def llama_config(llama) -> Config:
    return make_config(llama.listening_address + "/v1")


@pytest.fixture(scope="module")
def sync_client(llama_config) -> Iterator[LLMClient]:
    client = LLMClient(llama_config, cache=False)
    yield client
    client.close()


@pytest.fixture
async def pool() -> AsyncIterator[HttpPool]:
    p = HttpPool()
    yield p
    await p.aclose()


def openai_request(
    base_url: str,
    *,
    key: bool = True,
    params: dict[str, Any] | None = None,
    schema: dict[str, Any] | None = None,
    **spec_kw: Any,
) -> ChatRequest:
    spec = ModelSpec(
        id="openai/test-model",
        provider="openai",
        model="test-model",
        base_url=base_url,
        api_key_env=KEY_ENV if key else None,
        **spec_kw,
    )
    return ChatRequest(
        spec=spec,
        messages=get_mode("classify").messages(ISSUE) if schema else [Message(role="user", content="hello")],
        params=dict({"temperature": 0.0, "max_tokens": 16} if params is None else params),
        schema=schema,
        schema_name="classify" if schema else "answer",
        mode="classify" if schema else None,
    )


def chat_response(text: str = "hello", usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-test-2026-01-01",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": usage or {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
    }


def assert_usage_matches_llamacpp(completion: Any) -> None:
    raw = completion.raw
    assert raw is not None, "the raw body is kept on the Completion"
    usage = raw["usage"]
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    assert completion.usage.input_total == usage["prompt_tokens"] > 0
    assert completion.usage.output_total == usage["completion_tokens"] > 0
    assert completion.usage.cache_read == cached
    assert completion.usage.input_uncached == usage["prompt_tokens"] - cached
    timings = raw.get("timings")
    if timings:  # llama.cpp's own counters: evaluated prompt tokens, cache hits, generated tokens
        assert completion.usage.output_total == timings["predicted_n"]
        assert completion.usage.input_uncached == timings["prompt_n"]
        assert completion.usage.cache_read == timings["cache_n"]


# --------------------------------------------------------------------------- real llama.cpp server


@pytest.mark.slow
def test_complete_sync_against_llamacpp_server(sync_client) -> None:
    c = sync_client.complete_sync("Say hello to the team in one sentence.", model=MODEL_ID, max_tokens=24)
    assert c.text.strip()
    assert c.provider == "openai" and c.model == MODEL_ID
    assert c.served_model, "llama.cpp reports the model that served"
    assert c.latency_s > 0
    assert c.attempts == 1 and not c.from_cache
    assert c.finish_reason in ("stop", "length")
    assert c.cost_usd == 0.0
    assert c.request_id
    assert_usage_matches_llamacpp(c)


@pytest.mark.slow
async def test_await_complete_against_llamacpp_server(llama_config) -> None:
    client = LLMClient(llama_config, cache=False)
    try:
        c = await client.complete("Name one color.", model=MODEL_ID, max_tokens=16)
    finally:
        await client.aclose()
    assert c.text.strip()
    assert c.latency_s > 0 and c.served_model
    assert_usage_matches_llamacpp(c)


@pytest.mark.slow
async def test_classify_json_schema_honoured_by_llamacpp(llama_config) -> None:
    client = LLMClient(llama_config, cache=False)
    try:
        c = await client.complete(ISSUE, model=MODEL_ID, mode="classify", max_tokens=96)
    finally:
        await client.aclose()
    assert c.parse_error is None, (c.text, c.parse_error)
    assert c.parsed is not None
    assert c.parsed["type"] in ISSUE_TYPES
    assert c.parsed["severity"] in SEVERITIES
    assert isinstance(c.parsed["component"], str)
    assert c.mode == "classify"


@pytest.mark.slow
def test_usage_axes_disjoint_with_llamacpp_prompt_cache(sync_client) -> None:
    """llama.cpp's HTTP server caches prompts: a repeated prompt reports cached_tokens inside
    prompt_tokens, which must land on cache_read and not be counted twice."""
    prompt = "List three fruits, separated by commas. Reply with the list only, please."
    first = sync_client.complete_sync(prompt, model=MODEL_ID, max_tokens=12)
    second = sync_client.complete_sync(prompt, model=MODEL_ID, max_tokens=12)
    for c in (first, second):
        assert_usage_matches_llamacpp(c)
    assert second.usage.cache_read > 0, second.raw["usage"]
    assert second.usage.input_total == first.usage.input_total
    assert second.usage.input_uncached < first.usage.input_total


@pytest.mark.slow
async def test_bodies_received_through_recording_proxy_validate(llama, llama_config) -> None:
    """What actually goes over the wire to llama.cpp validates against CreateChatCompletionRequest."""
    with Loopback(forward_to(llama.listening_address)) as proxy:
        cfg = make_config(proxy.url + "/v1")
        client = LLMClient(cfg, cache=False)
        try:
            plain = await client.complete("Say hi.", model=MODEL_ID, max_tokens=8, top_p=0.9, seed=3)
            labelled = await client.complete(ISSUE, model=MODEL_ID, mode="classify", max_tokens=96)
        finally:
            await client.aclose()
    assert plain.text.strip()
    assert labelled.parse_error is None, labelled.text
    assert [r.path for r in proxy.received] == ["/v1/chat/completions"] * 2
    for rec in proxy.received:
        validate_openai_request(rec.json)
        assert "authorization" not in rec.headers, "no api_key_env: no Authorization header"
    first, second = (r.json for r in proxy.received)
    assert first["max_tokens"] == 8 and first["top_p"] == 0.9 and first["seed"] == 3
    assert first["temperature"] == 0.0 and first["model"] == "smollm2"
    assert second["response_format"]["type"] == "json_schema"
    assert second["response_format"]["json_schema"]["schema"] == CLASSIFY_SCHEMA


# --------------------------------------------------------------------------- request bodies (pure)


@pytest.mark.parametrize(
    ("params", "schema", "spec_kw", "max_field"),
    [
        ({}, None, {}, None),
        ({"temperature": 0.7, "top_p": 0.9, "seed": 11, "max_tokens": 200}, None, {}, "max_tokens"),
        ({"temperature": 0.0, "max_tokens": 64}, CLASSIFY_SCHEMA, {}, "max_tokens"),
        (
            {"temperature": 1.2, "max_tokens": 64},
            None,
            {"base_url": "https://api.openai.com/v1"},
            "max_completion_tokens",
        ),
        ({"max_tokens": 64}, CLASSIFY_SCHEMA, {"options": {"structured_output": False}}, "max_tokens"),
        (
            {"max_tokens": 64},
            None,
            {"options": {"max_tokens_field": "max_completion_tokens"}},
            "max_completion_tokens",
        ),
    ],
)
def test_built_bodies_validate(monkeypatch, params, schema, spec_kw, max_field) -> None:
    monkeypatch.setenv(KEY_ENV, PLANTED)
    base = spec_kw.pop("base_url", "http://127.0.0.1:9/v1")
    req = openai_request(base, params=params, schema=schema, **spec_kw)
    call = ADAPTER.build_request(req)
    validate_openai_request(call.json)
    assert call.url == base + "/chat/completions"
    assert call.headers["authorization"] == f"Bearer {PLANTED}"
    body = call.json
    for name in ("temperature", "top_p", "seed"):
        assert body.get(name) == params.get(name)
    if max_field:
        assert body[max_field] == params["max_tokens"]
        other = {"max_tokens", "max_completion_tokens"} - {max_field}
        assert not other & set(body)
    structured = schema is not None and spec_kw.get("options", {}).get("structured_output", True)
    assert ("response_format" in body) == structured


def test_messages_with_every_role_validate() -> None:
    spec = ModelSpec(id="openai/m", provider="openai", model="m", base_url="http://127.0.0.1:9/v1")
    messages = [
        *get_mode("explain").messages(ISSUE),
        Message(role="assistant", content="ok"),
        Message(role="user", content="more"),
    ]
    body = ADAPTER.build_request(ChatRequest(spec=spec, messages=messages, params={"max_tokens": 5})).json
    validate_openai_request(body)
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]


async def test_body_received_by_loopback_server_validates(monkeypatch, pool) -> None:
    monkeypatch.setenv(KEY_ENV, PLANTED)
    with Loopback(Answer(200, chat_response("{}"))) as srv:
        req = openai_request(
            srv.url + "/v1",
            params={"temperature": 0.2, "top_p": 0.5, "seed": 1, "max_tokens": 40},
            schema=CLASSIFY_SCHEMA,
        )
        resp = await ADAPTER.send(req, pool)
    assert resp.text == "{}"
    (rec,) = srv.received
    assert rec.path == "/v1/chat/completions"
    assert rec.headers["authorization"] == f"Bearer {PLANTED}"
    assert rec.headers["content-type"].startswith("application/json")
    validate_openai_request(rec.json)
    assert rec.json == ADAPTER.build_request(req).json


# --------------------------------------------------------------------------- error mapping


def error_body(message: str, etype: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


async def send_expecting_error(srv_answer: Answer, monkeypatch, pool) -> tuple[E.ProviderError, Loopback]:
    monkeypatch.setenv(KEY_ENV, PLANTED)
    with Loopback(srv_answer) as srv:
        req = openai_request(srv.url + "/v1")
        with pytest.raises(E.ProviderError) as info:
            await ADAPTER.send(req, pool)
    exc = info.value
    assert srv.received[0].headers["authorization"] == f"Bearer {PLANTED}"
    for shown in (str(exc), repr(exc), exc.detail, exc.body or ""):
        assert PLANTED not in shown
    assert exc.provider == "openai" and exc.model == "openai/test-model"
    return exc, srv


@pytest.mark.parametrize(
    ("status", "message", "cls", "retryable"),
    [
        (400, "Invalid value for 'temperature'", E.BadRequestError, False),
        (
            400,
            "This model's maximum context length is 8192 tokens. However, your messages resulted in "
            "9000 tokens.",
            E.ContextTooLongError,
            False,
        ),
        (404, "The model `test-model` does not exist", E.UnknownProviderModelError, False),
        (408, "Request timed out", E.ProviderError, True),
        (409, "Conflict, please retry", E.ProviderError, True),
        (429, "Rate limit reached for requests", E.RateLimitedError, True),
        (500, "The server had an error", E.ProviderError, True),
        (502, "Bad gateway", E.ProviderError, True),
        (503, "The engine is currently overloaded", E.ProviderError, True),
    ],
)
async def test_status_maps_to_typed_error(monkeypatch, pool, status, message, cls, retryable) -> None:
    exc, _ = await send_expecting_error(Answer(status, error_body(message)), monkeypatch, pool)
    assert isinstance(exc, cls), type(exc)
    assert exc.retryable is retryable
    assert exc.status == status
    assert message.split(".")[0] in exc.detail
    assert ("retryable" if retryable else "terminal") in str(exc)


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_statuses_are_terminal_and_never_leak_the_key(monkeypatch, pool, status) -> None:
    # The server echoes the key back in its message, as some servers do.
    body = error_body(f"Incorrect API key provided: {PLANTED}. Bearer {PLANTED}", "invalid_api_key")
    exc, _ = await send_expecting_error(Answer(status, body), monkeypatch, pool)
    assert isinstance(exc, (E.AuthError, E.PermissionDeniedError))
    assert exc.kind in {"auth", "permission"}
    assert exc.retryable is False
    assert exc.status == status
    assert "Incorrect API key provided" in str(exc)


async def test_key_without_key_shape_is_redacted_too(monkeypatch, pool) -> None:
    """A key that looks like nothing known is still removed, because the adapter registered it."""
    odd_key = "plainTokenValue_9f8e7d6c5b4a"
    monkeypatch.setenv(KEY_ENV, odd_key)
    with Loopback(Answer(401, error_body(f"bad key {odd_key}"))) as srv, pytest.raises(E.AuthError) as info:
        await ADAPTER.send(openai_request(srv.url + "/v1"), pool)
    assert srv.received[0].headers["authorization"] == f"Bearer {odd_key}"
    assert odd_key not in str(info.value) and odd_key not in repr(info.value)
    assert odd_key not in (info.value.body or "")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "retry-after": "2"}, 1.5),
    ],
)
async def test_429_carries_retry_after(monkeypatch, pool, headers, expected) -> None:
    answer = Answer(429, error_body("Rate limit reached", "requests", "rate_limit_exceeded"), headers)
    exc, _ = await send_expecting_error(answer, monkeypatch, pool)
    assert isinstance(exc, E.RateLimitedError)
    assert exc.retry_after_s == pytest.approx(expected)


async def test_x_should_retry_false_overrides_status(monkeypatch, pool) -> None:
    exc, _ = await send_expecting_error(
        Answer(500, error_body("nope"), {"x-should-retry": "false"}), monkeypatch, pool
    )
    assert exc.retryable is False


@pytest.mark.parametrize(
    "payload",
    [
        b'{"id": "chatcmpl-1", "choices": [{"message": ',  # truncated
        b"<html>gateway says hi</html>",
        json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "usage": {"prompt_tokens": 1}}).encode(),
        json.dumps({"id": "chatcmpl-1", "choices": []}).encode(),
        b"[1, 2, 3]",
    ],
    ids=["truncated-json", "html", "missing-choices", "empty-choices", "not-an-object"],
)
async def test_malformed_200_is_malformed_response(monkeypatch, pool, payload) -> None:
    exc, _ = await send_expecting_error(Answer(200, payload), monkeypatch, pool)
    assert isinstance(exc, E.MalformedResponseError), type(exc)
    assert exc.retryable is True


async def test_malformed_body_echoing_key_is_redacted(monkeypatch, pool) -> None:
    exc, _ = await send_expecting_error(Answer(200, f"oops {PLANTED}"), monkeypatch, pool)
    assert isinstance(exc, E.MalformedResponseError)


async def refused_error(pool) -> E.ProviderError:
    with Loopback(Answer()) as srv:
        url = srv.url
    with pytest.raises(E.ProviderError) as info:  # nothing listens there any more
        await ADAPTER.send(openai_request(url + "/v1", key=False), pool)
    return info.value


async def test_connection_refused_is_connection_failed_and_retryable(pool) -> None:
    """httpx-aiohttp reports a refused connection as httpx.ConnectTimeout; the adapter must not call it a
    timeout."""
    exc = await refused_error(pool)
    assert isinstance(exc, E.ConnectionFailedError), repr(exc)
    assert exc.retryable is True


# --------------------------------------------------------------------------- usage mapping


def test_openai_usage_disjoint_axes() -> None:
    raw = {
        "prompt_tokens": 1000,
        "completion_tokens": 300,
        "total_tokens": 1300,
        "prompt_tokens_details": {"cached_tokens": 800, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 120, "audio_tokens": 0},
    }
    u = openai_usage(raw)
    assert (u.input_uncached, u.cache_read, u.cache_write, u.output, u.reasoning) == (200, 800, 0, 180, 120)
    assert u.input_total == 1000 and u.output_total == 300
    assert u.input_total + u.output_total == raw["total_tokens"]
    assert u.raw == raw


@pytest.mark.parametrize(
    ("raw", "axes"),
    [
        (None, None),  # no usage object: unknown, not zero (the budget charges the worst case)
        ({}, None),
        ({"prompt_tokens": 5, "completion_tokens": 2}, (5, 0, 0, 2, 0)),
        (
            {
                "prompt_tokens": 5,
                "completion_tokens": 2,
                "prompt_tokens_details": None,
                "completion_tokens_details": None,
            },
            (5, 0, 0, 2, 0),
        ),
        (
            {"prompt_tokens": 5, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": None}},
            (5, 0, 0, 2, 0),
        ),
    ],
)
def test_openai_usage_missing_and_null_fields(raw, axes) -> None:
    u = openai_usage(raw)
    if axes is None:
        assert u is None
        return
    assert (u.input_uncached, u.cache_read, u.cache_write, u.output, u.reasoning) == axes


async def test_usage_mapping_through_loopback_server(monkeypatch, pool) -> None:
    usage = {
        "prompt_tokens": 2048,
        "completion_tokens": 500,
        "total_tokens": 2548,
        "prompt_tokens_details": {"cached_tokens": 1536},
        "completion_tokens_details": {"reasoning_tokens": 448},
    }
    monkeypatch.setenv(KEY_ENV, PLANTED)
    with Loopback(Answer(200, chat_response("answer", usage), {"x-request-id": "req_abc"})) as srv:
        resp = await ADAPTER.send(openai_request(srv.url + "/v1"), pool)
    u = resp.usage
    assert (u.input_uncached, u.cache_read, u.output, u.reasoning) == (512, 1536, 52, 448)
    assert u.input_total == 2048 and u.output_total == 500
    assert resp.text == "answer"
    assert resp.served_model == "gpt-test-2026-01-01"
    assert resp.finish_reason == "stop"
    assert resp.request_id == "chatcmpl-123"
    assert resp.raw is not None and resp.raw["usage"] == usage


async def test_priced_cost_through_client_uses_disjoint_axes(monkeypatch) -> None:
    """Through LLMClient: cached input priced at cache_read, reasoning at the output price, once each."""
    usage = {
        "prompt_tokens": 1_000_000,
        "completion_tokens": 1_000_000,
        "prompt_tokens_details": {"cached_tokens": 500_000},
        "completion_tokens_details": {"reasoning_tokens": 250_000},
    }
    with Loopback(Answer(200, chat_response("x", usage))) as srv:
        cfg = make_config(srv.url + "/v1", price={"input": 2.0, "cache_read": 0.5, "output": 8.0})
        client = LLMClient(cfg, cache=False)
        try:
            c = await client.complete("hi", model=MODEL_ID)
        finally:
            await client.aclose()
    # 0.5M uncached * 2 + 0.5M cached * 0.5 + 1M output (incl. reasoning) * 8
    assert c.cost_usd == pytest.approx(1.0 + 0.25 + 8.0)
    assert c.usage.input_total == 1_000_000 and c.usage.output_total == 1_000_000
