"""Grid benchmarks: efficiency against the latency limit, a fully cached re-run, and memory per cell count.

    python bench/bench_grid.py --rounds 3                   # everything below
    python bench/bench_grid.py --only efficiency            # or: cached, memory
    python bench/bench_grid.py --only efficiency --cells 20000 --concurrency 256 --latency-ms 100
    python bench/bench_grid.py --only stream --rounds 5      # 2,000 cells streamed vs not

1. Grid efficiency: N cells (default 2,000) at concurrency C (64) against a loopback server answering
   after L ms (100), through ``run_grid`` (cache off, every cell written to SQLite). The limit is
   N x L / C; the figure is wall / limit (target <= 1.1). Each round runs, in this order, the same N
   POSTs at the same concurrency on raw aiohttp (the neutral floor), on orchestrator's own transport
   bare (``orchestrator.providers.wire``), on raw httpx + httpx-aiohttp (whole bodies, for reference),
   then ``run_grid``; the floors get a pool of C connections, and with ``--stream`` the aiohttp and wire
   floors stream too (their CPU per request is printed). Peak RSS is
   this process's after all the rounds (imports, the rounds and the floors included).
2. A fully cached re-run of 10,000 cells: the grid is run once against a server with no latency (filling
   the cache), then R more times, each under a new run id so that every cell is a cache hit (target < 2 s).
3. Peak RSS of a run of 1,000 and of 10,000 cells, each in a fresh process, the two sizes alternating
   over the rounds (target "flat": the larger's peak <= 1.2 x the smaller's, round by round), after a
   warm-up run of 50 cells; and of it, what the issue set the caller builds takes (it grows with the
   cells whatever the grid does) and what the run adds above it, with that growth per added cell.

4. Streaming overhead: the same N cells at C and L through ``run_grid``, streamed (SSE, first piece at L/2,
   the rest at L) and not (one JSON body at L), the order alternating round by round; the figure is the
   streamed wall / the whole-body wall of the same round (target <= 1.05: no measurable overhead).

The server is a separate process (bench/fake_openai_server.py) so its work is not counted here.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _report import Report, Target, current_rss_mb, peak_rss_mb, ratios  # noqa: E402
from fake_openai_server import start_server_process, stop_server_process  # noqa: E402

TARGET_EFFICIENCY = Target("<=", 1.1)  # wall / (N x L / C)
TARGET_CACHED_S = Target("<", 2.0, "s")  # a fully cached re-run of 10,000 cells
TARGET_FLAT = Target("<=", 1.2)
TARGET_STREAM = Target(
    "<=", 1.05
)  # streamed grid wall / the same grid's wall with whole bodies  # peak RSS of the larger run / the smaller's: what "flat" means here


def config_text(url: str) -> str:
    return f"""
[defaults]
model = "openai/fake"

[models."openai/fake"]
provider = "openai"
model = "fake"
base_url = "{url}"
max_tokens = 16
timeout = 30
price = {{ input = 0.15, output = 0.60, as_of = 2026-11-27 }}
"""


def issues(n: int) -> list[Any]:
    from orchestrator.types import Gold, Issue

    return [
        Issue(
            repo="bench/grid",
            number=i,
            title=f"Crash number {i} when saving",
            body="KeyError in app/save.py",
            gold=Gold(type="bug", component="core", severity="high", files=["app/save.py"]),
            split="dev",
        )
        for i in range(n)
    ]


def client_for(url: str, home: Path) -> Any:
    import tomllib

    from orchestrator.client import LLMClient
    from orchestrator.config import config_from_dict

    cfg_path = home / "orchestrator.toml"
    cfg_path.write_text(config_text(url))
    os.environ["ORCHESTRATOR_HOME"] = str(home)
    return LLMClient(config_from_dict(tomllib.loads(cfg_path.read_text()), cfg_path))


def run(
    client: Any,
    items: list[Any],
    run_id: str,
    concurrency: int,
    cache: bool,
    mode: str = "classify",
    stream: bool = False,
) -> tuple[float, Any]:
    """One ``run_grid`` over ``items``; returns (wall seconds, summary)."""
    from orchestrator.runs.runner import run_grid

    started = time.perf_counter()
    summary = client.run_sync(
        run_grid(
            items,
            ["openai/fake"],
            [mode],
            concurrency=concurrency,
            run_id=run_id,
            cache=cache,
            client=client,
            progress=False,
            stream=stream,
        )
    )
    return time.perf_counter() - started, summary


async def _drive(call: Callable[[int], Awaitable[None]], n: int, concurrency: int) -> float:
    """``n`` calls by ``concurrency`` workers after one call per worker to warm up; the timed wall."""

    async def drain(it: Iterator[int]) -> None:
        for i in it:
            await call(i)

    warm = iter(range(concurrency))
    await asyncio.gather(*(drain(warm) for _ in range(concurrency)))
    started = time.perf_counter()
    todo = iter(range(n))
    await asyncio.gather(*(drain(todo) for _ in range(concurrency)))
    return time.perf_counter() - started


def _body(i: int) -> dict[str, Any]:
    return {"model": "fake", "max_tokens": 16, "messages": [{"role": "user", "content": f"issue {i}"}]}


async def raw_aiohttp_grid(url: str, n: int, concurrency: int, stream: bool = False) -> float:
    """The neutral floor: bare aiohttp POSTs with the same concurrency, nothing else (streamed: the
    body read as it arrives, line by line)."""
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def call(i: int) -> None:
            async with session.post(url + "/chat/completions", json={**_body(i), "stream": stream}) as r:
                if stream:
                    async for _line in r.content:
                        pass
                else:
                    await r.json()

        return await _drive(call, n, concurrency)


async def raw_wire_grid(url: str, n: int, concurrency: int, stream: bool = False) -> float:
    """orchestrator's own transport bare: the same POSTs on ``orchestrator.providers.wire``."""
    from orchestrator.providers.http import _shared_ssl_context
    from orchestrator.providers.wire import WirePool, parse_target

    pool = WirePool(_shared_ssl_context, concurrency)
    target = parse_target(url + "/chat/completions")
    headers = {"content-type": "application/json"}

    async def call(i: int) -> None:
        body = json.dumps({**_body(i), "stream": stream}).encode()
        response = await pool.post(target, headers, body, 30.0, 30.0)
        try:
            data = b"".join([chunk async for chunk in response.raw_chunks()])
        finally:
            response.release()
        if not stream:
            json.loads(data)

    try:
        return await _drive(call, n, concurrency)
    finally:
        await pool.aclose()


def timed_cpu(run_floor: Callable[[], float], n: int) -> tuple[float, float]:
    """(wall, CPU ms per request) of one floor run in this process."""
    cpu = time.process_time()
    wall = run_floor()
    return wall, (time.process_time() - cpu) / n * 1000


async def raw_httpx_grid(url: str, n: int, concurrency: int) -> float:
    """The floor on orchestrator's transport: bare httpx (httpx-aiohttp) POSTs, same concurrency."""
    import httpx
    from httpx_aiohttp import AiohttpTransport

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(transport=AiohttpTransport(limits=limits)) as http:

        async def call(i: int) -> None:
            r = await http.post(url + "/chat/completions", json=_body(i))
            r.json()

        return await _drive(call, n, concurrency)


def bench_efficiency(
    n: int, concurrency: int, latency_ms: float, rounds: int, stream: bool = False
) -> dict[str, Any]:
    """Per round: raw aiohttp, raw httpx + httpx-aiohttp, then run_grid, each over the same N cells."""
    url, server = start_server_process(latency_ms)
    out: dict[str, Any] = {"grid": [], "aiohttp": [], "httpx": [], "wire": [], "cpu_ms": []}
    out |= {"aiohttp_cpu_ms": [], "wire_cpu_ms": []}
    has_wire = importlib.util.find_spec("orchestrator.providers.wire") is not None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            client = client_for(url, Path(tmp))
            run(client, issues(concurrency), "warmup", concurrency, cache=False, stream=stream)  # imports
            out["rss_before_mb"] = current_rss_mb()
            for r in range(rounds):
                wall, cpu_ms = timed_cpu(
                    lambda: asyncio.run(raw_aiohttp_grid(url, n, concurrency, stream)), n
                )
                out["aiohttp"].append(wall)
                out["aiohttp_cpu_ms"].append(cpu_ms)
                if has_wire:  # an older checkout (bench/with_tree.py) may not have it
                    wall, cpu_ms = timed_cpu(
                        lambda: asyncio.run(raw_wire_grid(url, n, concurrency, stream)), n
                    )
                    out["wire"].append(wall)
                    out["wire_cpu_ms"].append(cpu_ms)
                out["httpx"].append(asyncio.run(raw_httpx_grid(url, n, concurrency)))
                items = issues(n)
                cpu = time.process_time()
                wall, summary = run(client, items, f"eff{r}", concurrency, cache=False, stream=stream)
                out["cpu_ms"].append((time.process_time() - cpu) / n * 1000)
                assert summary.cells_run == n and summary.errors == 0, summary
                out["grid"].append(wall)
            client.close()
    finally:
        stop_server_process(server)
    out["peak_rss_mb"] = peak_rss_mb()
    out["limit_s"] = n * latency_ms / 1000 / concurrency
    return out


def bench_stream(n: int, concurrency: int, latency_ms: float, rounds: int) -> dict[str, Any]:
    """Per round: run_grid over N cells with whole bodies and streamed, the order alternating."""
    from orchestrator.runs.store import ResultStore, default_db_path

    url, server = start_server_process(latency_ms)
    out: dict[str, Any] = {"whole": [], "streamed": [], "ttft_p50": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            client = client_for(url, Path(tmp))
            run(client, issues(concurrency), "warm-whole", concurrency, cache=False)
            run(client, issues(concurrency), "warm-stream", concurrency, cache=False, stream=True)
            for r in range(rounds):
                order = [False, True] if r % 2 == 0 else [True, False]
                for stream in order:
                    wall, summary = run(
                        client, issues(n), f"s{r}-{stream}", concurrency, cache=False, stream=stream
                    )
                    assert summary.cells_run == n and summary.errors == 0, summary
                    out["streamed" if stream else "whole"].append(wall)
                store = ResultStore(default_db_path(Path(tmp)), readonly=True)
                rows = store.results_df(f"s{r}-True")
                store.close()
                assert rows["ttft_s"].notna().all(), "a streamed cell without its time to first token"
                out["ttft_p50"].append(float(rows["ttft_s"].median()))
            client.close()
    finally:
        stop_server_process(server)
    out["limit_s"] = n * latency_ms / 1000 / concurrency
    return out


def bench_cached(n: int, rounds: int, mode: str = "classify") -> dict[str, Any]:
    """One filling run (one run), then ``rounds`` fully cached re-runs under new run ids."""
    url, server = start_server_process(0.0)
    walls = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            client = client_for(url, Path(tmp))
            items = issues(n)
            first, _ = run(client, items, "fill", 32, cache=True, mode=mode)
            for r in range(rounds):
                wall, summary = run(client, items, f"cached{r}", 32, cache=True, mode=mode)
                assert summary.cells_run == n and summary.errors == 0, summary
                walls.append(wall)
            client.close()
    finally:
        stop_server_process(server)
    return {"fill_s": first, "cached_s": walls}


def _memory_child(n: int, url: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        client = client_for(url, Path(tmp))
        run(client, issues(MEMORY_WARMUP), "warm", 32, cache=True)  # the imports, the pools
        before = current_rss_mb()
        items = issues(n)
        loaded = current_rss_mb()
        run(client, items, "mem", 32, cache=True)
        client.close()
    peak = peak_rss_mb()
    print(json.dumps({"maxrss_mb": peak, "issues_mb": loaded - before, "run_mb": peak - loaded}))


MEMORY_WARMUP = 50  # cells run first in a memory child, so that what follows is the run, not the imports


def bench_memory(sizes: tuple[int, int], rounds: int) -> dict[tuple[int, str], list[float]]:
    """Peak RSS of a run of each size, each in a fresh process, the sizes alternating over the rounds; and
    of it, what building the issues took and what the run added above them (the peak minus the RSS with
    the issues loaded). Keys: (size, "maxrss_mb" | "issues_mb" | "run_mb")."""
    url, server = start_server_process(0.0)
    out: dict[tuple[int, str], list[float]] = {}
    try:
        for _ in range(rounds):
            for n in sizes:
                # under bench/with_tree.py the child imports that checkout too
                tree = os.environ.get("BENCH_TREE")
                launch = [sys.executable, str(HERE / "with_tree.py"), tree] if tree else [sys.executable]
                proc = subprocess.run(
                    [*launch, __file__, "--memory-child", str(n), "--url", url],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                figures = json.loads(proc.stdout.strip().splitlines()[-1])
                for key, value in figures.items():
                    out.setdefault((n, key), []).append(value)
    finally:
        stop_server_process(server)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["efficiency", "cached", "memory", "stream"])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each benchmark; medians shown")
    parser.add_argument("--cells", type=int, default=2000, help="efficiency: cells N")
    parser.add_argument("--concurrency", type=int, default=64, help="efficiency: cells in flight C")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="efficiency: server latency L")
    parser.add_argument("--cached-cells", type=int, default=10_000, help="cached re-run: cells")
    parser.add_argument(
        "--memory-cells", default="1000,10000", help="memory: the two run sizes, smaller first"
    )
    parser.add_argument(
        "--stream", action="store_true", help="efficiency: streamed answers (SSE) instead of whole bodies"
    )
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["ORCHESTRATOR_PROGRESS"] = "off"
    if args.memory_child:
        _memory_child(args.memory_child, args.url)
        return
    cmd = f"python bench/bench_grid.py --rounds {args.rounds}"
    if args.only:
        cmd += f" --only {args.only}"
    if args.only in (None, "efficiency", "stream"):
        cmd += f" --cells {args.cells} --concurrency {args.concurrency} --latency-ms {args.latency_ms:g}"
    if args.stream and args.only in (None, "efficiency"):
        cmd += " --stream"
    if args.only in (None, "cached"):
        cmd += f" --cached-cells {args.cached_cells}"
    if args.only in (None, "memory"):
        cmd += f" --memory-cells {args.memory_cells}"
    report = Report(cmd)
    if args.only in (None, "efficiency"):
        n, c, lat = args.cells, args.concurrency, args.latency_ms
        e = bench_efficiency(n, c, lat, args.rounds, stream=args.stream)
        limit = e["limit_s"]
        how = "streamed" if args.stream else "whole bodies"
        report.section(f"grid efficiency: {n:,} cells, {c} in flight, {lat:g} ms latency, {how}")
        report.add("limit N x L / C", limit, unit="s", basis="computed")
        report.add("run_grid wall", e["grid"], unit="s")
        report.add("raw aiohttp wall (neutral floor)", e["aiohttp"], unit="s")
        if e["wire"]:
            report.add("raw wire wall (orchestrator's transport)", e["wire"], unit="s")
        report.add("raw httpx + httpx-aiohttp wall (whole bodies, for reference)", e["httpx"], unit="s")
        report.add("run_grid wall / limit", [w / limit for w in e["grid"]], target=TARGET_EFFICIENCY)
        report.add("run_grid CPU per cell (this process; the server is another)", e["cpu_ms"], unit="ms")
        report.add("raw aiohttp CPU per request", e["aiohttp_cpu_ms"], unit="ms")
        if e["wire"]:
            report.add("raw wire CPU per request", e["wire_cpu_ms"], unit="ms")
            wire_vs = ratios(e["wire_cpu_ms"], e["aiohttp_cpu_ms"])
            report.add("raw wire CPU / raw aiohttp CPU, round by round", wire_vs)
        report.add("raw aiohttp wall / limit, same rounds", [w / limit for w in e["aiohttp"]])
        if e["wire"]:
            report.add("raw wire wall / limit, same rounds", [w / limit for w in e["wire"]])
        report.add("raw httpx + httpx-aiohttp wall / limit, same rounds", [w / limit for w in e["httpx"]])
        report.add("run_grid wall / raw aiohttp wall, round by round", ratios(e["grid"], e["aiohttp"]))
        report.add("run_grid wall / raw httpx + httpx-aiohttp wall", ratios(e["grid"], e["httpx"]))
        before = e["rss_before_mb"]
        report.add("RSS after the warm-up", before, unit="MB", digits=1, basis="once, before the rounds")
        peak = e["peak_rss_mb"]
        report.add("peak RSS of this process", peak, unit="MB", digits=1, basis="peak over all rounds")
    if args.only in (None, "stream"):
        n, c, lat = args.cells, args.concurrency, args.latency_ms
        st = bench_stream(n, c, lat, args.rounds)
        limit = st["limit_s"]
        report.section(f"streaming overhead: {n:,} cells, {c} in flight, {lat:g} ms latency, streamed vs not")
        report.add("limit N x L / C", limit, unit="s", basis="computed")
        report.add("run_grid wall, whole bodies", st["whole"], unit="s")
        report.add("run_grid wall, streamed", st["streamed"], unit="s")
        report.add("whole bodies: wall / limit", [w / limit for w in st["whole"]])
        report.add("streamed: wall / limit", [w / limit for w in st["streamed"]])
        report.add(
            "streamed / whole, round by round", ratios(st["streamed"], st["whole"]), target=TARGET_STREAM
        )
        report.add(
            "streamed cells: TTFT p50 (the server sends the first piece at L/2)", st["ttft_p50"], unit="s"
        )
    if args.only in (None, "cached"):
        n = args.cached_cells
        c = bench_cached(n, args.rounds)
        report.section(f"fully cached re-run of {n:,} cells (classify), after one filling run")
        report.add("filling run, no latency", c["fill_s"], unit="s")
        target = TARGET_CACHED_S if n == 10_000 else None  # the target is for 10,000 cells
        report.add("cached re-run wall", c["cached_s"], unit="s", target=target)
        report.add("cached re-run per cell", [w / n * 1e6 for w in c["cached_s"]], unit="us", digits=1)
        if target is None:
            report.note(f"the cached re-run's target (< 2 s) is for 10,000 cells: no verdict for {n:,}")
    if args.only in (None, "memory"):
        small, large = (int(x) for x in args.memory_cells.split(","))
        m = bench_memory((small, large), args.rounds)
        report.section(f"peak RSS of a run of {small:,} vs {large:,} cells, each in a fresh process")
        peak = {n: m[(n, "maxrss_mb")] for n in (small, large)}
        report.add(f"peak RSS, {small:,} cells", peak[small], unit="MB", digits=1)
        report.add(f"peak RSS, {large:,} cells", peak[large], unit="MB", digits=1)
        report.add(
            f"peak RSS {large:,} / {small:,}, round by round",
            ratios(peak[large], peak[small]),
            target=TARGET_FLAT,
        )
        for n in (small, large):
            report.add(
                f"of it, the {n:,} issues built by the caller", m[(n, "issues_mb")], unit="MB", digits=1
            )
            report.add(
                f"of it, the run above its loaded issues, {n:,} cells", m[(n, "run_mb")], unit="MB", digits=1
            )
        grown = [
            (b - a) / (large - small) * 1024
            for a, b in zip(m[(small, "run_mb")], m[(large, "run_mb")], strict=True)
        ]
        report.add("the run's own growth per added cell, round by round", grown, unit="kB", digits=2)
    report.print()


if __name__ == "__main__":
    main()
