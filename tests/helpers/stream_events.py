"""The exact wire events each provider sends when it streams an answer, for streaming adapter tests.

Every builder returns a ``list[bytes]``, one element per event as it appears on the wire: a complete
server-sent event ending with its blank line (``data: {...}\\n\\n``, ``event: NAME\\ndata: {...}\\n\\n``,
or a ``: comment\\n\\n`` keep-alive), or for Ollama one NDJSON line ending in ``\\n``. Feed the list to
:meth:`helpers.stream_server.StreamServer.stream`, which sends one HTTP chunk per element, so a test can
delay, gate or cut the stream at any element::

    events = openai_events(["Hel", "lo"], model="gpt-4o-mini", prompt_tokens=12, completion_tokens=2)
    server.stream(events, gates={2: release}, cut_after=None)

Each event is shaped from the provider's API description in ``../shared/specs`` (the schema is named in
each builder's docstring) and, where the description is silent (the SSE framing, keep-alives, the end
marker, which fields appear on which chunk), from the provider's streaming documentation (linked in the
docstring). ``tests/providers/test_stream_events_spec.py`` validates every event against its schema and
flags any key the schema does not declare, so a deviation from the description is listed in the
docstring or the test fails.

All values are deterministic (ids, timestamps, durations), so two calls with the same arguments return
the same bytes. :func:`sse_payloads` and :func:`ndjson_payloads` parse a list back into
``(event name, JSON)`` pairs, for assertions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

SSE = "text/event-stream"
NDJSON = "application/x-ndjson"

# the Content-Type each provider streams with (Ollama's from ollama.openapi.yaml /api/chat responses)
CONTENT_TYPES = {
    "openai": SSE,
    "openrouter": SSE,
    "anthropic": SSE,
    "cohere": SSE,
    "gemini": SSE,
    "ollama": NDJSON,
}

OPENROUTER_KEEPALIVE = b": OPENROUTER PROCESSING\n\n"
DONE = b"data: [DONE]\n\n"

_CREATED = 1767225600  # 2026-01-01T00:00:00Z, the `created` of every OpenAI-shaped chunk


def _json(value: Any) -> str:
    # compact, key order kept, non-ASCII kept as is (the providers send UTF-8, not \\u escapes)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def sse(data: Any, *, event: str | None = None, newline: str = "\n") -> bytes:
    """One server-sent event: ``event: NAME`` (when given), ``data: JSON`` (``data`` a str is sent as is),
    then the blank line that ends the event. ``newline`` is the line ending (Gemini uses CRLF)."""
    payload = data if isinstance(data, str) else _json(data)
    if "\n" in payload or "\r" in payload:
        raise ValueError("one data line per event: the payload holds a line break")
    lines = ([f"event: {event}"] if event is not None else []) + [f"data: {payload}"]
    return (newline.join(lines) + newline + newline).encode("utf-8")


def ndjson(value: Any) -> bytes:
    """One newline-delimited JSON line."""
    return (_json(value) + "\n").encode("utf-8")


# --------------------------------------------------------------------------- OpenAI


def openai_events(
    pieces: Sequence[str],
    *,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
    include_usage: bool = True,
    finish_reason: str | None = "stop",
    done: bool = True,
    id: str = "chatcmpl-CstreamTest0000000000000001",
) -> list[bytes]:
    """OpenAI ``POST /chat/completions`` with ``stream: true``: ``data: {chat.completion.chunk}`` events.

    Schema: ``CreateChatCompletionStreamResponse`` (openai.openapi.yaml), each ``choices[]`` item's
    ``delta`` a ``ChatCompletionStreamResponseDelta``, the usage a ``CompletionUsage``. The order follows
    the schema's own example: event 0 has ``delta: {role: assistant, content: "", refusal: null}``;
    events 1..n carry one piece each (``delta.content``); then (``finish_reason`` not None) a chunk with
    ``delta: {}`` and ``finish_reason``; then (``include_usage``) a chunk with ``choices: []`` and the
    ``usage``; then (``done``) ``data: [DONE]``. So piece ``i`` is event ``i + 1``.

    With ``include_usage`` every other chunk carries ``"usage": null``: the schema's ``usage`` says
    "When present, it contains a null value except for the last chunk", and ``ChatCompletionStreamOptions
    .include_usage`` says "All other chunks will also include a usage field, but with a null value".
    ``prompt_tokens`` includes ``cached_tokens``, ``completion_tokens`` includes ``reasoning_tokens``
    (specs/README.md). Known defect of the description: ``usage`` is ``$ref`` + ``nullable`` with no
    ``type``, and ``finish_reason``'s enum lacks null although it is ``nullable``; the spec test reads
    both as "or null" instead of dropping ``nullable``. ``finish_reason=None`` with ``done=False`` is a
    stream that stops before its end (combine with the server's ``cut_after`` for a killed server).
    """
    base = {"id": id, "object": "chat.completion.chunk", "created": _CREATED, "model": model}
    common = {"service_tier": "default", "system_fingerprint": "fp_5e2f1a9c3b"}
    null_usage = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None, n: int) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse({**base, **common, "choices": [choice], **null_usage, "obfuscation": _obfuscation(n)})

    events = [chunk({"role": "assistant", "content": "", "refusal": None}, None, 0)]
    events += [chunk({"content": piece}, None, i + 1) for i, piece in enumerate(pieces)]
    if finish_reason is not None:
        events.append(chunk({}, finish_reason, len(pieces) + 1))
    if include_usage:
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        events.append(sse({**base, **common, "choices": [], "usage": usage, "obfuscation": "k2"}))
    if done:
        events.append(DONE)
    return events


def _obfuscation(n: int) -> str:
    # the size-normalising padding OpenAI adds to each chunk (spec: `obfuscation`), deterministic here
    return "abcdefghijkl"[: 2 + n % 9]


# --------------------------------------------------------------------------- OpenRouter


def openrouter_events(
    pieces: Sequence[str],
    *,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    cost: float,
    cached_tokens: int = 0,
    keepalive: bool = True,
    error_after: int | None = None,
    error_code: int | str = "server_error",
    error_message: str = "Provider disconnected unexpectedly",
    finish_reason: str = "stop",
    provider: str = "OpenAI",
    id: str = "gen-1767225600-StreamTest0001",
) -> list[bytes]:
    """OpenRouter ``POST /api/v1/chat/completions`` with ``stream: true``: OpenAI-shaped chunks.

    Schema: ``CreateChatCompletionStreamResponse`` (openai.openapi.yaml; OpenRouter has no description in
    ../shared/specs and is OpenAI-shaped, specs/README.md), plus OpenRouter's documented extensions, which
    the spec test allows by name: top-level ``provider`` (who served it; ``model`` is the model that
    actually served), ``choices[].native_finish_reason`` (the upstream's own reason), ``usage.cost`` (USD)
    and ``usage.is_byok``, and on a mid-stream error a top-level ``error`` with
    ``finish_reason: "error"`` (not in the OpenAI enum).

    Events: (``keepalive``) ``: OPENROUTER PROCESSING`` first; then one chunk per piece, the first with
    ``delta.role``; (``keepalive``) a second comment after the first piece; then a chunk with
    ``finish_reason``, one with ``choices: []`` and ``usage`` (OpenRouter sends usage on every stream,
    "Final chunk includes usage stats"), then ``data: [DONE]``. With ``keepalive`` piece ``i`` is event
    ``i + 1`` for ``i == 0`` and ``i + 2`` after; :func:`sse_payloads` skips the comments.

    ``error_after=k``: after ``k`` piece chunks, a chunk with top-level ``error: {code, message}`` and
    ``choices[0].finish_reason: "error"``, then ``data: [DONE]`` (no finish chunk, no usage).

    From the docs, not a spec (https://openrouter.ai/docs/api-reference/streaming): the SSE comment
    ``: OPENROUTER PROCESSING`` sent "to prevent connection timeouts"; under "Error Handling During
    Streaming" an error after tokens were sent arrives as HTTP 200 with a ``data:`` event holding a
    top-level ``error`` and ``finish_reason: "error"``; usage and cost:
    https://openrouter.ai/docs/use-cases/usage-accounting; ``native_finish_reason``:
    https://openrouter.ai/docs/api-reference/overview (StreamingChoice).
    """
    base = {"id": id, "provider": provider, "model": model, "object": "chat.completion.chunk"}
    base["created"] = _CREATED

    def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
        choice = {
            "index": 0,
            "delta": delta,
            "finish_reason": finish,
            "native_finish_reason": finish,
            "logprobs": None,
        }
        return sse({**base, **extra, "choices": [choice]})

    events: list[bytes] = [OPENROUTER_KEEPALIVE] if keepalive else []
    for i, piece in enumerate(pieces):
        if error_after is not None and i == error_after:
            break
        delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
        events.append(chunk(delta, None))
        if keepalive and i == 0:
            events.append(OPENROUTER_KEEPALIVE)
    if error_after is not None:
        error = {"code": error_code, "message": error_message}
        events.append(chunk({"content": ""}, "error", error=error))
        events.append(DONE)
        return events
    events.append(chunk({}, finish_reason))
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "cost": cost,
        "is_byok": False,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    events.append(sse({**base, "choices": [], "usage": usage}))
    events.append(DONE)
    return events


# --------------------------------------------------------------------------- Anthropic


def anthropic_events(
    pieces: Sequence[str],
    *,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cache_read: int = 0,
    cache_creation: int = 0,
    stop_reason: str | None = "end_turn",
    ping: bool = True,
    id: str = "msg_01StreamTest000000000001",
) -> list[bytes]:
    """Anthropic ``POST /v1/messages`` with ``stream: true``: named events ``event: NAME\\ndata: {json}``.

    Schemas (anthropic.openapi.yaml, members of ``MessageStreamEvent``): ``MessageStartEvent`` (its
    ``message`` a ``Message`` with empty ``content`` and ``usage`` a ``Usage``), ``ContentBlockStartEvent``
    (a ``ResponseTextBlock`` with empty text), ``ContentBlockDeltaEvent`` (``TextContentBlockDelta``, one
    per piece), ``ContentBlockStopEvent``, ``MessageDeltaEvent`` (``delta.stop_reason``, ``usage`` a
    ``MessageDeltaUsage``), ``MessageStopEvent``. Order: message_start, content_block_start, (``ping``)
    ping, the deltas, content_block_stop, message_delta, message_stop; piece ``i`` is event
    ``i + 3`` with ``ping`` (``i + 2`` without).

    ``usage.input_tokens`` is the uncached input only (specs/README.md): total input is
    ``input_tokens + cache_creation + cache_read``. message_start carries ``output_tokens: 1`` (as the
    docs' example); message_delta's usage is cumulative and carries the final ``output_tokens``. Keys the
    schema marks required but the docs' examples leave out are sent as the schema allows
    (``citations: null``, ``server_tool_use: null``, ``stop_sequence: null``).

    From the docs, not the spec (https://platform.claude.com/docs/en/build-with-claude/streaming): the SSE
    ``event:`` line naming each event (equal to its ``type``), and ``event: ping`` /
    ``data: {"type": "ping"}``, which ``MessageStreamEvent`` does not list (the spec test checks it against
    the docs' shape). For an error mid-stream see :func:`anthropic_error_event`.
    """
    usage = {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_creation,
        "cache_read_input_tokens": cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": cache_creation, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 1,
        "server_tool_use": None,
        "service_tier": "standard",
    }
    message = {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }

    def event(name: str, **fields: Any) -> bytes:
        return sse({"type": name, **fields}, event=name)

    events = [event("message_start", message=message)]
    events.append(
        event("content_block_start", index=0, content_block={"type": "text", "text": "", "citations": None})
    )
    if ping:
        events.append(event("ping"))
    for piece in pieces:
        events.append(event("content_block_delta", index=0, delta={"type": "text_delta", "text": piece}))
    events.append(event("content_block_stop", index=0))
    final_usage = {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_creation,
        "cache_read_input_tokens": cache_read,
        "output_tokens": output_tokens,
        "server_tool_use": None,
    }
    delta = {"stop_reason": stop_reason, "stop_sequence": None}
    events.append(event("message_delta", delta=delta, usage=final_usage))
    events.append(event("message_stop"))
    return events


def anthropic_error_event(
    type: str = "overloaded_error",
    message: str = "Overloaded",
    *,
    request_id: str | None = "req_011StreamTest0000000001",
) -> bytes:
    """An Anthropic error sent inside a stream (HTTP status already 200): ``event: error`` with
    ``{"type": "error", "error": {"type", "message"}, "request_id"}``.

    Schema: ``ErrorResponse`` (anthropic.openapi.yaml; ``error`` one of its typed errors, e.g.
    ``OverloadedError``; ``request_id`` required, nullable). The ``event: error`` line is from
    https://platform.claude.com/docs/en/build-with-claude/streaming ("Error events": "we may occasionally send
    errors in the event stream", e.g. ``overloaded_error``, which would be a 529 in a non-streamed call).
    Put it where the stream breaks off, typically instead of the rest of the events::

        events = anthropic_events(...)[:4] + [anthropic_error_event()]
    """
    body = {"type": "error", "error": {"type": type, "message": message}, "request_id": request_id}
    return sse(body, event="error")


# --------------------------------------------------------------------------- Cohere


def cohere_events(
    pieces: Sequence[str],
    *,
    input_tokens: int,
    output_tokens: int,
    raw_input_tokens: int | None = None,
    raw_output_tokens: int | None = None,
    cached_tokens: int = 0,
    finish_reason: str = "COMPLETE",
    done: bool = True,
    id: str = "5b1c9e2a-7f3d-4c1a-9e8b-streamtest001",
) -> list[bytes]:
    """Cohere ``POST /v2/chat`` with ``stream: true``: named events ``event: TYPE\\ndata: {json}``.

    Schema: ``StreamedChatResponseV2`` (cohere.openapi.yaml), members ``ChatMessageStartEvent``,
    ``ChatContentStartEvent``, ``ChatContentDeltaEvent`` (text in ``delta.message.content.text``),
    ``ChatContentEndEvent``, ``ChatMessageEndEvent`` (``delta.finish_reason`` a ``ChatFinishReason``,
    ``delta.usage`` a ``Usage``). Order: message-start, content-start, one content-delta per piece,
    content-end, message-end, then (``done``) ``data: [DONE]``; piece ``i`` is event ``i + 2``.

    Usage: ``billed_units`` holds ``input_tokens``/``output_tokens`` (what Cohere bills); ``tokens`` holds
    ``raw_input_tokens``/``raw_output_tokens`` (default: the billed ones), which can be larger and are not
    billed (specs/README.md).

    The framing: the description says ``x-fern-streaming: {format: sse, terminator: "[DONE]"}`` on
    ``/v2/chat`` (hence the last ``data: [DONE]``) but not whether an ``event:`` line comes with each
    ``data:``; Cohere's SSE carries ``event: <type>`` equal to the JSON's ``type`` (as in the Vercel AI
    SDK's recorded Cohere v2 streams, vercel/ai packages/cohere/src/cohere-chat-language-model.test.ts;
    the event types and their order are https://docs.cohere.com/v2/docs/streaming). A parser must key on
    the JSON ``type``, never on the ``event:`` line. message-start's ``delta.message`` also holds
    ``content: [], tool_plan: "", tool_calls: [], citations: []`` on the wire (same source), keys the
    schema does not declare there (the spec test allows them by name).
    """
    raw_in = input_tokens if raw_input_tokens is None else raw_input_tokens
    raw_out = output_tokens if raw_output_tokens is None else raw_output_tokens

    def event(kind: str, **fields: Any) -> bytes:
        return sse({"type": kind, **fields}, event=kind)

    start_message = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    events = [
        sse({"id": id, "type": "message-start", "delta": {"message": start_message}}, event="message-start")
    ]
    events.append(
        event("content-start", index=0, delta={"message": {"content": {"type": "text", "text": ""}}})
    )
    for piece in pieces:
        events.append(event("content-delta", index=0, delta={"message": {"content": {"text": piece}}}))
    events.append(event("content-end", index=0))
    usage = {
        "billed_units": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        "tokens": {"input_tokens": raw_in, "output_tokens": raw_out},
        "cached_tokens": cached_tokens,
    }
    events.append(event("message-end", delta={"finish_reason": finish_reason, "usage": usage}))
    if done:
        events.append(DONE)
    return events


# --------------------------------------------------------------------------- Gemini


def gemini_events(
    pieces: Sequence[str],
    *,
    prompt_tokens: int,
    candidates_tokens: int,
    thoughts_tokens: int = 0,
    cached_tokens: int = 0,
    finish_reason: str = "STOP",
    model_version: str = "gemini-2.5-flash",
    usage_on_every_chunk: bool = True,
    response_id: str = "StreamTestResponse0001",
    newline: str = "\r\n",
) -> list[bytes]:
    """Gemini ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse``: ``data: {GenerateContentResponse}``.

    Schema: ``GenerateContentResponse`` (gemini.openapi.json): ``candidates[0]`` a ``Candidate`` whose
    ``content`` (role ``model``) holds one ``Part`` with the piece; ``usageMetadata`` a ``UsageMetadata``;
    ``modelVersion``, ``responseId``. One event per piece (piece ``i`` is event ``i``); the last also has
    ``finishReason``. There is no end marker: the stream ends when the server ends the body.

    ``usageMetadata``: with ``usage_on_every_chunk`` every chunk carries it with running totals
    (``promptTokenCount`` whole from the first chunk, ``candidatesTokenCount`` growing with the text,
    ``thoughtsTokenCount`` whole, ``totalTokenCount`` their sum), the last one final; without, only the
    last chunk has it. ``promptTokenCount`` includes ``cachedContentTokenCount``; ``thoughtsTokenCount``
    is outside ``candidatesTokenCount`` but inside ``totalTokenCount`` (specs/README.md).

    From the docs, not the spec: each event's data is one whole ``GenerateContentResponse`` ("With sse
    each stream chunk is a GenerateContentResponse object with a portion of the output text",
    google-gemini/cookbook quickstarts/rest/Streaming_REST.ipynb, also https://ai.google.dev/api/generate-content
    #method:-models.streamgeneratecontent); line endings are CRLF by default (``data: ...\\r\\n\\r\\n``:
    that notebook's recorded curl output shows ``\\r\\n`` after the data line, and gateways fixed their
    Gemini SSE parsing for CRLF, envoyproxy/ai-gateway#1536; ``newline="\\n"`` gives plain LF, which a
    parser must accept too); usage repeated on each chunk with running counts, the last counts final (what
    Gemini streaming clients report, e.g. docker/docker-agent#1855; some models send it on the last chunk
    only, docker/docker-agent#2848: ``usage_on_every_chunk=False``).
    """
    total_chars = sum(len(p) for p in pieces) or 1
    details = [{"modality": "TEXT", "tokenCount": prompt_tokens}]
    events = []
    seen = 0
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        seen += len(piece)
        candidate: dict[str, Any] = {"content": {"parts": [{"text": piece}], "role": "model"}}
        if last:
            candidate["finishReason"] = finish_reason
        candidate["index"] = 0
        body: dict[str, Any] = {"candidates": [candidate]}
        if usage_on_every_chunk or last:
            so_far = (
                candidates_tokens
                if last
                else min(candidates_tokens, round(candidates_tokens * seen / total_chars))
            )
            usage: dict[str, Any] = {"promptTokenCount": prompt_tokens, "candidatesTokenCount": so_far}
            usage["totalTokenCount"] = prompt_tokens + so_far + thoughts_tokens
            if cached_tokens:
                usage["cachedContentTokenCount"] = cached_tokens
            usage["promptTokensDetails"] = details
            if cached_tokens:
                usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached_tokens}]
            if thoughts_tokens:
                usage["thoughtsTokenCount"] = thoughts_tokens
            body["usageMetadata"] = usage
        body["modelVersion"] = model_version
        body["responseId"] = response_id
        events.append(sse(body, newline=newline))
    return events


# --------------------------------------------------------------------------- Ollama


def ollama_events(
    pieces: Sequence[str],
    *,
    model: str,
    prompt_eval_count: int,
    eval_count: int,
    done_reason: str = "stop",
    total_duration: int = 2_143_500_000,
    load_duration: int = 41_200_000,
    prompt_eval_duration: int = 93_100_000,
    eval_duration: int = 1_950_700_000,
) -> list[bytes]:
    """Ollama ``POST /api/chat`` with ``stream: true`` (the default): NDJSON, one JSON object a line.

    Schema: ``ChatStreamEvent`` (ollama.openapi.yaml, the ``application/x-ndjson`` response of
    ``/api/chat``) for every line: ``{"model", "created_at", "message": {"role": "assistant", "content":
    piece}, "done": false}``, piece ``i`` being line ``i``. The last line has ``done: true``, empty
    content, and the statistics: ``done_reason``, ``total_duration``, ``load_duration``,
    ``prompt_eval_count``, ``prompt_eval_duration``, ``eval_count``, ``eval_duration`` (durations in
    nanoseconds). Deviation: ``ChatStreamEvent`` does not declare those statistics; they are the fields
    of ``ChatResponse`` (the same description), which the spec test checks the last line against as well.
    From the docs, not the spec (https://github.com/ollama/ollama/blob/main/docs/api.md, "Generate a chat
    completion": "The final response object will include statistics and additional data from the
    request"); the last line's ``message`` with empty content and its ``done_reason`` are what current
    servers send (the docs' older "Final response" example omits both; ``ChatResponse`` declares them).
    """

    def stamp(n: int) -> str:
        return f"2026-01-01T00:00:00.{100_000_000 + n * 12_345_678:09d}Z"

    events = [
        ndjson(
            {
                "model": model,
                "created_at": stamp(i),
                "message": {"role": "assistant", "content": piece},
                "done": False,
            }
        )
        for i, piece in enumerate(pieces)
    ]
    final = {
        "model": model,
        "created_at": stamp(len(pieces)),
        "message": {"role": "assistant", "content": ""},
        "done_reason": done_reason,
        "done": True,
        "total_duration": total_duration,
        "load_duration": load_duration,
        "prompt_eval_count": prompt_eval_count,
        "prompt_eval_duration": prompt_eval_duration,
        "eval_count": eval_count,
        "eval_duration": eval_duration,
    }
    events.append(ndjson(final))
    return events


# --------------------------------------------------------------------------- reading events back


def parse_sse_event(raw: bytes) -> tuple[str | None, str | None, list[str]]:
    """One SSE event as built here: ``(event name or None, data or None, comments)``.

    Strict about the framing the builders promise: exactly one event, terminated by a blank line (LF or
    CRLF, not mixed), at most one ``data:`` line. Raises ``ValueError`` otherwise.
    """
    text = raw.decode("utf-8")
    newline = "\r\n" if "\r\n" in text else "\n"
    if newline == "\n" and "\r" in text:
        raise ValueError(f"stray CR in an LF event: {raw!r}")
    if not text.endswith(newline * 2) or text.endswith(newline * 3):
        raise ValueError(f"an event must end with exactly one blank line: {raw!r}")
    lines = text[: -len(newline) * 2].split(newline)
    if newline == "\r\n" and any("\r" in line or "\n" in line for line in lines):
        raise ValueError(f"mixed line endings: {raw!r}")
    name = data = None
    comments = []
    for line in lines:
        if line == "":
            raise ValueError(f"a blank line inside one event: {raw!r}")
        if line.startswith(":"):
            comments.append(line[1:].strip())
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event" and name is None and data is None:
            name = value
        elif field == "data" and data is None:
            data = value
        else:
            raise ValueError(f"unexpected field {field!r} in {raw!r}")
    return name, data, comments


def sse_payloads(events: Sequence[bytes]) -> list[tuple[str | None, Any]]:
    """``(event name, parsed JSON)`` for every data event (comments skipped; ``[DONE]`` kept as the
    string ``"[DONE]"``)."""
    out = []
    for raw in events:
        name, data, _ = parse_sse_event(raw)
        if data is None:
            continue
        out.append((name, data if data == "[DONE]" else json.loads(data)))
    return out


def ndjson_payloads(events: Sequence[bytes]) -> list[dict[str, Any]]:
    """The parsed objects of NDJSON lines (each element exactly one line ending in ``\\n``)."""
    out = []
    for raw in events:
        if not raw.endswith(b"\n") or raw.count(b"\n") != 1:
            raise ValueError(f"not one NDJSON line: {raw!r}")
        out.append(json.loads(raw))
    return out
