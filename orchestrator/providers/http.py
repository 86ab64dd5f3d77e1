"""Pooled HTTP clients and the one bounded way to read a response.

One :class:`~orchestrator.providers.wire.WirePool` (keep-alive HTTP/1.1 on asyncio, parsed by httptools)
per event loop: a plain ``httpx.AsyncClient`` slows to 10-12x the latency limit at 64 requests in flight
(encode/httpx#3215), httpx on the aiohttp transport spends 0.23 ms per call on its own objects, and aiohttp
itself 0.23 ms per streamed call against 0.10 here (:mod:`orchestrator.providers.wire`). An injected
``httpx.AsyncBaseTransport`` keeps httpx.

:meth:`HttpPool.post` streams the body and stops it at ``max_bytes``, counted twice: on the wire
(compressed) and after decoding, so a decompression bomb (1 MiB of gzip that inflates to 1 GiB) or an
endless junk body costs at most one chunk beyond the cap. It decodes gzip and deflate itself, with
zlib's ``max_length`` so that no single chunk can inflate past the cap either; other encodings are
refused (we only ask for gzip and deflate). The caller bounds the whole exchange with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import httpx

from .. import fast_json

_ssl_context = None

ACCEPT_ENCODING = "gzip, deflate"


class BodyTooLarge(Exception):
    """The body passed the cap; ``where`` is "compressed" or "decoded"."""

    def __init__(self, where: str, limit: int) -> None:
        self.where = where
        self.limit = limit
        super().__init__(f"the response body passed {limit:,} bytes ({where})")


class BadEncoding(Exception):
    """The body's content-encoding is not one we asked for, or it does not decode."""


@dataclass
class BodyResponse:
    """A response whose body was read within the caps."""

    status_code: int
    headers: Any  # case-insensitive .get(): wire.Headers, or httpx's
    content: bytes


def _shared_ssl_context():
    """One TLS context per process: building one loads the CA bundle (~20-100 ms, blocking the loop)."""
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = httpx.create_ssl_context(trust_env=True)
    return _ssl_context


class _Decoder:
    """Incremental, bounded decoding of one content-encoding (identity, gzip, deflate)."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._deflate_pending = False
        encoding = encoding.strip().lower()
        if encoding in ("", "identity"):
            self._z = None
        elif encoding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._z = None
            self._deflate_pending = True  # zlib-wrapped or raw: told by the first byte
        else:
            raise BadEncoding(
                f"content-encoding {encoding!r} was not asked for (we accept {ACCEPT_ENCODING})"
            )

    def feed(self, chunk: bytes, out: list[bytes]) -> None:
        if self._deflate_pending and chunk:
            # RFC 9110 deflate is zlib-wrapped (0x78 ..); some servers send raw deflate instead
            self._z = zlib.decompressobj(zlib.MAX_WBITS if chunk[0] == 0x78 else -zlib.MAX_WBITS)
            self._deflate_pending = False
        if self._z is None:
            self._add(chunk, out)
            return
        data = chunk
        try:
            while data:
                room = self.limit - self.size + 1  # one byte past the cap proves it is too large
                piece = self._z.decompress(data, room)
                self._add(piece, out)
                data = self._z.unconsumed_tail
        except zlib.error as exc:
            raise BadEncoding(f"the body does not decode as declared: {exc}") from None

    def flush(self, out: list[bytes]) -> None:
        if self._z is not None:
            try:
                self._add(self._z.flush(), out)
            except zlib.error as exc:
                raise BadEncoding(f"the body does not decode as declared: {exc}") from None

    def _add(self, piece: bytes, out: list[bytes]) -> None:
        if piece:
            self.size += len(piece)
            if self.size > self.limit:
                raise BodyTooLarge("decoded", self.limit)
            out.append(piece)


class RequestTimeout(NamedTuple):
    """Seconds to wait: ``read`` for each read of the answer, ``connect`` to get a connection (a pooled
    one or a new one, including TLS)."""

    read: float
    connect: float


class HttpPool:
    """Hands out one connection pool per event loop (per base URL with an injected httpx transport).

    The default is :class:`~orchestrator.providers.wire.WirePool`, at most ``max_connections`` to each
    host. A ``transport_factory`` (any ``httpx.AsyncBaseTransport``: a mock, a proxy) keeps the httpx path.
    """

    def __init__(
        self,
        transport_factory: Callable[[], httpx.AsyncBaseTransport] | None = None,
        max_connections: int = 256,
    ) -> None:
        self._factory = transport_factory
        self._max_connections = max_connections
        self._clients: dict[tuple[int, str], Any] = {}
        self._urls: dict[str, Any] = {}  # url -> its parsed form (httpx.URL, or wire.Target)
        if transport_factory is None:
            # a pool dropped without aclose() (a test, a notebook cell) closes its idle sockets at once
            # rather than leaving them to the garbage collector's ResourceWarnings
            weakref.finalize(self, _drop_pools, self._clients)

    def client(self, base_url: str) -> Any:
        """The pooled session for ``base_url`` on the running loop (created on first use)."""
        loop = asyncio.get_running_loop()
        key = (id(loop), base_url if self._factory else "")
        client = self._clients.get(key)
        # a pool left by a loop that has gone (its id reused by this one) is not this loop's
        if client is None or (
            client.is_closed if self._factory else client.closed or client.loop is not loop
        ):
            client = self._new_client()
            self._clients[key] = client
        return client

    def _new_client(self) -> Any:
        if self._factory is not None:
            return httpx.AsyncClient(transport=self._factory(), follow_redirects=False)
        from .wire import WirePool

        return WirePool(_shared_ssl_context, self._max_connections)

    @contextlib.asynccontextmanager
    async def _open(
        self,
        url: str,
        base_url: str,
        headers: dict[str, str],
        json_body: dict[str, Any],
        timeout: RequestTimeout,
    ) -> AsyncIterator[Any]:
        """POST and give the response (the wire's or httpx's) with its body still unread."""
        client = self.client(base_url)
        # a lone surrogate that slipped through must not crash the send (fast_json writes its bytes);
        # the server sees them and answers (or refuses) like any other request
        content = fast_json.dumps(json_body)
        headers = {"content-type": "application/json", "accept-encoding": ACCEPT_ENCODING, **headers}
        if self._factory is not None:
            parsed = self._urls.get(url)
            if parsed is None:  # parsing a URL costs more than the rest of building the request
                parsed = self._urls[url] = httpx.URL(url)
            limits = httpx.Timeout(timeout.read, connect=timeout.connect, pool=timeout.connect)
            request = client.build_request("POST", parsed, content=content, headers=headers, timeout=limits)
            response = await client.send(request, stream=True)
            try:
                yield _HttpxResponse(response)
            finally:
                await response.aclose()
            return
        from .wire import parse_target

        target = self._urls.get(url)
        if target is None:  # parsed once, with the proxy the environment names for it
            target = self._urls[url] = parse_target(url)
        response = await client.post(target, headers, content, timeout.read, timeout.connect)
        try:
            yield response
        finally:
            response.release()

    @contextlib.asynccontextmanager
    async def stream(
        self,
        url: str,
        *,
        base_url: str,
        headers: dict[str, str],
        json_body: dict[str, Any],
        timeout: RequestTimeout,
        max_bytes: int,
    ) -> AsyncIterator[StreamingBody]:
        """POST ``json_body`` and give the response while its body still arrives, under the same caps."""
        async with self._open(url, base_url, headers, json_body, timeout) as response:
            yield StreamingBody(response, max_bytes)

    async def post(
        self,
        url: str,
        *,
        base_url: str,
        headers: dict[str, str],
        json_body: dict[str, Any],
        timeout: RequestTimeout,
        max_bytes: int,
    ) -> BodyResponse:
        """POST ``json_body`` and read the answer, raising :class:`BodyTooLarge` past ``max_bytes``
        (compressed or decoded) and :class:`BadEncoding` for an encoding we did not ask for."""
        async with self._open(url, base_url, headers, json_body, timeout) as response:
            return BodyResponse(
                response.status_code, response.headers, await _read_bounded(response, max_bytes)
            )

    async def aclose(self) -> None:
        """Close the sessions that belong to the running loop."""
        loop_id = id(asyncio.get_running_loop())
        for key in [k for k in self._clients if k[0] == loop_id]:
            client = self._clients.pop(key)
            await client.aclose()


def _drop_pools(pools: dict[tuple[int, str], Any]) -> None:
    for pool in pools.values():
        pool.close_now()
    pools.clear()


class _HttpxResponse:
    """An httpx response (an injected transport) as the readers below see it."""

    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.headers = response.headers
        self._response = response

    def raw_chunks(self) -> AsyncIterator[bytes]:
        return self._response.aiter_raw()


class StreamingBody:
    """A response whose body is read as it arrives, within the caps (see :meth:`HttpPool.stream`)."""

    def __init__(self, response: Any, max_bytes: int) -> None:
        self.status_code = response.status_code
        self.headers = response.headers
        self._response = response
        self._max_bytes = max_bytes

    def chunks(self) -> AsyncIterator[bytes]:
        """The decoded body, piece by piece as the wire delivers it."""
        return _iter_bounded(self._response, self._max_bytes)  # not wrapped: one generator fewer a piece

    async def read(self) -> bytes:
        return await _read_bounded(self._response, self._max_bytes)


async def _iter_bounded(response: Any, max_bytes: int) -> AsyncIterator[bytes]:
    length = response.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise BodyTooLarge("compressed, by its content-length", max_bytes)
    decoder = _Decoder(response.headers.get("content-encoding", ""), max_bytes)
    wire = 0
    async for chunk in response.raw_chunks():
        wire += len(chunk)
        if wire > max_bytes:
            raise BodyTooLarge("compressed", max_bytes)
        out: list[bytes] = []
        decoder.feed(chunk, out)
        for piece in out:
            yield piece
    out = []
    decoder.flush(out)
    for piece in out:
        yield piece


async def _read_bounded(response: Any, max_bytes: int) -> bytes:
    return b"".join([piece async for piece in _iter_bounded(response, max_bytes)])
