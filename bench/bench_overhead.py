"""Client-side overhead of LLMClient per call, against a loopback fake server with no latency.

The fake OpenAI-compatible server runs in a separate process, so ``time.process_time()`` here counts
the client's CPU only. Each scenario makes N sequential calls (after a warm-up) and reports wall and
process-CPU milliseconds per call:

- ``raw httpx+aiohttp``: the floor, the same POST and JSON parse with httpx on the aiohttp transport;
- ``orchestrator, cache off``: ``LLMClient.complete(..., cache="off")``;
- ``orchestrator, cache miss+write``: a new prompt each time, the answer stored in the SQLite cache;
- ``orchestrator, cache hit``: the same prompts again, answered from the cache (no request).

Overhead = orchestrator - raw. Reproduce with::

    python bench/bench_overhead.py --calls 2000

Add ``--profile off|miss|hit`` to print a cProfile of one scenario (sorted by cumulative time).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def start_server_process(latency_ms: float = 0.0) -> tuple[str, subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "fake_openai_server.py"), "--port", "0", "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise RuntimeError(f"the fake server did not start: {url!r}")
    return url, proc


async def measure(
    fn: Callable[[int], Awaitable[object]], calls: int, warmup: int, offset: int = 0
) -> dict[str, float]:
    for i in range(warmup):
        await fn(-1 - i)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(calls):
        await fn(offset + i)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"wall_ms": wall / calls * 1000, "cpu_ms": cpu / calls * 1000}


def prompt(i: int) -> str:
    return f"Summarize GitHub issue number {i}: the build fails on Windows with a long path error."


async def run(calls: int, warmup: int, rounds: int, profile: str | None) -> dict[str, dict[str, float]]:
    import httpx
    from httpx_aiohttp import AiohttpTransport

    from orchestrator.client import LLMClient, RetryPolicy
    from orchestrator.config import config_from_dict

    url, proc = start_server_process()
    home = tempfile.mkdtemp(prefix="bench-orch-")
    os.environ["ORCHESTRATOR_HOME"] = home
    cfg = config_from_dict(
        {
            "models": {
                "bench/fake": {
                    "provider": "openai",
                    "model": "fake-model",
                    "base_url": url,
                    "max_tokens": 64,
                    "temperature": 0.0,
                    "price": {"input": 0.4, "output": 1.6},
                }
            }
        },
        Path(home) / "orchestrator.toml",
    )
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    raw = httpx.AsyncClient(transport=AiohttpTransport(limits=limits, trust_env=True))
    client = LLMClient(cfg, cache=True, retry=RetryPolicy(max_attempts=1))

    async def raw_call(i: int) -> object:
        body = {
            "model": "fake-model",
            "messages": [{"role": "user", "content": prompt(i)}],
            "temperature": 0.0,
            "max_tokens": 64,
        }
        r = await raw.post(
            f"{url}/chat/completions",
            content=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        return json.loads(await r.aread())

    async def off(i: int) -> object:
        return await client.complete(prompt(i), model="bench/fake", cache="off")

    async def use(i: int) -> object:
        return await client.complete(prompt(i), model="bench/fake")

    results: dict[str, list[dict[str, float]]] = {}
    try:
        for r in range(rounds):
            base = (r + 1) * 1_000_000  # fresh prompts each round: misses really miss
            results.setdefault("raw httpx+aiohttp", []).append(await measure(raw_call, calls, warmup))
            results.setdefault("orchestrator, cache off", []).append(await measure(off, calls, warmup))
            results.setdefault("orchestrator, cache miss+write", []).append(
                await measure(use, calls, warmup, base)
            )
            results.setdefault("orchestrator, cache hit", []).append(await measure(use, calls, 0, base))
        if profile:
            fn = {"off": off, "miss": use, "hit": use}[profile]
            offset = 9_000_000 if profile != "hit" else 1_000_000
            prof = cProfile.Profile()
            prof.enable()
            await measure(fn, calls, 0, offset)
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
    finally:
        await raw.aclose()
        await client.aclose()
        client.close()
        proc.terminate()
        proc.wait(10)
    return {
        name: {k: statistics.median(x[k] for x in runs) for k in ("wall_ms", "cpu_ms")}
        for name, runs in results.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="LLMClient overhead per call vs raw httpx")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="each scenario this many times; medians shown")
    parser.add_argument("--profile", choices=["off", "miss", "hit"], default=None)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)
    table = asyncio.run(run(args.calls, args.warmup, args.rounds, args.profile))
    floor = table["raw httpx+aiohttp"]
    print(f"\n$ python bench/bench_overhead.py --calls {args.calls} --rounds {args.rounds}")
    print(
        f"{args.calls} sequential calls per scenario, median of {args.rounds} rounds; "
        f"fake server in another process, no latency; Python {sys.version.split()[0]}\n"
    )
    print(
        f"{'scenario':34} {'wall ms/call':>13} {'CPU ms/call':>12} {'overhead wall':>14} {'overhead CPU':>13}"
    )
    for name, row in table.items():
        ow = row["wall_ms"] - floor["wall_ms"]
        oc = row["cpu_ms"] - floor["cpu_ms"]
        extra = ("", "") if name.startswith("raw") else (f"{ow:+.3f}", f"{oc:+.3f}")
        print(f"{name:34} {row['wall_ms']:13.3f} {row['cpu_ms']:12.3f} {extra[0]:>14} {extra[1]:>13}")
    print("\ncache hit: no request is sent, so its figures are the whole cost of a hit (compare with 0).")
    if args.json:
        print(json.dumps(table))


if __name__ == "__main__":
    main()
