"""``orchestrator ask``: one model, one issue (text, a JSON file or a line of a JSONL file)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError


def _client(args: argparse.Namespace, **kw: Any):
    from ..client.llm_client import LLMClient
    from ..config import load_config

    return LLMClient(load_config(args.config), **kw)


def cmd_ask(args: argparse.Namespace) -> int:
    from ..types import Issue

    if args.issue_file:
        issue = _read_issue_file(Path(args.issue_file), args.index)
        prompt: Issue | str = issue
    elif args.text:
        prompt = " ".join(args.text)
    else:
        print("orchestrator ask: give the text of an issue or --issue-file FILE", file=sys.stderr)
        return 2
    from ..errors import UsageError
    from ..modes import get_mode

    with _client(args, cache=not args.no_cache) as client:
        try:
            get_mode(args.mode)  # known once the config has loaded its task files
        except ValueError as exc:
            raise UsageError(f"--task/--mode: {exc}") from None
        if args.stream and not args.json:
            completion = _print_streamed(client, prompt, args)
            print()
            print(_usage_line(completion), file=sys.stderr if args.quiet_usage else sys.stdout)
            return 0
        completion = client.complete_sync(prompt, model=args.model, mode=args.mode)
    if args.json:
        print(completion.model_dump_json(indent=2, exclude={"raw"}))
        return 0
    print(completion.text.strip())
    print()
    print(_usage_line(completion), file=sys.stderr if args.quiet_usage else sys.stdout)
    return 0


def _print_streamed(client: Any, prompt: Any, args: argparse.Namespace) -> Any:
    """Print the answer as it arrives; return its Completion. A stream that breaks after its first token
    has printed what arrived; the error (naming the model and the cause) follows on stderr."""
    from ..types import Completion

    started = False
    for item in client.stream_sync(prompt, model=args.model, mode=args.mode):
        if isinstance(item, Completion):
            if not started and item.text:  # nothing streamed: a provider that answers whole
                sys.stdout.write(item.text)
            sys.stdout.write("\n")
            sys.stdout.flush()
            return item
        if not started:
            item = item.lstrip()
            started = bool(item)
        sys.stdout.write(item)
        sys.stdout.flush()
    raise AssertionError("the stream ended without its Completion")  # pragma: no cover


def _usage_line(c) -> str:
    cost = "cost unknown" if c.cost_usd is None else f"${c.cost_usd:.6f}"
    if c.from_cache:
        cost = f"cached (saved ${c.cost_saved_usd or 0:.6f})"
    parts = [
        f"model {c.model}" + (f" (served by {c.served_model})" if c.served_model else ""),
        f"tokens in {c.usage.input_total} out {c.usage.output_total}",
        cost,
        f"{c.latency_s:.2f} s",
    ]
    if c.ttft_s is not None:
        parts.append(f"first token {c.ttft_s:.2f} s")
    if c.output_tps is not None:
        parts.append(f"{c.output_tps:.1f} tok/s")
    if c.parse_error:
        parts.append(f"parse error: {c.parse_error}")
    if len(c.fallback_path) > 1:
        parts.append("fallback path: " + " -> ".join(c.fallback_path))
    return " | ".join(parts)


def _read_issue_file(path: Path, index: int):
    """An issue from a JSON file (one object) or a JSONL file (the ``index``-th line)."""
    from pydantic import ValidationError

    from ..types import Issue

    if not path.is_file():
        raise InputError(f"issue file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        if index >= len(lines):
            raise InputError(f"{path}: has {len(lines)} issues; --index {index} is out of range")
        lineno, text = lines[index]
        where = f"{path}:{lineno}"
    else:
        where = str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if path.suffix != ".jsonl":
            where = f"{path}:{exc.lineno}"
        raise InputError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
    try:
        return Issue.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{where}: field '{field}': {first['msg']}") from None


def register(sub) -> None:
    """Add ask to the main parser."""
    from ..modes import MODES

    p = sub.add_parser("ask", help="ask one model about one issue")
    p.add_argument("text", nargs="*", help="the issue text (or use --issue-file)")
    p.add_argument("--model", help="model id (default: the routing for the mode, else the default model)")
    p.add_argument(
        "--task",
        "--mode",
        dest="mode",
        default="explain",
        help=f"a built-in mode ({', '.join(MODES)}), a task file's task or task:prompt (default: explain)",
    )
    p.add_argument("--issue-file", help="an issue as JSON, or a JSONL file (see --index)")
    p.add_argument("--index", type=int, default=0, help="which issue of a JSONL file (0-based)")
    p.add_argument("--json", action="store_true", help="print the Completion as JSON")
    p.add_argument(
        "--stream", action="store_true", help="print the answer as it arrives (time to first token, tok/s)"
    )
    p.add_argument("--no-cache", action="store_true", help="do not read or write the response cache")
    p.add_argument("--quiet-usage", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_ask)
