"""The ``orchestrator`` command.

Subcommands: models, models pull, ask, issues (check/import/fetch), run, runs, results, score, route, bench.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError, OrchestratorError


def _config(args: argparse.Namespace):
    from ..config import load_config

    return load_config(args.config)


def _client(args: argparse.Namespace, **kw: Any):
    from ..client.llm_client import LLMClient

    return LLMClient(_config(args), **kw)


# ------------------------------------------------------------------ models


def cmd_models(args: argparse.Namespace) -> int:
    from ..providers import model_files, provider_info

    cfg = _config(args)
    rows = []
    for model_id, spec in cfg.models.items():
        if provider_info(spec.provider).local_weights:
            gguf = spec.options.get("gguf")
            cached = (
                Path(os.path.expanduser(gguf)).is_file() if gguf else model_files.cached_path() is not None
            )
        else:
            cached = None
        key_set = bool(os.environ.get(spec.api_key_env)) if spec.api_key_env else None
        rows.append(
            {
                "id": model_id,
                "provider": spec.provider,
                "model": spec.model,
                "default": model_id == cfg.default_model,
                "temperature": spec.temperature,
                "max_tokens": spec.max_tokens,
                "price": spec.price.model_dump(mode="json", exclude_none=True) if spec.price else None,
                "api_key_env": spec.api_key_env,
                "key_set": key_set,
                "local_cached": cached,
                "fallbacks": spec.fallbacks,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"config: {cfg.path}")
    header = f"{'id':<30} {'provider':<10} {'price in/out $/M':<18} {'key':<22} {'notes'}"
    print(header)
    print("-" * len(header))
    for r in rows:
        price = (
            "free"
            if provider_info(r["provider"]).free
            else (f"{r['price']['input']:g}/{r['price']['output']:g}" if r["price"] else "unknown")
        )
        if r["api_key_env"]:
            key = f"{r['api_key_env']} {'set' if r['key_set'] else 'NOT SET'}"
        else:
            key = "-"
        notes = []
        if r["default"]:
            notes.append("default")
        if r["local_cached"] is not None:
            notes.append("weights cached" if r["local_cached"] else "weights not yet fetched")
        if r["fallbacks"]:
            notes.append("fallbacks: " + ", ".join(r["fallbacks"]))
        print(f"{r['id']:<30} {r['provider']:<10} {price:<18} {key:<22} {'; '.join(notes)}")
    return 0


def cmd_models_pull(args: argparse.Namespace) -> int:
    from ..providers import model_files, provider_info

    cfg = _config(args)
    ids = (
        [args.id]
        if args.id
        else [m for m, s in cfg.models.items() if provider_info(s.provider).local_weights]
    )
    for model_id in ids:
        spec = cfg.model_spec(model_id)
        if not provider_info(spec.provider).local_weights:
            print(f"{model_id}: provider {spec.provider} has no local weights to pull", file=sys.stderr)
            return 2
        if spec.options.get("gguf"):
            print(f"{model_id}: uses {spec.options['gguf']} (a local file; nothing to pull)")
            continue
        path = model_files.fetch()
        print(f"{model_id}: {path}")
    return 0


# ------------------------------------------------------------------ ask


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
    with _client(args, cache=not args.no_cache) as client:
        completion = client.complete_sync(prompt, model=args.model, mode=args.mode)
    if args.json:
        print(completion.model_dump_json(indent=2, exclude={"raw"}))
        return 0
    print(completion.text.strip())
    print()
    print(_usage_line(completion), file=sys.stderr if args.quiet_usage else sys.stdout)
    return 0


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


# ------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator",
        description="Compare, benchmark and route LLMs on GitHub issues.",
    )
    parser.add_argument(
        "--config", help="orchestrator.toml to use (default: $ORCHESTRATOR_CONFIG or ./orchestrator.toml)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("models", help="list configured models; `models pull` fetches local weights")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_models)
    msub = p.add_subparsers(dest="models_command", metavar="")
    pp = msub.add_parser("pull", help="download and verify local model weights")
    pp.add_argument("id", nargs="?", help="a local model id (default: every local model)")
    pp.set_defaults(func=cmd_models_pull)

    from ..modes import MODES

    p = sub.add_parser("ask", help="ask one model about one issue")
    p.add_argument("text", nargs="*", help="the issue text (or use --issue-file)")
    p.add_argument("--model", help="model id (default: the routing for the mode, else the default model)")
    p.add_argument("--mode", default="explain", choices=list(MODES))
    p.add_argument("--issue-file", help="an issue as JSON, or a JSONL file (see --index)")
    p.add_argument("--index", type=int, default=0, help="which issue of a JSONL file (0-based)")
    p.add_argument("--json", action="store_true", help="print the Completion as JSON")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the response cache")
    p.add_argument("--quiet-usage", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_ask)

    for register in _extra_registrars():
        register(sub)
    return parser


def _extra_registrars():
    """Subcommands that live beside the modules they drive."""
    from .bench import register as bench_register
    from .issues import register as issues_register
    from .route import register as route_register
    from .run import register as run_register

    return [issues_register, run_register, route_register, bench_register]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``orchestrator`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        from dotenv import load_dotenv

        load_dotenv(override=False)
    except ImportError:  # pragma: no cover
        pass
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted; everything finished so far is kept", file=sys.stderr)
        return 130
    except OrchestratorError as exc:
        from ..errors import redact

        print(f"orchestrator: error: {redact(str(exc))}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 1))
    except Exception as exc:  # a bug: one line, never a traceback (ORCHESTRATOR_DEBUG=1 shows it)
        if os.environ.get("ORCHESTRATOR_DEBUG"):
            raise
        from ..errors import redact

        print(
            f"orchestrator: internal error: {redact(f'{type(exc).__name__}: {exc}')[:2000]} "
            "(please report it; ORCHESTRATOR_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
