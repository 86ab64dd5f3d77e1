"""Grid benchmarks: efficiency against the latency limit, a fully cached re-run, and memory per cell count.

    python bench/bench_grid.py                      # everything below, one run, prints a table
    python bench/bench_grid.py --only efficiency    # or: cached, memory

1. Grid efficiency: 2,000 cells at concurrency 64 against a loopback server answering after 100 ms,
   through ``run_grid`` (cache off, every cell written to SQLite). The limit is N x L / C; the figure is
   wall / limit (target <= 1.1).
2. A fully cached re-run of 10,000 cells: the grid is run once against a server with no latency (filling
   the cache), then again under a new run id so every cell is a cache hit (target < 2 s).
3. Peak RSS of a run of 1,000 and of 10,000 cells, each in a fresh process (target: flat).

The server is a separate process (bench/fake_openai_server.py) so its work is not counted here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_overhead import start_server_process  # noqa: E402


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


def issues(n: int):
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


def client_for(url: str, home: Path):
    import tomllib

    from orchestrator.client import LLMClient
    from orchestrator.config import config_from_dict

    cfg_path = home / "orchestrator.toml"
    cfg_path.write_text(config_text(url))
    os.environ["ORCHESTRATOR_HOME"] = str(home)
    return LLMClient(config_from_dict(tomllib.loads(cfg_path.read_text()), cfg_path))


def run(client, items, run_id: str, concurrency: int, cache: bool, mode: str = "classify"):
    from orchestrator.runner import run_grid

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
        )
    )
    return time.perf_counter() - started, summary


async def raw_httpx_grid(url: str, n: int, concurrency: int) -> float:
    """The floor: bare httpx (httpx-aiohttp transport) POSTs with the same concurrency, nothing else."""
    import httpx
    from httpx_aiohttp import AiohttpTransport

    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(transport=AiohttpTransport(limits=limits)) as http:

        async def call(i: int) -> None:
            r = await http.post(
                url + "/chat/completions",
                json={
                    "model": "fake",
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": f"issue {i}"}],
                },
            )
            r.json()

        async def drain(it) -> None:
            for i in it:
                await call(i)

        warm = iter(range(concurrency))
        await asyncio.gather(*(drain(warm) for _ in range(concurrency)))
        started = time.perf_counter()
        todo = iter(range(n))
        await asyncio.gather(*(drain(todo) for _ in range(concurrency)))
        return time.perf_counter() - started


def bench_efficiency(
    n: int = 2000, concurrency: int = 64, latency_ms: float = 100.0, rounds: int = 3
) -> dict:
    """Median over rounds of run_grid's wall / limit, beside raw httpx's in the same rounds."""
    url, server = start_server_process(latency_ms)
    ours, raw = [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            client = client_for(url, Path(tmp))
            run(client, issues(concurrency), "warmup", concurrency, cache=False)  # connections, imports
            for r in range(rounds):
                raw.append(asyncio.run(raw_httpx_grid(url, n, concurrency)))
                wall, summary = run(client, issues(n), f"eff{r}", concurrency, cache=False)
                assert summary.cells_run == n and summary.errors == 0, summary
                ours.append(wall)
            client.close()
    finally:
        server.terminate()
    limit = n * latency_ms / 1000 / concurrency
    wall, floor = statistics.median(ours), statistics.median(raw)
    return {"wall_s": wall, "limit_s": limit, "ratio": wall / limit, "raw_ratio": floor / limit}


def bench_cached(n: int = 10_000, mode: str = "classify") -> dict:
    url, server = start_server_process(0.0)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            client = client_for(url, Path(tmp))
            items = issues(n)
            first, _ = run(client, items, "fill", 32, cache=True, mode=mode)
            wall, summary = run(client, items, "cached", 32, cache=True, mode=mode)
            client.close()
    finally:
        server.terminate()
    assert summary.cells_run == n and summary.errors == 0
    return {"fill_s": first, "cached_s": wall, "per_cell_us": wall / n * 1e6}


def _memory_child(n: int, url: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        client = client_for(url, Path(tmp))
        run(client, issues(n), "mem", 32, cache=True)
        client.close()
    print(json.dumps({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def bench_memory(sizes=(1_000, 10_000)) -> dict:
    url, server = start_server_process(0.0)
    out = {}
    try:
        for n in sizes:
            proc = subprocess.run(
                [sys.executable, __file__, "--memory-child", str(n), "--url", url],
                capture_output=True,
                text=True,
                check=True,
            )
            out[n] = json.loads(proc.stdout.strip().splitlines()[-1])["maxrss_mb"]
    finally:
        server.terminate()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["efficiency", "cached", "memory"])
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["ORCHESTRATOR_PROGRESS"] = "off"
    if args.memory_child:
        _memory_child(args.memory_child, args.url)
        return
    rows = []
    cmd = "python bench/bench_grid.py"
    if args.only in (None, "efficiency"):
        e = bench_efficiency()
        rows.append(
            (
                "grid efficiency: 2,000 cells, 64 in flight, 100 ms (median of 3)",
                f"{e['ratio']:.2f}x ({e['wall_s']:.2f} s / {e['limit_s']:.3f} s); raw httpx {e['raw_ratio']:.2f}x",
                "<= 1.1x",
                f"{cmd} --only efficiency",
            )
        )
    if args.only in (None, "cached"):
        c = bench_cached()
        rows.append(
            (
                "fully cached re-run of 10,000 cells (classify)",
                f"{c['cached_s']:.2f} s ({c['per_cell_us']:.0f} us/cell; first run {c['fill_s']:.1f} s)",
                "< 2 s",
                f"{cmd} --only cached",
            )
        )
    if args.only in (None, "memory"):
        m = bench_memory()
        rows.append(
            (
                "peak RSS, run of 1,000 vs 10,000 cells",
                f"{m[1000]:.0f} MB vs {m[10000]:.0f} MB ({m[10000] / m[1000]:.2f}x)",
                "flat",
                f"{cmd} --only memory",
            )
        )
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'measured':<48}  {'target':<8}  command")
    for name, value, target, command in rows:
        print(f"{name:<{width}}  {value:<48}  {target:<8}  {command}")


if __name__ == "__main__":
    main()
