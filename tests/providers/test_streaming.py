"""Streamed answers from every HTTP provider, against a loopback server replaying spec-shaped event streams.

Through the real client (``LLMClient.stream_sync``): the pieces arrive in order and join to the answer,
usage lands on the same axes as a whole answer, the request asks for a stream the way the provider's API
says (validated against its description), and the time to first token is measured below total latency.
Then what goes wrong: a server killed mid-stream, a mid-stream error event, a stream cut short, a deadline, a
size cap, an echoed key split over two pieces; failures before the first token are retried and fall back.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.fault_server import Sleeps, config_for
from helpers.spec_validation import validate_request
from helpers.stream_events import (
    CONTENT_TYPES,
    DONE,
    anthropic_error_event,
    anthropic_events,
    cohere_events,
    gemini_events,
    ollama_events,
    openai_events,
    openrouter_events,
    sse,
)
from helpers.stream_server import StreamServer

from orchestrator import errors as E
from orchestrator.client import Breaker, LLMClient, RetryPolicy
from orchestrator.types import Completion

KEY = "sk-stream-test-0123456789abcdef"
PIECES = ["The parser ", "crashes on ", "empty input; ", "guard the ", "first read."]
TEXT = "".join(PIECES)


@pytest.fixture
def server() -> Iterator[StreamServer]:
    with StreamServer() as srv:
        yield srv


def model_table(provider: str, url: str, **extra: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "provider": provider,
        "model": "m-1",
        "base_url": url,
        "max_tokens": 64,
        "price": {"input": 1.0, "output": 2.0, "as_of": "2026-12-01"},
    }
    if provider in ("openai", "openrouter", "anthropic", "cohere", "gemini"):
        table["api_key_env"] = "STREAM_TEST_KEY"
    table.update(extra)
    return table


def client_for(models: dict[str, dict[str, Any]], monkeypatch, **kw: Any) -> LLMClient:
    monkeypatch.setenv("STREAM_TEST_KEY", KEY)
    policy = kw.pop("retry", RetryPolicy(max_attempts=3, base_delay_s=0.0))
    return LLMClient(config_for(models), cache=False, retry=policy, sleep=Sleeps(), **kw)


def collect(client: LLMClient, model: str, **kw: Any) -> tuple[list[str], Completion]:
    pieces: list[str] = []
    for item in client.stream_sync("Why does the parser crash?", model=model, **kw):
        if isinstance(item, Completion):
            return pieces, item
        pieces.append(item)
    raise AssertionError("no Completion at the end of the stream")


# provider -> (events, base URL suffix, path asked, expected usage (input_total, output_total), served model)
CASES: dict[str, tuple[list[bytes], str, str, tuple[int, int], str | None]] = {
    "openai": (
        openai_events(PIECES, model="m-1-2026", prompt_tokens=31, completion_tokens=5, cached_tokens=8),
        "/v1",
        "/v1/chat/completions",
        (31, 5),
        "m-1-2026",
    ),
    "openrouter": (
        openrouter_events(PIECES, model="vendor/m-1", prompt_tokens=31, completion_tokens=5, cost=0.00042),
        "/api/v1",
        "/api/v1/chat/completions",
        (31, 5),
        "vendor/m-1",
    ),
    "anthropic": (
        anthropic_events(PIECES, model="claude-m-1", input_tokens=20, output_tokens=5, cache_read=11),
        "",
        "/v1/messages",
        (31, 5),
        "claude-m-1",
    ),
    "cohere": (cohere_events(PIECES, input_tokens=31, output_tokens=5), "", "/v2/chat", (31, 5), "m-1"),
    "gemini": (
        gemini_events(
            PIECES, prompt_tokens=31, candidates_tokens=5, thoughts_tokens=3, model_version="m-1-001"
        ),
        "/v1beta",
        "/v1beta/models/m-1:streamGenerateContent?alt=sse",
        (31, 8),
        "m-1-001",
    ),
    "ollama": (
        ollama_events(PIECES, model="m-1:latest", prompt_eval_count=31, eval_count=5),
        "",
        "/api/chat",
        (31, 5),
        "m-1:latest",
    ),
}


@pytest.mark.parametrize("provider", list(CASES))
def test_each_provider_streams_its_answer_with_usage_and_ttft(server, monkeypatch, provider) -> None:
    events, suffix, path, (tokens_in, tokens_out), served = CASES[provider]
    server.stream(events, content_type=CONTENT_TYPES[provider], delays={len(events) // 2: 0.15})
    client = client_for({"p/m": model_table(provider, server.url + suffix)}, monkeypatch)
    pieces, completion = collect(client, "p/m")

    assert "".join(pieces) == completion.text == TEXT
    assert len(pieces) >= 3  # handed on as they came, not as one block at the end
    assert (completion.usage.input_total, completion.usage.output_total) == (tokens_in, tokens_out)
    assert completion.served_model == served
    assert completion.finish_reason == "stop"
    assert completion.ttft_s is not None and 0 < completion.ttft_s < completion.latency_s
    assert completion.latency_s - completion.ttft_s >= 0.1  # the delay sat between first and last token
    assert completion.output_tps is not None and completion.output_tps > 0
    assert completion.attempts == 1
    sent = server.last
    assert sent.path == path
    if provider != "gemini":  # Gemini says "stream" in the URL, the others in the body
        assert sent.json["stream"] is True
    if provider in ("openai", "openrouter"):
        assert sent.json["stream_options"] == {"include_usage": True}
    if provider in ("openai", "anthropic", "cohere", "gemini", "ollama"):
        validate_request(provider, sent.json)
    if provider == "openrouter":
        assert completion.cost_usd == pytest.approx(0.00042)  # the cost OpenRouter reported
    else:
        assert completion.cost_usd == pytest.approx((tokens_in * 1.0 + tokens_out * 2.0) / 1e6, rel=0.5)
    assert KEY not in json.dumps(completion.model_dump(mode="json"))


def test_openrouter_keepalives_are_skipped_and_a_mid_stream_error_keeps_the_partial_text(
    server, monkeypatch
) -> None:
    events = openrouter_events(
        PIECES, model="v/m", prompt_tokens=3, completion_tokens=5, cost=0.1, error_after=2
    )
    server.stream(events, content_type=CONTENT_TYPES["openrouter"])
    with StreamServer() as spare:
        models = {
            "p/m": {**model_table("openrouter", server.url + "/api/v1"), "fallbacks": ["p/spare"]},
            "p/spare": model_table("openai", spare.url + "/v1"),
        }
        client = client_for(models, monkeypatch)
        with pytest.raises(E.StreamInterruptedError) as info:
            collect(client, "p/m")
        assert spare.count == 0  # no fallback after the first token
    exc = info.value
    assert exc.partial_text == "".join(PIECES[:2])
    assert exc.cause is not None and exc.cause.kind == "overloaded" and "mid-stream" in exc.cause.detail
    assert server.count == 1  # not retried
    assert exc.model == "p/m" and exc.fallback_path == ["p/m"]
    assert exc.charged_usd and exc.charged_usd > 0  # may be billed: the worst case stays charged


def test_streams_that_keep_breaking_open_the_models_circuit_and_later_calls_fall_back(
    server, monkeypatch
) -> None:
    events = openai_events(PIECES, model="m", prompt_tokens=3, completion_tokens=5)
    for _ in range(3):  # every stream dies after its second piece
        server.stream(events, cut_after=3, cut_with="reset")
    with StreamServer() as spare:
        spare.stream(openai_events(PIECES, model="s", prompt_tokens=3, completion_tokens=5))
        models = {
            "p/m": {**model_table("openai", server.url + "/v1"), "fallbacks": ["p/spare"]},
            "p/spare": model_table("openai", spare.url + "/v1"),
        }
        client = client_for(models, monkeypatch, breaker=Breaker(threshold=2, cooldown_s=60))
        for _ in range(2):
            with pytest.raises(E.StreamInterruptedError):
                collect(client, "p/m")
        assert server.count == 2 and spare.count == 0
        pieces, completion = collect(client, "p/m")  # the circuit is open: straight to the fallback
        assert server.count == 2 and spare.count == 1
    assert completion.fallback_path == ["p/spare"] and "".join(pieces) == "".join(PIECES)


@pytest.mark.parametrize("how", ["reset", "close"])
def test_a_server_killed_mid_stream_gives_a_typed_error_with_the_partial_text_and_no_retry(
    server, monkeypatch, how
) -> None:
    events = openai_events(PIECES, model="m", prompt_tokens=3, completion_tokens=5)
    server.stream(events, cut_after=3, cut_with=how)  # role chunk + two pieces, then the server dies
    with StreamServer() as spare:
        models = {
            "p/m": {**model_table("openai", server.url + "/v1"), "fallbacks": ["p/spare"]},
            "p/spare": model_table("openai", spare.url + "/v1"),
        }
        client = client_for(models, monkeypatch)
        seen: list[str] = []
        with pytest.raises(E.StreamInterruptedError) as info:
            for item in client.stream_sync("q", model="p/m"):
                seen.append(item)  # type: ignore[arg-type]
        assert spare.count == 0
    assert server.count == 1
    exc = info.value
    assert exc.partial_text == "".join(PIECES[:2])
    assert "".join(seen) + "" == "".join(PIECES[:2])[: len("".join(seen))]  # what was shown is its prefix
    assert exc.cause.kind == "connection"
    assert client.ledger.spent_usd > 0  # the worst case of an attempt that may be billed


def test_failures_before_the_first_token_are_retried_then_fall_back(server, monkeypatch) -> None:
    events = openai_events(PIECES, model="m", prompt_tokens=3, completion_tokens=5)
    server.reply(503, {"error": {"message": "busy"}})
    server.stream(events, cut_after=1)  # only the role chunk (no text), then reset: nothing was handed on
    server.stream(events)
    client = client_for({"p/m": model_table("openai", server.url + "/v1")}, monkeypatch)
    pieces, completion = collect(client, "p/m")
    assert completion.text == TEXT and "".join(pieces) == TEXT
    assert server.count == 3 and completion.attempts == 3

    with StreamServer() as spare:
        spare.stream(openai_events(["spare ", "answer"], model="s", prompt_tokens=1, completion_tokens=2))
        for _ in range(3):
            server.reply(503, {"error": {"message": "busy"}})
        models = {
            "p/m": {**model_table("openai", server.url + "/v1"), "fallbacks": ["p/spare"]},
            "p/spare": model_table("openai", spare.url + "/v1"),
        }
        client = client_for(models, monkeypatch)
        pieces, completion = collect(client, "p/m")
    assert completion.text == "spare answer" and completion.fallback_path == ["p/m", "p/spare"]
    assert "".join(pieces) == "spare answer"


def test_an_anthropic_error_event_before_text_is_retried_and_after_text_is_kept(server, monkeypatch) -> None:
    start = anthropic_events(["x"], model="c", input_tokens=1, output_tokens=1)[
        :3
    ]  # start, block start, ping
    server.stream([*start, anthropic_error_event("overloaded_error", "Overloaded")])
    full = anthropic_events(PIECES, model="c", input_tokens=1, output_tokens=5)
    server.stream(full)
    client = client_for({"p/m": model_table("anthropic", server.url)}, monkeypatch)
    _, completion = collect(client, "p/m")
    assert completion.text == TEXT and server.count == 2

    server.stream([*full[:5], anthropic_error_event("overloaded_error", "Overloaded")])  # two pieces first
    with pytest.raises(E.StreamInterruptedError) as info:
        collect(client, "p/m")
    assert info.value.partial_text == "".join(PIECES[:2]) and server.count == 3


def test_a_stream_that_ends_before_its_end_marker_is_cut_short(server, monkeypatch) -> None:
    events = openai_events(PIECES, model="m", prompt_tokens=3, completion_tokens=5)
    server.stream(events[:4])  # a clean end of the body, but no finish, no usage, no [DONE]
    client = client_for({"p/m": model_table("openai", server.url + "/v1")}, monkeypatch)
    with pytest.raises(E.StreamInterruptedError) as info:
        collect(client, "p/m")
    assert info.value.cause.kind == "malformed_response" and "end marker" in info.value.cause.detail
    assert info.value.partial_text == "".join(PIECES[:3])


def test_the_deadline_bounds_a_dripping_stream(server, monkeypatch) -> None:
    events = openai_events(PIECES, model="m", prompt_tokens=3, completion_tokens=5)
    server.stream(events, delays={i: 0.4 for i in range(2, len(events))})  # a keep-alive drip, forever
    table = {**model_table("openai", server.url + "/v1"), "timeout": 5, "connect_timeout": 1, "deadline": 1.0}
    client = client_for({"p/m": table}, monkeypatch)
    started = time.monotonic()
    with pytest.raises(E.StreamInterruptedError) as info:
        collect(client, "p/m")
    assert time.monotonic() - started < 2.5
    assert info.value.cause.kind == "timeout" and info.value.partial_text.startswith(PIECES[0])


def test_the_size_cap_bounds_a_stream(server, monkeypatch) -> None:
    pieces = ["xxxxxxxx " * 100] * 40  # 36 kB of text against a 16 kB cap, the first pieces well under it
    server.stream(openai_events(pieces, model="m", prompt_tokens=3, completion_tokens=40), delays={3: 0.2})
    table = {**model_table("openai", server.url + "/v1"), "max_response_bytes": 16_000}
    client = client_for({"p/m": table}, monkeypatch)
    with pytest.raises(E.StreamInterruptedError) as info:
        collect(client, "p/m")
    assert info.value.cause.kind == "response_too_large"
    assert 0 < len(info.value.partial_text) <= 16_000


def test_a_key_the_model_echoes_over_two_pieces_never_reaches_the_caller(server, monkeypatch) -> None:
    pieces = ["my key is ", KEY[:9], KEY[9:] + " and", " Bearer ", "tok-abcdefghijklmnop", " done"]
    server.stream(openai_events(pieces, model="m", prompt_tokens=3, completion_tokens=6))
    client = client_for({"p/m": model_table("openai", server.url + "/v1")}, monkeypatch)
    seen, completion = collect(client, "p/m")
    shown = "".join(seen)
    assert KEY not in shown and KEY[:9] not in shown and KEY[9:] not in shown
    assert "tok-abcdefghijklmnop" not in shown
    assert shown == completion.text and "[REDACTED]" in shown and shown.endswith(" done")
    assert "secret_redacted" in completion.notes


def test_a_label_task_is_parsed_from_the_whole_streamed_text(server, monkeypatch) -> None:
    answer = '{"type": "bug", "component": "parser", "severity": "high"}'
    pieces = [answer[i : i + 7] for i in range(0, len(answer), 7)]  # JSON split mid-token
    server.stream(openai_events(pieces, model="m", prompt_tokens=3, completion_tokens=len(pieces)))
    client = client_for({"p/m": model_table("openai", server.url + "/v1")}, monkeypatch)
    _, completion = collect(client, "p/m", task="classify")
    assert completion.parse_error is None and completion.parsed["type"] == "bug"


def test_a_server_that_ignores_stream_true_answers_whole_and_still_works(server, monkeypatch) -> None:
    body = {
        "id": "c1",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5},
    }
    server.reply(200, body)
    client = client_for({"p/m": model_table("openai", server.url + "/v1")}, monkeypatch)
    pieces, completion = collect(client, "p/m")
    assert "".join(pieces) == completion.text == TEXT and completion.usage.output_total == 5
    assert completion.ttft_s is not None  # the whole body's arrival is its first token


def test_breaking_out_of_a_stream_cancels_the_call(server, monkeypatch) -> None:
    gate = threading.Event()
    events = openai_events(PIECES, model="m", prompt_tokens=3, completion_tokens=5)
    reply = server.stream(events, gates={3: gate})
    client = client_for({"p/m": model_table("openai", server.url + "/v1")}, monkeypatch)
    stream = client.stream_sync("q", model="p/m")
    first = next(stream)
    assert first.strip()
    stream.close()  # the caller stops reading: the request is abandoned, the connection closed
    gate.set()
    assert server.sent[0].wait_done(5.0)
    assert server.sent[0].outcome in ("client_gone", "complete")
    del reply


def test_cjk_text_flows_piece_by_piece_and_a_key_run_waits_for_its_end(monkeypatch) -> None:
    from orchestrator.client.streaming import SafeDeltas

    monkeypatch.setenv("STREAM_TEST_KEY", KEY)
    E.register_secret(KEY)
    out: list[str] = []
    safe = SafeDeltas(out.append)
    for piece in ["解析器", "在空输入时", "崩溃。", "key=", KEY[:5], KEY[5:12], KEY[12:], "。完"]:
        safe.feed(piece)
    safe.flush()
    assert out[:3] == ["解析器", "在空输入时", "崩溃。"]  # no whitespace, still streamed as it came
    assert KEY not in "".join(out) and not any(KEY[:5] in o for o in out)
    assert "".join(out) == "解析器在空输入时崩溃。key=[REDACTED]。完"


def test_sse_framing_with_crlf_comments_and_multiline_data(server, monkeypatch) -> None:
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    raw = [
        b": keep-alive\r\n\r\n",
        b"data: "
        + json.dumps({**chunk, "choices": [{"index": 0, "delta": {"content": "a"}}]}).encode()
        + b"\r\n\r\n",
        # one JSON value over two data lines (joined with a newline, which JSON allows between tokens)
        b'data: {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",\r\n'
        b'data: "choices": [{"index": 0, "delta": {"content": "b"}, "finish_reason": "stop"}]}\r\n\r\n',
        sse({**chunk, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}),
        DONE,
    ]
    server.stream(raw)
    client = client_for({"p/m": model_table("openai", server.url + "/v1")}, monkeypatch)
    pieces, completion = collect(client, "p/m")
    assert pieces == ["ab"] or "".join(pieces) == "ab"
    assert completion.text == "ab" and completion.usage.output_total == 2


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_the_sse_decoder_gives_the_same_events_however_the_bytes_are_cut(size) -> None:
    from orchestrator.providers.streaming import NdjsonDecoder, SseDecoder

    raw = (
        b': ping\r\n\r\nevent: message_start\r\ndata: {"a": 1}\r\n\r\nid: 7\nretry: 10\n'
        b"data: line one\ndata:line two\n\ndata: cr only\r\rdata: \xff broken utf-8\n\ndata: no blank line at the end"
    )
    decoder = SseDecoder()
    events = [e for i in range(0, len(raw), size) for e in decoder.feed(raw[i : i + size])]
    events += list(decoder.close())
    assert events == [
        ("message_start", '{"a": 1}'),
        (None, "line one\nline two"),
        (None, "cr only"),
        (None, "\ufffd broken utf-8"),
        (None, "no blank line at the end"),
    ]
    lines = b'{"a": 1}\n\n{"b": 2}\n{"c"'
    nd = NdjsonDecoder()
    got = [e for i in range(0, len(lines), size) for e in nd.feed(lines[i : i + size])] + list(nd.close())
    assert got == [(None, '{"a": 1}'), (None, '{"b": 2}'), (None, '{"c"')]


def test_a_cached_answer_streams_whole_and_its_old_timings_are_not_reported(server, monkeypatch) -> None:
    monkeypatch.setenv("STREAM_TEST_KEY", KEY)
    # the first piece waits 50 ms: far longer than a cache lookup, even on a loaded machine
    events = openai_events(PIECES, model="m", prompt_tokens=3, completion_tokens=5)
    server.stream(events, delays={0: 0.05, 3: 0.1})
    client = LLMClient(config_for({"p/m": model_table("openai", server.url + "/v1")}), sleep=Sleeps())
    try:
        first_pieces, first = collect(client, "p/m")
        again_pieces, again = collect(client, "p/m")
        whole = client.complete_sync("Why does the parser crash?", model="p/m")
    finally:
        client.close()
    assert server.count == 1 and again.from_cache and whole.from_cache
    assert len(first_pieces) > 1 and again_pieces == [TEXT] and again.text == first.text == TEXT
    assert again.ttft_s == again.latency_s < first.ttft_s  # a lookup, not the first call's timing
    assert again.output_tps is None and whole.ttft_s is None and whole.output_tps is None
