"""A loopback fake OpenAI-compatible server with an exact, configurable latency, for benchmarks.

A raw asyncio protocol (no per-request thread, no framework): each request is answered after
``latency_ms`` by ``loop.call_later``, so 64, 256 or 1,000 requests in flight each take the latency and
no more. Every POST gets the same small ``chat.completion`` (with usage); ``GET /health`` answers 200.
A POST with ``"stream": true`` gets the same answer as server-sent events (chunked): the role chunk and
the first piece at half the latency, the other pieces, the usage chunk and ``[DONE]`` at the full latency,
so a streamed call takes as long as a whole one and its first token comes halfway.

    python bench/fake_openai_server.py --port 0 --latency-ms 100     # prints its base URL, serves until killed

    from fake_openai_server import start_server
    url, stop = start_server(latency_ms=100)    # in a background thread of this process
    ...                                         # base_url = url  (it ends in /v1)
    stop()

For CPU measurements of a client, run the server as a separate process (the first form, or
``start_server_process`` below) so that its work is not counted in the client's ``time.process_time()``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1767225600,
        "model": "fake-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "A fake answer."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
    }
).encode()
HEALTH = b'{"status":"ok"}'


def _response(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


RESPONSE = _response(COMPLETION)
HEALTH_RESPONSE = _response(HEALTH)


def _sse_chunk(payload: dict | str) -> bytes:
    data = (
        b"data: " + (payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()) + b"\n\n"
    )
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _delta(content: str | None, finish: str | None = None, role: bool = False) -> dict:
    delta: dict = {"role": "assistant", "content": ""} if role else {"content": content}
    if finish:
        delta = {}
    chunk = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1767225600,
        "model": "fake-model",
    }
    return {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    + _sse_chunk(_delta(None, role=True))
    + _sse_chunk(_delta("A "))
)
STREAM_TAIL = (
    _sse_chunk(_delta("fake "))
    + _sse_chunk(_delta("answer."))
    + _sse_chunk(_delta(None, finish="stop"))
    + _sse_chunk(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1767225600,
            "model": "fake-model",
            "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
        }
    )
    + _sse_chunk("[DONE]")
    + b"0\r\n\r\n"
)


class Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0


class _Protocol(asyncio.Protocol):
    def __init__(self, latency_s: float, stats: Stats) -> None:
        self.latency_s = latency_s
        self.stats = stats
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
                    break
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            stats = self.stats
            stats.requests += 1
            stats.in_flight += 1
            stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
            loop = asyncio.get_running_loop()
            if b'"stream": true' in body or b'"stream":true' in body:
                loop.call_later(self.latency_s / 2, self._write, STREAM_HEAD)
                loop.call_later(self.latency_s, self._send, STREAM_TAIL)
                continue
            reply = HEALTH_RESPONSE if head.startswith(b"GET /health") else RESPONSE
            if self.latency_s > 0:
                loop.call_later(self.latency_s, self._send, reply)
            else:
                self._send(reply)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _send(self, reply: bytes) -> None:
        self.stats.in_flight -= 1
        self._write(reply)


async def serve(
    host: str = "127.0.0.1", port: int = 0, latency_ms: float = 0.0, stats: Stats | None = None
) -> asyncio.AbstractServer:
    """Start serving on the running loop; returns the asyncio server (``.sockets[0]`` has the port)."""
    stats = stats or Stats()
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Protocol(latency_ms / 1000.0, stats), host, port, backlog=4096)


def start_server(
    latency_ms: float = 0.0, host: str = "127.0.0.1", port: int = 0
) -> tuple[str, Callable[[], None]]:
    """Serve from a background thread of this process; returns ``(base_url, stop)``."""
    ready = threading.Event()
    box: dict[str, object] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(serve(host, port, latency_ms))
        box["loop"], box["server"] = loop, server
        box["port"] = server.sockets[0].getsockname()[1]
        ready.set()
        loop.run_forever()
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()

    thread = threading.Thread(target=run, name="fake-openai-server", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the fake server did not start")
    loop = box["loop"]
    assert isinstance(loop, asyncio.AbstractEventLoop)

    def stop() -> None:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    return f"http://{host}:{box['port']}/v1", stop


def start_server_process(latency_ms: float = 0.0) -> tuple[str, subprocess.Popen[str]]:
    """Run this file as a separate process; returns ``(base_url, process)``: ``stop_server_process`` it."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--port", "0", "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        proc.wait(10)
        raise RuntimeError(f"the fake server did not start: {url!r}")
    return url, proc


def stop_server_process(proc: subprocess.Popen[str]) -> None:
    """Stop a server started by ``start_server_process`` and reap it."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before each answer")
    args = parser.parse_args(argv)

    async def run() -> None:
        server = await serve(args.host, args.port, args.latency_ms)
        port = server.sockets[0].getsockname()[1]
        print(f"http://{args.host}:{port}/v1", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
                pass
        await stop.wait()
        server.close()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:  # pragma: no cover
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
