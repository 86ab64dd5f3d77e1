"""Quality of the embedded model's answers under llama.cpp sampler settings: loops, the token cap, length.

    python bench/bench_local_answers.py --limit 32 --threads 1 --configs before,after       # ~35 min, 2 cores
    python bench/bench_local_answers.py --limit 4 --threads 1 --tasks fix,summarize,explain \
        --configs before,rp1.1,rp1.3,dry,dry+rp1.1                                       # the screen, ~8 min
    python bench/bench_local_answers.py --limit 8 --threads 1 --configs after,after#2,after+stop
    python bench/bench_local_answers.py --from-saved answers.jsonl     # the tables again, no model calls

Each configuration is a temporary orchestrator.toml holding the ``[models."local/smollm2"]`` entry of the
project's orchestrator.toml with its ``options`` (``sampling``, ``slots``) and per-task ``max_tokens``
(``[models."local/smollm2".modes.<task>]``) varied; per-task sampling fields (a stop sequence for one task)
get a file of their own, since the config has no per-task ``options``. Every call goes through
``LLMClient(config, cache=False).complete_sync(issue, model="local/smollm2", mode=task)``, one at a time,
issue by issue with the configurations interleaved (so a load spike from another process hits all of them
alike). ``before`` is the bench before issue 16: no sampling options, 160 tokens for every task;
``recommended`` is what orchestrator.toml ships since. A name ending in
``#2`` reruns its configuration and is compared byte for byte with the first run.

Per configuration and task: the share of degenerate answers (orchestrator.scoring.degenerate), the share
cut by the cap (finish_reason "length"), the median output tokens, the summed wall time of the calls (and
llama.cpp's own prompt and generation time), the share of classify answers that parse, the mean score of
the task's own scorer against the gold labels, and two sample answers. ``--save F`` writes every answer as JSONL.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from _report import environment, load_average  # noqa: E402

MODEL = "local/smollm2"
TASKS = ("classify", "fix", "summarize", "explain")
DRY = {"dry_multiplier": 0.8, "dry_base": 1.75, "dry_allowed_length": 2}
LIMITS = {"classify": 64, "fix": 128, "summarize": 96, "explain": 128}

# name -> sampling (all tasks), per-task sampling, per-task max_tokens, slots
CONFIGS: dict[str, dict[str, Any]] = {
    "before": {"max_tokens": dict.fromkeys(TASKS, 160)},
    "rp1.1": {"sampling": {"repeat_penalty": 1.1}, "max_tokens": dict.fromkeys(TASKS, 160)},
    "rp1.3": {"sampling": {"repeat_penalty": 1.3}, "max_tokens": dict.fromkeys(TASKS, 160)},
    "dry": {"sampling": DRY, "max_tokens": dict.fromkeys(TASKS, 160)},
    "dry+rp1.1": {"sampling": {**DRY, "repeat_penalty": 1.1}, "max_tokens": dict.fromkeys(TASKS, 160)},
    "after": {"sampling": {**DRY, "repeat_penalty": 1.1}, "max_tokens": LIMITS},
    # after, with room for a long component string to close the classify JSON (the cap changes no token
    # before it, so answers that stopped under 64 are the same)
    "recommended": {"sampling": {**DRY, "repeat_penalty": 1.1}, "max_tokens": {**LIMITS, "classify": 96}},
    "after+stop": {
        "sampling": {**DRY, "repeat_penalty": 1.1},
        "task_sampling": {"summarize": {"stop": ["\n\n"]}},
        "max_tokens": LIMITS,
    },
}
DEFAULT_CONFIGS = "before,after"


def toml_value(value: Any) -> str:
    """A TOML literal for a string, number, bool, list or (inline) table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid in a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {type(value).__name__}")


def base_entry(config_path: Path) -> dict[str, Any]:
    """The ``[models."local/smollm2"]`` entry of the project's config, without its per-mode tables."""
    entry = dict(tomllib.loads(config_path.read_text())["models"][MODEL])
    entry.pop("modes", None)
    return entry


def write_config(
    folder: Path,
    name: str,
    entry: dict[str, Any],
    sampling: dict[str, Any],
    slots: int,
    limits: dict[str, int],
) -> Path:
    """One orchestrator.toml holding only ``local/smollm2`` with these options and per-task max_tokens."""
    options = dict(entry.get("options") or {})
    options.pop("sampling", None)  # the configuration's own sampling, not the project's (before has none)
    if sampling:
        options["sampling"] = sampling
    if slots:
        options["slots"] = slots
    lines = [f"[defaults]\nmodel = {toml_value(MODEL)}\n", f"[models.{toml_value(MODEL)}]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in entry.items() if k != "options"]
    if options:
        lines.append(f"options = {toml_value(options)}")
    for task, n in limits.items():
        lines.append(f"  [models.{toml_value(MODEL)}.modes.{task}]\n  max_tokens = {n}")
    path = folder / f"{name.replace('#', '_').replace('+', '_')}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def clients_for(
    folder: Path, name: str, entry: dict[str, Any], tasks: list[str], slots: int | None
) -> dict[str, Any]:
    """task -> LLMClient for configuration ``name`` (one file per distinct per-task sampling)."""
    from orchestrator.client.llm_client import LLMClient

    spec = CONFIGS[name.split("#")[0]]
    n_slots = slots or spec.get("slots") or 0
    clients: dict[str, Any] = {}
    made: dict[str, Any] = {}
    for task in tasks:
        sampling = {**spec.get("sampling", {}), **spec.get("task_sampling", {}).get(task, {})}
        key = json.dumps(sampling, sort_keys=True)
        if key not in made:
            path = write_config(
                folder, f"{name}-{len(made)}", entry, sampling, n_slots, spec.get("max_tokens", {})
            )
            made[key] = LLMClient(path, cache=False)
        clients[task] = made[key]
    return clients


def short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    scored = [r["score"] for r in rows if r["score"] is not None]
    return {
        "n": n,
        "degenerate": sum(r["degenerate"] for r in rows) / n,
        "cap": sum(r["finish_reason"] == "length" for r in rows) / n,
        "median_tokens": statistics.median(r["tokens"] for r in rows),
        "wall_s": sum(r["wall_s"] for r in rows),
        "parsed": sum(r["parsed_ok"] for r in rows) / n,
        "prompt_tokens": statistics.median(r["prompt_tokens"] for r in rows),
        "prompt_s": sum(r["prompt_ms"] for r in rows) / 1000,
        "gen_s": sum(r["predicted_ms"] for r in rows) / 1000,
        "score": statistics.mean(scored) if scored else math.nan,
    }


def print_tables(
    rows: dict[tuple[str, str], list[dict[str, Any]]], names: list[str], tasks: list[str], samples: int
) -> None:
    """The table per configuration and task, the totals, the reruns compared, sample answers."""
    header = (
        f"{'config':<12} {'task':<10} {'n':>3} {'degen':>6} {'cap':>6} {'med tok':>8} {'wall s':>8} "
        f"{'prompt s':>8} {'gen s':>7} {'parsed':>7} {'score':>6} {'prompt tok':>10}"
    )
    print(f"\n{header}\n" + "-" * len(header))
    for task in tasks:
        for name in names:
            s = summarize(rows[name, task])
            parsed = f"{s['parsed']:7.0%}" if task == "classify" else f"{'-':>7}"
            print(
                f"{name:<12} {task:<10} {s['n']:>3} {s['degenerate']:6.0%} {s['cap']:6.0%} "
                f"{s['median_tokens']:8.0f} {s['wall_s']:8.1f} {s['prompt_s']:8.1f} {s['gen_s']:7.1f} "
                f"{parsed} {s['score']:6.3f} {s['prompt_tokens']:10.0f}"
            )
    print("\ntotal wall time per configuration (all tasks):")
    for name in names:
        total = sum(summarize(rows[name, t])["wall_s"] for t in tasks)
        degen = statistics.mean(r["degenerate"] for t in tasks for r in rows[name, t])
        print(f"  {name:<12} {total:8.1f} s   degenerate {degen:.0%}")
    for name in names:
        if name.endswith("#2") and name.split("#")[0] in names:
            first, again = name.split("#")[0], name
            pairs = [
                (a["text"], b["text"])
                for t in tasks
                for a, b in zip(rows[first, t], rows[again, t], strict=True)
            ]
            same = sum(a == b for a, b in pairs)
            print(f"reproducible: {again} vs {first}: {same}/{len(pairs)} answers byte-identical")
    print("\nsample answers (the first issues):")
    for task in tasks:
        for name in names:
            for r in rows[name, task][:samples]:
                print(
                    f"  [{name} / {task} / {r['issue']}] {r['finish_reason']} {r['tokens']} tok: {short(r['text'])}"
                )


def from_saved(path: Path, samples: int) -> int:
    """The tables of a ``--save`` file, each answer's ``degenerate`` recomputed with today's definition."""
    from orchestrator.scoring.degenerate import is_degenerate

    rows: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        r = json.loads(line)
        r["degenerate"] = is_degenerate(r["text"])
        rows[r["config"], r["task"]].append(r)
    names = list(dict.fromkeys(name for name, _ in rows))
    tasks = list(dict.fromkeys(task for _, task in rows))
    print(f"from {path}: {sum(map(len, rows.values()))} answers")
    print_tables(rows, names, tasks, samples)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="datasets/issues.jsonl")
    parser.add_argument("--limit", type=int, default=32, help="the first N issues of the dataset")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"of {', '.join(CONFIGS)}; NAME#2 reruns")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="options.threads (default: every CPU; 1 on a shared machine)",
    )
    parser.add_argument("--slots", type=int, default=None, help="options.slots for every configuration")
    parser.add_argument(
        "--config", default=str(ROOT / "orchestrator.toml"), help="where the entry comes from"
    )
    parser.add_argument("--samples", type=int, default=2, help="sample answers shown per cell")
    parser.add_argument("--save", default=None, help="write every answer to this JSONL file")
    parser.add_argument(
        "--from-saved",
        default=None,
        help="no model calls: the tables of a --save file, degenerate recomputed",
    )
    args = parser.parse_args(argv)
    if args.from_saved:
        return from_saved(Path(args.from_saved), args.samples)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [n for n in names if n.split("#")[0] not in CONFIGS] + [t for t in tasks if t not in TASKS]
    if unknown:
        parser.error(f"unknown configuration or task: {', '.join(unknown)}")

    home = tempfile.TemporaryDirectory(prefix="bench-answers-")
    os.environ["ORCHESTRATOR_HOME"] = home.name
    from orchestrator.issues import load_issues
    from orchestrator.scoring import score
    from orchestrator.scoring.degenerate import is_degenerate

    dataset = Path(args.dataset)
    issues = load_issues(dataset if dataset.is_absolute() else ROOT / dataset)[: args.limit]
    entry = base_entry(Path(args.config))
    if args.threads:
        entry["options"] = {**(entry.get("options") or {}), "threads": args.threads}
    folder = Path(home.name)
    clients = {name: clients_for(folder, name, entry, tasks, args.slots) for name in names}
    command = f"python bench/bench_local_answers.py --dataset {args.dataset} --limit {args.limit} " + (
        f"--tasks {','.join(tasks)} --configs {','.join(names)}"
    )
    command += f" --threads {args.threads}" if args.threads else ""
    print(f"$ {command}\n{environment()}", flush=True)
    print(f"{len(issues)} issues x {len(tasks)} tasks x {len(names)} configurations, one call at a time")

    rows: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    t_start = time.perf_counter()
    for k, issue in enumerate(issues):
        for task in tasks:
            order = names[k % len(names) :] + names[: k % len(names)]  # rotate who goes first
            for name in order:
                t0 = time.perf_counter()
                c = clients[name][task].complete_sync(issue, model=MODEL, mode=task)
                dt = time.perf_counter() - t0
                raw_usage = c.usage.raw or {}
                timings = (c.raw or {}).get("timings") or {}
                rows[name, task].append(
                    {
                        "config": name,
                        "task": task,
                        "issue": issue.id,
                        "text": c.text,
                        "tokens": c.usage.output_total,
                        "prompt_tokens": raw_usage.get("prompt_tokens", c.usage.input_total),
                        "finish_reason": c.finish_reason,
                        "wall_s": dt,
                        "degenerate": is_degenerate(c.text),
                        "parsed_ok": c.parsed is not None and c.parse_error is None,
                        "score": score(task, issue.gold, c.text, c.parsed, c.parse_error).value,
                        "prompt_ms": float(timings.get("prompt_ms", 0.0)),
                        "predicted_ms": float(timings.get("predicted_ms", 0.0)),
                    }
                )
        print(f"  issue {k + 1}/{len(issues)} done, {time.perf_counter() - t_start:.0f} s", flush=True)
    for per_task in clients.values():
        for client in {id(c): c for c in per_task.values()}.values():
            client.close()

    print_tables(rows, names, tasks, args.samples)
    if args.save:
        with open(args.save, "w") as f:
            for per in rows.values():
                for r in per:
                    f.write(json.dumps(r) + "\n")
        print(f"answers written to {args.save}")
    print(f"load average at the end: {load_average()}")
    home.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
