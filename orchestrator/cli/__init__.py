"""The ``orchestrator`` command.

One module per command group, each with a ``register(sub)`` that adds its subcommands: models (models,
models pull), tasks (tasks, tasks show), ask, issues (check/import/fetch), run (run, runs, results, score), route (route, replay),
bench. Every error is one line naming what is wrong, with exit code 2 for bad input and no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..errors import OrchestratorError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator",
        description="Compare, benchmark and route LLMs on GitHub issues.",
    )
    parser.add_argument(
        "--config", help="orchestrator.toml to use (default: $ORCHESTRATOR_CONFIG or ./orchestrator.toml)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for register in _registrars():
        register(sub)
    return parser


def _registrars():
    from .ask import register as ask_register
    from .bench import register as bench_register
    from .issues import register as issues_register
    from .models import register as models_register
    from .route import register as route_register
    from .run import register as run_register
    from .tasks import register as tasks_register

    return [
        models_register,
        tasks_register,
        ask_register,
        issues_register,
        run_register,
        route_register,
        bench_register,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``orchestrator`` console script."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # a command that is interrupted can print its exact resume line
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
