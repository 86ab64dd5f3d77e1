"""Streamed answers over HTTP: event decoding, one parser per provider, and the one streaming send.

A provider that streams over HTTP declares ``stream_format`` ("sse" or "ndjson"), builds its streamed request
with ``build_stream_request`` and reads its events with a :class:`StreamParser`: ``feed`` takes one event's
JSON and returns the text it adds, ``finish`` returns the whole answer as a
:class:`~orchestrator.providers.base.ProviderResponse` (usage, finish reason, served model). The same bounds
hold as for a whole body: ``max_response_bytes`` over the stream, compressed and decoded, and the attempt's
deadline over the whole exchange. Own SSE decoder rather than httpx-sse: it is 40 lines, and ours is fed
the bounded, decoded chunks the pool already produces.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .. import errors as E
from .. import fast_json
from ..safe_text import repair_value

if TYPE_CHECKING:
    from .base import ChatRequest, HttpAdapter, ProviderResponse
    from .http import HttpPool


class SseDecoder:
    """Server-sent events from byte chunks: ``(event, data)`` per event; comments (``: keep-alive``) and
    ``id``/``retry`` fields are skipped; CRLF, CR and LF all end a line (the SSE spec)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event: str | None = None
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> Iterator[tuple[str | None, str]]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            held = buffer.endswith(b"\r")  # maybe the first half of a CRLF: decide with the next chunk
            buffer = buffer[:-1] if held else buffer
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + (b"\r" if held else b"")
        *lines, self._buffer = buffer.split(b"\n")
        for line in lines:
            if not line:
                if self._data:
                    yield self._event, b"\n".join(self._data).decode("utf-8", errors="replace")
                self._event, self._data = None, []
            elif line.startswith(b"data:"):
                self._data.append(line[6:] if line.startswith(b"data: ") else line[5:])
            elif line.startswith(b"event:"):
                self._event = line[6:].strip().decode("utf-8", errors="replace")
            # a comment (":"), id, retry or unknown field: nothing to hand on

    def close(self) -> Iterator[tuple[str | None, str]]:
        """What a stream that ended without a blank line still held."""
        tail = self._buffer.rstrip(b"\r")
        self._buffer = b""
        yield from self.feed(tail + b"\n\n" if tail else b"\n")


class NdjsonDecoder:
    """Newline-delimited JSON (Ollama): one ``(None, line)`` per non-empty line."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> Iterator[tuple[str | None, str]]:
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield None, line.decode("utf-8", errors="replace")

    def close(self) -> Iterator[tuple[str | None, str]]:
        if self._buffer.strip():
            yield None, self._buffer.decode("utf-8", errors="replace")
        self._buffer = b""


class StreamParser:
    """One streamed answer as it arrives; a subclass per wire format."""

    def __init__(self, adapter: HttpAdapter | Any, req: ChatRequest) -> None:
        self.adapter = adapter
        self.req = req
        self.parts: list[str] = []
        self.done = False  # the stream's own end marker arrived ([DONE], message_stop, done: true)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def feed(self, data: dict[str, Any], event: str | None = None) -> str:  # pragma: no cover
        raise NotImplementedError

    def finish(self) -> ProviderResponse:  # pragma: no cover
        raise NotImplementedError

    def add(self, piece: Any) -> str:
        if isinstance(piece, str) and piece:
            self.parts.append(piece)
            return piece
        return ""

    def malformed(self, message: str) -> E.ProviderError:
        return self.adapter.err(E.MalformedResponseError, message, self.req, status=200, maybe_billed=True)


async def send_stream(
    adapter: HttpAdapter, req: ChatRequest, pool: HttpPool, on_delta: Callable[[str], None]
) -> ProviderResponse:
    """Send ``req`` as a streamed request and hand each piece of text to ``on_delta`` as it arrives.

    A non-2xx status is read whole and mapped as for :meth:`HttpAdapter.send`; a server that answers a stream
    request with one JSON body (some OpenAI-compatible servers) is parsed as one and its text given at once.
    A stream that ends before its end marker is a :class:`~orchestrator.errors.MalformedResponseError`.
    """
    from .http import RequestTimeout

    spec = req.spec
    call = adapter.build_stream_request(req)
    timeout = RequestTimeout(read=spec.timeout, connect=spec.connect_timeout)
    deadline = asyncio.timeout(spec.attempt_deadline)
    with adapter.reading(req, deadline, "stream"):
        async with (
            deadline,
            pool.stream(
                call.url,
                base_url=adapter.base_url(spec),
                headers=call.headers,
                json_body=call.json,
                timeout=timeout,
                max_bytes=spec.max_response_bytes,
            ) as response,
        ):
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if response.status_code >= 300 or kind == "application/json":
                parsed = adapter.read_response(
                    req, response.status_code, response.headers, await response.read()
                )
                if parsed.text:
                    on_delta(parsed.text)
                return parsed
            parser = adapter.stream_parser(req)
            decoder = SseDecoder() if adapter.stream_format == "sse" else NdjsonDecoder()
            async for chunk in response.chunks():
                for event, data in decoder.feed(chunk):
                    _feed(parser, event, data, on_delta)
            for event, data in decoder.close():
                _feed(parser, event, data, on_delta)
    if not parser.done:
        raise parser.malformed(
            f"the stream ended before its end marker, after {len(parser.text):,} characters (cut short)"
        )
    return parser.finish()


def _feed(parser: StreamParser, event: str | None, data: str, on_delta: Callable[[str], None]) -> None:
    if data.strip() == "[DONE]":  # OpenAI's end marker
        parser.done = True
        return
    if parser.done and not data.strip():
        return
    if E.contains_secret(data):
        data = E.redact(data)
    try:
        value: Any = fast_json.loads(data)
    except (ValueError, RecursionError):
        raise parser.malformed(f"a stream event is not valid JSON: {data[:200]!r}") from None
    if "\\ud" in data or "\\uD" in data:
        value, _ = repair_value(value)
    if not isinstance(value, dict):
        raise parser.malformed(f"a stream event is a {type(value).__name__}, not a JSON object")
    try:
        piece = parser.feed(value, event)
    except E.ProviderError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise parser.malformed(f"unexpected stream event shape: {type(exc).__name__}: {exc}") from None
    if piece:
        on_delta(piece)
