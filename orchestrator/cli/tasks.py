"""``orchestrator tasks``: the tasks a project can run (shipped and its own files), their prompt variants and
versions; ``tasks show TASK[:PROMPT]``: the exact messages a variant sends for an issue."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _rows(cfg: Any) -> list[dict[str, Any]]:
    """One row per task (shipped first, then the project's), with every prompt variant and its version."""
    from ..modes import MODES
    from ..tasks.builtin import SHIPPED

    rows = []
    for name, task in {**SHIPPED, **cfg.tasks}.items():
        entry = cfg.routing.get(name)
        variants = [m for m in MODES.values() if getattr(m, "task", "") == name]
        rows.append(
            {
                "task": name,
                "description": task.description,
                "source": "shipped" if name in SHIPPED and name not in cfg.tasks else str(task.path),
                "gold": task.gold,
                "labels": "dataset" if task.labels_from_dataset else list(task.labels or ()),
                "scorer": task.scorer,
                "prompts": [{"prompt": m.prompt, "mode": m.name, "version": m.version} for m in variants],
                "routed_prompt": entry.get("prompt", "default") if isinstance(entry, dict) else None,
            }
        )
    return rows


def cmd_tasks(args: argparse.Namespace) -> int:
    from ..config import load_config

    cfg = load_config(args.config)
    rows = _rows(cfg)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"config: {cfg.path}")
    header = f"{'task':<16} {'scorer':<11} {'labels':<34} {'prompts (version)':<40} source"
    print(header)
    print("-" * len(header))
    for r in rows:
        labels = r["labels"] if isinstance(r["labels"], str) else ", ".join(r["labels"]) or "-"
        prompts = ", ".join(
            f"{p['prompt']}{'*' if p['prompt'] == r['routed_prompt'] else ''} ({p['version']})"
            for p in r["prompts"]
        )
        print(f"{r['task']:<16} {r['scorer']:<11} {labels[:34]:<34} {prompts:<40} {r['source']}")
    if any(r["routed_prompt"] for r in rows):
        print("* the prompt [routing] picks")
    return 0


def cmd_tasks_show(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..errors import UsageError
    from ..modes import get_mode
    from ..resources import load_issues
    from ..tasks.modes import bind_to_issues, expand

    load_config(args.config)
    try:
        names = expand([args.task])
    except ValueError as exc:
        raise UsageError(f"tasks show: {exc}") from None
    issues = load_issues(args.dataset)
    if not 0 <= args.index < len(issues):
        raise UsageError(f"tasks show: --index {args.index}: {args.dataset} has {len(issues)} issues")
    bind_to_issues(names, issues)  # a task with labels = "dataset" takes them from this file
    issue = issues[args.index]
    for name in names:
        mode = get_mode(name)
        print(f"=== {name} (version {mode.version}) on {issue.id or issue.title!r}")
        for message in mode.messages(issue):
            print(f"--- {message.role}")
            print(message.content)
    return 0


def register(sub) -> None:
    """Add tasks and tasks show to the main parser."""
    p = sub.add_parser(
        "tasks", help="list the tasks, their prompt variants and versions; `tasks show` renders one"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_tasks)
    tsub = p.add_subparsers(dest="tasks_command", metavar="")
    sp = tsub.add_parser("show", help="print the messages a task's prompt variants send for an issue")
    sp.add_argument("task", help="a task (every variant) or task:prompt")
    sp.add_argument(
        "--dataset", default="datasets/sample.jsonl", help="issues to render for (default: %(default)s)"
    )
    sp.add_argument("--index", type=int, default=0, help="which issue of the file (default: the first)")
    sp.set_defaults(func=cmd_tasks_show)
