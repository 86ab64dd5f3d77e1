"""The routing proposal a benchmark makes: the winners per mode, and the diff it would write to the config."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..resources import is_default_config
from .benchmark import Benchmark
from .html import _ordered_modes, fmt_ci, fmt_num, fmt_usd, show_pre, show_text
from .tables import _base_style

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class RoutingProposal:
    selections: dict[str, Any]
    table: pd.DataFrame
    note: str
    held_out: bool
    diff: str
    written: bool
    error: str | None = None
    min_n: int = 10
    provisional: dict[str, Any] = field(default_factory=dict)  # picks on fewer than min_n issues: shown only

    @property
    def skipped_hint(self) -> str:
        reasons = list(getattr(self.selections, "skipped", {}).values())
        few = "fewer than" in " ".join(reasons) or any(f"< {self.min_n}" in r for r in reasons)
        text = " ".join(reasons[:1]) + (
            f" (and {len(reasons) - 1} more mode(s) alike)" if len(reasons) > 1 else ""
        )
        if few:
            text += (
                f". A routing choice needs at least {self.min_n} scored issues per model (min_n): run on a "
                "larger issue set (e.g. datasets/issues.jsonl), or lower min_n knowingly (-p min_n 5)."
            )
        return text


def routing_proposal(
    bench: Benchmark,
    *,
    objective: str = "cheapest-tied",
    write: bool = False,
    max_cost_per_issue: float | None = None,
    min_n: int = 10,
) -> RoutingProposal:
    """Winners per mode chosen on the run's dev rows (else on all rows, flagged as not held out), and the
    ``[routing]`` diff; written to the config file only when ``write``."""
    import pandas as pd

    from .. import routing

    df = bench.df
    held_out = bench.has_dev_rows
    selections = routing.select_winners(
        df, objective, max_cost_per_issue=max_cost_per_issue, min_n=min_n, allow_any_split=not held_out
    )
    provisional = _provisional(df, selections, objective, max_cost_per_issue, held_out, min_n)
    rows = df[df["split"] == "dev"] if held_out else df
    n_issues = int(rows["issue_id"].nunique())
    if held_out:
        note = (
            f"Winners are picked on the run's dev split ({n_issues} issues); the test rows are left for checking "
            "the choice."
        )
    else:
        note = (
            f"Winners are picked on all {n_issues} issues of the run: NOT a held-out choice (the run has no dev "
            "rows), so the scores below are optimistic for the chosen models."
        )
    table_rows = []
    for mode in _ordered_modes([*selections, *getattr(selections, "skipped", {})]):
        sel = selections.get(mode)
        if sel is not None:
            table_rows.append(_row(mode, sel, sel.reason))
        elif mode in provisional:
            sel = provisional[mode]
            why = f"PROVISIONAL, not written: {sel.n} issues < min_n {min_n}, so the CI is wide and a tie is likely"
            table_rows.append(_row(mode, sel, f"{why}; {sel.reason}"))
        else:
            table_rows.append(
                {
                    "mode": mode,
                    "model": "—",
                    "fallbacks": "—",
                    "score": None,
                    "95% CI": "—",
                    "$ / issue": None,
                    "issues": None,
                    "reason": "no winner: " + selections.skipped.get(mode, ""),
                }
            )
    table = pd.DataFrame(
        table_rows, columns=["mode", "model", "fallbacks", "score", "95% CI", "$ / issue", "issues", "reason"]
    )
    provenance = {
        "run_id": bench.run_id,
        "objective": objective,
        "dataset": bench.dataset,
        "split": getattr(selections, "split", "dev" if held_out else "all"),
        "date": datetime.now(UTC).date(),
    }
    diff, error, written = "", None, False
    path = bench.config.path
    if not selections:  # every mode was skipped: nothing to write (the table says why)
        pass
    elif path is None or is_default_config(path):
        error = "the config in use is the package's default: there is no project orchestrator.toml to update"
    else:
        try:
            diff = routing.write_routing(path, selections, provenance, write=bool(write))
            written = bool(write)
        except Exception as exc:  # show the problem in the report instead of failing the whole run
            from ..errors import redact

            error = redact(f"{type(exc).__name__}: {exc}")
    return RoutingProposal(
        selections=selections,
        provisional=provisional,
        table=table,
        note=note,
        held_out=held_out,
        diff=diff or "",
        written=written,
        error=error,
        min_n=min_n,
    )


def _row(mode: str, sel: Any, reason: str) -> dict[str, Any]:
    """One line of the proposal table for a selection (a routed or a provisional pick)."""
    return {
        "mode": mode,
        "model": sel.model,
        "fallbacks": ", ".join(sel.fallbacks) or "—",
        "score": sel.score,
        "95% CI": fmt_ci(*sel.ci) if sel.ci else "—",
        "$ / issue": sel.cost_per_issue,
        "issues": sel.n,
        "reason": reason,
    }


def _provisional(
    df: pd.DataFrame,
    selections: Any,
    objective: str,
    max_cost_per_issue: float | None,
    held_out: bool,
    min_n: int,
) -> dict[str, Any]:
    """For the modes no model qualified for only because of ``min_n``: what the same objective picks on the
    issues there are. Shown, flagged, never written (a small sample shows the loop, not a decision)."""
    from .. import routing

    small = [m for m, why in getattr(selections, "skipped", {}).items() if f">= {min_n} scored issues" in why]
    if not small or min_n <= 1:
        return {}
    loose = routing.select_winners(
        df,
        objective,
        max_cost_per_issue=max_cost_per_issue,
        min_n=1,
        allow_any_split=not held_out,
        modes=small,
    )
    return {m: loose[m] for m in small if m in loose}


def show_routing(proposal: RoutingProposal, config_name: str = "orchestrator.toml") -> None:
    from IPython.display import display

    display(show_text(proposal.note, "orc-ok" if proposal.held_out else "orc-note"))
    if not proposal.selections and not proposal.provisional:
        display(
            show_text(
                "No mode has a winner, so the routing stays as it is. " + proposal.skipped_hint, "orc-note"
            )
        )
        return
    if proposal.provisional:
        display(
            show_text(
                f"{len(proposal.provisional)} mode(s) have fewer than {proposal.min_n} scored issues per model "
                "(min_n): their picks below are PROVISIONAL, shown so you can see what the loop would route, "
                "and never written. Run on a larger issue set (datasets/issues.jsonl) for a decision.",
                "orc-note",
            )
        )
    sty = proposal.table.style.format({"score": fmt_num, "$ / issue": fmt_usd}, escape="html", na_rep="—")
    display(_base_style(sty, "objective and thresholds as passed to routing.select_winners"))
    if proposal.error:
        display(show_text(proposal.error, "orc-note"))
    elif proposal.written:
        display(show_text(f"Written to the [routing] table of {config_name}.", "orc-ok"))
    else:
        display(
            show_text(
                f"Not written (update_routing is false). The change to {config_name} would be:", "orc-note"
            )
        )
    if proposal.diff:
        display(show_pre(proposal.diff))
    elif not proposal.error:
        display(show_text("No change to the routing table.", "orc-ok"))
