"""The benchmark said in words: the best model per mode, who ties with it, what it costs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .html import _html, _ordered_modes, esc, fmt_usd

if TYPE_CHECKING:
    import pandas as pd


def summary_in_words(
    summary: pd.DataFrame, comparisons: pd.DataFrame | None = None, modes: Sequence[str] | None = None
) -> str:
    """A few sentences from the numbers: which model wins each mode, at what cost, and how sure that is.

    One line per mode (starting with "- "), then caveats about sample size and errors."""
    if summary is None or summary.empty:
        return "No results: nothing was scored."
    lines = []
    order = list(modes) if modes else _ordered_modes(summary["mode"])
    small = False
    for mode in order:
        sub = summary[(summary["mode"] == mode) & summary["mean"].notna()]
        if sub.empty:
            lines.append(f"- {mode}: no model produced a scorable answer.")
            continue
        sub = sub.assign(_cost=sub["cost_per_issue"].fillna(float("inf")))
        sub = sub.sort_values(["mean", "_cost", "model"], ascending=[False, True, True], kind="stable")
        best = sub.iloc[0]
        n = int(best["n_issues"])
        small = small or n < 10
        head = (
            f"- {mode}: {best['model']} scores best, {best['mean']:.2f} "
            f"(95% CI {best['ci_low']:.2f}–{best['ci_high']:.2f}, {n} issue{'s' if n != 1 else ''}), "
            f"at {fmt_usd(best['cost_per_issue'])} per issue"
        )
        if len(sub) == 1:
            lines.append(head + "; it is the only model scored in this mode.")
            continue
        tied, ahead = _ties(comparisons, mode, str(best["model"]))
        if tied is None:
            sureness = "no paired comparison is available"
        elif not tied:
            second = sub.iloc[1]
            sureness = (
                f"it is ahead of every other model (paired tests significant after Holm correction); "
                f"runner-up {second['model']} at {second['mean']:.2f}"
            )
        else:
            tied_rows = sub[sub["model"].isin(tied)]
            parts = [f"{r.model} ({r.mean:.2f})" for r in tied_rows.itertuples(index=False)]
            sureness = "the lead is not significant: statistically tied with " + ", ".join(parts)
            cheaper = tied_rows[tied_rows["_cost"] < float(best["_cost"])]
            if len(cheaper):
                c = cheaper.sort_values(["_cost", "mean"], ascending=[True, False]).iloc[0]
                sureness += f"; {c['model']} is tied and cheaper ({fmt_usd(c['cost_per_issue'])} per issue)"
            if ahead:
                sureness += "; clearly ahead of " + ", ".join(ahead)
        lines.append(f"{head}; {sureness}.")
    if small:
        lines.append(
            "- Caution: fewer than 10 issues per cell, so every interval is wide; treat the ranking "
            "as a smoke test, not a verdict."
        )
    errors = summary["error_rate"] * summary["n_cells"]
    if errors.sum() > 0:
        worst = summary.loc[summary["error_rate"].idxmax()]
        lines.append(
            f"- {int(round(errors.sum()))} cells failed; the highest error rate is "
            f"{worst['error_rate']:.0%} ({worst['model']}, {worst['mode']})."
        )
    unknown = summary[summary["cost_per_issue"].isna()]["model"].unique()
    if len(unknown):
        lines.append("- Cost unknown (no price in the config) for: " + ", ".join(map(str, unknown)) + ".")
    return "\n".join(lines)


def _ties(comparisons: pd.DataFrame | None, mode: str, best: str) -> tuple[list[str] | None, list[str]]:
    if comparisons is None or comparisons.empty:
        return None, []
    c = comparisons[comparisons["mode"] == mode] if "mode" in comparisons else comparisons
    c = c[((c["model_a"] == best) | (c["model_b"] == best)) & (c["n"] > 0)]
    if c.empty:
        return None, []
    tied, ahead = [], []
    for r in c.itertuples(index=False):
        other = r.model_b if r.model_a == best else r.model_a
        (ahead if bool(r.significant) else tied).append(str(other))
    return tied, ahead


def words_html(text: str) -> Any:
    """:func:`summary_in_words` as an escaped HTML list."""
    items = [line[2:] if line.startswith("- ") else line for line in text.splitlines() if line.strip()]
    return _html('<ul class="orc-words">' + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>")
