"""`orchestrator run` end to end at high concurrency against the latency limit, with raw aiohttp as the floor.

    python bench/bench_scale.py                                   # the three rows below, this checkout
    python bench/bench_scale.py --tree /tmp/before --tree .       # an older checkout and this one, alternating
    python bench/bench_scale.py --rows 20000x256 --rounds 3

Each row is N cells (issues x the classify task, one model) at C in flight against the loopback server
answering after L ms (bench/fake_openai_server.py, a separate process). The limit is N x L / C. Per row
and round, in this order: N POSTs on raw aiohttp at C (the neutral floor, in this process), then for each
``--tree`` the CLI as a user runs it, ``orchestrator run --dataset D --no-cache --concurrency C``,
importing that tree's package and with a fresh ORCHESTRATOR_HOME (so the wall includes
starting Python, importing, loading the config and the issues, and writing every row to SQLite); the
answers stream (the default) unless ``--no-stream``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _report import Report, ratios  # noqa: E402
from bench_grid import config_text, raw_aiohttp_grid  # noqa: E402
from fake_openai_server import start_server_process, stop_server_process  # noqa: E402
from with_tree import import_tree_code  # noqa: E402

ROWS = ("20000x64", "20000x256", "4000x256")
# The CLI, run from the checkout given (its package imported, not the editable install's).
LAUNCH = (
    "import orchestrator; assert orchestrator.__file__.startswith(sys.argv[1]), orchestrator.__file__; "
    "from orchestrator.cli import main; sys.exit(main(sys.argv[2:]))"
)


def write_dataset(path: Path, n: int) -> None:
    with path.open("w") as f:
        for i in range(n):
            issue = {
                "repo": "bench/scale",
                "number": i,
                "title": f"Crash number {i} when saving",
                "body": "KeyError in app/save.py",
                "gold": {"type": "bug", "component": "core", "severity": "high", "files": ["app/save.py"]},
                "split": "dev",
            }
            f.write(json.dumps(issue) + "\n")


def cli_run(tree: Path, folder: Path, dataset: Path, concurrency: int, stream: bool) -> float:
    home = Path(tempfile.mkdtemp(dir=folder))
    env = {
        **os.environ,
        "ORCHESTRATOR_HOME": str(home),
        "ORCHESTRATOR_PROGRESS": "off",
    }
    cmd = [
        sys.executable,
        "-c",
        import_tree_code(tree) + LAUNCH,
        str(tree),
        "--config",
        str(folder / "orchestrator.toml"),
        "run",
    ]
    cmd += [
        "--dataset",
        str(dataset),
        "--models",
        "openai/fake",
        "--no-cache",
        "--concurrency",
        str(concurrency),
    ]
    cmd += [] if stream else ["--no-stream"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=folder)
    wall = time.perf_counter() - started
    if proc.returncode != 0 or " 0 errors" not in proc.stdout:
        raise RuntimeError(f"{tree}: orchestrator run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", type=Path, help="a checkout to run (default: this one)")
    parser.add_argument("--rows", default=",".join(ROWS), help="NxC,... (cells x in flight)")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-stream", action="store_true", help="whole answers instead of streamed ones")
    args = parser.parse_args()
    trees = [t.resolve() for t in (args.tree or [ROOT])]
    rows = [tuple(int(x) for x in r.split("x")) for r in args.rows.split(",")]
    cmd = f"python bench/bench_scale.py --rows {args.rows} --latency-ms {args.latency_ms:g} --rounds {args.rounds}"
    cmd += "".join(f" --tree {t}" for t in args.tree or [])
    cmd += " --no-stream" if args.no_stream else ""
    report = Report(cmd)
    url, server = start_server_process(args.latency_ms)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "orchestrator.toml").write_text(config_text(url))
            for n, c in rows:
                dataset = folder / f"issues-{n}.jsonl"
                write_dataset(dataset, n)
                limit = n * args.latency_ms / 1000 / c
                floor: list[float] = []
                walls: dict[Path, list[float]] = {t: [] for t in trees}
                for r in range(args.rounds):
                    floor.append(asyncio.run(raw_aiohttp_grid(url, n, c)))
                    for tree in trees if r % 2 == 0 else list(reversed(trees)):
                        walls[tree].append(cli_run(tree, folder, dataset, c, not args.no_stream))
                        print(f"  {n}x{c} round {r + 1}: {tree.name}: {walls[tree][-1]:.2f} s", flush=True)
                report.section(f"{n:,} cells, {c} in flight, {args.latency_ms:g} ms latency")
                report.add("limit N x L / C", limit, unit="s", basis="computed")
                report.add("raw aiohttp: wall / limit", [w / limit for w in floor])
                for tree in trees:
                    name = tree.name if len(trees) > 1 else "orchestrator run"
                    report.add(f"{name}: end-to-end wall / limit", [w / limit for w in walls[tree]])
                    report.add(f"{name}: cells/s", [n / w for w in walls[tree]], digits=0)
                if len(trees) == 2:
                    a, b = trees
                    report.add(f"{b.name} / {a.name}, round by round", ratios(walls[b], walls[a]))
    finally:
        stop_server_process(server)
    report.print()


if __name__ == "__main__":
    main()
