"""Learn a per-issue router from a run's logged results, and judge it on the held-out test split.

Protocol (:func:`learn_router`):

1. Candidates are the task's (model, prompt) pairs in the run. An issue enters only when every candidate
   has a row for it (a failed call scores 0: it answered nothing); the others are counted, not imputed.
2. On the DEV split, each candidate's score is predicted out of fold (5-fold cross-fitting,
   :class:`~.router.Router`), and the threshold ``tau`` is swept: each issue goes to the cheapest
   candidate predicted within ``tau`` of the best. That is the dev cost-quality curve; ``tau`` is chosen
   on it by the objective (as :func:`~.select.select_winners` chooses a model).
3. The router is refitted on all of dev and replayed on TEST, beside what it must beat: the best single
   candidate of dev, the static winner, a cascade, random routing at the router's cost, and the per-issue
   oracle (an upper bound). Each with its mean, a 95 % bootstrap CI over issues and its cost per issue;
   quality and cost are also given as shares of the strongest test candidate's (RouteLLM's reporting).

``cost``: ``usd`` (list cost per issue, the default) or ``latency`` (seconds per issue), for runs whose
candidates are all free.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..types import Issue
from .router import Candidate, Router
from .select import RoutingError, split_rows

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

TAUS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0)
FOLDS = 5
COST_AXES = ("usd", "latency")


@dataclass
class Scores:
    """One split of a task: issues x candidates matrices of scores and costs."""

    issues: list[Issue]
    score: np.ndarray
    cost: np.ndarray
    excluded: int


@dataclass
class LearnedRouting:
    """What :func:`learn_router` found; ``comparators`` is the test replay table (one row per policy)."""

    task: str
    router: Router
    cost_axis: str
    dev_curve: pd.DataFrame
    test_curve: pd.DataFrame
    comparators: pd.DataFrame
    n_dev: int
    n_test: int
    excluded: dict[str, int] = field(default_factory=dict)
    reason: str = ""
    best_single: Candidate | None = None  # the best candidate of dev: what answers a call with no issue

    def __str__(self) -> str:
        return format_learned(self)


def _task_rows(df: pd.DataFrame, task: str) -> pd.DataFrame:
    tasks = df["task"].astype("string").fillna(df["mode"].astype("string")) if "task" in df else df["mode"]
    return df[(tasks == task).to_numpy(dtype=bool)]


def _cost_column(rows: pd.DataFrame, axis: str) -> np.ndarray:
    from .replay import _column, _list_cost

    return _list_cost(rows) if axis == "usd" else _column(rows, "latency_s")


def candidates_of(rows: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(model, mode, prompt) of every candidate in a task's rows, sorted."""
    prompt = rows["prompt"].astype("string").fillna("default") if "prompt" in rows else None
    out = set()
    for i, (model, mode) in enumerate(zip(rows["model"].astype(str), rows["mode"].astype(str), strict=True)):
        out.add((model, mode, str(prompt.iloc[i]) if prompt is not None else "default"))
    return sorted(out)


def score_matrix(
    rows: pd.DataFrame, keys: Sequence[tuple[str, str, str]], issues: Mapping[str, Issue], axis: str
) -> Scores:
    """The split's issues where every candidate has a row, with their scores (repeats averaged; a failed
    call scores 0) and costs."""
    import numpy as np

    from .replay import _column, _errored

    score = _column(rows, "score")
    score = np.where(_errored(rows) & np.isnan(score), 0.0, score)
    cost = _cost_column(rows, axis)
    at = {(m, mode): c for c, (m, mode, _p) in enumerate(keys)}
    sums: dict[str, list[list[float]]] = {}
    for i, (issue, model, mode) in enumerate(
        zip(rows["issue_id"].astype(str), rows["model"].astype(str), rows["mode"].astype(str), strict=True)
    ):
        c = at.get((model, mode))
        if c is None:
            continue
        cell = sums.setdefault(issue, [[] for _ in keys])
        cell[c].append((score[i], cost[i]))
    kept, s_rows, c_rows, excluded = [], [], [], 0
    for issue_id in sorted(sums):
        cells = sums[issue_id]
        issue = issues.get(issue_id)
        scored = [[s for s, _ in cell if not math.isnan(s)] for cell in cells]
        if issue is None or not all(scored):
            excluded += 1
            continue
        kept.append(issue)
        s_rows.append([sum(s) / len(s) for s in scored])
        c_rows.append([sum(c for _, c in cell) / len(cell) for cell in cells])  # NaN when any is unknown
    shape = (len(kept), len(keys))
    return Scores(
        kept,
        np.asarray(s_rows, dtype=np.float64).reshape(shape),
        np.asarray(c_rows, dtype=np.float64).reshape(shape),
        excluded,
    )


def _fold(issue_id: str) -> int:
    return zlib.crc32(issue_id.encode("utf-8", "surrogatepass")) % FOLDS


def out_of_fold(task: str, candidates: list[Candidate], dev: Scores) -> tuple[np.ndarray, np.ndarray]:
    """Each dev issue's predicted scores from a router fitted without its fold, and the mean scores of the
    other folds (what a candidate's mean alone predicts)."""
    import numpy as np

    pred = np.zeros_like(dev.score)
    means = np.zeros_like(dev.score)
    folds = np.array([_fold(i.id) for i in dev.issues])
    for f in range(FOLDS):
        test = folds == f
        if not test.any():
            continue
        train = ~test
        if not train.any():  # one fold holds every issue: nothing to learn from, predict the mean
            pred[test] = means[test] = dev.score.mean(axis=0)
            continue
        means[test] = dev.score[train].mean(axis=0)
        router = Router.fit(
            task, candidates, [dev.issues[i] for i in np.flatnonzero(train)], dev.score[train]
        )
        for i in np.flatnonzero(test):
            pred[i] = router.predict(dev.issues[i])
    return pred, means


def _routed(
    router: Router, predicted: np.ndarray, split: Scores, tau: float
) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    picks = np.array([router.choose_from(p, tau) for p in predicted], dtype=int)
    rows = np.arange(len(picks))
    return split.score[rows, picks], split.cost[rows, picks]


def curve(router: Router, predicted: np.ndarray, split: Scores) -> pd.DataFrame:
    """Mean score and cost per issue of the router at every tau of :data:`TAUS`."""
    import pandas as pd

    out = []
    for tau in TAUS:
        s, c = _routed(router, predicted, split, tau)
        out.append({"tau": tau, "mean": float(s.mean()), "cost_per_issue": _mean(c)})
    return pd.DataFrame(out)


def _mean(values: np.ndarray) -> float:
    import numpy as np

    return math.nan if len(values) == 0 or np.isnan(values).any() else float(values.mean())


def choose_tau(
    router: Router, predicted: np.ndarray, dev: Scores, objective: str, max_cost: float | None, seed: int = 0
) -> tuple[float, str]:
    """The tau the objective picks on the dev curve, and why."""
    import pandas as pd

    points = curve(router, predicted, dev)
    cost = points["cost_per_issue"].fillna(math.inf)
    if objective == "quality-under-cost":
        if max_cost is None:
            raise RoutingError("objective quality-under-cost needs max_cost_per_issue (--max-cost-per-issue)")
        points = points[cost <= max_cost]
        if points.empty:
            raise RoutingError(f"no tau keeps the dev cost per issue under {max_cost:g}")
        cost = cost[points.index]
    if objective == "quality-per-dollar":
        ratio = points["mean"] / cost.clip(lower=1e-12)
        k = int(ratio.to_numpy().argmax())
        return float(points["tau"].iloc[k]), "the highest mean per unit of cost on dev"
    order = sorted(points.index, key=lambda k: (-points.loc[k, "mean"], cost[k], -points.loc[k, "tau"]))
    best = order[0]
    if objective != "cheapest-tied":
        return float(points.loc[best, "tau"]), "the best dev mean (ties: the cheaper)"
    from ..analysis import tied_with_best

    # taus that route every issue alike are one policy: test each policy once (Holm over fewer comparisons),
    # under its smallest tau
    policies: dict[tuple[int, ...], int] = {}
    for k in points.index:
        picks = tuple(router.choose_from(p, float(points.loc[k, "tau"])) for p in predicted)
        policies.setdefault(picks, k)
    long = []
    for k in policies.values():
        s, _ = _routed(router, predicted, dev, float(points.loc[k, "tau"]))
        long += [
            {"mode": "r", "model": str(k), "issue_id": i.id, "repeat": 0, "score": float(v)}
            for i, v in zip(dev.issues, s, strict=True)
        ]
    tied = {int(m) for m in tied_with_best(pd.DataFrame(long), "r", seed=seed)}
    cheapest = min(tied, key=lambda k: (cost[k], -points.loc[k, "mean"]))
    return float(points.loc[cheapest, "tau"]), "the cheapest tau statistically tied with the best on dev"


def learn_router(
    df: pd.DataFrame,
    issues: Sequence[Issue] | Mapping[str, Issue],
    task: str,
    *,
    objective: str = "cheapest-tied",
    max_cost_per_issue: float | None = None,
    cost: str = "usd",
    cascade: Mapping[str, Any] | None = None,
    static_winner: tuple[str, str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    meta: dict[str, Any] | None = None,
) -> LearnedRouting:
    """Fit a router for ``task`` on the run's dev rows and replay it on its test rows (module docstring).

    ``issues``: the run's issues, a list or ``{id: Issue}`` (their text is the router's input). ``static_winner``: (model, mode) of
    the static winner to compare with (default: the best single candidate of dev). ``cascade``: a
    ``[routing.<task>].cascade`` table to compare with (default: the cheapest candidate, then the
    strongest of dev, at threshold 0.5)."""
    if cost not in COST_AXES:
        raise RoutingError(f"cost axis {cost!r}: one of {', '.join(COST_AXES)}")
    rows = _task_rows(df, task)
    if rows.empty:
        raise RoutingError(f"the run has no rows for task {task!r}")
    keys = candidates_of(rows)
    if len(keys) < 2:
        raise RoutingError(f"task {task!r}: a router needs two candidates or more; the run has {len(keys)}")
    by_id = dict(issues) if isinstance(issues, Mapping) else {i.id: i for i in issues}
    dev_rows, _ = split_rows(rows, "dev", False)
    test_rows, _ = split_rows(rows, "test", False)
    dev = score_matrix(dev_rows, keys, by_id, cost)
    test = score_matrix(test_rows, keys, by_id, cost)
    if len(dev.issues) < FOLDS or not test.issues:
        raise RoutingError(
            f"task {task!r}: {len(dev.issues)} dev and {len(test.issues)} test issues have a row for every "
            f"candidate; a learned router needs at least {FOLDS} dev issues and one test issue"
        )
    candidates = [Candidate(m, mode, p, _mean(dev.cost[:, c])) for c, (m, mode, p) in enumerate(keys)]
    import numpy as np

    predicted, means = out_of_fold(task, candidates, dev)
    # a candidate whose score the issue's features predict no better than its mean (out of fold) is
    # predicted by its mean: with no signal the router then sends every issue alike, never worse than one
    # candidate for noise it fitted
    helps = ((predicted - dev.score) ** 2).mean(axis=0) < ((means - dev.score) ** 2).mean(axis=0)
    predicted = np.where(helps, predicted, means)
    router = Router.fit(
        task,
        candidates,
        dev.issues,
        dev.score,
        plain=[not h for h in helps],
        meta={**(meta or {}), "objective": objective, "cost": cost},
    )
    tau, why = choose_tau(router, predicted, dev, objective, max_cost_per_issue, seed)
    router.tau = tau
    test_pred = [router.predict(i) for i in test.issues]
    from .comparators import best_of_dev, comparators

    table = comparators(
        router,
        test_pred,
        dev,
        test,
        test_rows,
        cost=cost,
        cascade=cascade,
        static_winner=static_winner,
        n_boot=n_boot,
        seed=seed,
    )
    reason = (
        f"{task}: learned router over {len(candidates)} candidates, tau = {tau:g} ({why}; objective "
        f"{objective}), fitted on {len(dev.issues)} dev issues; the issue predicts {int(helps.sum())} of "
        f"{len(candidates)} candidates' scores better than their mean"
    )
    return LearnedRouting(
        task,
        router,
        cost,
        curve(router, predicted, dev),
        curve(router, np.asarray(test_pred), test),
        table,
        len(dev.issues),
        len(test.issues),
        {"dev": dev.excluded, "test": test.excluded},
        reason,
        candidates[best_of_dev(router, dev)],
    )


def replay_stored(
    router: Router,
    df: pd.DataFrame,
    issues: Sequence[Issue] | Mapping[str, Issue],
    *,
    split: str = "test",
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """A stored router (``[routing.<task>].router``) replayed on a run's ``split`` rows: its mean with a 95 %
    bootstrap CI and its cost per issue, on the issues where each of its candidates has a row."""
    import numpy as np

    from .replay import _bootstrap_ci

    by_id = dict(issues) if isinstance(issues, Mapping) else {i.id: i for i in issues}
    rows, _ = split_rows(_task_rows(df, router.task), split, False)
    keys = [(c.model, c.mode, c.prompt) for c in router.candidates]
    axis = str(router.meta.get("cost", "usd"))
    scores = score_matrix(rows, keys, by_id, axis)
    if not scores.issues:
        raise RoutingError(
            f"router for {router.task}: no {split} issue of this run has a row for each of its candidates "
            f"({', '.join(c.label for c in router.candidates)})"
        )
    picks = np.array([router.choose_from(router.predict(i), router.tau) for i in scores.issues])
    at = np.arange(len(picks))
    s, c = scores.score[at, picks], scores.cost[at, picks]
    lo, hi = _bootstrap_ci([float(x) for x in s], n_boot, seed, router.task)
    return {
        "task": router.task,
        "policy": f"stored router (tau {router.tau:g})",
        "n": len(s),
        "mean": float(s.mean()),
        "ci_low": lo,
        "ci_high": hi,
        "cost_per_issue": _mean(c),
        "cost_axis": axis,
        "excluded": scores.excluded,
    }


def format_learned(result: LearnedRouting) -> str:
    unit = "$/issue" if result.cost_axis == "usd" else "s/issue"
    lines = [result.reason]
    lines.append(
        "candidates (dev mean cost): "
        + "; ".join(f"{c.label} {c.cost:.4g}" for c in result.router.candidates)
    )
    costs = {round(c.cost, 12) for c in result.router.candidates if not math.isnan(c.cost)}
    if len(costs) == 1 and len(result.router.candidates) > 1:
        lines.append(
            f"every candidate costs the same on this axis ({unit} {costs.pop():.4g}): the router picks by predicted "
            "score alone"
            + ("; --cost latency compares free models by their time" if result.cost_axis == "usd" else "")
        )
    if any(result.excluded.values()):
        lines.append(
            f"left out (a candidate has no row): {result.excluded['dev']} dev, {result.excluded['test']} test issues"
        )
    lines.append(f"\ndev curve (out-of-fold predictions, {result.n_dev} issues):")
    lines.append(
        result.dev_curve.rename(columns={"cost_per_issue": unit}).to_string(
            index=False, float_format=lambda x: f"{x:.4g}"
        )
    )
    lines.append(f"\ntest replay ({result.n_test} issues; CI: 95 % bootstrap over issues):")
    shown = result.comparators.rename(columns={"cost_per_issue": unit})
    lines.append(shown.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    return "\n".join(lines)
