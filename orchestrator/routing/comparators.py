"""What a learned router is judged against on the test split, each with its mean, a 95 % bootstrap CI
over issues and its cost per issue (see :mod:`.learned`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .replay import _bootstrap_ci

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from .learned import Scores
    from .router import Router


def _row(policy: str, scores: np.ndarray, costs: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    from .learned import _mean

    lo, hi = _bootstrap_ci([float(x) for x in scores], n_boot, seed, policy)
    return {
        "policy": policy,
        "n": len(scores),
        "mean": float(scores.mean()),
        "ci_low": lo,
        "ci_high": hi,
        "cost_per_issue": _mean(costs),
    }


def best_of_dev(router: Router, dev: Scores) -> int:
    """The candidate with the best dev mean (ties: known cost first, then the cheaper, then order)."""
    means = dev.score.mean(axis=0)
    cands = router.candidates
    return min(range(len(cands)), key=lambda c: (-means[c], math.isnan(cands[c].cost), cands[c].cost, c))


def _cheapest(router: Router) -> int:
    return min(
        range(len(router.candidates)),
        key=lambda c: (math.isnan(router.candidates[c].cost), router.candidates[c].cost, c),
    )


def comparators(
    router: Router,
    test_pred: Sequence[np.ndarray],
    dev: Scores,
    test: Scores,
    test_rows: pd.DataFrame,
    *,
    cost: str,
    cascade: Mapping[str, Any] | None,
    static_winner: tuple[str, str] | None,
    n_boot: int,
    seed: int,
) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    cands = router.candidates
    rows_n = np.arange(len(test.issues))
    out = []
    picks = np.array([router.choose_from(p, router.tau) for p in test_pred], dtype=int)
    r_score, r_cost = test.score[rows_n, picks], test.cost[rows_n, picks]
    out.append(_row(f"learned router (tau {router.tau:g})", r_score, r_cost, n_boot, seed))
    best = best_of_dev(router, dev)
    out.append(
        _row(
            f"best single of dev: {cands[best].label}", test.score[:, best], test.cost[:, best], n_boot, seed
        )
    )
    if static_winner is not None:
        at = {(c.model, c.mode): k for k, c in enumerate(cands)}
        k = at.get(static_winner)
        if k is not None:
            out.append(
                _row(f"static winner: {cands[k].label}", test.score[:, k], test.cost[:, k], n_boot, seed)
            )
    cheap = _cheapest(router)
    # the strong step of the default cascade: the dev-best candidate, or, when that
    # is the cheapest, the dearest one
    strong = (
        best
        if best != cheap
        else max(range(len(cands)), key=lambda c: (math.isnan(cands[c].cost), cands[c].cost, -c))
    )
    strong_test = int(np.argmax(test.score.mean(axis=0)))
    out.append(_cascade_row(router, cheap, strong, test, test_rows, cost, cascade, n_boot, seed))
    # random routing at the router's cost: each issue sent to a candidate drawn with the router's own mix
    # (RouteLLM's random baseline, for any number of candidates), as the expectation over draws
    shares = np.bincount(picks, minlength=len(cands)) / len(picks)
    mix = ", ".join(f"{shares[c]:.0%} {cands[c].label}" for c in np.flatnonzero(shares))
    out.append(
        _row(
            f"random at the router's cost ({mix})",
            test.score @ shares,
            test.cost[:, shares > 0] @ shares[shares > 0],
            n_boot,
            seed,
        )
    )
    # the oracle: per issue the best score, the cheapest candidate among those reaching it
    o_pick = np.array(
        [
            min(np.flatnonzero(s == s.max()), key=lambda c: (math.isnan(cands[c].cost), cands[c].cost))
            for s in test.score
        ]
    )
    out.append(
        _row("oracle (upper bound)", test.score[rows_n, o_pick], test.cost[rows_n, o_pick], n_boot, seed)
    )
    out.append(
        _row(
            f"strongest on test: {cands[strong_test].label}",
            test.score[:, strong_test],
            test.cost[:, strong_test],
            n_boot,
            seed,
        )
    )
    table = pd.DataFrame(out)
    ref_mean = float(test.score[:, strong_test].mean())
    ref_cost = _mean_or_nan(test.cost[:, strong_test])
    table["quality_share"] = table["mean"] / ref_mean if ref_mean > 0 else math.nan
    table["cost_share"] = (
        table["cost_per_issue"] / ref_cost if ref_cost and not math.isnan(ref_cost) else math.nan
    )
    return table


def _mean_or_nan(values: np.ndarray) -> float:
    from .learned import _mean

    return _mean(values)


def _cascade_row(
    router: Router,
    cheap: int,
    strong: int,
    test: Scores,
    test_rows: pd.DataFrame,
    cost: str,
    cascade: Mapping[str, Any] | None,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """The configured cascade of the task, else cheapest > dev-best at threshold 0.5, replayed on the
    test rows with the chosen cost axis (:func:`.replay.replay`), over the same issues."""
    from .replay import replay

    cands = router.candidates
    if cascade is None:
        cascade = {
            "models": [cands[cheap].model, cands[strong].model],
            "prompts": [cands[cheap].prompt, cands[strong].prompt],
            "threshold": 0.5,
        }
    rows = test_rows[test_rows["issue_id"].astype(str).isin({i.id for i in test.issues})]
    if cost == "latency":
        rows = rows.assign(cost_usd=rows["latency_s"], from_cache=False)
    try:
        report = replay(rows, {router.task: {"cascade": dict(cascade)}}, n_boot=n_boot, seed=seed)
    except Exception as exc:  # a cascade over candidates the run lacks: say so in the table
        return {
            "policy": f"cascade: not replayable ({exc})",
            "n": 0,
            "mean": math.nan,
            "ci_low": math.nan,
            "ci_high": math.nan,
            "cost_per_issue": math.nan,
        }
    row = report.table.iloc[0]
    return {
        "policy": f"cascade: {row['policy']}",
        "n": int(row["n_issues"]),
        "mean": float(row["mean"]),
        "ci_low": float(row["ci_low"]),
        "ci_high": float(row["ci_high"]),
        "cost_per_issue": float(row["cost_per_issue"]),
    }
