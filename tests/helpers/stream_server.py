"""A loopback HTTP/1.1 server that replays streamed provider answers with controllable timing and failures.

Real sockets, no mocks: ``StreamServer`` listens on 127.0.0.1 on a free port, accepts in a background
thread and serves each connection in its own thread (keep-alive honoured). Replies are queued and served
in order, one per request; when the queue is empty the answer is a 500 with a JSON error::

    from helpers.stream_events import openai_events

    with StreamServer() as server:
        release = threading.Event()
        server.stream(openai_events(["Hel", "lo"], model="m", prompt_tokens=3, completion_tokens=2),
                      gates={2: release})
        ... start the client against server.url, wait for its first token ...
        assert server.sent[0].count == 2      # events 0 and 1 are out, event 2 waits for `release`
        release.set()

A streamed reply is sent with ``Transfer-Encoding: chunked``, one HTTP chunk per event, each written
straight to the socket (``TCP_NODELAY``, no buffering), so a client sees event ``i`` before event ``i+1``
exists. ``delays``/``gates`` hold an event back; ``cut_after=k`` kills the connection after ``k`` events
without the terminating zero-length chunk (by default with ``SO_LINGER 0``: the client sees a reset,
the "server killed mid-stream" case). ``server.sent`` records, per answered request, how many events went
out and when (``time.monotonic()``, the clock to compare a client's own timestamps with).
"""

from __future__ import annotations

import contextlib
import http
import json
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .provider_server import RecordedRequest

__all__ = ["PlainReply", "RecordedRequest", "Sent", "StreamReply", "StreamServer"]

MAX_HEAD_BYTES = 64 * 1024


@dataclass
class StreamReply:
    """One queued streamed reply (see :meth:`StreamServer.stream`)."""

    events: list[bytes]
    status: int = 200
    content_type: str = "text/event-stream"
    headers: dict[str, str] = field(default_factory=dict)
    delays: dict[int, float] = field(default_factory=dict)
    gates: dict[int, threading.Event] = field(default_factory=dict)
    cut_after: int | None = None
    cut_with: Literal["reset", "close"] = "reset"


@dataclass
class PlainReply:
    """One queued plain reply with a Content-Length (see :meth:`StreamServer.reply`)."""

    status: int
    body: Any = None  # dict/list -> JSON, str -> UTF-8, bytes as is, None -> empty
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Sent:
    """What the server actually sent for one request (``server.sent[i]`` answers ``server.requests[i]``).

    ``times[j]`` is ``time.monotonic()`` right after event ``j`` was handed to the kernel (on loopback: to
    the client); ``count`` how many events went out. ``outcome``: ``"sending"`` while under way, then
    ``"complete"`` (terminating chunk sent, or a plain reply written), ``"cut"`` (``cut_after`` reached),
    ``"client_gone"`` (the client closed or reset first), ``"gate_timeout"`` (a gate was never released
    within the server's ``gate_timeout``; the connection was reset) or ``"stopped"`` (server shut down).
    """

    kind: Literal["stream", "reply", "default"]
    status: int
    planned: int  # events in the reply (0 for a plain reply)
    headers_at: float | None = None
    times: list[float] = field(default_factory=list)
    finished_at: float | None = None
    outcome: str = "sending"
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False, compare=False)

    @property
    def count(self) -> int:
        return len(self.times)

    def wait(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` events were sent (True) or the reply ended / ``timeout`` passed."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self.count >= count or self.outcome != "sending", timeout
            ) and (self.count >= count)

    def wait_done(self, timeout: float = 5.0) -> bool:
        """Block until the reply has ended (any outcome); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.outcome != "sending", timeout)

    def _event_sent(self) -> None:
        with self._cond:
            self.times.append(time.monotonic())
            self._cond.notify_all()

    def _finish(self, outcome: str) -> None:
        with self._cond:
            if self.outcome == "sending":
                self.outcome = outcome
                self.finished_at = time.monotonic()
            self._cond.notify_all()


class _Abort(Exception):
    """The connection must end now (after the reply's outcome was recorded)."""

    def __init__(self, how: Literal["reset", "close"]) -> None:
        super().__init__(how)
        self.how = how


class StreamServer:
    """Records requests and plays back queued streamed or plain replies, in order."""

    def __init__(self, *, gate_timeout: float = 30.0) -> None:
        self.requests: list[RecordedRequest] = []
        self.sent: list[Sent] = []
        self.gate_timeout = gate_timeout
        self._replies: deque[StreamReply | PlainReply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._listener.settimeout(0.05)
        self._threads: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()
        self._accept_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the API for tests

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}"

    @property
    def count(self) -> int:
        """Requests received so far."""
        with self._lock:
            return len(self.requests)

    @property
    def last(self) -> RecordedRequest:
        return self.requests[-1]

    def stream(
        self,
        events: Sequence[bytes],
        *,
        status: int = 200,
        content_type: str = "text/event-stream",
        headers: Mapping[str, str] | None = None,
        delays: Mapping[int, float] | None = None,
        gates: Mapping[int, threading.Event] | None = None,
        cut_after: int | None = None,
        cut_with: Literal["reset", "close"] = "reset",
    ) -> StreamReply:
        """Queue one streamed reply: the status line and headers at once, then one HTTP chunk per event.

        ``delays[i]`` seconds are slept and ``gates[i]`` is waited for (in that order: the gate first)
        before event ``i`` is sent; ``i == len(events)`` holds back the end of the body (the zero-length
        chunk). A gate not set within ``gate_timeout`` (30 s) resets the connection (outcome
        ``"gate_timeout"``) so that a forgotten gate fails the test instead of hanging it.
        ``cut_after=k``: after ``k`` events (0 = right after the headers; ``len(events)`` = every event
        but no terminating chunk) the connection is killed: ``cut_with="reset"`` (default) closes with
        ``SO_LINGER 0`` so the client gets a TCP reset, ``"close"`` closes cleanly (FIN) with the chunked
        body unfinished. The events already written are drained from the send buffer first, so the
        client can read them before the reset. ``headers`` are sent as given (a ``content-type`` there
        overrides ``content_type``).
        """
        events = [bytes(e) for e in events]
        if cut_after is not None and not 0 <= cut_after <= len(events):
            raise ValueError(f"cut_after={cut_after} outside 0..{len(events)}")
        if any(not isinstance(e, bytes) or not e for e in events):
            raise ValueError("every event must be non-empty bytes (an empty chunk would end the body)")
        reply = StreamReply(
            events=events,
            status=status,
            content_type=content_type,
            headers=dict(headers or {}),
            delays=dict(delays or {}),
            gates=dict(gates or {}),
            cut_after=cut_after,
            cut_with=cut_with,
        )
        with self._lock:
            self._replies.append(reply)
        return reply

    def reply(self, status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> PlainReply:
        """Queue one plain reply with a Content-Length (JSON unless ``headers`` name a content-type):
        for error statuses such as 429/503 with ``retry-after``."""
        plain = PlainReply(status, body, dict(headers or {}))
        with self._lock:
            self._replies.append(plain)
        return plain

    @property
    def pending(self) -> int:
        """Queued replies not yet served."""
        with self._lock:
            return len(self._replies)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> StreamServer:
        self._accept_thread = threading.Thread(target=self._accept_loop, name="stream-server", daemon=True)
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            live = list(self._connections)
        for conn in live:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(timeout=5)
        for sent in self.sent:
            sent._finish("stopped")

    def __enter__(self) -> StreamServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ serving

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._connections.add(conn)
            thread = threading.Thread(target=self._serve_connection, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve_connection(self, conn: socket.socket) -> None:
        buffer = b""
        how: Literal["reset", "close"] = "close"
        try:
            while not self._stopping.is_set():
                parsed = self._read_request(conn, buffer)
                if parsed is None:
                    break
                request, buffer, keep_alive = parsed
                with self._lock:
                    self.requests.append(request)
                    reply = self._replies.popleft() if self._replies else None
                try:
                    if isinstance(reply, StreamReply):
                        self._send_stream(conn, reply)
                    else:
                        self._send_plain(conn, reply)
                except _Abort as abort:
                    how = abort.how
                    break
                if not keep_alive:
                    break
        except OSError:
            pass
        finally:
            with self._lock:
                self._connections.discard(conn)
            if how == "reset":
                with contextlib.suppress(OSError):
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                conn.close()

    def _recv(self, conn: socket.socket) -> bytes | None:
        """Some bytes, b"" at EOF, None when the server stops."""
        while not self._stopping.is_set():
            ready, _, _ = select.select([conn], [], [], 0.05)
            if ready:
                try:
                    return conn.recv(65536)
                except OSError:
                    return b""
        return None

    def _read_request(self, conn: socket.socket, buffer: bytes) -> tuple[RecordedRequest, bytes, bool] | None:
        while b"\r\n\r\n" not in buffer:
            if len(buffer) > MAX_HEAD_BYTES:
                return None
            data = self._recv(conn)
            if not data:
                return None
            buffer += data
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        lines = head.decode("iso-8859-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body, buffer = self._read_chunked_body(conn, buffer)
            if body is None:
                return None
        else:
            length = int(headers.get("content-length") or 0)
            while len(buffer) < length:
                data = self._recv(conn)
                if not data:
                    return None
                buffer += data
            body, buffer = buffer[:length], buffer[length:]
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" and (version.upper() != "HTTP/1.0" or connection == "keep-alive")
        return RecordedRequest(method, target, headers, body, parsed), buffer, keep_alive

    def _read_chunked_body(self, conn: socket.socket, buffer: bytes) -> tuple[bytes | None, bytes]:
        body = b""
        while True:
            while b"\r\n" not in buffer:
                data = self._recv(conn)
                if not data:
                    return None, buffer
                buffer += data
            size_line, _, buffer = buffer.partition(b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            while len(buffer) < size + 2:
                data = self._recv(conn)
                if not data:
                    return None, buffer
                buffer += data
            if size == 0:
                # trailers (none expected) end with an empty line
                while not buffer.startswith(b"\r\n") and b"\r\n\r\n" not in buffer:
                    data = self._recv(conn)
                    if not data:
                        return None, buffer
                    buffer += data
                end = 2 if buffer.startswith(b"\r\n") else buffer.index(b"\r\n\r\n") + 4
                return body, buffer[end:]
            body += buffer[:size]
            buffer = buffer[size + 2 :]

    @staticmethod
    def _status_line(status: int) -> bytes:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = {529: "Site Overloaded"}.get(status, "Status")
        return f"HTTP/1.1 {status} {phrase}\r\n".encode("ascii")

    @staticmethod
    def _header_block(headers: Mapping[str, str]) -> bytes:
        return b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers.items()) + b"\r\n"

    def _send_plain(self, conn: socket.socket, reply: PlainReply | None) -> None:
        kind: Literal["reply", "default"] = "reply"
        if reply is None:
            kind = "default"
            reply = PlainReply(
                500,
                {"error": {"message": "StreamServer: no reply queued", "type": "server_error", "code": 500}},
            )
        if isinstance(reply.body, bytes):
            payload = reply.body
        elif isinstance(reply.body, str):
            payload = reply.body.encode("utf-8")
        elif reply.body is None:
            payload = b""
        else:
            payload = json.dumps(reply.body).encode("utf-8")
        sent = Sent(kind=kind, status=reply.status, planned=0)
        with self._lock:
            self.sent.append(sent)
        headers = dict(reply.headers)
        if "content-type" not in {k.lower() for k in headers}:
            headers["content-type"] = "application/json"
        headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
        headers["content-length"] = str(len(payload))
        try:
            conn.sendall(self._status_line(reply.status) + self._header_block(headers) + payload)
        except OSError:
            sent._finish("client_gone")
            raise
        sent.headers_at = time.monotonic()
        sent._finish("complete")

    def _send_stream(self, conn: socket.socket, reply: StreamReply) -> None:
        sent = Sent(kind="stream", status=reply.status, planned=len(reply.events))
        with self._lock:
            self.sent.append(sent)
        headers = {"content-type": reply.content_type, "cache-control": "no-cache"}
        for name, value in reply.headers.items():
            headers = {k: v for k, v in headers.items() if k.lower() != name.lower()}
            headers[name] = value
        headers = {
            k: v for k, v in headers.items() if k.lower() not in ("content-length", "transfer-encoding")
        }
        headers["transfer-encoding"] = "chunked"
        try:
            conn.sendall(self._status_line(reply.status) + self._header_block(headers))
            sent.headers_at = time.monotonic()
            for index in range(len(reply.events) + 1):
                if reply.cut_after is not None and index == reply.cut_after:
                    _drain(conn)
                    sent._finish("cut")
                    raise _Abort(reply.cut_with)
                self._hold(reply, index, sent)
                if index == len(reply.events):
                    conn.sendall(b"0\r\n\r\n")
                    break
                event = reply.events[index]
                conn.sendall(f"{len(event):x}\r\n".encode("ascii") + event + b"\r\n")
                sent._event_sent()
        except OSError:
            sent._finish("stopped" if self._stopping.is_set() else "client_gone")
            raise
        sent._finish("complete")

    def _hold(self, reply: StreamReply, index: int, sent: Sent) -> None:
        """Apply the gate, then the delay, for event ``index``."""
        gate = reply.gates.get(index)
        if gate is not None:
            deadline = time.monotonic() + self.gate_timeout
            while not gate.wait(0.02):
                if self._stopping.is_set():
                    sent._finish("stopped")
                    raise _Abort("reset")
                if time.monotonic() >= deadline:
                    sent._finish("gate_timeout")
                    raise _Abort("reset")
        delay = reply.delays.get(index)
        if delay and self._stopping.wait(delay):
            sent._finish("stopped")
            raise _Abort("reset")


def _drain(conn: socket.socket, timeout: float = 1.0) -> None:
    """Wait (briefly) until the kernel's send queue for ``conn`` is empty, so that a reset that follows
    does not discard events already written (Linux ``SIOCOUTQ``; elsewhere a short pause)."""
    try:
        import fcntl
        import termios

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = struct.unpack("i", fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
            if pending == 0:
                return
            time.sleep(0.002)
    except (ImportError, OSError, AttributeError):
        time.sleep(0.05)
