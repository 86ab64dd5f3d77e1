"""``orchestrator bench``: run notebooks/benchmark.ipynb with papermill, render the HTML report.

    orchestrator bench [--dataset F] [--split S] [--models A,B] [--modes M1,M2] [--budget USD]
                       [-p NAME VALUE ...] [--with-code] [--run-id ID] [--output-dir reports]

With no options it runs the notebook's defaults: local/smollm2, local/smollm2-creative and baseline/rules
on datasets/sample.jsonl in every mode, with outputs capped at 160 tokens (the two local models run on the
CPU; ``-p max_tokens None`` keeps the config's 256). Writes ``<output-dir>/<run_id>.ipynb`` and ``.html``, and prints
the summary table and both paths.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .args import non_negative_float, safe_run_id

# The embedded default runs two local CPU models: their outputs are capped for the bench so that the default
# report comes out within minutes on two cores (the config file keeps its max_tokens; -p max_tokens None lifts it).
DEFAULT_MAX_TOKENS = 160

# options that are notebook parameters under another name
_OPTION_PARAMS = {
    "dataset": "dataset",
    "split": "split",
    "models": "models",
    "modes": "modes",
    "budget": "budget_usd",
}


def build_parameters(args: argparse.Namespace, known: dict[str, Any] | None = None) -> dict[str, Any]:
    """Notebook parameters from ``-p NAME VALUE`` pairs, then the named options (which win)."""
    from ..report import parse_value

    params: dict[str, Any] = {}
    for name, value in args.parameter or []:
        params[name] = parse_value(value)
    for option, name in _OPTION_PARAMS.items():
        value = getattr(args, option, None)
        if value is not None:
            params[name] = value
    if known is not None:
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise UsageError(
                f"unknown notebook parameter(s): {', '.join(unknown)}; the benchmark notebook takes: "
                f"{', '.join(known)}"
            )
    return params


def with_default_cap(params: dict[str, Any]) -> dict[str, Any]:
    """The embedded default (no models chosen) gets :data:`DEFAULT_MAX_TOKENS` unless max_tokens is given."""
    if "models" not in params and "max_tokens" not in params:
        return {**params, "max_tokens": DEFAULT_MAX_TOKENS}
    return params


def notebook_parameters(path: Path) -> dict[str, Any]:
    """The parameters cell of ``path`` (name → default as written), via papermill."""
    import papermill as pm

    return {name: info.get("default") for name, info in pm.inspect_notebook(str(path)).items()}


def cmd_bench(args: argparse.Namespace) -> int:
    from .. import report
    from ..config import find_config_path, load_config
    from ..paths import project_root

    config = getattr(args, "config", None)
    cfg = load_config(config)
    root = project_root(cfg)
    nb_path = report.find_notebook(args.notebook or report.NOTEBOOK, root)
    params = with_default_cap(build_parameters(args, notebook_parameters(nb_path)))
    params.pop("run_id", None)
    if params.get("max_tokens") == DEFAULT_MAX_TOKENS and "models" not in params:
        print(
            f"bench: the default models are capped at {DEFAULT_MAX_TOKENS} output tokens for this run "
            "(-p max_tokens None: the config's own)",
            file=sys.stderr,
        )
    from ..runs.plan import new_run_id

    run_id = args.run_id or new_run_id()
    print(f"bench: run {run_id}: executing {_rel(nb_path)} (progress below)", file=sys.stderr, flush=True)
    try:
        result = report.bench(
            parameters=params,
            run_id=run_id,
            config=find_config_path(config),
            output_dir=args.output_dir,
            with_code=args.with_code,
            notebook=nb_path,
            stream=sys.stderr,
            timeout=args.timeout,
        )
    except KeyboardInterrupt:
        import logging

        # the kernel is gone, and the notebook client's abandoned tasks would log "Task exception was never
        # retrieved" with a traceback as the interpreter exits: nothing the user can act on
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        print(interrupted_message(cfg, run_id, getattr(args, "argv", None)), file=sys.stderr)
        return 130
    print(f"run id: {result.run_id}")
    _print_summary(cfg, result.run_id)
    print(f"notebook: {_rel(result.notebook)}")
    print(f"report:   {_rel(result.html)}")
    print(f"({result.wall_s:.0f} s)", file=sys.stderr)
    return 0


def interrupted_message(cfg: Any, run_id: str, argv: list[str] | None) -> str:
    """What an interrupted bench kept, and the exact line that resumes it (the same run id skips every cell
    already stored, so nothing is paid twice)."""
    import shlex

    from ..runs.store import open_store

    try:
        with open_store(config=cfg, readonly=True) as store:
            kept = store.count_results(run_id)
    except Exception:  # the store may not exist yet (interrupted before the first cell)
        kept = 0
    args = list(argv or ["bench"])
    if "--run-id" not in args and not any(a.startswith("--run-id=") for a in args):
        args += ["--run-id", run_id]
    resume = shlex.join(["orchestrator", *args])
    cells = f"{kept} finished cell{'s' if kept != 1 else ''}"
    return f"bench: interrupted; run {run_id} keeps its {cells}.\nresume with: {resume}"


def _print_summary(cfg: Any, run_id: str) -> None:
    from ..runs.store import open_store
    from .run import print_summary_table

    with open_store(config=cfg, readonly=True) as store:
        cells = store.count_results(run_id)
        run = store.run(run_id)
    if run is not None:
        print(f"status: {run['status']}; {cells} cells; dataset {run.get('dataset') or '-'}")
    print_summary_table(cfg, run_id)


def _rel(path: Path | str) -> str:
    p = Path(path)
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(p)


def register(sub: Any) -> None:
    """Add ``bench`` to the main parser's subcommands."""
    p = sub.add_parser(
        "bench",
        help="run the benchmark notebook (papermill) and render an HTML report",
        description="Execute notebooks/benchmark.ipynb with papermill into <output-dir>/<run_id>.ipynb, "
        "render <run_id>.html (code hidden unless --with-code) and print the summary table.",
    )
    p.add_argument("--dataset", help="issues JSONL (default: the notebook's, datasets/sample.jsonl)")
    p.add_argument("--split", choices=["dev", "test"], help="only this split")
    p.add_argument(
        "--models",
        help="comma-separated model ids (default: local/smollm2, local/smollm2-creative, baseline/rules)",
    )
    p.add_argument("--modes", help="comma-separated modes (default: classify,summarize,fix,explain)")
    p.add_argument(
        "--budget", type=non_negative_float, help="stop issuing calls once this many USD are spent"
    )
    p.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="any notebook parameter (e.g. -p limit 3 -p max_tokens 128 -p update_routing True); "
        "values are Python literals, else strings",
    )
    p.add_argument("--with-code", action="store_true", help="show the code cells in the HTML report")
    p.add_argument(
        "--run-id",
        type=safe_run_id,
        help="the run id (default: a new one; letters, digits, '.', '_', '-'); an existing run resumes",
    )
    p.add_argument("--output-dir", default="reports", type=Path, help="where the .ipynb and .html go")
    p.add_argument("--notebook", help=argparse.SUPPRESS)
    p.add_argument("--timeout", type=float, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_bench)
