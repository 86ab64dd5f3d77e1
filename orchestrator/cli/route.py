"""CLI commands for routing: ``route`` (winners of a run's dev split → [routing]) and ``replay`` (a policy
judged on the held-out test split, from logged results, without new calls)."""

from __future__ import annotations

import argparse
from datetime import date

from ..errors import OrchestratorError, UsageError


def _load(args: argparse.Namespace):
    """(config path, config, results frame, run record) for ``args.run_id``."""
    from ..config import find_config_path, load_config
    from ..runs.store import open_store

    path = find_config_path(getattr(args, "config", None))
    cfg = load_config(path)
    with open_store(config=cfg, readonly=True) as store:
        run = store.run(args.run_id)
        if run is None:
            raise UsageError(f"no run {args.run_id!r} in {store.path}; `orchestrator runs` lists them")
        df = store.results_df(args.run_id)
    if df.empty:
        raise OrchestratorError(f"run {args.run_id} has no results")
    return path, cfg, df, run


def _select(args: argparse.Namespace, df):
    from ..routing import select_winners

    return select_winners(
        df,
        args.objective,
        max_cost_per_issue=args.max_cost_per_issue,
        min_n=args.min_n,
        n_fallbacks=args.n_fallbacks,
        allow_any_split=args.allow_any_split,
    )


def _refuse_shipped_config(args: argparse.Namespace, path) -> None:
    """``--write`` never edits the config shipped inside the package."""
    from ..resources import is_default_config

    if args.write and is_default_config(path):
        raise OrchestratorError(
            f"the config in use is the copy shipped in the package ({path}); pass --config orchestrator.toml "
            "(or create one) to write the routing"
        )


def cmd_route(args: argparse.Namespace) -> int:
    from ..routing import write_routing

    if args.router == "learned":
        return _route_learned(args)
    path, _cfg, df, run = _load(args)
    selections = _select(args, df)
    for sel in selections.values():
        print(sel.reason)
    for reason in selections.skipped.values():
        print(f"{reason} (no routing written for it)")
    if not selections:
        print("no mode has a winner: nothing to write")
        return 1
    _refuse_shipped_config(args, path)
    provenance = {
        "run_id": args.run_id,
        "dataset": run.get("dataset") or "",
        "split": selections.split,
        "date": date.today(),
    }
    diff = write_routing(path, selections, provenance, write=args.write)
    if not diff:
        print(f"{path}: routing already as selected; nothing to change")
    elif args.write:
        print(f"written to {path}")
    else:
        print(diff, end="" if diff.endswith("\n") else "\n")
        print("(dry run: pass --write to write it)")
    return 0


def _run_issues(args: argparse.Namespace, cfg) -> dict:
    """The issues of the run (the router reads their text): ``--dataset``, else the copies the store keeps
    of every issue a run asked about."""
    from ..issues import load_issues
    from ..runs.store import open_store

    if args.dataset:
        return {i.id: i for i in load_issues(args.dataset)}
    with open_store(config=cfg, readonly=True) as store:
        issues = store.issues(args.run_id)
    if not issues:
        raise UsageError(f"run {args.run_id}: the store keeps none of its issues; pass --dataset FILE")
    return issues


def _route_learned(args: argparse.Namespace) -> int:
    """``route RUN_ID --router learned``: per task, the dev curve, the chosen tau and the test replay
    against every comparator; ``--write`` stores the routers and points ``[routing.<task>]`` at them."""
    from ..routing import write_routing
    from ..routing.learned import learn_router
    from ..routing.router import router_path
    from ..routing.select import RoutingError

    path, cfg, df, run = _load(args)
    issues = _run_issues(args, cfg)
    tasks = (
        args.tasks.split(",")
        if args.tasks
        else sorted({str(t) for t in df["task"].astype("string").fillna(df["mode"].astype("string"))})
    )
    provenance = {
        "run_id": args.run_id,
        "dataset": run.get("dataset") or "",
        "split": "dev",
        "date": date.today(),
    }
    entries: dict = {}
    routers: dict = {}
    try:  # the static winners, each compared with its task's router
        winners = _select(args, df)
    except RoutingError:
        winners = {}
    from ..routing.replay import _prompt_mode

    for task in tasks:
        sel = winners.get(task)
        static = (sel.model, _prompt_mode(task, sel)) if sel is not None else None
        entry = cfg.routing.get(task)
        cascade = entry.get("cascade") if isinstance(entry, dict) else None
        try:
            result = learn_router(
                df,
                issues,
                task,
                objective=args.objective,
                max_cost_per_issue=args.max_cost_per_issue,
                cost=args.cost,
                cascade=cascade,
                static_winner=static,
                n_boot=args.n_boot,
                meta={"run_id": args.run_id, "dataset": run.get("dataset") or ""},
            )
        except RoutingError as exc:
            print(f"{exc} (no router for it)")
            continue
        print(result, end="\n\n")
        router = result.router
        name = f"{task}-{args.run_id}"
        dev_at = result.dev_curve.loc[result.dev_curve["tau"] == router.tau].iloc[0]
        fallback = result.best_single
        assert fallback is not None
        entries[task] = {
            "primary": fallback.model,
            **({"prompt": fallback.prompt} if fallback.mode != task else {}),
            "fallbacks": [],
            "router": name,
            "router_tau": router.tau,
            "objective": args.objective,
            "reason": " ".join(result.reason.split())
            + f"; without an issue to route, {fallback.label} answers",
            "score": round(float(dev_at["mean"]), 4),
            "n": result.n_dev,
        }
        routers[task] = router
    if not entries:
        print("no task has a learned router: nothing to write")
        return 1
    _refuse_shipped_config(args, path)
    if args.write:  # the routers first: a [routing] entry never names a router that is not stored
        for task, router in routers.items():
            print(f"router for {task}: {router.save(router_path(cfg.home, entries[task]['router']))}")
    diff = write_routing(path, entries, provenance, write=args.write)
    if args.write:
        print(f"written to {path}" if diff else f"{path}: routing already as learned")
    else:
        print(diff, end="" if diff.endswith("\n") else "\n")
        print("(dry run: pass --write to store the routers and write the routing)")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from ..routing import cascade_curve, format_replay, parse_policy, replay

    path, cfg, df, _run = _load(args)
    if args.policy == "winners":
        selections = _select(args, df)
        for reason in selections.skipped.values():
            print(f"{reason} (not replayed)")
        policy: dict = dict(selections)
    elif args.policy == "config":
        policy = {m: e for m, e in cfg.routing.items() if isinstance(e, dict)}
        routed = {m: e for m, e in policy.items() if e.get("router")}
        if routed:
            _replay_routers(args, cfg, df, routed)
            policy = {m: e for m, e in policy.items() if m not in routed}
            if not policy:
                return 0
        if not policy:
            raise OrchestratorError(
                f"{path}: [routing] is empty; `orchestrator route RUN_ID --write` fills it"
            )
    else:
        policy = parse_policy(args.policy)
    if not policy:
        print("nothing to replay")
        return 1
    report = replay(df, policy, allow_any_split=args.allow_any_split, n_boot=args.n_boot)
    print(format_replay(report))
    if args.thresholds:
        thresholds = [float(t) for t in args.thresholds.split(",") if t.strip()]
        for mode, entry in policy.items():
            cascade = entry.get("cascade") if isinstance(entry, dict) else None
            if not cascade or len(cascade.get("models", [])) != 2:
                continue
            cheap, strong = cascade["models"]
            curve = cascade_curve(df, mode, cheap, strong, thresholds, allow_any_split=args.allow_any_split)
            print(f"\n{mode}: cascade {cheap} > {strong} over thresholds")
            print(curve.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    return 0


def _replay_routers(args: argparse.Namespace, cfg, df, routed: dict) -> None:
    """Each ``[routing.<task>]`` that names a stored router, replayed on the run's test rows."""
    from ..routing.learned import replay_stored
    from ..routing.router import load_router

    issues = _run_issues(args, cfg)
    for task, entry in routed.items():
        import dataclasses

        router = load_router(cfg.home, str(entry["router"]))
        if entry.get("router_tau") is not None:  # the entry's tau rules, as in the client
            router = dataclasses.replace(router, tau=float(entry["router_tau"]))
        row = replay_stored(router, df, issues, n_boot=args.n_boot)
        unit = "$" if row["cost_axis"] == "usd" else "s"
        print(
            f"{task}: stored router {entry['router']} (tau {router.tau:g}) on {row['n']} test issues: mean "
            f"{row['mean']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}], {row['cost_per_issue']:.4g} {unit}/issue"
            + (f"; {row['excluded']} issues left out (a candidate has no row)" if row["excluded"] else "")
        )


def _selection_args(p: argparse.ArgumentParser) -> None:
    from ..routing import OBJECTIVES

    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="cheapest-tied",
        help="how a winner is chosen (default: cheapest-tied)",
    )
    p.add_argument("--max-cost-per-issue", type=float, metavar="USD", help="cost cap for quality-under-cost")
    p.add_argument(
        "--min-n", type=int, default=10, help="models with fewer scored issues are excluded (default 10)"
    )
    p.add_argument("--n-fallbacks", type=int, default=2, help="fallbacks per mode (default 2)")
    p.add_argument(
        "--allow-any-split",
        action="store_true",
        help="use every row when the results carry no dev/test split labels",
    )
    # The main parser has --config too; SUPPRESS keeps its value when this one is not given.
    p.add_argument("--config", default=argparse.SUPPRESS, help="orchestrator.toml to read (and write)")


def register(sub) -> None:
    """Add route and replay to the main parser."""
    p = sub.add_parser("route", help="pick winners on a run's dev split and write them into [routing]")
    p.add_argument("run_id")
    _selection_args(p)
    p.add_argument("--write", action="store_true", help="write the config (default: print the diff)")
    p.add_argument(
        "--router",
        choices=["static", "learned"],
        default="static",
        help="static: one winner per task (default); learned: a per-issue router fitted on the dev rows, "
        "with its cost-quality curve and a test replay against the static winner, a cascade, random "
        "routing at the same cost and the oracle",
    )
    p.add_argument(
        "--tasks", metavar="T1,T2", help="learned: only these tasks (default: every task of the run)"
    )
    p.add_argument(
        "--cost",
        choices=["usd", "latency"],
        default="usd",
        help="learned: what a candidate costs (default usd; latency for runs of free models)",
    )
    p.add_argument(
        "--dataset", metavar="FILE", help="learned: the run's issues (default: the copies the store keeps)"
    )
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the CIs (default 2000)")
    p.set_defaults(func=cmd_route)

    p = sub.add_parser("replay", help="judge a routing policy on a run's test split, without new calls")
    p.add_argument("run_id")
    p.add_argument(
        "--policy",
        default="winners",
        help="winners (chosen on dev now), config (the [routing] in the config), "
        "fixed:classify=M,fix=M2, or cascade:classify=CHEAP>STRONG@0.5",
    )
    _selection_args(p)
    p.add_argument(
        "--thresholds",
        help="for cascade policies: comma-separated thresholds to print the "
        "cost-quality curve over (e.g. 0,0.25,0.5,0.75,1)",
    )
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the CI (default 2000)")
    p.add_argument(
        "--dataset", metavar="FILE", help="a stored router's issues (default: the copies the store keeps)"
    )
    p.set_defaults(func=cmd_replay)
