"""Peak memory and time of one call against hostile bodies: a gzip bomb, a junk stream, a drip.

Each case runs in a fresh process (so ``ru_maxrss`` is that call's peak) against a loopback server in
another process: ``bomb`` sends 1 MiB of gzip that inflates to 1 GiB, ``junk`` 50 MB of random bytes,
``drip`` a valid answer one byte a second. The client is the orchestrator's ``LLMClient`` with the
default retry policy and a model at ``timeout = 15``; the script uses only public API, so it runs
unchanged against an older checkout (``--src DIR``, or ``bench/with_tree.py DIR``, imports that
checkout's package) to give the before/after table.

    python bench/bench_bomb.py [--cases bomb,junk,drip] [--src /path/to/old/checkout]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _report import Report, Target  # noqa: E402
from with_tree import import_tree_code  # noqa: E402

BOMB_DECODED = 1 << 30  # 1 GiB of zeros inflates from ~1 MiB of gzip
JUNK_BYTES = 50 * 1000 * 1000
TARGET_RSS_MB = 300.0


def _bomb_payload() -> bytes:
    chunk = b"\0" * (1 << 20)
    import io

    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as gz:
        for _ in range(BOMB_DECODED // len(chunk)):
            gz.write(chunk)
    return out.getvalue()


async def _serve(kind: str, port_file: Path) -> None:
    bomb = _bomb_payload() if kind == "bomb" else b""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.decode("latin-1").split("\r\n"):
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            await reader.readexactly(length)
            if kind == "bomb":
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
                    + f"content-length: {len(bomb)}\r\n\r\n".encode()
                )
                writer.write(bomb)
            elif kind == "junk":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
                writer.write(f"content-length: {JUNK_BYTES}\r\n\r\n".encode())
                block = os.urandom(1 << 16)
                for _ in range(JUNK_BYTES // len(block)):
                    writer.write(block)
                    await writer.drain()
            else:  # drip: a valid answer, one byte a second
                body = json.dumps(
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "model": "m",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
                    }
                ).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
                writer.write(f"content-length: {len(body)}\r\n\r\n".encode())
                for i in range(len(body)):
                    writer.write(body[i : i + 1])
                    await writer.drain()
                    await asyncio.sleep(1.0)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    async with server:
        await server.serve_forever()


CLIENT = r"""
import asyncio, json, resource, sys, time
from pathlib import Path
from orchestrator.client import LLMClient
from orchestrator.config import config_from_dict
from orchestrator import errors as E

cfg = config_from_dict({"models": {"h/m": {"provider": "openai", "model": "m", "base_url": sys.argv[1],
                       "timeout": 15, "max_tokens": 16}}}, Path("bench.toml"))
client = LLMClient(cfg, cache=False)
started = time.perf_counter()
async def main():
    try:
        c = await asyncio.wait_for(client.complete("hello", model="h/m"), float(sys.argv[2]))
        return "answered", c.attempts
    except asyncio.TimeoutError:
        return "still running when the bench gave up", None
    except E.ProviderError as exc:
        return type(exc).__name__, exc.attempts
    except Exception as exc:
        return "untyped " + type(exc).__name__, None
outcome, attempts = asyncio.run(main())
print(json.dumps({"outcome": outcome, "attempts": attempts, "wall_s": time.perf_counter() - started,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_case(kind: str, src: str | None, give_up_s: float) -> dict:
    port_file = Path(f"/tmp/bench-bomb-{os.getpid()}-{kind}.port")
    port_file.unlink(missing_ok=True)
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--port-file", str(port_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline:
                raise RuntimeError("the bench server did not start")
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text()}/v1"
        env = {**os.environ, "ORCHESTRATOR_HOME": f"/tmp/bench-bomb-home-{os.getpid()}"}
        proc = subprocess.run(
            [sys.executable, "-c", import_tree_code(src) + CLIENT, url, str(give_up_s)],
            capture_output=True,
            text=True,
            env=env,
            timeout=give_up_s + 120,
        )
        if proc.returncode != 0:
            return {"outcome": "crashed: " + (proc.stderr.strip().splitlines() or ["?"])[-1], "rss_mb": None}
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        server.kill()
        server.wait()
        port_file.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", default="bomb,junk,drip")
    parser.add_argument("--src", help="a checkout whose orchestrator package to measure instead")
    parser.add_argument("--give-up-s", type=float, default=200.0, help="stop waiting for a call after this")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, Path(args.port_file)))
        return
    report = Report(" ".join(["python bench/bench_bomb.py", *sys.argv[1:]]))
    report.section(
        f"one call per case, one run each; client: {args.src or os.environ.get('BENCH_TREE') or 'this checkout'}"
    )
    for kind in args.cases.split(","):
        result = run_case(kind, args.src, args.give_up_s)
        outcome = f"{result['outcome']}, attempts {result.get('attempts')}"
        if result.get("rss_mb") is None:
            report.note(f"{kind}: {outcome}")
            continue
        report.add(
            f"{kind}: peak RSS, MB ({outcome})", result["rss_mb"], target=Target("<", TARGET_RSS_MB, "MB")
        )
        report.add(f"{kind}: wall, s", result["wall_s"])
    report.print()


if __name__ == "__main__":
    main()
