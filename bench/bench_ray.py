"""The grid on Ray workers against the same grid in this process, and the embedded model on 1 vs 2 workers.

    python bench/bench_ray.py --rounds 3                                  # both parts below
    python bench/bench_ray.py --only grid --cells 20000 --concurrency 256 --rounds 1
    python bench/bench_ray.py --only local --issues 8 --task classify

1. grid: N cells (2,000) at C in flight (64) against the loopback server answering after L ms (100;
   bench/fake_openai_server.py, a separate process), cache off, every row written to SQLite, through
   ``run_grid`` in this process and through ``run_grid(executor="ray", workers=W)`` (2), the order
   alternating round by round. The local Ray cluster (``ray.init`` with this machine's CPUs) is started
   once before the rounds, as a user's running cluster would be: its start is reported apart. Each run
   starts its own worker actors, so their start (a Ray worker process each, importing orchestrator, a
   client each) is in the wall; it is also reported alone (``RunSummary.worker_start_s``). The figure is
   Ray wall / in-process wall of the same round.
2. local: the embedded model (``local/smollm2``, one llama.cpp slot per engine) on K issues of the sample
   set x one task, through Ray with 1 worker (its engine on every core) and with 2 workers (an engine
   each, on half the cores each); the wall includes each worker loading its engine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from _report import Report, ratios  # noqa: E402
from bench_grid import client_for, issues  # noqa: E402
from fake_openai_server import start_server_process, stop_server_process  # noqa: E402


def grid_run(client: Any, items: list[Any], run_id: str, concurrency: int, **kw: Any) -> tuple[float, Any]:
    from orchestrator.runs.runner import run_grid

    started = time.perf_counter()
    summary = client.run_sync(
        run_grid(
            items,
            ["openai/fake"],
            ["classify"],
            concurrency=concurrency,
            run_id=run_id,
            cache=False,
            client=client,
            progress=False,
            stream=False,
            **kw,
        )
    )
    wall = time.perf_counter() - started
    assert summary.status == "finished" and summary.errors == 0, summary
    return wall, summary


def bench_grid(n: int, concurrency: int, latency_ms: float, workers: int, rounds: int) -> dict[str, Any]:
    import ray

    out: dict[str, Any] = {"local": [], "ray": [], "ray_start": []}
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    out["ray_start_s"] = time.perf_counter() - t0
    url, server = start_server_process(latency_ms)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            client = client_for(url, Path(tmp))
            grid_run(client, issues(concurrency), "warm-local", concurrency)
            grid_run(client, issues(concurrency), "warm-ray", concurrency, executor="ray", workers=workers)
            for r in range(rounds):
                order = ["local", "ray"] if r % 2 == 0 else ["ray", "local"]
                for where in order:
                    kw = {"executor": "ray", "workers": workers} if where == "ray" else {}
                    wall, summary = grid_run(client, issues(n), f"{where}{r}", concurrency, **kw)
                    out[where].append(wall)
                    if where == "ray":
                        out["ray_start"].append(summary.worker_start_s)
                    print(f"  round {r + 1}: {where} {wall:.2f} s", flush=True)
            client.close()
    finally:
        stop_server_process(server)
        ray.shutdown()
    out["limit_s"] = n * latency_ms / 1000 / concurrency
    return out


def local_config(folder: Path, threads: int) -> Path:
    from bench_local_answers import MODEL, base_entry, toml_value

    entry = base_entry(ROOT / "orchestrator.toml")
    entry["options"] = {**(entry.get("options") or {}), "threads": threads, "slots": 1}
    lines = [f"[defaults]\nmodel = {toml_value(MODEL)}\n", f"[models.{toml_value(MODEL)}]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in entry.items() if k != "options"]
    lines.append(f"options = {toml_value(entry['options'])}")
    path = folder / f"threads{threads}" / "orchestrator.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def bench_local(n_issues: int, task: str, rounds: int) -> dict[str, Any]:
    import ray
    from bench_local_answers import MODEL

    from orchestrator.client.llm_client import LLMClient
    from orchestrator.issues import load_issues
    from orchestrator.runs.runner import run_grid

    cpus = os.cpu_count() or 2
    items = load_issues(ROOT / "datasets" / "sample.jsonl")[:n_issues]
    out: dict[str, Any] = {"1": [], "2": [], "cpus": cpus}
    ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["ORCHESTRATOR_HOME"] = tmp
            configs = {"1": local_config(Path(tmp), cpus), "2": local_config(Path(tmp), max(1, cpus // 2))}
            for r in range(rounds):
                for workers in ("1", "2") if r % 2 == 0 else ("2", "1"):
                    client = LLMClient(configs[workers], cache=False)
                    started = time.perf_counter()
                    summary = client.run_sync(
                        run_grid(
                            items,
                            [MODEL],
                            [task],
                            concurrency=2 * int(workers),
                            run_id=f"local{workers}-{r}",
                            cache=False,
                            client=client,
                            progress=False,
                            executor="ray",
                            workers=int(workers),
                            worker_cpus=cpus / int(workers),
                        )
                    )
                    wall = time.perf_counter() - started
                    client.close()
                    assert summary.status == "finished", summary
                    out[workers].append(wall)
                    print(f"  round {r + 1}: {workers} worker(s) {wall:.1f} s", flush=True)
    finally:
        ray.shutdown()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["grid", "local"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cells", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--issues", type=int, default=8, help="local: issues of datasets/sample.jsonl")
    parser.add_argument("--task", default="classify", help="local: the task")
    args = parser.parse_args()
    os.environ["ORCHESTRATOR_PROGRESS"] = "off"
    cmd = f"python bench/bench_ray.py --rounds {args.rounds}" + (f" --only {args.only}" if args.only else "")
    if args.only in (None, "grid"):
        cmd += f" --cells {args.cells} --concurrency {args.concurrency} --latency-ms {args.latency_ms:g}"
        cmd += f" --workers {args.workers}"
    if args.only in (None, "local"):
        cmd += f" --issues {args.issues} --task {args.task}"
    report = Report(cmd)
    if args.only in (None, "grid"):
        n, c, lat, w = args.cells, args.concurrency, args.latency_ms, args.workers
        g = bench_grid(n, c, lat, w, args.rounds)
        limit = g["limit_s"]
        report.section(f"grid: {n:,} cells, {c} in flight, {lat:g} ms latency, in process vs {w} Ray workers")
        report.add("limit N x L / C", limit, unit="s", basis="computed")
        report.add("local Ray cluster start (once)", g["ray_start_s"], unit="s", basis="once")
        report.add("in-process wall", g["local"], unit="s")
        report.add(f"Ray, {w} workers, wall", g["ray"], unit="s")
        report.add("in-process wall / limit", [x / limit for x in g["local"]])
        report.add(f"Ray, {w} workers: wall / limit", [x / limit for x in g["ray"]])
        report.add("Ray wall / in-process wall, round by round", ratios(g["ray"], g["local"]))
        report.add("Ray: the workers' start, in that wall", g["ray_start"], unit="s")
        after = [w - s for w, s in zip(g["ray"], g["ray_start"], strict=True)]
        report.add("Ray wall after the workers started / in-process wall", ratios(after, g["local"]))
    if args.only in (None, "local"):
        lo = bench_local(args.issues, args.task, args.rounds)
        report.section(
            f"embedded model: {args.issues} issues x {args.task}, 1 worker ({lo['cpus']} threads) "
            f"vs 2 workers ({max(1, lo['cpus'] // 2)} thread(s) each), one slot per engine"
        )
        report.add("1 worker, wall (engine load included)", lo["1"], unit="s")
        report.add("2 workers, wall (engine loads included)", lo["2"], unit="s")
        report.add("2 workers / 1 worker, round by round", ratios(lo["2"], lo["1"]))
    report.print()


if __name__ == "__main__":
    main()
