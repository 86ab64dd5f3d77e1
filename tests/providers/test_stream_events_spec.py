"""The streamed-answer fixtures (``helpers.stream_events``) and their replay server (``helpers.stream_server``).

(a) Every event each builder emits, parsed as SSE or NDJSON, validates against its schema in the
providers' own API descriptions (``../shared/specs``; skipped with the reason when that folder is absent),
and carries no key the schema does not declare, except the provider extensions each builder documents.
The descriptions are read as ``spec_validation.load_spec`` reads them, with one defect fixed instead of
dropped: OpenAI's ``nullable: true`` beside a ``$ref`` (no ``type``) or an ``enum`` means "or null" (the
stream schema's own text: ``usage`` "contains a null value except for the last chunk").
(b)-(d) The server really streams (a client holds event 0 while event 1 is gated), ``cut_after`` makes a
real httpx / aiohttp client fail while reading the body, and ``reply`` serves a plain JSON error.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
from functools import cache
from typing import Any

import httpx
import pytest
from helpers import spec_validation
from helpers.stream_events import (
    CONTENT_TYPES,
    DONE,
    OPENROUTER_KEEPALIVE,
    anthropic_error_event,
    anthropic_events,
    cohere_events,
    gemini_events,
    ndjson_payloads,
    ollama_events,
    openai_events,
    openrouter_events,
    parse_sse_event,
    sse_payloads,
)
from helpers.stream_server import StreamServer

PIECES = ["The parser", " crashes on", " empty input: ", "a bug ✓"]
TEXT = "".join(PIECES)


# --------------------------------------------------------------------------- the descriptions


def _require_specs() -> None:
    specs = spec_validation.SPECS_DIR
    if not specs.is_dir():
        pytest.skip(
            f"../shared/specs absent ({specs}): cannot validate the stream fixtures against the providers' "
            "API descriptions; the stream server tests still run"
        )


def _nullable_as_or_null(node: dict[str, Any]) -> None:
    """OpenAPI ``nullable: true`` where ``normalise_node`` would lose it: beside ``$ref``/no ``type`` it
    becomes ``anyOf: [<the rest>, null]``; beside an ``enum`` it adds null to the enum."""
    if node.get("nullable") is not True:
        return
    if "enum" in node and None not in node["enum"]:
        node["enum"] = [*node["enum"], None]
    if "type" not in node:
        node.pop("nullable")
        rest = {k: node.pop(k) for k in list(node) if k not in ("description", "title")}
        node["anyOf"] = [rest, {"type": "null"}]


def _walk_description(doc: Any, visit: Any) -> None:
    """Visit every schema object of a description, as ``extract.normalise_description`` walks it."""
    walk = spec_validation.extract_module().walk_schema
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "schema":
                walk(value, visit)
            elif key == "schemas" and isinstance(value, dict):
                for schema in value.values():
                    walk(schema, visit)
            else:
                _walk_description(value, visit)
    elif isinstance(doc, list):
        for value in doc:
            _walk_description(value, visit)


class Spec:
    """One description, normalised like ``spec_validation.load_spec`` (plus the nullable fix), with a
    validator by schema name and a check for keys the schema does not declare."""

    def __init__(self, filename: str) -> None:
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012

        extract = spec_validation.extract_module()
        self.filename = filename
        doc = extract.read_description(spec_validation.SPECS_DIR / filename)
        _walk_description(doc, _nullable_as_or_null)
        doc = extract.normalise_description(doc)
        for name, contract in extract.CONTRACTS.items():
            if contract.source == filename:
                extract.apply_defects(name, doc.get("components", {}).get("schemas", {}))
        self.doc = doc
        self.uri = f"urn:spec:{filename}"
        self.registry = Registry().with_resource(
            self.uri, Resource.from_contents(doc, default_specification=DRAFT202012)
        )
        self._validators: dict[str, Any] = {}

    def _validator(self, pointer: str) -> Any:
        from jsonschema import Draft202012Validator

        if pointer not in self._validators:
            self._validators[pointer] = Draft202012Validator(
                {"$ref": f"{self.uri}{pointer}"}, registry=self.registry
            )
        return self._validators[pointer]

    @staticmethod
    def pointer(schema: str) -> str:
        return schema if schema.startswith("#") else f"#/components/schemas/{schema}"

    def validate(self, schema: str, instance: Any) -> None:
        """Raise the best ``jsonschema.ValidationError`` unless ``instance`` is a valid ``schema``."""
        from jsonschema.exceptions import best_match

        error = best_match(self._validator(self.pointer(schema)).iter_errors(instance))
        if error is not None:
            raise error

    def is_valid(self, pointer: str, instance: Any) -> bool:
        return self._validator(pointer).is_valid(instance)

    def node(self, pointer: str) -> Any:
        return spec_validation.extract_module().resolve_pointer(self.doc, pointer)

    def _applicable(self, pointer: str, instance: Any, depth: int = 0) -> list[str]:
        """The schema objects (as pointers) that apply to ``instance``: through ``$ref``, every ``allOf``
        branch, the ``anyOf``/``oneOf`` branches it is valid against, and ``if``/``then``/``else``."""
        if depth > 40:
            return []
        node = self.node(pointer)
        if not isinstance(node, dict):
            return []
        found = [pointer]
        if isinstance(node.get("$ref"), str):
            found += self._applicable(node["$ref"], instance, depth + 1)
        for i, _ in enumerate(node.get("allOf", [])):
            found += self._applicable(f"{pointer}/allOf/{i}", instance, depth + 1)
        for key in ("anyOf", "oneOf"):
            for i, _ in enumerate(node.get(key, [])):
                branch = f"{pointer}/{key}/{i}"
                if self.is_valid(branch, instance):
                    found += self._applicable(branch, instance, depth + 1)
        if "if" in node:
            branch = "then" if self.is_valid(f"{pointer}/if", instance) else "else"
            if branch in node:
                found += self._applicable(f"{pointer}/{branch}", instance, depth + 1)
        return found

    def undeclared(self, schema: str, instance: Any, path: str = "") -> list[str]:
        """Paths (``a.b[].c``) of object keys that no applicable schema declares. A schema with
        ``additionalProperties`` (other than false), ``patternProperties`` or no ``properties`` at all
        counts as an open map."""
        pointers = self._applicable(self.pointer(schema), instance)
        nodes = [(p, self.node(p)) for p in pointers]
        found: list[str] = []
        if isinstance(instance, dict):
            declared: set[str] = set()
            closed = False
            open_map = False
            for _, node in nodes:
                props = node.get("properties")
                if isinstance(props, dict):
                    closed = True
                    declared |= set(props)
                extra = node.get("additionalProperties")
                if (extra is not None and extra is not False) or "patternProperties" in node:
                    open_map = True
            if closed and not open_map:
                found += [f"{path}.{k}".lstrip(".") for k in instance if k not in declared]
            for key, value in instance.items():
                for pointer, node in nodes:
                    if key in node.get("properties", {}):
                        escaped = key.replace("~", "~0").replace("/", "~1")
                        found += self.undeclared(f"{pointer}/properties/{escaped}", value, f"{path}.{key}")
        elif isinstance(instance, list):
            for pointer, node in nodes:
                if isinstance(node.get("items"), dict):
                    for item in instance:
                        found += self.undeclared(f"{pointer}/items", item, f"{path}[]")
        return sorted(set(found))

    def check(self, schema: str, instance: Any, allowed: frozenset[str] = frozenset()) -> None:
        """Valid, and every key declared by the schema or named in ``allowed`` (documented extensions)."""
        self.validate(schema, instance)
        extra = [p for p in self.undeclared(schema, instance) if p not in allowed]
        assert not extra, f"{self.filename} {schema}: keys the schema does not declare: {extra} in {instance}"


@cache
def spec(filename: str) -> Spec:
    _require_specs()
    return Spec(filename)


def specs() -> dict[str, Spec]:
    return {
        "openai": spec("openai.openapi.yaml"),
        "anthropic": spec("anthropic.openapi.yaml"),
        "cohere": spec("cohere.openapi.yaml"),
        "gemini": spec("gemini.openapi.json"),
        "ollama": spec("ollama.openapi.yaml"),
    }


# --------------------------------------------------------------------------- (a) SSE / NDJSON framing


def _framing(events: list[bytes], *, newline: str = "\n") -> list[tuple[str | None, str | None, list[str]]]:
    out = []
    for raw in events:
        assert raw.endswith((newline * 2).encode()), f"not terminated by a blank line: {raw!r}"
        if newline == "\n":
            assert b"\r" not in raw, raw
        out.append(parse_sse_event(raw))
    return out


def test_parse_sse_event_is_strict() -> None:
    """The framing parser the checks rely on rejects what a builder must never emit."""
    assert parse_sse_event(b"event: a\ndata: {}\n\n") == ("a", "{}", [])
    assert parse_sse_event(b"data: x\r\n\r\n") == (None, "x", [])
    assert parse_sse_event(b": ping\n\n") == (None, None, ["ping"])
    for bad in (
        b"data: x\n",
        b"data: x\n\n\n",
        b"data: a\ndata: b\n\n",
        b"data: x\n\ndata: y\n\n",
        b"id: 1\ndata: x\n\n",
    ):
        with pytest.raises(ValueError):
            parse_sse_event(bad)


# --------------------------------------------------------------------------- OpenAI


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"cached_tokens": 8, "reasoning_tokens": 5, "finish_reason": "length"},
        {"include_usage": False},
    ],
    ids=["plain", "cached-reasoning-length", "no-usage"],
)
def test_openai_events_follow_the_spec(kwargs: dict[str, Any]) -> None:
    s = specs()["openai"]
    events = openai_events(
        PIECES, model="gpt-4o-mini-2024-07-18", prompt_tokens=40, completion_tokens=9, **kwargs
    )
    frames = _framing(events)
    assert all(name is None for name, _, _ in frames), "OpenAI sends no event: lines"
    assert events[-1] == DONE
    chunks = [json.loads(data) for _, data, _ in frames[:-1]]
    for chunk in chunks:
        s.check("CreateChatCompletionStreamResponse", chunk)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == TEXT
    assert [c["choices"][0]["delta"]["content"] for c in chunks[1 : 1 + len(PIECES)]] == PIECES
    finish = chunks[len(PIECES) + 1]["choices"][0]
    assert finish["delta"] == {} and finish["finish_reason"] == kwargs.get("finish_reason", "stop")
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[: len(PIECES) + 1])
    if kwargs.get("include_usage", True):
        last = chunks[-1]
        assert last["choices"] == []
        assert last["usage"]["prompt_tokens"] == 40 and last["usage"]["completion_tokens"] == 9
        assert last["usage"]["total_tokens"] == 49
        assert last["usage"]["prompt_tokens_details"]["cached_tokens"] == kwargs.get("cached_tokens", 0)
        assert all(c["usage"] is None for c in chunks[:-1])
    else:
        assert all("usage" not in c for c in chunks)
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1


def test_openai_cut_short_variant() -> None:
    events = openai_events(
        PIECES[:2], model="m", prompt_tokens=1, completion_tokens=1, finish_reason=None, done=False
    )
    payloads = sse_payloads(events)
    assert DONE not in events and all(
        p["choices"] == [] or p["choices"][0]["finish_reason"] is None for _, p in payloads
    )


def test_openai_validator_bites() -> None:
    """The nullable fix widens nothing else: a wrong enum, object or type still fails."""
    from jsonschema import ValidationError

    s = specs()["openai"]
    good = sse_payloads(openai_events(["x"], model="m", prompt_tokens=1, completion_tokens=1))[1][1]
    s.check("CreateChatCompletionStreamResponse", good)
    for mutate in (
        lambda c: c["choices"][0].update(finish_reason="done"),
        lambda c: c.update(object="chat.completion"),
        lambda c: c.update(usage={"prompt_tokens": "1", "completion_tokens": 1, "total_tokens": 2}),
        lambda c: c["choices"][0].pop("index"),
    ):
        bad = copy.deepcopy(good)
        mutate(bad)
        with pytest.raises(ValidationError):
            s.validate("CreateChatCompletionStreamResponse", bad)
    typo = copy.deepcopy(good)
    typo["choices"][0]["delta"]["contents"] = "x"
    assert s.undeclared("CreateChatCompletionStreamResponse", typo) == ["choices[].delta.contents"]


# --------------------------------------------------------------------------- OpenRouter

OPENROUTER_EXTENSIONS = frozenset(
    {"provider", "error", "choices[].native_finish_reason", "usage.cost", "usage.is_byok"}
)


def _openrouter_view(chunk: dict[str, Any]) -> dict[str, Any]:
    """The chunk as the OpenAI schema sees it: OpenRouter's ``finish_reason: "error"`` (documented, not
    in OpenAI's enum) checked here and then compared as null."""
    view = copy.deepcopy(chunk)
    for choice in view["choices"]:
        if choice["finish_reason"] == "error":
            assert isinstance(view.get("error", {}).get("message"), str), chunk
            assert isinstance(view["error"].get("code"), int | str), chunk
            choice["finish_reason"] = None
    return view


def test_openrouter_events_follow_the_spec_and_docs() -> None:
    s = specs()["openai"]
    events = openrouter_events(
        PIECES, model="anthropic/claude-haiku-4.5", prompt_tokens=30, completion_tokens=7, cost=0.000123
    )
    frames = _framing(events)
    assert events[0] == OPENROUTER_KEEPALIVE and events[2] == OPENROUTER_KEEPALIVE
    assert frames[0] == (None, None, ["OPENROUTER PROCESSING"])
    assert events[-1] == DONE
    chunks = [p for _, p in sse_payloads(events) if p != "[DONE]"]
    for chunk in chunks:
        s.check("CreateChatCompletionStreamResponse", _openrouter_view(chunk), OPENROUTER_EXTENSIONS)
        assert chunk["model"] == "anthropic/claude-haiku-4.5" and chunk["provider"] == "OpenAI"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == TEXT
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["cost"] == 0.000123
    assert chunks[-1]["usage"]["total_tokens"] == 37


def test_openrouter_mid_stream_error() -> None:
    s = specs()["openai"]
    events = openrouter_events(
        PIECES,
        model="openai/gpt-4o",
        prompt_tokens=1,
        completion_tokens=1,
        cost=0.0,
        keepalive=False,
        error_after=2,
    )
    payloads = [p for _, p in sse_payloads(events)]
    assert payloads[-1] == "[DONE]"
    text = [p["choices"][0]["delta"].get("content", "") for p in payloads[:-2]]
    assert text == PIECES[:2]
    error_chunk = payloads[-2]
    assert error_chunk["choices"][0]["finish_reason"] == "error"
    assert error_chunk["error"] == {"code": "server_error", "message": "Provider disconnected unexpectedly"}
    assert not any("usage" in p for p in payloads[:-1])
    for chunk in payloads[:-1]:
        s.check("CreateChatCompletionStreamResponse", _openrouter_view(chunk), OPENROUTER_EXTENSIONS)
    assert OPENROUTER_KEEPALIVE not in events
    # a numeric code, as OpenRouter's error objects also carry
    numeric = openrouter_events(
        ["a"], model="m", prompt_tokens=1, completion_tokens=1, cost=0, error_after=0, error_code=502
    )
    assert sse_payloads(numeric)[-2][1]["error"]["code"] == 502


# --------------------------------------------------------------------------- Anthropic

ANTHROPIC_SCHEMAS = {
    "message_start": "MessageStartEvent",
    "content_block_start": "ContentBlockStartEvent",
    "content_block_delta": "ContentBlockDeltaEvent",
    "content_block_stop": "ContentBlockStopEvent",
    "message_delta": "MessageDeltaEvent",
    "message_stop": "MessageStopEvent",
}
# `ping` is in the streaming docs, not in MessageStreamEvent: its documented shape
PING = {
    "type": "object",
    "properties": {"type": {"const": "ping"}},
    "required": ["type"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"cache_read": 1200, "cache_creation": 300, "stop_reason": "max_tokens"}, {"ping": False}],
    ids=["plain", "cache-max_tokens", "no-ping"],
)
def test_anthropic_events_follow_the_spec(kwargs: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator

    s = specs()["anthropic"]
    events = anthropic_events(
        PIECES, model="claude-haiku-4-5-20251001", input_tokens=25, output_tokens=11, **kwargs
    )
    names = []
    for name, data, comments in _framing(events):
        assert comments == [] and name is not None and data is not None
        body = json.loads(data)
        assert body["type"] == name, "the SSE event name equals the JSON type"
        names.append(name)
        if name == "ping":
            Draft202012Validator(PING).validate(body)
            continue
        s.check(ANTHROPIC_SCHEMAS[name], body)
        s.validate("MessageStreamEvent", body)
    expected = ["message_start", "content_block_start"] + (["ping"] if kwargs.get("ping", True) else [])
    expected += ["content_block_delta"] * len(PIECES) + [
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert names == expected
    bodies = [b for _, b in sse_payloads(events)]
    assert "".join(b["delta"]["text"] for b in bodies if b["type"] == "content_block_delta") == TEXT
    start_usage = bodies[0]["message"]["usage"]
    assert start_usage["input_tokens"] == 25
    assert start_usage["cache_read_input_tokens"] == kwargs.get("cache_read", 0)
    assert start_usage["cache_creation_input_tokens"] == kwargs.get("cache_creation", 0)
    delta = bodies[-2]
    assert delta["delta"]["stop_reason"] == kwargs.get("stop_reason", "end_turn")
    assert delta["usage"]["output_tokens"] == 11


def test_anthropic_error_event_follows_the_spec() -> None:
    from jsonschema import ValidationError

    s = specs()["anthropic"]
    name, data, _ = parse_sse_event(anthropic_error_event())
    assert name == "error"
    body = json.loads(data)
    s.check("ErrorResponse", body)
    assert body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    s.check(
        "ErrorResponse",
        json.loads(parse_sse_event(anthropic_error_event("api_error", "boom", request_id=None))[1]),
    )
    with pytest.raises(ValidationError):
        s.validate("ErrorResponse", json.loads(parse_sse_event(anthropic_error_event("no_such_error"))[1]))
    # the validator bites: message_delta without usage, or a content block that is not a block
    bodies = [b for _, b in sse_payloads(anthropic_events(["x"], model="m", input_tokens=1, output_tokens=1))]
    broken = copy.deepcopy(bodies[-2])
    broken.pop("usage")
    with pytest.raises(ValidationError):
        s.validate("MessageDeltaEvent", broken)
    wrong = copy.deepcopy(bodies[1])
    wrong["content_block"]["type"] = "txt"
    with pytest.raises(ValidationError):
        s.validate("MessageStreamEvent", wrong)


# --------------------------------------------------------------------------- Cohere

COHERE_SCHEMAS = {
    "message-start": "ChatMessageStartEvent",
    "content-start": "ChatContentStartEvent",
    "content-delta": "ChatContentDeltaEvent",
    "content-end": "ChatContentEndEvent",
    "message-end": "ChatMessageEndEvent",
}
# message-start's delta.message on the wire (vercel/ai's recorded Cohere v2 streams), beyond `role`
COHERE_EXTENSIONS = frozenset(
    {
        "delta.message.content",
        "delta.message.tool_plan",
        "delta.message.tool_calls",
        "delta.message.citations",
    }
)


def test_cohere_spec_names_the_sse_framing() -> None:
    """What the description says about the wire: SSE, ended by ``[DONE]`` (x-fern-streaming)."""
    s = specs()["cohere"]
    streaming = s.doc["paths"]["/v2/chat"]["post"]["x-fern-streaming"]
    assert streaming["format"] == "sse" and streaming["terminator"] == "[DONE]"


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"raw_input_tokens": 260, "raw_output_tokens": 12, "finish_reason": "MAX_TOKENS"}],
    ids=["plain", "raw-tokens-max"],
)
def test_cohere_events_follow_the_spec(kwargs: dict[str, Any]) -> None:
    from jsonschema import ValidationError

    s = specs()["cohere"]
    events = cohere_events(PIECES, input_tokens=60, output_tokens=12, **kwargs)
    assert events[-1] == DONE
    names = []
    for name, data, _ in _framing(events)[:-1]:
        body = json.loads(data)
        assert body["type"] == name, "the SSE event name equals the JSON type"
        names.append(name)
        allowed = COHERE_EXTENSIONS if name == "message-start" else frozenset()
        s.check(COHERE_SCHEMAS[name], body, allowed)
        s.check("StreamedChatResponseV2", body, allowed)
    assert names == ["message-start", "content-start"] + ["content-delta"] * len(PIECES) + [
        "content-end",
        "message-end",
    ]
    bodies = [b for _, b in sse_payloads(events)[:-1]]
    assert (
        "".join(b["delta"]["message"]["content"]["text"] for b in bodies if b["type"] == "content-delta")
        == TEXT
    )
    end = bodies[-1]["delta"]
    assert end["finish_reason"] == kwargs.get("finish_reason", "COMPLETE")
    assert end["usage"]["billed_units"] == {"input_tokens": 60, "output_tokens": 12}
    assert end["usage"]["tokens"]["input_tokens"] == kwargs.get("raw_input_tokens", 60)
    bad = copy.deepcopy(bodies[-1])
    bad["delta"]["finish_reason"] = "STOP"
    with pytest.raises(ValidationError):
        s.validate("StreamedChatResponseV2", bad)


# --------------------------------------------------------------------------- Gemini


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"thoughts_tokens": 210, "cached_tokens": 1024, "finish_reason": "MAX_TOKENS"},
        {"usage_on_every_chunk": False, "newline": "\n"},
    ],
    ids=["plain", "thoughts-cache-max", "usage-last-lf"],
)
def test_gemini_events_follow_the_spec(kwargs: dict[str, Any]) -> None:
    s = specs()["gemini"]
    events = gemini_events(
        PIECES, prompt_tokens=1500, candidates_tokens=9, model_version="gemini-2.5-flash", **kwargs
    )
    newline = kwargs.get("newline", "\r\n")
    frames = _framing(events, newline=newline)
    assert len(frames) == len(PIECES), "one event per piece, no end marker"
    bodies = [json.loads(data) for name, data, _ in frames if name is None]
    for body in bodies:
        s.check("GenerateContentResponse", body)
        assert (
            body["modelVersion"] == "gemini-2.5-flash" and body["candidates"][0]["content"]["role"] == "model"
        )
    assert "".join(b["candidates"][0]["content"]["parts"][0]["text"] for b in bodies) == TEXT
    assert [("finishReason" in b["candidates"][0]) for b in bodies] == [False] * (len(PIECES) - 1) + [True]
    assert bodies[-1]["candidates"][0]["finishReason"] == kwargs.get("finish_reason", "STOP")
    final = bodies[-1]["usageMetadata"]
    thoughts = kwargs.get("thoughts_tokens", 0)
    assert final["promptTokenCount"] == 1500 and final["candidatesTokenCount"] == 9
    assert final["totalTokenCount"] == 1500 + 9 + thoughts
    assert final.get("thoughtsTokenCount", 0) == thoughts
    assert final.get("cachedContentTokenCount", 0) == kwargs.get("cached_tokens", 0)
    if kwargs.get("usage_on_every_chunk", True):
        running = [b["usageMetadata"]["candidatesTokenCount"] for b in bodies]
        assert running == sorted(running) and running[-1] == 9
    else:
        assert all("usageMetadata" not in b for b in bodies[:-1])


def test_gemini_validator_bites() -> None:
    from jsonschema import ValidationError

    s = specs()["gemini"]
    body = json.loads(parse_sse_event(gemini_events(["x"], prompt_tokens=1, candidates_tokens=1)[0])[1])
    typo = copy.deepcopy(body)
    typo["usageMetaData"] = typo.pop("usageMetadata")
    assert s.undeclared("GenerateContentResponse", typo) == ["usageMetaData"]
    nested = copy.deepcopy(body)
    nested["candidates"][0]["content"]["parts"][0]["txt"] = "x"
    assert s.undeclared("GenerateContentResponse", nested) == ["candidates[].content.parts[].txt"]
    wrong = copy.deepcopy(body)
    wrong["candidates"][0]["finishReason"] = "DONE"
    with pytest.raises(ValidationError):
        s.validate("GenerateContentResponse", wrong)


# --------------------------------------------------------------------------- Ollama


def test_ollama_events_follow_the_spec() -> None:
    from jsonschema import ValidationError

    s = specs()["ollama"]
    events = ollama_events(PIECES, model="qwen3:0.6b", prompt_eval_count=31, eval_count=8)
    assert all(raw.endswith(b"\n") and raw.count(b"\n") == 1 for raw in events)
    lines = ndjson_payloads(events)
    for line in lines[:-1]:
        s.check("ChatStreamEvent", line)
        assert line["done"] is False
    final = lines[-1]
    s.validate("ChatStreamEvent", final)
    s.check("ChatResponse", final)  # the statistics ChatStreamEvent does not declare
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["prompt_eval_count"] == 31 and final["eval_count"] == 8
    assert all(isinstance(final[k], int) and final[k] > 0 for k in ("total_duration", "eval_duration"))
    assert "".join(line["message"]["content"] for line in lines) == TEXT
    stamps = [line["created_at"] for line in lines]
    assert stamps == sorted(stamps)
    wrong = copy.deepcopy(final)
    wrong["eval_count"] = "8"
    with pytest.raises(ValidationError):
        s.validate("ChatResponse", wrong)


def test_content_types_cover_every_builder() -> None:
    assert set(CONTENT_TYPES) == {"openai", "openrouter", "anthropic", "cohere", "gemini", "ollama"}
    assert CONTENT_TYPES["ollama"] == "application/x-ndjson"
    assert (
        "application/x-ndjson"
        in specs()["ollama"].doc["paths"]["/api/chat"]["post"]["responses"]["200"]["content"]
    )


def test_builders_are_deterministic() -> None:
    kw = {"model": "m", "prompt_tokens": 3, "completion_tokens": 2}
    assert openai_events(PIECES, **kw) == openai_events(PIECES, **kw)
    assert gemini_events(PIECES, prompt_tokens=1, candidates_tokens=2) == gemini_events(
        PIECES, prompt_tokens=1, candidates_tokens=2
    )
    assert "✓".encode() in b"".join(openai_events(PIECES, **kw)), "UTF-8 on the wire, not \\u escapes"


# --------------------------------------------------------------------------- (b) the server streams


@pytest.fixture
def server():
    with StreamServer() as srv:
        yield srv


def test_client_gets_event_0_before_gated_event_1(server: StreamServer) -> None:
    events = openai_events(["Hel", "lo"], model="m", prompt_tokens=3, completion_tokens=2)
    release = threading.Event()
    server.stream(events, gates={1: release})
    received = b""
    with (
        httpx.Client(timeout=httpx.Timeout(3.0)) as client,
        client.stream("POST", f"{server.url}/v1/chat/completions?x=1", json={"stream": True}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["transfer-encoding"] == "chunked"
        chunks = response.iter_raw()
        while len(received) < len(events[0]):
            received += next(chunks)
        got_first = time.monotonic()
        assert received == events[0], "event 0 arrived alone"
        sent = server.sent[0]
        # the server counts an event once its send returned, which may be just after the client read it
        assert sent.wait(1, 2.0) and sent.count == 1 and not release.is_set(), "event 1 is held by its gate"
        release.set()
        for chunk in chunks:
            received += chunk
    assert received == b"".join(events)
    assert sent.wait_done(2) and sent.outcome == "complete" and sent.count == len(events)
    assert got_first <= sent.times[1]  # event 0 was in the client's hands before event 1 was sent
    request = server.requests[0]
    assert (request.method, request.path, request.json) == (
        "POST",
        "/v1/chat/completions?x=1",
        {"stream": True},
    )
    assert request.headers["content-type"] == "application/json" and json.loads(request.raw) == {
        "stream": True
    }


def test_one_http_chunk_per_event_on_the_wire(server: StreamServer) -> None:
    """Read the raw bytes: a chunk-size line per event, the zero-length chunk at the end."""
    events = ollama_events(["a", "bc"], model="m", prompt_eval_count=1, eval_count=2)
    server.stream(events, content_type="application/x-ndjson", headers={"x-request-id": "r1"})
    raw = _raw_exchange(
        server, b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\ncontent-type: application/x-ndjson" in head and b"\r\nx-request-id: r1" in head
    assert b"\r\ntransfer-encoding: chunked" in head and b"content-length" not in head.lower()
    expected = b"".join(f"{len(e):x}\r\n".encode() + e + b"\r\n" for e in events) + b"0\r\n\r\n"
    assert body == expected


def _raw_exchange(server: StreamServer, request: bytes) -> bytes:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=3) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_delays_hold_events_back(server: StreamServer) -> None:
    events = gemini_events(["a", "b", "c"], prompt_tokens=1, candidates_tokens=3)
    server.stream(events, delays={1: 0.25})
    with httpx.Client(timeout=3) as client:
        response = client.post(f"{server.url}/v1beta/models/g:streamGenerateContent?alt=sse", json={})
    assert response.content == b"".join(events)
    times = server.sent[0].times
    assert times[1] - times[0] >= 0.24 and times[2] - times[1] < times[1] - times[0]


def test_gate_on_the_end_of_the_body(server: StreamServer) -> None:
    """``gates[len(events)]`` holds the terminating chunk: every event is out, the body not finished."""
    events = cohere_events(["a"], input_tokens=1, output_tokens=1)
    end = threading.Event()
    server.stream(events, gates={len(events): end})
    with httpx.Client(timeout=3) as client, client.stream("POST", f"{server.url}/v2/chat") as response:
        assert server.sent[0].wait(len(events), timeout=2)
        assert server.sent[0].outcome == "sending"
        end.set()
        assert response.read() == b"".join(events)
    assert server.sent[0].outcome == "complete"


def test_forgotten_gate_resets_instead_of_hanging() -> None:
    with StreamServer(gate_timeout=0.2) as server:
        server.stream(
            anthropic_events(["a"], model="m", input_tokens=1, output_tokens=1), gates={1: threading.Event()}
        )
        with pytest.raises(httpx.TransportError), httpx.Client(timeout=3) as client:
            client.post(f"{server.url}/v1/messages").read()
        assert server.sent[0].wait_done(2)
        assert server.sent[0].outcome == "gate_timeout" and server.sent[0].count == 1


# --------------------------------------------------------------------------- (c) the server killed mid-stream


def test_cut_after_reset_fails_an_httpx_reader(server: StreamServer) -> None:
    events = openai_events(PIECES, model="m", prompt_tokens=3, completion_tokens=4)
    server.stream(events, cut_after=2)
    received = b""
    with (
        pytest.raises(httpx.ReadError),
        httpx.Client(timeout=3) as client,
        client.stream("POST", f"{server.url}/v1/chat/completions") as response,
    ):
        assert response.status_code == 200
        for chunk in response.iter_raw():
            received += chunk
    assert received == b"".join(events[:2]), "the events before the cut reached the client"
    assert server.sent[0].outcome == "cut" and server.sent[0].count == 2


def test_cut_after_close_fails_an_httpx_reader(server: StreamServer) -> None:
    """A clean FIN without the zero-length chunk is no clean end either."""
    events = anthropic_events(PIECES, model="m", input_tokens=1, output_tokens=1)
    server.stream(events, cut_after=len(events), cut_with="close")
    with pytest.raises(httpx.RemoteProtocolError), httpx.Client(timeout=3) as client:
        client.post(f"{server.url}/v1/messages").read()
    assert server.sent[0].outcome == "cut" and server.sent[0].count == len(events)


def test_uncut_stream_reads_cleanly(server: StreamServer) -> None:
    """The control for the two tests above: the same stream without a cut ends cleanly."""
    events = openai_events(PIECES, model="m", prompt_tokens=3, completion_tokens=4)
    server.stream(events)
    with httpx.Client(timeout=3) as client:
        assert client.post(f"{server.url}/v1/chat/completions").content == b"".join(events)


async def test_cut_after_fails_an_aiohttp_reader(server: StreamServer) -> None:
    import aiohttp

    events = ollama_events(PIECES, model="m", prompt_eval_count=1, eval_count=4)
    server.stream(events, content_type="application/x-ndjson", cut_after=1)
    server.stream(events, content_type="application/x-ndjson", cut_after=3, cut_with="close")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for _ in range(2):
            received = b""
            with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ClientConnectionError)):
                async with session.post(f"{server.url}/api/chat", json={"stream": True}) as response:
                    assert response.status == 200
                    async for chunk in response.content.iter_any():
                        received += chunk
            assert events[0] in received
    assert [s.outcome for s in server.sent] == ["cut", "cut"]


@pytest.mark.parametrize("cut_with", ["reset", "close"])
async def test_cut_after_fails_the_pools_transport(server: StreamServer, cut_with: str) -> None:
    """httpx on the aiohttp transport (what ``HttpPool`` uses) raises ``httpx.ReadError`` (a
    ``NetworkError``) for a reset and for an unfinished chunked body alike, after the events before the cut."""
    from httpx_aiohttp import AiohttpTransport

    events = gemini_events(PIECES, prompt_tokens=1, candidates_tokens=4)
    server.stream(events, cut_after=2, cut_with=cut_with)
    received = b""
    async with httpx.AsyncClient(transport=AiohttpTransport(), timeout=5) as client:
        with pytest.raises(httpx.ReadError):
            async with client.stream(
                "POST", f"{server.url}/v1beta/models/g:streamGenerateContent?alt=sse"
            ) as r:
                async for chunk in r.aiter_raw():
                    received += chunk
    assert received == b"".join(events[:2])
    assert server.sent[0].outcome == "cut"


# --------------------------------------------------------------------------- (d) plain replies


def test_reply_serves_plain_json_errors_in_order(server: StreamServer) -> None:
    server.reply(
        429, {"error": {"message": "slow down", "type": "rate_limit_error"}}, headers={"retry-after": "2"}
    )
    server.reply(503, "upstream down", headers={"content-type": "text/plain"})
    server.stream(openai_events(["ok"], model="m", prompt_tokens=1, completion_tokens=1))
    with httpx.Client(timeout=3) as client:
        first = client.post(f"{server.url}/v1/chat/completions", json={"a": 1}, headers={"X-Trace": "t1"})
        second = client.post(f"{server.url}/v1/chat/completions")
        third = client.post(f"{server.url}/v1/chat/completions")
        fourth = client.get(f"{server.url}/health")
    assert first.status_code == 429 and first.headers["retry-after"] == "2"
    assert first.headers["content-type"] == "application/json"
    assert int(first.headers["content-length"]) == len(first.content)
    assert first.json() == {"error": {"message": "slow down", "type": "rate_limit_error"}}
    assert (second.status_code, second.text, second.headers["content-type"]) == (
        503,
        "upstream down",
        "text/plain",
    )
    assert third.status_code == 200 and third.text.endswith("data: [DONE]\n\n")
    assert fourth.status_code == 500 and fourth.json()["error"]["message"] == "StreamServer: no reply queued"
    assert server.count == 4 and server.pending == 0
    assert [s.kind for s in server.sent] == ["reply", "reply", "stream", "default"]
    assert server.requests[0].headers["x-trace"] == "t1" and server.requests[0].json == {"a": 1}
    assert server.requests[3].method == "GET" and server.requests[3].path == "/health"


def test_status_and_headers_of_a_streamed_error(server: StreamServer) -> None:
    """A stream can carry any status (an SSE error body after a 529, say) and extra headers."""
    server.stream([anthropic_error_event()], status=529, headers={"request-id": "req_1"})
    with httpx.Client(timeout=3) as client:
        response = client.post(f"{server.url}/v1/messages")
    assert response.status_code == 529 and response.headers["request-id"] == "req_1"
    assert parse_sse_event(response.content)[0] == "error"
