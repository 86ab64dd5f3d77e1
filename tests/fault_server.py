"""A fault-injecting OpenAI-compatible server on loopback: real sockets, a raw asyncio HTTP/1.1 server.

It runs its own event loop in a background thread, so the client under test and the server never
share a loop. Each ``POST .../chat/completions`` is answered, by default, with a normal completion; with
``fault_rate`` > 0 a seeded draw (per call id and attempt, so the draw does not depend on arrival order)
picks one of the faults:

- ``429``: rate limited, with ``retry-after-ms`` (50-200 ms) or ``retry-after: 0``;
- ``500``, ``503``, ``529``: server errors with an OpenAI-style error body;
- ``slow``: the answer comes after ``slow_s`` (set it above the client's read timeout);
- ``reset``: the connection is closed without a response;
- ``invalid_json``: status 200 and a body that is not JSON;
- ``truncated``: Content-Length larger than the body sent, then the connection is closed;
- ``error_body``: status 200 with ``{"error": {...}}`` and no choices.

A ``script(request) -> Action | None`` decides instead of the draw when it returns an Action. Every
request is recorded (arrival time, call id, attempt number per call id, headers, JSON body); the call
id is the ``[call:...]`` tag found in the request body. ``max_in_flight`` is the peak of concurrent requests.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FAULTS = ("429", "500", "503", "529", "slow", "reset", "invalid_json", "truncated", "error_body")
CALL_ID = re.compile(r"\[call:([\w.\-]+)\]")
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    529: "Overloaded",
}


@dataclass
class Request:
    t: float  # time.monotonic() when the request head arrived
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    json: Any
    call_id: str
    attempt: int  # 1 for the first request of this call id


@dataclass
class Action:
    kind: str = "ok"  # ok | status | slow | reset | invalid_json | truncated | error_body
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # dict -> JSON, str/bytes as is, callable(request) -> either
    delay_s: float = 0.0

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


def completion_body(
    req: Request,
    text: str | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int = 10,
    cost: float | None = None,
) -> dict[str, Any]:
    """An OpenAI chat.completion answering ``req``; prompt tokens default to the prompt characters / 4."""
    messages = (req.json or {}).get("messages") or []
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    pt = prompt_tokens if prompt_tokens is not None else max(1, chars // 4)
    usage: dict[str, Any] = {
        "prompt_tokens": pt,
        "completion_tokens": completion_tokens,
        "total_tokens": pt + completion_tokens,
    }
    if cost is not None:
        usage["cost"] = cost
    return {
        "id": f"chatcmpl-{req.call_id}-{req.attempt}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": (req.json or {}).get("model", "fake"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text or f"answer {req.call_id}"},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }


class FaultServer:
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
    ) -> None:
        self.fault_rate = fault_rate
        self.seed = seed
        self.faults = faults
        self.slow_s = slow_s
        self.latency_s = latency_s
        self.completion_tokens = completion_tokens
        self.prompt_tokens = prompt_tokens
        self.script = script
        self.requests: list[Request] = []
        self.counts: Counter[str] = Counter()
        self.actions: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._anon = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._port = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """The base URL an OpenAI-compatible model config uses (``.../v1``)."""
        return f"http://127.0.0.1:{self._port}/v1"

    def start(self) -> FaultServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
            )
            self._port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            for task in list(self._tasks):
                task.cancel()
            loop.run_until_complete(asyncio.gather(*self._tasks, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name="fault-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            loop.stop()

        loop.call_soon_threadsafe(shutdown)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ figures

    def count(self, call_id: str | None = None) -> int:
        with self._lock:
            return len(self.requests) if call_id is None else self.counts[call_id]

    def max_rate(self, window_s: float = 1.0) -> int:
        """The largest number of requests that arrived within any sliding window of ``window_s``."""
        times = sorted(r.t for r in self.requests)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= window_s:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    # ------------------------------------------------------------------ serving

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
        fault = rng.choice(self.faults)
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
        return Action(fault)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                arrived = time.monotonic()
                length = int(headers.get("content-length") or 0)
                try:
                    body = await reader.readexactly(length) if length else b""
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                keep = await self._answer(method, path, headers, body, arrived, writer)
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            try:
                writer.close()
            except Exception:
                pass

    async def _answer(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        arrived: float,
        writer: asyncio.StreamWriter,
    ) -> bool:
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        found = CALL_ID.search(body.decode("utf-8", errors="replace"))  # any provider's body shape
        with self._lock:
            if found:
                call_id = found.group(1)
            else:
                self._anon += 1
                call_id = f"anon-{self._anon}"
            self.counts[call_id] += 1
            req = Request(arrived, method, path, headers, body, parsed, call_id, self.counts[call_id])
            self.requests.append(req)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            action = self._decide(req)
            with self._lock:
                self.actions[action.kind if action.kind != "status" else str(action.status)] += 1
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            return await self._act(action, req, writer)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _act(self, action: Action, req: Request, writer: asyncio.StreamWriter) -> bool:
        kind = action.kind
        if callable(action.body):
            action = Action(action.kind, action.status, action.headers, action.body(req), action.delay_s)
        if kind == "reset":
            writer.transport.abort()
            return False
        if kind == "slow":
            await asyncio.sleep(action.delay_s)
        if kind in ("ok", "slow"):
            payload: Any = (
                action.body
                if action.body is not None
                else completion_body(
                    req, prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens
                )
            )
            return await self._write(writer, action.status, action.headers, payload)
        if kind == "invalid_json":
            return await self._write(writer, 200, {}, b'{"id": "chatcmpl-x", "choices": [{"message": ')
        if kind == "error_body":
            return await self._write(
                writer,
                200,
                {},
                {
                    "error": {
                        "message": "internal failure while generating",
                        "type": "server_error",
                        "code": 500,
                    }
                },
            )
        if kind == "truncated":
            full = json.dumps(completion_body(req)).encode()
            await self._write(writer, 200, {"content-length": str(len(full) + 100)}, full[: len(full) // 2])
            writer.transport.close()
            return False
        return await self._write(writer, action.status, action.headers, action.body)

    async def _write(
        self, writer: asyncio.StreamWriter, status: int, headers: dict[str, str], body: Any
    ) -> bool:
        if isinstance(body, bytes):
            payload = body
        elif isinstance(body, str):
            payload = body.encode()
        else:
            payload = json.dumps(body).encode() if body is not None else b""
        names = {k.lower() for k in headers}
        head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        if "content-type" not in names:
            head.append("content-type: application/json")
        if "content-length" not in names:
            head.append(f"content-length: {len(payload)}")
        head += [f"{k}: {v}" for k, v in headers.items()]
        try:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
            await writer.drain()
        except (ConnectionError, RuntimeError):
            return False
        return True


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
