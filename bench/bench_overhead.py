"""Client-side overhead of LLMClient per call, against a loopback fake server with no latency.

The fake OpenAI-compatible server runs in a separate process, so ``time.process_time()`` here counts
the client's CPU only. Each scenario makes N sequential calls (after a warm-up) and gives wall and
process-CPU milliseconds per call; one round runs every scenario once, in this order, and the rounds
repeat (A B C D E, A B C D E, ...):

- ``raw aiohttp``: the neutral floor, the same POST and JSON parse with a bare ``aiohttp.ClientSession``;
- ``raw httpx + httpx-aiohttp``: the floor on orchestrator's own transport (httpx over the aiohttp
  transport), i.e. what orchestrator adds beyond the HTTP stack it chose;
- ``orchestrator, cache off``: ``LLMClient.complete(..., cache="off")``;
- ``orchestrator, cache miss+write``: a new prompt each time, the answer stored in the SQLite cache;
- ``orchestrator, cache hit``: the same prompts again, answered from the cache (no request).

Overhead = scenario - floor, computed round by round (the same round's floor), over each floor; each
figure is the median of the rounds with their min and max. There is no target here: these are the
components of bench_peers.py's figures. Reproduce with::

    python bench/bench_overhead.py --calls 2000 --rounds 5

Add ``--profile off|miss|hit`` to print a cProfile of one scenario (sorted by cumulative time).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _report import Report, diffs  # noqa: E402
from fake_openai_server import start_server_process, stop_server_process  # noqa: E402

NEUTRAL = "raw aiohttp (neutral floor)"
TRANSPORT = "raw httpx + httpx-aiohttp (orchestrator's transport)"
OFF, MISS, HIT = "orchestrator, cache off", "orchestrator, cache miss+write", "orchestrator, cache hit"


async def measure(
    fn: Callable[[int], Awaitable[object]], calls: int, warmup: int, offset: int = 0
) -> dict[str, float]:
    """Wall and CPU milliseconds per call of ``fn`` over ``calls`` sequential calls after ``warmup``."""
    for i in range(warmup):
        await fn(-1 - i)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(calls):
        await fn(offset + i)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"wall_ms": wall / calls * 1000, "cpu_ms": cpu / calls * 1000}


def prompt(i: int) -> str:
    return f"Summarize GitHub issue number {i}: the build fails on Windows with a long path error."


async def run(calls: int, warmup: int, rounds: int, profile: str | None) -> dict[str, list[dict[str, float]]]:
    """Every scenario once per round, ``rounds`` times; returns each scenario's per-round figures."""
    import aiohttp
    import httpx
    from httpx_aiohttp import AiohttpTransport

    from orchestrator.client import LLMClient, RetryPolicy
    from orchestrator.config import config_from_dict

    url, proc = start_server_process()
    tmp = tempfile.TemporaryDirectory(prefix="bench-orch-")
    home = tmp.name
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
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
    client = LLMClient(cfg, cache=True, retry=RetryPolicy(max_attempts=1))
    headers = {"content-type": "application/json"}

    def body(i: int) -> bytes:
        return json.dumps(
            {
                "model": "fake-model",
                "messages": [{"role": "user", "content": prompt(i)}],
                "temperature": 0.0,
                "max_tokens": 64,
            }
        ).encode()

    async def aiohttp_call(i: int) -> object:
        async with session.post(f"{url}/chat/completions", data=body(i), headers=headers) as r:
            return json.loads(await r.read())

    async def raw_call(i: int) -> object:
        r = await raw.post(f"{url}/chat/completions", content=body(i), headers=headers)
        return json.loads(await r.aread())

    async def off(i: int) -> object:
        return await client.complete(prompt(i), model="bench/fake", cache="off")

    async def use(i: int) -> object:
        return await client.complete(prompt(i), model="bench/fake")

    results: dict[str, list[dict[str, float]]] = {n: [] for n in (NEUTRAL, TRANSPORT, OFF, MISS, HIT)}
    try:
        for r in range(rounds):
            base = (r + 1) * 1_000_000  # fresh prompts each round: misses really miss
            results[NEUTRAL].append(await measure(aiohttp_call, calls, warmup))
            results[TRANSPORT].append(await measure(raw_call, calls, warmup))
            results[OFF].append(await measure(off, calls, warmup))
            results[MISS].append(await measure(use, calls, warmup, base))
            results[HIT].append(await measure(use, calls, 0, base))
        if profile:
            fn = {"off": off, "miss": use, "hit": use}[profile]
            offset = 9_000_000 if profile != "hit" else 1_000_000
            prof = cProfile.Profile()
            prof.enable()
            await measure(fn, calls, 0, offset)
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
    finally:
        await session.close()
        await raw.aclose()
        await client.aclose()
        client.close()
        stop_server_process(proc)
        tmp.cleanup()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="LLMClient overhead per call over two raw HTTP floors")
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls per scenario per round")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians shown")
    parser.add_argument("--profile", choices=["off", "miss", "hit"], default=None)
    parser.add_argument("--json", action="store_true", help="print the per-round figures as JSON too")
    args = parser.parse_args(argv)
    report = Report(f"python bench/bench_overhead.py --calls {args.calls} --rounds {args.rounds}")
    results = asyncio.run(run(args.calls, args.warmup, args.rounds, args.profile))

    def series(name: str, key: str) -> list[float]:
        return [x[key] for x in results[name]]

    report.section(
        f"ms per sequential call ({args.calls} calls per scenario per round, {args.rounds} interleaved rounds)"
    )
    for name in results:
        for key, label in (("wall_ms", "wall"), ("cpu_ms", "CPU")):
            report.add(f"{name}, {label}", series(name, key), unit="ms")
    for floor, short in ((NEUTRAL, "raw aiohttp"), (TRANSPORT, "httpx + httpx-aiohttp")):
        report.section(f"overhead over {floor}, ms per call, round by round")
        for name in (OFF, MISS):
            for key, label in (("wall_ms", "wall"), ("cpu_ms", "CPU")):
                report.add(
                    f"{name} - {short}, {label}", diffs(series(name, key), series(floor, key)), unit="ms"
                )
    report.note("the fake server runs in another process with no latency; CPU is this process's only")
    report.note("a cache hit sends no request: its figures are the whole cost of a hit (compare with 0)")
    report.note("no targets here: bench_peers.py judges the overhead against the peers'")
    report.print()
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
