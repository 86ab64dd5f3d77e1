"""The benchmark's per-issue routing section: a learned router per task, fitted on the run's dev rows and
replayed on its test rows against every comparator (:mod:`orchestrator.routing.learned`), as a table and
one plot. Shown, never written: ``orchestrator route RUN_ID --router learned --write`` writes it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .benchmark import Benchmark
from .html import fmt_num, show_figure, show_text
from .tables import _base_style

if TYPE_CHECKING:
    from ..routing.learned import LearnedRouting


FEW_DEV = 30  # below this many dev issues the section says the router is not to be trusted


def _sig(value: Any) -> str:
    """Costs span decades (0.0003 s to 14 s): three significant digits, not three decimals."""
    import math

    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def cost_axis(df: Any) -> str:
    """``usd`` when some answer of the run has a known non-zero cost, else ``latency`` (all free)."""
    import pandas as pd

    cost = pd.to_numeric(df.get("cost_usd"), errors="coerce") if "cost_usd" in df else None
    return "usd" if cost is not None and bool((cost.fillna(0) > 0).any()) else "latency"


def learned_routing(bench: Benchmark, *, n_boot: int = 1000) -> tuple[list[LearnedRouting], dict[str, str]]:
    """(a learned router per task that has one, {task: why not} for the others)."""
    from ..errors import OrchestratorError
    from ..routing.learned import learn_router

    results, skipped = [], {}
    axis = cost_axis(bench.df)
    tasks = dict.fromkeys(
        str(t) for t in bench.df["task"].astype("string").fillna(bench.df["mode"].astype("string"))
    )
    for task in tasks:
        try:
            results.append(learn_router(bench.df, bench.issues, task, cost=axis, n_boot=n_boot))
        except OrchestratorError as exc:
            skipped[task] = str(exc)
    return results, skipped


def show_learned_routing(bench: Benchmark, *, n_boot: int = 1000) -> None:
    """Display each task's learned router: why this tau, the test replay table and the curve."""
    from IPython.display import display

    from .plots import router_curve

    results, skipped = learned_routing(bench, n_boot=n_boot)
    if results and results[0].cost_axis == "latency":
        display(
            show_text(
                "Every answer of this run is free, so a candidate's cost is its latency per issue.",
                "orc-note",
            )
        )
    for result in results:
        display(show_text(result.reason, "orc-ok"))
        if result.n_dev < FEW_DEV:
            display(
                show_text(
                    f"Only {result.n_dev} dev issues: a router learned from so few is shown to see the loop, "
                    "not to be trusted. Run on a larger issue set (datasets/issues.jsonl, or your own) first.",
                    "orc-note",
                )
            )
        unit = "cost / issue ($)" if result.cost_axis == "usd" else "latency / issue (s)"
        table = result.comparators.rename(columns={"cost_per_issue": unit})
        formats: dict[str, Any] = {c: fmt_num for c in ("mean", "ci_low", "ci_high", "quality_share")}
        formats |= {unit: _sig, "cost_share": _sig}
        sty = table.style.format(formats, escape="html", na_rep="—").hide(axis="index")
        display(_base_style(sty, f"{result.task}: test replay, {result.n_test} issues, 95 % bootstrap CIs"))
        show_figure(router_curve(result))
    for task, why in skipped.items():
        display(show_text(f"{task}: no learned router ({why}).", "orc-note"))
