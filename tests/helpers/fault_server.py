"""A fault-injecting OpenAI-compatible server on loopback: real sockets, a raw asyncio HTTP/1.1 server.

It runs its own event loop in a background thread, so the client under test and the server never
share a loop. Each ``POST .../chat/completions`` is answered, by default, with a normal completion; with
``fault_rate`` > 0 a seeded draw (per call id and attempt, so the draw does not depend on arrival order)
picks one of ``faults`` (any mix of :data:`FAULTS` and :data:`HOSTILE_FAULTS`; a name given twice is
drawn twice as often).

:data:`FAULTS`, what a flaky but honest provider does:

- ``429``: rate limited, with ``retry-after-ms`` (50-200 ms) or ``retry-after: 0``;
- ``500``, ``503``, ``529``: server errors with an OpenAI-style error body;
- ``slow``: the answer comes after ``slow_s`` (set it above the client's read timeout);
- ``reset``: the connection is closed without a response;
- ``invalid_json``: status 200 and a body that is not JSON;
- ``truncated``: Content-Length larger than the body sent, then the connection is closed;
- ``error_body``: status 200 with ``{"error": {...}}`` and no choices.

:data:`HOSTILE_FAULTS`, what a broken or malicious server does (for the fault soak):

- ``drip``: status 200 and its headers at once, then the JSON body one byte every ``drip_interval_s``:
  every read succeeds, so only a deadline on the whole attempt stops it;
- ``bomb``: ``content-encoding: gzip``, a small body (:func:`gzip_bomb`) that inflates to
  ``bomb_decoded_bytes`` (1 GiB of ``bomb_fill`` from ~1 MiB by default), sent in chunks;
- ``junk``: status 200, ``application/json``, ``junk_bytes`` (50 MB) of random bytes, sent in chunks;
- ``echo``: a normal completion whose text repeats the ``authorization`` header and every ``x-*``
  request header: a server that leaks the key back into the answer;
- ``no_usage``: a normal completion without the ``usage`` object;
- ``negative_usage``: usage with negative counts; ``string_usage``: usage counts as strings (``"12"``);
- ``surrogate``: a completion whose text holds the JSON escape of a lone surrogate (``\\ud83d``), written
  as raw JSON text so that the escape reaches the client as such;
- ``nonstring_content``: ``message.content`` is a list of ints or an int;
- ``redirect``: 302 to ``redirect_location`` (another host, where the key must never be sent);
- ``huge_error``: status 500 with a ``huge_error_bytes`` (1 MB) JSON body without ``error``/``message``.

A ``script(request) -> Action | None`` decides instead of the draw when it returns an Action.

**Counting.** A request is counted, and recorded in ``requests``, the moment its head (request line and
headers) has arrived, not after its body: a request the client gave up on mid-body still counts. Its call
id is the ``[call:...]`` tag in the body (looked for in whatever part of the body arrived), else the
``x-call-id`` request header, else ``anon-N``; it is filled in, with the attempt number per call id, once
the body has arrived or the connection has ended. ``connections`` counts accepted connections and
``empty_connections`` those that closed before a single byte of a request: a client that connected and
gave up before sending is visible there and nowhere else. ``max_in_flight`` is the peak of concurrent
requests (from head arrival to the end of the answer). A request's ``t`` is when the kernel received its
first byte (``SO_TIMESTAMPNS``), not when the server's loop read it: the server shares the GIL with the
client under test, and on a loaded machine a late read would bunch arrivals and inflate ``max_rate``.

**Billing.** ``bills`` holds one :class:`Bill` per request the provider would bill: a 200 answer that
carries a generated completion (kinds in :data:`BILLED_KINDS`: ``ok``, ``slow``, ``drip``, ``echo``,
``no_usage``, ``negative_usage``, ``string_usage``, ``surrogate``, ``nonstring_content``, and a scripted
``ok`` whose body has ``choices``) and whose every byte was written while the client was still connected
(a drip counts once its last byte is out; a slow answer whose client had already hung up does not count).
Each bill holds the true prompt and completion tokens, whatever the usage object claimed (negative,
strings, absent), so :meth:`FaultServer.true_cost` is what the provider would charge. Errors, resets,
redirects, bombs, junk and invalid or truncated bodies are never billed.

Every streaming write (drip, bomb, junk, huge error, slow) stops as soon as the client disconnects, and
:meth:`FaultServer.stop` cancels whatever is still running, so it returns within a second or so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import random
import re
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

FAULTS = ("429", "500", "503", "529", "slow", "reset", "invalid_json", "truncated", "error_body")
HOSTILE_FAULTS = (
    "drip",
    "bomb",
    "junk",
    "echo",
    "no_usage",
    "negative_usage",
    "string_usage",
    "surrogate",
    "nonstring_content",
    "redirect",
    "huge_error",
)
# Action kinds that answer with a generated completion: the provider bills them once delivered.
BILLED_KINDS = frozenset(
    {
        "ok",
        "slow",
        "drip",
        "echo",
        "no_usage",
        "negative_usage",
        "string_usage",
        "surrogate",
        "nonstring_content",
    }
)
KINDS = frozenset({"ok", "status", *FAULTS, *HOSTILE_FAULTS}) - {"429", "500", "503", "529"}
CALL_ID = re.compile(r"\[call:([\w.\-]+)\]")
CALL_ID_HEADER = "x-call-id"
LONE_SURROGATE = "\\ud83d"  # the six characters of the JSON escape, not the code point
REASONS = {
    200: "OK",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    529: "Overloaded",
}
CHUNK = 64 * 1024
POLL_S = 0.02  # how often a waiting or streaming answer checks that its client is still there


@dataclass
class Request:
    """One request, recorded when its head arrived; body, call id and attempt are filled in later."""

    t: float  # time.monotonic() of the kernel's receive time of its first byte (not when it was read)
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes  # what arrived of the body (b"" until it has arrived)
    json: Any  # the parsed body; None until it has arrived, or if it is not JSON
    call_id: str  # "" until the body has arrived (or the connection ended)
    attempt: int  # 1 for the first request of this call id; 0 until the call id is known
    complete: bool = True  # False: the connection ended before the whole body arrived
    kind: str = ""  # the action that answered it ("429", "ok", "drip", ...)


@dataclass
class Bill:
    """One answer the provider would bill, with its true token counts."""

    call_id: str
    attempt: int
    kind: str
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Action:
    """How to answer one request. ``kind`` is ``ok``, ``status`` (``status`` with ``body``) or a fault
    name; ``content`` replaces the completion's ``message.content`` for the completion kinds."""

    kind: str = "ok"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # dict -> JSON, str/bytes as is, callable(request) -> either
    delay_s: float = 0.0
    content: Any = None

    @classmethod
    def error(
        cls, status: int, message: str = "injected", headers: dict[str, str] | None = None, body: Any = None
    ) -> Action:
        payload = (
            body
            if body is not None
            else {"error": {"message": message, "type": "server_error", "code": status}}
        )
        return cls("status", status, dict(headers or {}), payload)


def true_tokens(
    req: Request, prompt_tokens: int | None = None, completion_tokens: int = 10
) -> tuple[int, int]:
    """The prompt and completion tokens an answer to ``req`` really costs: the prompt characters / 4
    (at least 1) unless ``prompt_tokens`` says otherwise, and ``completion_tokens``."""
    messages = (req.json or {}).get("messages") if isinstance(req.json, dict) else None
    chars = sum(len(str(m.get("content") or "")) for m in messages or [] if isinstance(m, dict))
    return (prompt_tokens if prompt_tokens is not None else max(1, chars // 4)), completion_tokens


def completion_body(
    req: Request,
    text: Any = None,
    prompt_tokens: int | None = None,
    completion_tokens: int = 10,
    cost: float | None = None,
) -> dict[str, Any]:
    """An OpenAI chat.completion answering ``req``; prompt tokens default to the prompt characters / 4."""
    pt, ct = true_tokens(req, prompt_tokens, completion_tokens)
    usage: dict[str, Any] = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
    if cost is not None:
        usage["cost"] = cost
    return {
        "id": f"chatcmpl-{req.call_id}-{req.attempt}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": req.json.get("model", "fake") if isinstance(req.json, dict) else "fake",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": text if text is not None else f"answer {req.call_id}",
                },
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }


@functools.lru_cache(maxsize=8)
def gzip_bomb(decoded_bytes: int = 1 << 30, fill: bytes = b"\0", segment: int = 16 << 20) -> bytes:
    """One gzip member that inflates to ``decoded_bytes`` of ``fill`` (a single byte), built once.

    Deflate's best ratio is ~1030:1, so 1 GiB of one byte is ~1 MiB of gzip. Compressing 1 GiB takes
    ~10 s, so only one ``segment`` is compressed, by a fresh compressor ending with a full flush (byte
    aligned, not final, no reference outside itself): the deflate stream is that block repeated, then
    the remainder, an empty final block and the trailer (the CRC-32 over the whole, ~1 s per GiB). 1 GiB
    takes ~1.3 s once; it is cached, so every bomb of one size shares one bytes object.
    """
    if len(fill) != 1:
        raise ValueError("fill must be a single byte")
    segment = max(1, min(segment, decoded_bytes or 1))
    whole, rest = divmod(decoded_bytes, segment)

    def flushed(size: int) -> bytes:
        c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        return c.compress(fill * size) + c.flush(zlib.Z_FULL_FLUSH)

    block = flushed(segment) if whole else b""
    crc = 0
    if whole:
        seg = fill * segment
        for _ in range(whole):
            crc = zlib.crc32(seg, crc)
    tail = flushed(rest) if rest else b""
    if rest:
        crc = zlib.crc32(fill * rest, crc)
    final = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush()  # an empty final block
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # gzip, deflate, no name, no mtime, max compression
    trailer = struct.pack("<II", crc & 0xFFFFFFFF, decoded_bytes & 0xFFFFFFFF)
    return header + block * whole + tail + final + trailer


@functools.lru_cache(maxsize=2)
def _random_block(seed: int, size: int = 1 << 20) -> bytes:
    return random.Random(seed).randbytes(size)


def _chunks(data: bytes, size: int = CHUNK) -> Iterator[bytes]:
    view = memoryview(data)
    for i in range(0, len(data), size):
        yield bytes(view[i : i + size])


class FaultServer:
    """The server; see the module docstring. Use as a context manager or with ``start()``/``stop()``.

    ``drip_interval_s``, ``bomb_decoded_bytes``, ``bomb_fill``, ``junk_bytes``, ``huge_error_bytes`` and
    ``redirect_location`` size the hostile kinds; tests of the server use small values.
    """

    def __init__(
        self,
        *,
        fault_rate: float = 0.0,
        seed: int = 0,
        faults: tuple[str, ...] = FAULTS,
        slow_s: float = 1.0,
        latency_s: float = 0.0,
        completion_tokens: int = 10,
        prompt_tokens: int | None = None,
        script: Callable[[Request], Action | None] | None = None,
        drip_interval_s: float = 1.0,
        bomb_decoded_bytes: int = 1 << 30,
        bomb_fill: bytes = b"\0",
        junk_bytes: int = 50_000_000,
        huge_error_bytes: int = 1_000_000,
        redirect_location: str = "http://other-host.invalid/v1/chat/completions",
    ) -> None:
        unknown = sorted(set(faults) - set(FAULTS) - set(HOSTILE_FAULTS))
        if unknown:
            raise ValueError(f"unknown fault kinds: {unknown}")
        self.fault_rate = fault_rate
        self.seed = seed
        self.faults = faults
        self.slow_s = slow_s
        self.latency_s = latency_s
        self.completion_tokens = completion_tokens
        self.prompt_tokens = prompt_tokens
        self.script = script
        self.drip_interval_s = drip_interval_s
        self.bomb_decoded_bytes = bomb_decoded_bytes
        self.bomb_fill = bomb_fill
        self.junk_bytes = junk_bytes
        self.huge_error_bytes = huge_error_bytes
        self.redirect_location = redirect_location
        self.requests: list[Request] = []
        self.counts: Counter[str] = Counter()
        self.actions: Counter[str] = Counter()
        self.bills: list[Bill] = []
        self.connections = 0
        self.empty_connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._anon = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._conns: set[_Conn] = set()  # open connections, closed at the latest by stop()
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """The base URL an OpenAI-compatible model config uses (``.../v1``)."""
        return f"http://127.0.0.1:{self._port}/v1"

    def start(self) -> FaultServer:
        if "bomb" in self.faults and self.fault_rate > 0:
            gzip_bomb(self.bomb_decoded_bytes, self.bomb_fill)  # before serving, not at the first bomb
        ready = threading.Event()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        listener.setblocking(False)
        _enable_timestamps(listener)  # accepted sockets inherit it
        self._port = listener.getsockname()[1]

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            loop.create_task(self._accept(listener))
            loop.call_soon(ready.set)
            loop.run_forever()
            self._stopping = True  # every answer still running sees it at its next poll
            # every task of this loop, the accept loop and every connection; cancelled again if one got
            # through a cancellation
            for _ in range(10):
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                if not pending:
                    break
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.wait(pending, timeout=0.5))
            for conn in list(self._conns):  # accepted, but their task never started
                conn.close()
            listener.close()
            loop.close()

        self._thread = threading.Thread(target=run, name="fault-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        """Stop accepting, cancel every answer still running (mid-drip, mid-bomb) and join the thread."""
        loop = self._loop
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ figures

    def count(self, call_id: str | None = None) -> int:
        """Requests counted (at head arrival): all of them, or those of one call id."""
        with self._lock:
            return len(self.requests) if call_id is None else self.counts[call_id]

    def active(self) -> int:
        """Connections still being served (a drip or a bomb that has not stopped shows up here)."""
        return len(self._tasks)

    def wait_idle(self, timeout_s: float = 5.0) -> bool:
        """Wait until no connection is being served; False if some still are after ``timeout_s``."""
        end = time.monotonic() + timeout_s
        while self._tasks:
            if time.monotonic() >= end:
                return False
            time.sleep(0.01)
        return True

    def billed_count(self, call_id: str | None = None) -> int:
        """Answers the provider would bill (see the module docstring): all, or those of one call id."""
        with self._lock:
            return sum(1 for b in self.bills if call_id is None or b.call_id == call_id)

    def billed_tokens(self, call_id: str | None = None) -> tuple[int, int]:
        """The true (prompt, completion) tokens of the billed answers: all, or those of one call id."""
        with self._lock:
            bills = [b for b in self.bills if call_id is None or b.call_id == call_id]
        return sum(b.prompt_tokens for b in bills), sum(b.completion_tokens for b in bills)

    def true_cost(self, price_in: float, price_out: float, call_id: str | None = None) -> float:
        """What the provider would charge in USD, at prices in USD per million tokens (the config's)."""
        prompt, completion = self.billed_tokens(call_id)
        return (prompt * price_in + completion * price_out) / 1_000_000

    def max_rate(self, window_s: float = 1.0) -> int:
        """The largest number of requests that arrived within any sliding window of ``window_s``."""
        times = sorted(r.t for r in self.requests)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= window_s:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    # ------------------------------------------------------------------ the draw

    def _decide(self, req: Request) -> Action:
        if self.script is not None:
            action = self.script(req)
            if action is not None:
                return action
        if self.fault_rate <= 0:
            return Action()
        rng = random.Random(f"{self.seed}|{req.call_id}|{req.attempt}")
        if rng.random() >= self.fault_rate:
            return Action()
        return self.fault_action(rng.choice(self.faults), rng)

    def fault_action(self, fault: str, rng: random.Random | None = None) -> Action:
        """The Action for one fault name of :data:`FAULTS` or :data:`HOSTILE_FAULTS` (what the draw
        returns; a script may return it too)."""
        rng = rng or random.Random(self.seed)
        if fault == "429":
            if rng.random() < 0.7:
                headers = {"retry-after-ms": str(rng.randint(50, 200))}
            else:
                headers = {"retry-after": "0"}
            return Action.error(429, "Rate limit reached for requests", headers)
        if fault in ("500", "503", "529"):
            return Action.error(int(fault), f"injected {fault}")
        if fault == "slow":
            return Action("slow", delay_s=self.slow_s)
        if fault == "nonstring_content":
            return Action(fault, content=[72, 105] if rng.random() < 0.5 else 42)
        if fault not in KINDS:
            raise ValueError(f"unknown fault kind {fault!r}")
        return Action(fault)

    # ------------------------------------------------------------------ serving

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            sock, _ = await loop.sock_accept(listener)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _enable_timestamps(sock)
            conn = _Conn(loop, sock)
            self._conns.add(conn)
            loop.create_task(self._serve(conn))

    async def _serve(self, conn: _Conn) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with self._lock:
            self.connections += 1
        served = 0
        reader = conn.reader
        try:
            while True:
                start = conn.consumed
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as exc:
                    if exc.partial:
                        self._head_cut(exc.partial, conn.arrival(start))
                    elif not served:
                        self._empty()
                    return
                except asyncio.LimitOverrunError:
                    self._head_cut(b"", conn.arrival(start))
                    return
                except OSError:
                    if not served:
                        self._empty()
                    return
                served += 1
                conn.consumed += len(head)
                method, path, headers = _parse_head(head)
                req = self._arrived(method, path, headers, conn.arrival(start))
                try:
                    length = int(headers.get("content-length") or 0)
                except ValueError:
                    length = 0
                try:
                    body = await reader.readexactly(length) if length > 0 else b""
                except asyncio.IncompleteReadError as exc:
                    self._identify(req, exc.partial, complete=False)
                    self._done(req)
                    return
                except OSError:
                    self._identify(req, b"", complete=False)
                    self._done(req)
                    return
                conn.consumed += len(body)
                self._identify(req, body, complete=True)
                try:
                    keep = await self._answer(req, conn)
                finally:
                    self._done(req)
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except asyncio.CancelledError:
            pass  # stop(): the socket is closed below; whatever is still unsent is dropped
        finally:
            self._tasks.discard(task)
            self._conns.discard(conn)
            conn.close()

    def _empty(self) -> None:
        with self._lock:
            self.empty_connections += 1

    def _head_cut(self, partial: bytes, t: float) -> None:
        """The connection ended inside a request head: a request if its request line had arrived."""
        if b"\r\n" not in partial:
            self._empty()
            return
        method, path, headers = _parse_head(partial)
        req = self._arrived(method, path, headers, t)
        self._identify(req, b"", complete=False)
        self._done(req)

    def _arrived(self, method: str, path: str, headers: dict[str, str], t: float) -> Request:
        """Count a request the moment its head is here (``t``: when its first byte reached the host);
        its call id comes with the body."""
        req = Request(t, method, path, headers, b"", None, "", 0)
        with self._lock:
            self.requests.append(req)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return req

    def _identify(self, req: Request, body: bytes, *, complete: bool) -> None:
        """Fill in the body, the call id (body tag, else ``x-call-id``, else anon) and the attempt."""
        parsed = None
        if complete and body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        found = CALL_ID.search(body.decode("utf-8", errors="replace"))  # any provider's body shape
        with self._lock:
            if found:
                call_id = found.group(1)
            elif req.headers.get(CALL_ID_HEADER):
                call_id = req.headers[CALL_ID_HEADER]
            else:
                self._anon += 1
                call_id = f"anon-{self._anon}"
            self.counts[call_id] += 1
            req.body, req.json, req.complete = body, parsed, complete
            req.call_id, req.attempt = call_id, self.counts[call_id]

    def _done(self, req: Request) -> None:
        with self._lock:
            self.in_flight -= 1

    async def _answer(self, req: Request, conn: _Conn) -> bool:
        action = self._decide(req)
        req.kind = action.kind if action.kind != "status" else str(action.status)
        with self._lock:
            self.actions[req.kind] += 1
        if self.latency_s and not await self._pause(conn, self.latency_s):
            return False
        return await self._act(action, req, conn)

    # ------------------------------------------------------------------ the kinds

    async def _act(self, action: Action, req: Request, conn: _Conn) -> bool:
        kind = action.kind
        if callable(action.body):
            action = dataclasses.replace(action, body=action.body(req))
        tokens = true_tokens(req, self.prompt_tokens, self.completion_tokens)

        def completion(**kw: Any) -> dict[str, Any]:
            return completion_body(
                req, prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens, **kw
            )

        def text(content: Any = None) -> Any:
            return action.content if action.content is not None else content

        if kind == "reset":
            conn.close()
            return False
        if kind == "slow" and not await self._pause(conn, action.delay_s):
            return False
        if kind in ("ok", "slow"):
            if action.body is not None:
                payload: Any = action.body
                billed = action.status == 200 and isinstance(payload, dict) and "choices" in payload
                tokens = _usage_tokens(payload) or tokens
            else:
                payload, billed = completion(text=text()), action.status == 200
            return await self._send(req, kind, conn, action.status, action.headers, payload, billed, tokens)
        if kind == "invalid_json":
            return await self._send(
                req, kind, conn, 200, {}, b'{"id": "chatcmpl-x", "choices": [{"message": '
            )
        if kind == "error_body":
            body = {
                "error": {"message": "internal failure while generating", "type": "server_error", "code": 500}
            }
            return await self._send(req, kind, conn, 200, {}, body)
        if kind == "truncated":
            full = json.dumps(completion_body(req)).encode()
            await self._send(
                req,
                kind,
                conn,
                200,
                {"content-length": str(len(full) + 100)},
                full[: len(full) // 2],
            )
            conn.close()
            return False
        if kind == "drip":
            payload = json.dumps(completion(text=text())).encode()
            return await self._send(
                req,
                kind,
                conn,
                200,
                {},
                payload,
                True,
                tokens,
                chunk=1,
                interval_s=self.drip_interval_s,
            )
        if kind == "bomb":
            # built off the loop (1 GiB takes ~1.3 s once), then cached
            bomb = await asyncio.to_thread(gzip_bomb, self.bomb_decoded_bytes, self.bomb_fill)
            return await self._send(req, kind, conn, 200, {"content-encoding": "gzip"}, bomb)
        if kind == "junk":
            return await self._send_stream(conn, 200, {}, self._junk(self.junk_bytes), self.junk_bytes)
        if kind == "echo":
            leaked = [f"authorization={req.headers.get('authorization', '')}"]
            leaked += [f"{k}={v}" for k, v in req.headers.items() if k.startswith("x-")]
            payload = completion(text=text(f"answer {req.call_id}; you sent " + "; ".join(leaked)))
            return await self._send(req, kind, conn, 200, {}, payload, True, tokens)
        if kind in ("no_usage", "negative_usage", "string_usage"):
            payload = completion(text=text())
            pt, ct = tokens
            if kind == "no_usage":
                del payload["usage"]
            elif kind == "negative_usage":
                payload["usage"] = {
                    "prompt_tokens": -pt,
                    "completion_tokens": -ct,
                    "total_tokens": -(pt + ct),
                }
            else:
                payload["usage"] = {
                    "prompt_tokens": str(pt),
                    "completion_tokens": str(ct),
                    "total_tokens": str(pt + ct),
                }
            return await self._send(req, kind, conn, 200, {}, payload, True, tokens)
        if kind == "surrogate":
            marker = "@@LONE-SURROGATE@@"
            raw = json.dumps(completion(text=text(f"answer {req.call_id} {marker}")))
            return await self._send(
                req, kind, conn, 200, {}, raw.replace(marker, LONE_SURROGATE).encode(), True, tokens
            )
        if kind == "nonstring_content":
            payload = completion(text=action.content if action.content is not None else [72, 105])
            return await self._send(req, kind, conn, 200, {}, payload, True, tokens)
        if kind == "redirect":
            headers = {"location": self.redirect_location, "content-type": "text/plain"}
            return await self._send(req, kind, conn, 302, headers, b"Found")
        if kind == "huge_error":
            return await self._send(req, kind, conn, 500, {}, _huge_error(self.huge_error_bytes))
        if kind not in ("ok", "status"):
            raise ValueError(f"unknown action kind {kind!r}")
        return await self._send(req, kind, conn, action.status, action.headers, action.body)

    def _gone(self, conn: _Conn) -> bool:
        """The client hung up or the server is stopping (see :meth:`_Conn.gone`)."""
        return self._stopping or conn.gone()

    async def _pause(self, conn: _Conn, seconds: float) -> bool:
        """Sleep ``seconds`` unless the client leaves first; True if it is still there."""
        end = time.monotonic() + seconds
        while True:
            if self._gone(conn):
                return False
            left = end - time.monotonic()
            if left <= 0:
                return True
            await asyncio.sleep(min(left, POLL_S))

    async def _write(self, conn: _Conn, data: bytes) -> bool:
        """Send ``data``, giving up when the client leaves: a client that stops reading blocks the send,
        so the send is polled. (Not ``asyncio.wait_for``: on 3.11 it can swallow a cancellation that
        arrives as the send completes, and the answer would outlive ``stop()``.)"""
        if self._gone(conn):
            return False
        try:
            sent = conn.sock.send(data)  # the common case: the kernel takes it all at once
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return False
        if sent == len(data):
            return True
        loop = asyncio.get_running_loop()
        rest = asyncio.ensure_future(loop.sock_sendall(conn.sock, memoryview(data)[sent:]))
        try:
            while True:
                done, _ = await asyncio.wait({rest}, timeout=POLL_S * 5)
                if done:
                    rest.result()
                    return True
                if self._gone(conn):
                    return False
        except OSError:
            return False
        finally:
            if not rest.done():
                rest.cancel()

    def _junk(self, size: int) -> Iterator[bytes]:
        block = _random_block(self.seed)
        sent = 0
        while sent < size:
            start = sent % len(block)
            piece = block[start : start + min(CHUNK, size - sent)]
            sent += len(piece)
            yield piece

    async def _send(
        self,
        req: Request,
        kind: str,
        conn: _Conn,
        status: int,
        headers: dict[str, str],
        body: Any,
        billed: bool = False,
        tokens: tuple[int, int] = (0, 0),
        *,
        chunk: int = CHUNK,
        interval_s: float = 0.0,
    ) -> bool:
        """Write one response; bill it when ``billed`` and every byte went out to a live client.

        The bill is recorded just before the last byte is handed to the socket (so that a client holding
        the whole answer always finds it) and taken back if that write fails."""
        if isinstance(body, bytes):
            payload = body
        elif isinstance(body, str):
            payload = body.encode()
        else:
            payload = json.dumps(body).encode() if body is not None else b""
        bill = Bill(req.call_id, req.attempt, kind, *tokens) if billed else None

        def record() -> None:
            if bill is not None:
                with self._lock:
                    self.bills.append(bill)

        delivered = await self._send_stream(
            conn,
            status,
            headers,
            _chunks(payload, chunk),
            len(payload),
            interval_s=interval_s,
            before_last=record,
        )
        if not delivered and bill is not None:
            with self._lock:
                for i, b in enumerate(self.bills):
                    if b is bill:
                        del self.bills[i]
                        break
        return delivered

    async def _send_stream(
        self,
        conn: _Conn,
        status: int,
        headers: dict[str, str],
        chunks: Iterable[bytes],
        length: int,
        *,
        interval_s: float = 0.0,
        before_last: Callable[[], None] | None = None,
    ) -> bool:
        """The head, then ``chunks`` (``interval_s`` apart); False as soon as the client is gone.
        ``before_last`` runs just before the last piece is written."""
        if self._gone(conn):
            return False
        names = {k.lower() for k in headers}
        head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        if "content-type" not in names:
            head.append("content-type: application/json")
        if "content-length" not in names:
            head.append(f"content-length: {length}")
        head += [f"{k}: {v}" for k, v in headers.items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode()  # sent with the first piece
        pieces = iter(chunks)
        piece: bytes | None = next(pieces, b"")  # a body of zero bytes: the head alone
        first = True
        while piece is not None:
            following = next(pieces, None)
            if interval_s and not first and not await self._pause(conn, interval_s):
                return False
            first = False
            if following is None and before_last is not None:
                before_last()
            if not await self._write(conn, data + piece):
                return False
            data, piece = b"", following
        return True


# Linux: SO_TIMESTAMPNS (also the type of its control message) and the struct timespec it carries
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@ll")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)


def _enable_timestamps(sock: socket.socket) -> None:
    """Ask the kernel for the receive time of every read (where it cannot, the read time is used)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        pass


class _Conn:
    """One accepted connection: its raw socket, read with ``recvmsg`` into a StreamReader.

    Why not asyncio's streams: they read with ``recv`` and drop the kernel's receive timestamp. The
    server shares the GIL with the client under test, so on a loaded machine its loop may read a request
    tens of ms after it arrived; requests read in one go would look bunched, and a rate measured from
    read times would exceed what the client really sent (measured: 12 in 100 ms at the server, 11 at
    the client). Every chunk read here keeps the time the kernel received it; a request's ``t`` is
    that of its first byte.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.loop = loop
        self.sock = sock
        self.reader = asyncio.StreamReader(limit=1 << 16, loop=loop)
        self.consumed = 0  # bytes of the stream the parser has taken (heads and bodies)
        self._received = 0
        self._chunks: list[tuple[int, float]] = []  # (offset of a chunk's first byte, its receive time)
        self._reading = True
        self.closed = False
        loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(CHUNK, _ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._stop_reading()
            self.reader.set_exception(exc)
            return
        if not data:
            self._stop_reading()
            self.reader.feed_eof()
            return
        stamp = time.time()
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= _TIMESPEC.size:
                sec, nsec = _TIMESPEC.unpack_from(payload)
                if sec:
                    stamp = min(stamp, sec + nsec / 1e9)
        self._chunks.append((self._received, stamp))
        self._received += len(data)
        self.reader.feed_data(data)

    def arrival(self, offset: int) -> float:
        """When the byte at ``offset`` reached the host, on the ``time.monotonic()`` clock."""
        while len(self._chunks) > 1 and self._chunks[1][0] <= offset:
            self._chunks.pop(0)  # chunks wholly before ``offset`` are never asked for again
        if not self._chunks or self._chunks[0][0] > offset:
            return time.monotonic()
        return time.monotonic() - max(0.0, time.time() - self._chunks[0][1])

    def gone(self) -> bool:
        """The client hung up (EOF, or an error on the socket) or the socket is closed. Never reads
        from the stream, so it cannot eat the next request of a keep-alive connection."""
        return self.closed or self.reader.at_eof() or self.reader.exception() is not None

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self.loop.remove_reader(self.sock.fileno())

    def close(self) -> None:
        """Close the socket: a FIN after whatever the kernel still has to send."""
        if not self.closed:
            self.closed = True
            self._stop_reading()
            self.sock.close()


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    method, path = (parts + ["", ""])[:2]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return method, path, headers


def _usage_tokens(payload: Any) -> tuple[int, int] | None:
    """A scripted body's own usage, when it is plain non-negative integers (a raw text body has none
    that can be read here)."""
    if isinstance(payload, (str, bytes)):
        try:
            payload = json.loads(payload)
        except ValueError:
            return None
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return None
    pt, ct = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (pt, ct)):
        return pt, ct
    return None


def _huge_error(size: int) -> bytes:
    """A JSON object of ``size`` bytes with neither an ``error`` nor a ``message`` key."""
    prefix, suffix = b'{"status": "failed", "trace": "', b'"}'
    return prefix + b"x" * max(0, size - len(prefix) - len(suffix)) + suffix


class Blackhole:
    """A loopback port where a TCP connect never completes, so no request can ever reach it.

    It listens with a backlog of 0, never accepts, and fills its accept queue itself: the kernel then
    drops every further SYN, and a client's connect times out (``ConnectionTimeoutError`` in aiohttp).
    What a client reports as attempts against it should be 0: not one request was sent.
    """

    def __init__(self) -> None:
        self._listener: socket.socket | None = None
        self._fillers: list[socket.socket] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Blackhole:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        self._listener, self.port = listener, listener.getsockname()[1]
        for _ in range(8):  # Linux queues backlog + 1 connections; stop at the first that hangs
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.settimeout(0.1)
            try:
                filler.connect(("127.0.0.1", self.port))
            except OSError:
                filler.close()
                return self
            self._fillers.append(filler)
        self.stop()
        raise RuntimeError("the accept queue never filled: connects to this port would succeed")

    def stop(self) -> None:
        for s in [*self._fillers, *([self._listener] if self._listener else [])]:
            s.close()
        self._fillers, self._listener = [], None

    def __enter__(self) -> Blackhole:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def config_for(models: dict[str, dict[str, Any]], default: str | None = None):
    """A validated Config holding ``models`` (id -> table); ORCHESTRATOR_HOME decides where caches go."""
    from pathlib import Path

    from orchestrator.config import config_from_dict

    raw: dict[str, Any] = {"models": models}
    if default:
        raw["defaults"] = {"model": default}
    return config_from_dict(raw, Path("test-orchestrator.toml"))


class Sleeps:
    """An injectable ``sleep`` for LLMClient that records the waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)
