"""CPU per streamed cell, layer by layer, in one event loop: where a grid's CPU goes.

    python bench/bench_layers.py                                 # 10,000 cells, 256 in flight, 100 ms
    python bench/bench_layers.py --cells 20000 --rounds 3

Each round runs the same N streamed calls at C in flight against the loopback server answering after
L ms (bench/fake_openai_server.py, a separate process, so its work is not counted), through four
layers, each the one before plus what it adds:

1. ``raw wire``: orchestrator's transport bare (``providers.wire``): the POST, the stream read whole;
2. ``LLMClient.complete``: the client (the prompt built from the task, limits, retries, the ledger, the
   SSE events parsed into a Completion with usage and cost);
3. ``call_cell``: the grid's cell (the result row made from the answer);
4. ``run_grid``: the whole grid (scoring, the writer, SQLite, the run's bookkeeping).

The figure is this process's CPU time (user + system) per cell (the first three layers warm each slot
with one call first: their CPU is divided by N + C calls). When it exceeds L / C (here 0.39 ms),
one event loop cannot keep C calls in flight and the wall leaves the latency limit N x L / C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _report import Report  # noqa: E402
from bench_grid import _drive, client_for, issues, raw_wire_grid, run  # noqa: E402
from fake_openai_server import start_server_process, stop_server_process  # noqa: E402

LAYERS = ("raw wire", "LLMClient.complete", "call_cell", "run_grid")


def layer_runs(url: str, client: Any, n: int, c: int) -> dict[str, Callable[[], object]]:
    """Each layer's run of ``n`` streamed calls at ``c`` in flight."""
    from orchestrator.runs.cells import call_cell
    from orchestrator.tasks.modes import bind_to_issues

    items = issues(n)
    bind_to_issues(["classify"], items)
    runs = iter(range(10**6))

    async def complete() -> float:
        async def one(i: int) -> None:
            await client.complete(items[i], model="openai/fake", mode="classify", cache="off", stream=True)

        return await _drive(one, n, c)

    async def cell() -> float:
        async def one(i: int) -> None:
            await call_cell(client, items[i], "openai/fake", "classify", 0, False, None, "layers", True)

        return await _drive(one, n, c)

    def grid() -> object:
        return run(client, items, f"layers-{next(runs)}", c, cache=False, stream=True)

    def on_a_loop(coro: Callable[[], Awaitable[object]]) -> Callable[[], object]:
        return lambda: asyncio.run(coro())

    wire = on_a_loop(lambda: raw_wire_grid(url, n, c, True))
    return dict(zip(LAYERS, (wire, on_a_loop(complete), on_a_loop(cell), grid), strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n, c, lat = args.cells, args.concurrency, args.latency_ms
    os.environ["ORCHESTRATOR_PROGRESS"] = "off"
    report = Report(
        f"python bench/bench_layers.py --cells {n} --concurrency {c} --latency-ms {lat:g} --rounds {args.rounds}"
    )
    cpu: dict[str, list[float]] = {name: [] for name in LAYERS}
    wall: dict[str, list[float]] = {name: [] for name in LAYERS}
    limit = n * lat / 1000 / c
    url, server = start_server_process(lat)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            client = client_for(url, Path(tmp))
            runs = layer_runs(url, client, n, c)
            runs["LLMClient.complete"]()  # warm-up: imports, connections
            for _ in range(args.rounds):
                for name, layer in runs.items():
                    started_cpu, started = time.process_time(), time.perf_counter()
                    layer()
                    calls = n if name == "run_grid" else n + c  # _drive warms each slot with one call
                    cpu[name].append((time.process_time() - started_cpu) / calls * 1000)
                    wall[name].append((time.perf_counter() - started) / limit)
            client.close()
    finally:
        stop_server_process(server)
    report.section(
        f"{n:,} streamed cells, {c} in flight, {lat:g} ms latency: CPU budget L / C = {lat / c:.3f} ms"
    )
    for name in LAYERS:
        report.add(f"{name}: CPU per cell", cpu[name], unit="ms")
    for name in LAYERS:
        report.add(f"{name}: wall / limit", wall[name])
    report.print()


if __name__ == "__main__":
    main()
