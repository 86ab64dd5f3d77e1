"""Aggregate throughput of the embedded model at 1, 2 and 4 llama.cpp slots, and whether greedy answers
stay byte-identical across slot counts and across runs.

    python bench/bench_local_slots.py --requests 8 --max-tokens 96 --rounds 2     # about 6 minutes, 2 cores

For each slot count a temporary orchestrator.toml holds the ``[models."local/smollm2"]`` entry of the
project's config with ``options.slots`` set (and ``options.sampling`` from ``--sampling``, JSON). A batch
is ``--requests`` calls (the first issues of ``--dataset``, task ``--task``, temperature 0, seed 0) sent at
once with ``asyncio.gather(client.complete(...))`` through one ``LLMClient(config, cache=False)``: at most
``slots`` of them run inside llama.cpp at a time (continuous batching), the rest wait. Each round runs every
slot count once, the order reversed every other round (1 2 4, 4 2 1, ...) so that a drifting load from
another process is shared. tok/s = generated tokens of the batch / its wall time; "all tok/s" counts the
prompt tokens too. A warm-up call per slot count loads its engine before timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from _report import Report  # noqa: E402
from bench_local_answers import MODEL, base_entry, toml_value  # noqa: E402


def write_config(
    folder: Path, entry: dict[str, Any], slots: int, sampling: dict[str, Any], max_tokens: int
) -> Path:
    options = {**(entry.get("options") or {}), "slots": slots}
    if sampling:
        options["sampling"] = sampling
    table = {**entry, "temperature": 0.0, "seed": 0, "max_tokens": max_tokens}
    lines = [f"[models.{toml_value(MODEL)}]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in table.items() if k != "options"]
    lines.append(f"options = {toml_value(options)}")
    path = folder / f"slots{slots}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def batch(client: Any, issues: list[Any], task: str) -> tuple[float, list[Any]]:
    """Every issue's answer, all sent at once; the wall time of the whole batch."""
    t0 = time.perf_counter()
    done = await asyncio.gather(*(client.complete(i, model=MODEL, mode=task) for i in issues))
    return time.perf_counter() - t0, list(done)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="datasets/issues.jsonl")
    parser.add_argument("--requests", type=int, default=8, help="calls in one batch (the first N issues)")
    parser.add_argument("--task", default="explain")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--slots", default="1,2,4")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="options.threads (default: every CPU; 1 on a shared machine)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="batches per slot count (>= 2 to compare runs)")
    parser.add_argument(
        "--sampling", default="{}", help='options.sampling as JSON, e.g. {"repeat_penalty": 1.1}'
    )
    parser.add_argument(
        "--config", default=str(ROOT / "orchestrator.toml"), help="where the entry comes from"
    )
    args = parser.parse_args(argv)
    slot_counts = [int(s) for s in args.slots.split(",")]
    sampling = json.loads(args.sampling)

    home = tempfile.TemporaryDirectory(prefix="bench-slots-")
    os.environ["ORCHESTRATOR_HOME"] = home.name
    from orchestrator.client.llm_client import LLMClient
    from orchestrator.issues import load_issues

    dataset = Path(args.dataset)
    issues = load_issues(dataset if dataset.is_absolute() else ROOT / dataset)[: args.requests]
    entry = base_entry(Path(args.config))
    if args.threads:
        entry["options"] = {**(entry.get("options") or {}), "threads": args.threads}
    clients = {
        n: LLMClient(write_config(Path(home.name), entry, n, sampling, args.max_tokens), cache=False)
        for n in slot_counts
    }
    for client in clients.values():  # load each engine before timing
        client.complete_sync(issues[0], model=MODEL, mode=args.task)

    rates: dict[int, list[float]] = {n: [] for n in slot_counts}
    all_rates: dict[int, list[float]] = {n: [] for n in slot_counts}
    texts: dict[int, list[list[str]]] = {n: [] for n in slot_counts}
    capped: dict[int, int] = dict.fromkeys(slot_counts, 0)
    for r in range(args.rounds):
        for n in slot_counts if r % 2 == 0 else list(reversed(slot_counts)):
            client = clients[n]
            wall, done = client.run_sync(batch(client, issues, args.task))
            gen = sum(c.usage.output_total for c in done)
            prompt = sum(c.usage.input_total for c in done)
            rates[n].append(gen / wall)
            all_rates[n].append((gen + prompt) / wall)
            texts[n].append([c.text for c in done])
            capped[n] += sum(c.finish_reason == "length" for c in done)
            print(
                f"  round {r + 1}, {n} slot(s): {len(done)} calls, {gen} generated + {prompt} prompt tokens "
                f"in {wall:.1f} s = {gen / wall:.1f} gen tok/s",
                flush=True,
            )
    for client in clients.values():
        client.close()

    command = (
        f"python bench/bench_local_slots.py --requests {args.requests} --task {args.task} "
        f"--max-tokens {args.max_tokens} --slots {args.slots} --rounds {args.rounds} --sampling '{args.sampling}'"
    )
    command += f" --threads {args.threads}" if args.threads else ""
    report = Report(command)
    report.section(
        f"{args.requests} concurrent {args.task} calls a batch, greedy, max_tokens {args.max_tokens}"
    )
    for n in slot_counts:
        report.add(f"{n} slot(s): generated tok/s", rates[n], unit="tok/s", digits=1)
        report.add(f"{n} slot(s): prompt + generated tok/s", all_rates[n], unit="tok/s", digits=1)
    base = statistics.median(rates[slot_counts[0]])
    for n in slot_counts[1:]:
        report.add(
            f"{n} slot(s) / {slot_counts[0]} slot(s), generated tok/s", statistics.median(rates[n]) / base
        )
    report.print()

    reference = texts[slot_counts[0]][0]
    print(
        f"\n{'slots':>5}  {'gen tok/s':>9}  {'same as run 1, same slots':>26}  {'same as 1 slot run 1':>21}  capped"
    )
    for n in slot_counts:
        runs = texts[n]
        within = (
            min(sum(a == b for a, b in zip(runs[0], run, strict=True)) for run in runs[1:])
            if len(runs) > 1
            else 0
        )
        across = min(sum(a == b for a, b in zip(reference, run, strict=True)) for run in runs)
        total = len(reference)
        print(
            f"{n:>5}  {statistics.median(rates[n]):9.1f}  {f'{within}/{total}':>26}  {f'{across}/{total}':>21}"
            f"  {capped[n]}/{total * len(runs)}"
        )
    home.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
