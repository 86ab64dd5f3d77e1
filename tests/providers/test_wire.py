"""The wire (``orchestrator.providers.wire``): HTTP/1.1 on asyncio against real loopback servers that
misbehave byte by byte: keep-alive kept or refused, idle connections closed under it, bodies by length,
by chunks and by close, answers cut short, garbage, silence, TLS, and a CONNECT proxy.

Each server is a raw asyncio server in the test's loop, so the test decides every byte it sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable

import pytest
from helpers.fault_server import Blackhole

from orchestrator.providers import wire
from orchestrator.providers.wire import (
    ConnectFailed,
    ConnectionDropped,
    ConnectTimedOut,
    InvalidRequest,
    ProtocolError,
    ReadTimedOut,
    WirePool,
    parse_target,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def ok(body: bytes = b'{"ok":true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body


class Server:
    """A loopback server: ``handle(reader, writer, request_number)`` per request; counts connections."""

    def __init__(self, answer: Callable[[int], bytes | Awaitable[bytes]], close_after: bool = False) -> None:
        self.answer = answer
        self.close_after = close_after
        self.connections = 0
        self.requests: list[bytes] = []
        self.open_now = 0
        self.most_open = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                reply = self.answer(len(self.requests))
                if not isinstance(reply, bytes):
                    reply = await reply
                writer.write(reply)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1/chat"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()


def context() -> ssl.SSLContext:
    return ssl.create_default_context()


async def post(
    pool: WirePool, url: str, body: bytes = b"{}", read: float = 5.0, connect: float = 5.0
) -> bytes:
    response = await pool.post(parse_target(url), {"content-type": "application/json"}, body, read, connect)
    try:
        return b"".join([chunk async for chunk in response.raw_chunks()])
    finally:
        response.release()


async def test_keep_alive_reuses_one_connection_and_sends_a_well_formed_request() -> None:
    async with Server(lambda n: ok(b'{"n":%d}' % n)) as server:
        pool = WirePool(context)
        assert await post(pool, server.url, b'{"a":1}') == b'{"n":1}'
        assert await post(pool, server.url) == b'{"n":2}'
        await pool.aclose()
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/chat HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % server.port)
    assert b"content-type: application/json\r\n" in first and b"Content-Length: 7\r\n\r\n" in first
    assert first.endswith(b'{"a":1}')


async def test_an_idle_connection_the_server_closed_is_dropped_and_the_request_sent_once() -> None:
    async with Server(lambda n: ok(), close_after=True) as server:  # closes without saying so
        pool = WirePool(context)
        await post(pool, server.url)
        await asyncio.sleep(0.05)  # the close arrives while the connection is idle
        await post(pool, server.url)
        await pool.aclose()
    assert server.connections == 2 and len(server.requests) == 2


async def test_user_and_password_in_the_url_are_sent_as_basic_auth_unless_the_caller_sets_one() -> None:
    async with Server(lambda n: ok()) as server:
        url = server.url.replace("http://", "http://vllm:s3cret@")
        pool = WirePool(context)
        await post(pool, url)
        response = await pool.post(parse_target(url), {"Authorization": "Bearer k"}, b"", 5.0, 5.0)
        response.release()
        await pool.aclose()
    assert b"Authorization: Basic dmxsbTpzM2NyZXQ=\r\n" in server.requests[0]
    assert b"Authorization: Bearer k\r\n" in server.requests[1] and b"Basic" not in server.requests[1]


async def test_connection_close_is_honoured() -> None:
    async with Server(lambda n: ok(extra=b"connection: close\r\n")) as server:
        pool = WirePool(context)
        await post(pool, server.url)
        await post(pool, server.url)
        await pool.aclose()
    assert server.connections == 2


async def test_a_chunked_body_arrives_piece_by_piece() -> None:
    async def answer(n: int) -> bytes:  # the first chunk only: the rest never comes
        return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n"

    async with Server(answer) as server:
        pool = WirePool(context)
        response = await pool.post(parse_target(server.url), {}, b"{}", 5.0, 5.0)
        chunks = response.raw_chunks()
        assert await chunks.__anext__() == b"first"  # before the rest exists
        response.release()  # not complete: the connection is closed, not pooled
        await pool.aclose()


async def test_a_body_delimited_by_the_close_is_read_whole() -> None:
    async with Server(lambda n: b"HTTP/1.1 200 OK\r\n\r\nall of it", close_after=True) as server:
        pool = WirePool(context)
        assert await post(pool, server.url) == b"all of it"
        await pool.aclose()


async def test_an_answer_cut_short_is_a_dropped_connection_that_was_sent() -> None:
    async with Server(
        lambda n: b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten..", close_after=True
    ) as s:
        pool = WirePool(context)
        with pytest.raises(ConnectionDropped, match="before its body ended") as caught:
            await post(pool, s.url)
        assert caught.value.sent
    async with Server(lambda n: b"", close_after=True) as s:  # not even a status line
        with pytest.raises(ConnectionDropped, match="status line and headers"):
            await post(pool, s.url)
        await pool.aclose()


async def test_garbage_is_a_protocol_error() -> None:
    async with Server(lambda n: b"SSH-2.0-OpenSSH_9.6\r\n\r\n") as server:
        pool = WirePool(context)
        with pytest.raises(ProtocolError, match="not valid HTTP/1.1"):
            await post(pool, server.url)
        await pool.aclose()


async def test_two_answers_to_one_request_close_the_connection() -> None:
    async with Server(lambda n: ok(b"one") + ok(b"two")) as server:
        pool = WirePool(context)
        assert await post(pool, server.url) == b"one"
        assert await post(pool, server.url) == b"one"  # a new connection, not the second answer
        await pool.aclose()
    assert server.connections == 2


async def test_informational_answers_are_skipped() -> None:
    async with Server(lambda n: b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"real")) as server:
        pool = WirePool(context)
        assert await post(pool, server.url) == b"real"
        await pool.aclose()


async def test_silence_is_a_read_timeout_and_the_request_was_sent() -> None:
    async def never(n: int) -> bytes:
        await asyncio.sleep(30)
        return b""

    async with Server(never) as server:
        pool = WirePool(context)
        started = time.monotonic()
        with pytest.raises(ReadTimedOut, match="no byte of the answer for 0.3 s") as caught:
            await post(pool, server.url, read=0.3)
        assert 0.25 < time.monotonic() - started < 3 and caught.value.sent
        await pool.aclose()


async def test_a_drip_resets_the_read_timeout_at_every_byte() -> None:
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
        for _ in range(4):  # 0.8 s in all, each gap under the 0.3 s read timeout
            await asyncio.sleep(0.2)
            writer.write(b"x")
        await writer.drain()

    listener = await asyncio.start_server(drip, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    pool = WirePool(context)
    try:
        assert await post(pool, f"http://127.0.0.1:{port}/v1", b"", read=0.3) == b"xxxx"
    finally:
        await pool.aclose()
        listener.close()


async def test_refused_and_unreachable_connects_were_never_sent() -> None:
    async with Server(lambda n: ok()) as server:
        url = server.url
    pool = WirePool(context)
    with pytest.raises(ConnectFailed, match="cannot connect to 127.0.0.1") as caught:
        await post(pool, url)  # the server is gone: refused
    assert not caught.value.sent
    hole = Blackhole().start()
    try:
        with pytest.raises(ConnectTimedOut, match="within 0.3 s") as caught:
            await post(pool, hole.url, connect=0.3)
        assert not caught.value.sent
    finally:
        hole.stop()
    await pool.aclose()


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    async with Server(lambda n: ok()) as server:
        pool = WirePool(context)
        with pytest.raises(InvalidRequest) as caught:
            await pool.post(
                parse_target(server.url), {"authorization": "Bearer sk-secret\r\nx: y"}, b"", 1, 1
            )
        assert "sk-secret" not in str(caught.value) and not caught.value.sent
        await pool.aclose()
    assert server.connections == 0


async def test_the_pool_holds_at_most_max_connections_and_a_wait_past_connect_times_out() -> None:
    async def slow(n: int) -> bytes:
        await asyncio.sleep(0.2)
        return ok()

    async with Server(slow) as server:
        pool = WirePool(context, max_connections=2)
        await asyncio.gather(*(post(pool, server.url) for _ in range(6)))
        assert server.most_open == 2 and len(server.requests) == 6
        with pytest.raises(ConnectTimedOut, match="no free connection"):
            await asyncio.gather(*(post(pool, server.url, connect=0.05) for _ in range(3)))
        await pool.aclose()


async def test_a_large_body_survives_the_reader_pausing_the_socket() -> None:
    body = bytes(range(256)) * (5 * 4096)  # 5 MiB, past MAX_BUFFERED
    async with Server(lambda n: ok(body)) as server:
        pool = WirePool(context)
        response = await pool.post(parse_target(server.url), {}, b"{}", 5.0, 5.0)
        got = []
        async for chunk in response.raw_chunks():
            got.append(chunk)
            await asyncio.sleep(0.001)  # a slow reader
        response.release()
        assert b"".join(got) == body
        await pool.aclose()


@pytest.fixture
def tls():
    trustme = pytest.importorskip("trustme", reason="trustme (a dev dependency) makes the test certificate")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


async def test_tls_to_a_server_with_a_trusted_certificate_and_refusal_of_an_untrusted_one(tls) -> None:
    server_ctx, client_ctx = tls
    handler = Server(lambda n: ok(b"secure"))
    listener = await asyncio.start_server(handler._serve, "127.0.0.1", 0, ssl=server_ctx)
    port = listener.sockets[0].getsockname()[1]
    try:
        pool = WirePool(lambda: client_ctx)
        assert await post(pool, f"https://127.0.0.1:{port}/v1") == b"secure"
        await pool.aclose()
        untrusting = WirePool(ssl.create_default_context)
        with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED") as caught:
            await post(untrusting, f"https://127.0.0.1:{port}/v1")
        assert not caught.value.sent
        await untrusting.aclose()
    finally:
        listener.close()


async def test_https_through_a_connect_proxy_from_the_environment(tls, monkeypatch) -> None:
    server_ctx, client_ctx = tls
    handler = Server(lambda n: ok(b"tunnelled"))
    listener = await asyncio.start_server(handler._serve, "127.0.0.1", 0, ssl=server_ctx)
    port = listener.sockets[0].getsockname()[1]
    asked: list[bytes] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):  # the other side went first
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        asked.append(head)
        host, _, target_port = head.split()[1].decode().rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(target_port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    proxy_server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    proxy_port = proxy_server.sockets[0].getsockname()[1]
    for name in ("HTTP_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://user:p%40ss@127.0.0.1:{proxy_port}")
    try:
        pool = WirePool(lambda: client_ctx)
        assert await post(pool, f"https://127.0.0.1:{port}/v1") == b"tunnelled"
        await pool.aclose()
    finally:
        listener.close()
        proxy_server.close()
    assert asked[0].startswith(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n" % port)
    assert b"Proxy-Authorization: Basic dXNlcjpwQHNz\r\n" in asked[0]  # user:p@ss, unquoted
    assert handler.requests[0].startswith(b"POST /v1 HTTP/1.1\r\n")  # origin form inside the tunnel


def test_targets_parse_hosts_ports_and_proxies(monkeypatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    t = parse_target("https://api.example.com/v1/chat?x=1")
    assert (t.host, t.port, t.request_path, t.host_header, t.proxy) == (
        "api.example.com",
        443,
        b"/v1/chat?x=1",
        b"api.example.com",
        None,
    )
    assert parse_target("http://[::1]:8080/v1").host_header == b"[::1]:8080"
    assert parse_target("http://h/v1/modèle%20x").request_path == b"/v1/mod%C3%A8le%20x"  # encoded once
    assert parse_target("https://user:p%40ss@h/v1").authorization == b"Basic dXNlcjpwQHNz"
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    via = parse_target("http://api.example.com/v1")
    assert via.proxy == ("proxy.internal", 3128) and via.request_path == b"http://api.example.com/v1"
    monkeypatch.setenv("NO_PROXY", ".example.com")
    assert parse_target("http://api.example.com/v1").proxy is None
    monkeypatch.setenv("HTTPS_PROXY", "socks5://proxy.internal:1080")
    with pytest.raises(ConnectFailed, match="only http:// proxies"):
        parse_target("https://other.org/v1")
    with pytest.raises(InvalidRequest, match="not an http"):
        parse_target("ftp://example.com/")
    assert wire.Headers({"retry-after": "3"}).get("Retry-After") == "3"


async def test_the_adapter_types_each_wire_failure_and_says_whether_it_may_be_billed() -> None:
    from orchestrator import errors as E
    from orchestrator.config import ModelSpec
    from orchestrator.providers.base import ChatRequest
    from orchestrator.providers.http import HttpPool
    from orchestrator.providers.openai import ADAPTER
    from orchestrator.types import Message

    def request(url: str, **spec: object) -> ChatRequest:
        model = ModelSpec(id="w/m", provider="openai", model="m", base_url=url, timeout=0.3, **spec)
        return ChatRequest(
            spec=model, messages=[Message(role="user", content="hi")], params={"max_tokens": 4}
        )

    pool = HttpPool()
    async with Server(lambda n: b"garbage\r\n\r\n") as server:
        with pytest.raises(E.ConnectionFailedError, match="not valid HTTP/1.1") as caught:
            await ADAPTER.send(request(server.url), pool)
        assert caught.value.maybe_billed
        url = server.url
    with pytest.raises(E.ConnectionFailedError, match="cannot connect") as caught:
        await ADAPTER.send(request(url), pool)  # the server is gone
    assert not caught.value.maybe_billed

    async def never(n: int) -> bytes:
        await asyncio.sleep(30)
        return b""

    async with Server(never) as server:
        with pytest.raises(E.ProviderTimeoutError, match="no byte of the answer for 0.3 s") as caught:
            await ADAPTER.send(request(server.url), pool)
        assert caught.value.maybe_billed
        headers = {"x-team": "a\r\nInjected: 1"}
        with pytest.raises(E.BadRequestError, match="cannot be sent") as caught:
            await ADAPTER.send(request(server.url, headers=headers), pool)
        assert not caught.value.maybe_billed and not caught.value.retryable
    await pool.aclose()


async def test_the_pool_trusts_the_ca_named_by_ssl_cert_file(tmp_path, monkeypatch) -> None:
    """The real path: HttpPool -> the shared TLS context (built once per process, from the environment)."""
    trustme = pytest.importorskip("trustme", reason="trustme (a dev dependency) makes the test certificate")

    from orchestrator.providers import http
    from orchestrator.providers.http import HttpPool, RequestTimeout

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    handler = Server(lambda n: ok(b'{"via":"tls"}'))
    listener = await asyncio.start_server(handler._serve, "127.0.0.1", 0, ssl=server_ctx)
    url = f"https://127.0.0.1:{listener.sockets[0].getsockname()[1]}/v1"
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    monkeypatch.setattr(http, "_ssl_context", None)  # built again, from this environment
    pool = HttpPool()
    try:
        answer = await pool.post(
            url, base_url=url, headers={}, json_body={}, timeout=RequestTimeout(5, 5), max_bytes=1000
        )
        assert (answer.status_code, answer.content) == (200, b'{"via":"tls"}')
    finally:
        await pool.aclose()
        listener.close()


def test_one_http_pool_serves_event_loops_one_after_another() -> None:
    """A notebook runs ``asyncio.run`` per cell: each loop gets its own connections, never a dead loop's
    (a new loop can even reuse the dead one's id)."""
    from helpers.provider_server import ProviderServer

    from orchestrator.config import ModelSpec
    from orchestrator.providers.base import ChatRequest
    from orchestrator.providers.http import HttpPool
    from orchestrator.providers.openai import ADAPTER
    from orchestrator.types import Message

    answer = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    with ProviderServer() as server:
        for _ in range(4):
            server.reply(200, answer)
        spec = ModelSpec(id="w/m", provider="openai", model="m", base_url=server.url + "/v1", timeout=2)
        req = ChatRequest(spec=spec, messages=[Message(role="user", content="hi")], params={"max_tokens": 4})
        pool = HttpPool()
        texts = [asyncio.run(ADAPTER.send(req, pool)).text for _ in range(2)]
        # the id of a loop that has gone can be the next loop's: make it so
        dead = asyncio.new_event_loop()
        dead.run_until_complete(ADAPTER.send(req, pool))
        dead.close()
        (key,) = [k for k in pool._clients if k[0] == id(dead)]
        loop = asyncio.new_event_loop()
        left = pool._clients[(id(loop), key[1])] = pool._clients.pop(key)

        async def pool_of_this_loop() -> object:
            return pool.client(spec.base_url or "")

        assert loop.run_until_complete(pool_of_this_loop()) is not left  # never the dead loop's sockets
        texts.append(loop.run_until_complete(ADAPTER.send(req, pool)).text)
        loop.close()
    assert texts == ["hi", "hi", "hi"] and len(server.requests) == 4
