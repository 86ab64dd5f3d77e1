"""CLI commands for the grid: run, runs, results, score."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from .args import comma_list, non_negative_float, positive_float, positive_int, safe_run_id

if TYPE_CHECKING:
    from ..config import Config


def _mode_names(flag_value: list[str]) -> list[str]:
    """``--modes``/``--tasks``, once the config (and its task files) is loaded: built-in modes, ``task``
    (every prompt variant of it) or ``task:variant``; an unknown name lists the known ones."""
    from ..tasks.modes import expand

    try:
        return expand(flag_value)
    except ValueError as exc:
        raise UsageError(f"--tasks/--modes: {exc}") from None


def _check_models(cfg: Config, models: list[str], judge: str | None) -> None:
    """Every model id (and the judge) must be configured; the error names the flag and the known ids."""
    known = ", ".join(sorted(cfg.models))
    for flag, ids in (("--models", models), ("--judge", [judge] if judge else [])):
        for model_id in ids:
            if model_id not in cfg.models:
                raise UsageError(
                    f"{flag}: unknown model id {model_id!r} in {cfg.path or 'the config'}; known models: {known}"
                )


def _warn_repair(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from ..client.llm_client import LLMClient
    from ..config import load_config
    from ..issues.files import load_issues
    from ..runs.plan import dataset_label
    from ..runs.runner import run_grid

    if args.executor == "ray":
        from ..runs.ray_executor import require_ray

        require_ray()  # before anything is loaded: without Ray, say how to install it
    elif args.address or args.workers or args.worker_cpus != 1.0:
        raise UsageError("--address, --workers and --worker-cpus need --executor ray")
    cfg = load_config(args.config)
    models = args.models or [cfg.default_model]
    _check_models(cfg, models, args.judge)
    issues = load_issues(args.dataset, split=args.split, on_repair=_warn_repair)
    if args.limit is not None:
        issues = issues[: args.limit]
    if not issues:
        raise UsageError(f"{args.dataset}: no issues" + (f" in split {args.split!r}" if args.split else ""))
    modes = _mode_names(args.modes)
    if args.estimate or args.budget is not None:
        from ..runs.estimate import estimate_grid

        estimate = estimate_grid(
            issues,
            models,
            modes,
            repeats=args.repeats,
            config=cfg,
            budget_usd=args.budget,
            run_id=args.run_id,
            cache=not args.no_cache,
            retry_errors=args.retry_errors,
            concurrency=args.concurrency,
        )
        if args.estimate:
            print(estimate)
            return 0
        if estimate.budget_warning:
            print(f"warning: {estimate.budget_warning}", file=sys.stderr)

    # models that learn (the trained baselines) fit on the dataset's whole dev split, whatever --split and
    # --limit keep; read only if one of them needs it
    def training() -> list:
        return load_issues(args.dataset, split="dev", on_repair=lambda _m: None)

    client = LLMClient(cfg, cache=not args.no_cache)
    try:
        summary = client.run_sync(
            run_grid(
                issues,
                models,
                modes,
                repeats=args.repeats,
                concurrency=args.concurrency,
                budget_usd=args.budget,
                run_id=args.run_id,
                cache=not args.no_cache,
                retry_errors=args.retry_errors,
                client=client,
                dataset=dataset_label(args.dataset),
                split=args.split,
                judge_model=args.judge,
                training=training,
                stream=args.stream,
                executor=args.executor,
                address=args.address,
                workers=args.workers,
                worker_cpus=args.worker_cpus,
            )
        )
    finally:
        client.close()
    print(f"run id: {summary.run_id}")
    print(summary)
    if summary.status == "budget_exhausted":
        print(
            f"budget reached: {summary.skipped_for_budget} cells not run; resume with "
            f"`orchestrator run ... --run-id {summary.run_id} --budget <higher>`"
        )
    print_summary_table(cfg, summary.run_id)
    return 0 if summary.status in ("finished", "budget_exhausted") else 1


def print_summary_table(cfg, run_id: str) -> None:
    from ..analysis.summary import SUMMARY_COLUMNS, summary_table
    from ..runs.store import open_store

    with open_store(config=cfg, readonly=True) as store:
        df = store.results_df(run_id, columns=SUMMARY_COLUMNS)
    if df.empty:
        print("no results")
        return
    table = summary_table(df, n_boot=1000)
    print(format_summary(table))


def format_summary(table) -> str:
    """A compact text table: model, mode, n, mean [CI], cost per issue, p50 latency, p50 time to first token,
    tokens per second, error rate."""
    import math

    lines = [
        f"{'model':<28} {'mode':<10} {'n':>4} {'score [95% CI]':<22} {'$/issue':>10} {'p50 s':>7} "
        f"{'ttft s':>7} {'tok/s':>6} {'err':>5}"
    ]
    for r in table.itertuples(index=False):
        mean = getattr(r, "mean", float("nan"))
        ci = f"{mean:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]" if not math.isnan(mean) else "n/a"
        cost = getattr(r, "cost_per_issue", float("nan"))
        cost_s = (
            "unknown" if cost is None or (isinstance(cost, float) and math.isnan(cost)) else f"{cost:.6f}"
        )
        ttft = getattr(r, "ttft_p50", float("nan"))
        tps = getattr(r, "output_tps_p50", float("nan"))
        lines.append(
            f"{r.model:<28} {r.mode:<10} {int(r.n_issues):>4} {ci:<22} {cost_s:>10} "
            f"{getattr(r, 'latency_p50', float('nan')):>7.2f} "
            f"{'-' if math.isnan(ttft) else f'{ttft:.2f}':>7} {'-' if math.isnan(tps) else f'{tps:.0f}':>6} "
            f"{getattr(r, 'error_rate', 0.0):>5.0%}"
        )
    return "\n".join(lines)


def cmd_runs(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..runs.store import open_store

    with open_store(config=load_config(args.config), readonly=True) as store:
        runs = store.runs()
    if not runs:
        print(
            "no runs yet: start one with `orchestrator run --dataset datasets/sample.jsonl --modes classify`"
        )
        return 0
    print(f"{'run id':<24} {'created':<20} {'status':<17} {'cells':>6} {'errors':>6} {'spent $':>9}  dataset")
    for r in runs:
        print(
            f"{r['id']:<24} {r['created'][:19]:<20} {r['status']:<17} {r['cells']:>6} {r['errors'] or 0:>6} "
            f"{r['spent_usd']:>9.4f}  {r['dataset'] or ''}{' (' + r['split'] + ')' if r['split'] else ''}"
        )
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..runs.store import export_results, open_store

    with open_store(config=load_config(args.config), readonly=True) as store:
        if store.run(args.run_id) is None:
            raise UsageError(f"no run {args.run_id!r} in {store.path}; `orchestrator runs` lists them")
        df = store.results_df(args.run_id)
    if args.output:
        out = export_results(df, args.output, args.format)
        print(f"wrote {len(df)} rows to {out}")
    else:
        if args.format == "csv":
            df.to_csv(sys.stdout, index=False)
        elif args.format == "json":
            sys.stdout.write(
                df.to_json(orient="records", date_format="iso", force_ascii=False, indent=1) + "\n"
            )
        else:
            raise UsageError("parquet needs -o FILE")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from ..client.llm_client import LLMClient
    from ..config import load_config
    from ..runs.scoring import rescore_run
    from ..runs.store import open_store

    cfg = load_config(args.config)
    with open_store(config=cfg) as store, LLMClient(cfg) as client:
        if store.run(args.run_id) is None:
            raise UsageError(f"no run {args.run_id!r} in {store.path}")
        n = client.run_sync(rescore_run(store, args.run_id, client=client, judge_model=args.judge))
    print(f"re-scored {n} cells of run {args.run_id}")
    print_summary_table(cfg, args.run_id)
    return 0


def register(sub) -> None:
    """Add run, runs, results and score to the main parser."""
    p = sub.add_parser("run", help="run a benchmark grid: issues × models × modes × repeats")
    p.add_argument("--dataset", required=True, help="issues JSONL (e.g. datasets/sample.jsonl)")
    p.add_argument("--split", choices=["dev", "test"], help="only this split")
    p.add_argument("--models", type=comma_list, help="comma-separated model ids (default: the default model)")
    p.add_argument(
        "--tasks",
        "--modes",
        dest="modes",
        type=comma_list,
        default="classify",
        help="comma-separated tasks: a built-in mode, a task file's task (every prompt) or task:prompt "
        "(default: classify)",
    )
    p.add_argument("--repeats", type=positive_int, default=1, help="samples per cell, 1 or more")
    p.add_argument("--concurrency", type=positive_int, default=8, help="calls in flight, 1 or more")
    p.add_argument(
        "--budget",
        type=non_negative_float,
        help="stop issuing calls once this many USD are spent (0: only free models and cached answers)",
    )
    p.add_argument(
        "--run-id", type=safe_run_id, help="resume (or name) a run: letters, digits, '.', '_', '-'"
    )
    p.add_argument("--retry-errors", action="store_true", help="when resuming, retry cells that failed")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    p.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stream answers where the provider can, recording time to first token and tokens/s "
        "(default; --no-stream sends whole requests)",
    )
    p.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="where the cells run: this process (default) or worker actors on a Ray cluster "
        "(needs the [ray] extra)",
    )
    p.add_argument(
        "--address",
        help="with --executor ray: the cluster, 'auto' (the one this machine belongs to) or "
        "ray://HOST:PORT (default: start one on this machine)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        help="with --executor ray: worker actors (default: the cluster's CPUs)",
    )
    p.add_argument(
        "--worker-cpus",
        type=positive_float,
        default=1.0,
        help="with --executor ray: CPUs each worker reserves, so how many a node takes (default: 1)",
    )
    p.add_argument("--judge", help="model id of an LLM judge for explain answers")
    p.add_argument(
        "--limit", type=positive_int, help="only the first N issues, 1 or more (omit it for all issues)"
    )
    p.add_argument(
        "--estimate",
        action="store_true",
        help="print the calls, expected cost and worst case per model, then exit without calling any model",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("runs", help="list benchmark runs")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("results", help="export a run's results")
    p.add_argument("run_id")
    p.add_argument("--format", choices=["csv", "json", "parquet"], default="csv")
    p.add_argument("-o", "--output", type=Path, help="file to write (default: standard output)")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("score", help="re-score a run without new model calls")
    p.add_argument("run_id")
    p.add_argument("--judge", help="model id of an LLM judge for explain answers")
    p.set_defaults(func=cmd_score)
