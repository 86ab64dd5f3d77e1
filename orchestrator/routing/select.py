"""Winners of a run's DEV split, per mode: :func:`select_winners`.

Protocol: winners are picked on the DEV split of a run (here), written back into the config with their
provenance (:mod:`.writeback`, only ``[routing]`` changes), and any policy is judged on the held-out TEST
split from the logged results, with no new calls (:mod:`.replay`).

The statistics (means over issues with repeats averaged first, clustered bootstrap CIs, paired tests, list
cost per issue) come from :mod:`orchestrator.analysis`; this module only decides.

Objectives of :func:`select_winners` (models with fewer than ``min_n`` scored issues never qualify; ties are
broken by cost, then p50 latency, then name; an unknown cost ranks after every known one):

- ``quality``: the best mean.
- ``cheapest-tied``: the cheapest model statistically tied with the best (:func:`analysis.tied_with_best`,
  Holm-corrected paired tests against the best); then the other tied models by cost, then the rest by mean.
- ``quality-under-cost``: the best mean among models whose cost per issue is known and at most
  ``max_cost_per_issue``; only those models are fallbacks.
- ``quality-per-dollar``: the highest mean / cost per issue. A free model (cost 0) would have an infinite
  ratio, so it ranks first only when its mean reaches the lower CI bound of the best model (about as good,
  and free); a free model below that bound is priced at the cheapest paid model's cost for the ratio, so
  it has to compete on quality with the cheapest paid option. Models of unknown cost rank last, by mean.

Fallbacks are the next ``n_fallbacks`` models in the objective's order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import OrchestratorError

if TYPE_CHECKING:
    import pandas as pd


__all__ = [
    "MANAGED_KEYS",
    "OBJECTIVES",
    "RoutingError",
    "Selection",
    "Selections",
    "fmt_cost",
    "select_winners",
]

OBJECTIVES = ("quality", "cheapest-tied", "quality-under-cost", "quality-per-dollar")
# The keys write_routing owns in a [routing.<mode>] table; any other key there (a user's cascade, notes) stays.
MANAGED_KEYS = (
    "primary",
    "prompt",
    "prompt_version",
    "fallbacks",
    "objective",
    "reason",
    "run_id",
    "dataset",
    "split",
    "score",
    "ci",
    "cost_per_issue",
    "n",
    "date",
    "router",
    "router_tau",
)


class RoutingError(OrchestratorError, ValueError):
    """Routing cannot be decided, written or replayed as asked; the message says why and what to do."""


@dataclass
class Selection:
    """The routing chosen for one mode, with the numbers behind it (from the dev split)."""

    mode: str
    model: str
    fallbacks: list[str]
    objective: str
    reason: str
    score: float
    ci: tuple[float, float]
    cost_per_issue: float | None
    latency_p50: float | None
    n: int
    cascade: dict[str, Any] | None = None
    prompt: str | None = None  # the task's prompt variant that won with the model (None: a built-in mode)
    prompt_version: str | None = None


# A candidate of a task is a (model, prompt) pair, ranked as one "model" named model + SEP + prompt.
PROMPT_SEP = "\x1f"


def _candidates(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of task variants regrouped so winners are picked per task over (model, prompt) pairs: ``mode``
    becomes the task and ``model`` the pair. Built-in modes (task = mode, prompt default) are unchanged."""
    if "task" not in df.columns or "prompt" not in df.columns or df.empty:
        return df
    task = df["task"].astype("string").fillna(df["mode"].astype("string"))
    prompt = df["prompt"].astype("string").fillna("default")
    variant = (task != df["mode"].astype("string")) | (prompt != "default")
    if not bool(variant.any()):
        return df
    out = df.copy()
    out.loc[variant, "model"] = (
        df.loc[variant, "model"].astype(str) + PROMPT_SEP + prompt[variant].astype(str)
    )
    out.loc[variant, "mode"] = task[variant]
    return out


def _split_candidate(name: str) -> tuple[str, str | None]:
    model, sep, prompt = name.partition(PROMPT_SEP)
    return model, (prompt if sep else None)


def _shown(name: str) -> str:
    model, prompt = _split_candidate(name)
    return model if prompt is None else f"{model} with prompt {prompt!r}"


class Selections(dict):
    """``{mode: Selection}``; ``skipped`` maps each mode that got no winner to the reason, ``split`` names the
    rows used ("dev", or "all" when ``allow_any_split`` let unlabelled rows through)."""

    def __init__(self, *args: Any, skipped: dict[str, str] | None = None, split: str = "dev", **kw: Any):
        super().__init__(*args, **kw)
        self.skipped: dict[str, str] = dict(skipped or {})
        self.split = split


def split_rows(df: pd.DataFrame, split: str, allow_any_split: bool) -> tuple[pd.DataFrame, str]:
    """The rows of ``split``. Without split labels (or without any ``split`` row) refuse, unless
    ``allow_any_split`` (then every row is used and the returned label is "all")."""
    labels = df["split"].astype("string").fillna("") if "split" in df.columns else None
    has_labels = labels is not None and bool((labels != "").any())
    if not has_labels:
        if allow_any_split:
            return df, "all"
        raise RoutingError(
            f"the results carry no split labels, so the {split} rows cannot be told apart: choose winners on "
            "dev and judge them on test (label the dataset's issues with split = dev/test), or pass "
            "allow_any_split=True (CLI --allow-any-split) to use every row, knowing that numbers measured on "
            "the issues the winners were picked on are optimistic"
        )
    sub = df[(labels == split).to_numpy(dtype=bool)]
    if sub.empty:
        if allow_any_split:
            return df, "all"
        present = sorted({str(s) for s in labels.unique() if s})
        raise RoutingError(
            f"no {split!r} rows in the results (splits present: {', '.join(present)}); run the grid on the "
            f"{split} split, or pass allow_any_split=True (CLI --allow-any-split) to use every row"
        )
    return sub, split


def is_nan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def to_float(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def fmt_cost(c: float | None) -> str:
    if is_nan(c):
        return "cost unknown"
    if c == 0:
        return "$0.0000"
    if abs(c) < 0.001:
        return f"${c:.6f}"
    return f"${c:.4f}"


def _fmt_score(row: Mapping[str, Any]) -> str:
    return f"{row['mean']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def _tiebreak(row: Mapping[str, Any]) -> tuple:
    cost, lat = to_float(row["cost_per_issue"]), to_float(row["latency_p50"])
    return (
        math.isnan(cost),
        0.0 if math.isnan(cost) else cost,
        math.isnan(lat),
        0.0 if math.isnan(lat) else lat,
        str(row["model"]),
    )


def _by_quality(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(rows, key=lambda r: (-float(r["mean"]), *_tiebreak(r)))


def select_winners(
    df: pd.DataFrame,
    objective: str = "cheapest-tied",
    *,
    max_cost_per_issue: float | None = None,
    min_n: int = 10,
    n_fallbacks: int = 2,
    allow_any_split: bool = False,
    modes: Sequence[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> Selections:
    """Pick a primary model and ordered fallbacks per mode from the DEV rows of a results frame.

    See the module docstring for the objectives. Scores follow :func:`analysis.summary_table` (repeats
    averaged per issue, failed cells left out and reported as the error rate); ``n`` is the number of
    scored issues. Modes where no model qualifies are left out and listed in ``Selections.skipped``.
    """
    from .. import analysis

    if objective not in OBJECTIVES:
        raise RoutingError(f"unknown objective {objective!r}; choose one of: {', '.join(OBJECTIVES)}")
    if objective == "quality-under-cost" and max_cost_per_issue is None:
        raise RoutingError(
            "objective quality-under-cost needs a cost cap: max_cost_per_issue (CLI --max-cost-per-issue USD)"
        )
    if min_n < 1:
        raise RoutingError(f"min_n must be >= 1, got {min_n}")
    rows, split_used = split_rows(df, "dev", allow_any_split)
    versions = _prompt_versions(rows)
    rows = _candidates(rows)
    table = analysis.summary_table(rows, n_boot=n_boot, seed=seed)
    wanted = list(modes) if modes is not None else sorted({str(m) for m in table["mode"].dropna()})
    out = Selections(split=split_used)
    for mode in wanted:
        stats = table[table["mode"] == mode].to_dict("records")
        if not stats:
            out.skipped[mode] = f"{mode}: no results in the {split_used} rows"
            continue
        eligible = [
            r for r in stats if int(r["n_scored_issues"]) >= min_n and not is_nan(to_float(r["mean"]))
        ]
        excluded = [
            f"{r['model']} (n={int(r['n_scored_issues'])} < {min_n})"
            for r in stats
            if int(r["n_scored_issues"]) < min_n
        ]
        if not eligible:
            out.skipped[mode] = (
                f"{mode}: no model has >= {min_n} scored issues on {split_used} ({', '.join(excluded)})"
            )
            continue
        names = {str(r["model"]) for r in eligible}
        mode_rows = rows[(rows["mode"] == mode) & rows["model"].isin(names)]
        picked = _rank(objective, eligible, mode_rows, mode, max_cost_per_issue, n_boot, seed, excluded)
        if picked is None:
            out.skipped[mode] = f"{mode}: " + "; ".join(excluded)
            continue
        order, why = picked
        win = order[0]
        notes = [
            why,
            f"{_fmt_score(win)} at {fmt_cost(to_float(win['cost_per_issue']))}/issue, "
            f"n={int(win['n_scored_issues'])}",
        ]
        if float(win.get("error_rate", 0) or 0) > 0:
            notes.append(f"error rate {float(win['error_rate']):.0%}")
        if excluded:
            notes.append("excluded: " + ", ".join(excluded))
        cost = to_float(win["cost_per_issue"])
        lat = to_float(win["latency_p50"])
        model, prompt = _split_candidate(str(win["model"]))
        fallbacks = [_split_candidate(str(r["model"]))[0] for r in order[1:]]
        reason = f"{mode}: {win['model']} — " + "; ".join(notes)
        for r in order:
            reason = reason.replace(str(r["model"]), _shown(str(r["model"])))
        out[mode] = Selection(
            mode=mode,
            model=model,
            fallbacks=[m for m in dict.fromkeys(fallbacks) if m != model][:n_fallbacks],
            objective=objective,
            reason=reason,
            score=float(win["mean"]),
            ci=(float(win["ci_low"]), float(win["ci_high"])),
            cost_per_issue=None if math.isnan(cost) else cost,
            latency_p50=None if math.isnan(lat) else lat,
            n=int(win["n_scored_issues"]),
            prompt=prompt,
            prompt_version=versions.get((mode, prompt)) if prompt is not None else None,
        )
    return out


def _prompt_versions(rows: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(task, prompt) -> the prompt version its rows recorded (the newest when a run saw several)."""
    if not {"task", "prompt", "prompt_version"} <= set(rows.columns):
        return {}
    out: dict[tuple[str, str], str] = {}
    for task, prompt, version in rows[["task", "prompt", "prompt_version"]].dropna().itertuples(index=False):
        out[(str(task), str(prompt))] = str(version)
    return out


def _rank(
    objective: str,
    eligible: list[dict[str, Any]],
    mode_rows: pd.DataFrame,
    mode: str,
    cap: float | None,
    n_boot: int,
    seed: int,
    excluded: list[str],
) -> tuple[list[dict[str, Any]], str] | None:
    """The eligible models in the objective's order, and the winner's reason (None: nobody qualifies)."""
    from .. import analysis

    k = len(eligible)
    best = _by_quality(eligible)[0]
    best_txt = f"{best['model']} {_fmt_score(best)}"
    if objective == "quality":
        order = _by_quality(eligible)
        return order, f"best mean of {k} model{'s' * (k != 1)}"
    if objective == "cheapest-tied":
        tied_names = analysis.tied_with_best(mode_rows, mode, n_boot=n_boot, seed=seed)
        by_name = {str(r["model"]): r for r in eligible}
        tied = sorted(
            (by_name[m] for m in tied_names if m in by_name),
            key=lambda r: (*_tiebreak(r)[:4], -float(r["mean"]), str(r["model"])),
        )
        if not tied:  # no paired data against the best: fall back to the best alone
            tied = [best]
        rest = _by_quality(r for r in eligible if r not in tied)
        order = tied + rest
        n_tied = len(tied)
        if order[0]["model"] == best["model"]:
            why = (
                f"the best of {k} model{'s' * (k != 1)} and the cheapest of the {n_tied} statistically tied "
                f"with it"
                if n_tied > 1
                else f"the best of {k} model{'s' * (k != 1)}; none is statistically tied with it"
            )
        else:
            why = f"cheapest of {n_tied} models statistically tied with the best ({best_txt})"
        return order, why
    if objective == "quality-under-cost":
        assert cap is not None
        under = [
            r
            for r in eligible
            if not is_nan(to_float(r["cost_per_issue"])) and float(r["cost_per_issue"]) <= cap
        ]
        over = [
            f"{r['model']} ({fmt_cost(to_float(r['cost_per_issue']))}/issue)"
            for r in eligible
            if r not in under
        ]
        if over:
            excluded.append(f"over the {fmt_cost(cap)}/issue cap or of unknown cost: " + ", ".join(over))
        if not under:
            return None
        order = _by_quality(under)
        why = f"best mean of {len(under)} model{'s' * (len(under) != 1)} at <= {fmt_cost(cap)}/issue"
        if order[0]["model"] != best["model"]:
            why += f" (best overall: {best_txt} at {fmt_cost(to_float(best['cost_per_issue']))}/issue)"
        return order, why
    # quality-per-dollar
    floor = float(best["ci_low"]) if not is_nan(to_float(best["ci_low"])) else float(best["mean"])
    paid = [
        float(r["cost_per_issue"])
        for r in eligible
        if not is_nan(to_float(r["cost_per_issue"])) and float(r["cost_per_issue"]) > 0
    ]
    cheapest_paid = min(paid) if paid else None

    def key(r: Mapping[str, Any]) -> tuple:
        cost, mean = to_float(r["cost_per_issue"]), float(r["mean"])
        if math.isnan(cost):
            return (2, -mean, *_tiebreak(r))
        if cost == 0 and mean >= floor:
            return (0, -mean, *_tiebreak(r))
        effective = cost if cost > 0 else cheapest_paid
        value = mean / effective if effective else mean
        return (1, -value, *_tiebreak(r))

    order = sorted(eligible, key=key)
    win = order[0]
    cost = to_float(win["cost_per_issue"])
    if cost == 0 and float(win["mean"]) >= floor:
        why = (
            f"free and within the best's CI (mean >= {floor:.2f}, the lower bound of {best_txt}); "
            f"highest quality per dollar of {k} model{'s' * (k != 1)}"
        )
    elif math.isnan(cost):
        why = f"no model of {k} has a known cost; best mean"
    else:
        eff = cost if cost > 0 else cheapest_paid
        ratio = f"{float(win['mean']) / eff:,.0f} score/$" if eff else "free"
        why = f"highest quality per dollar of {k} model{'s' * (k != 1)} ({ratio}; best: {best_txt})"
    return order, why
