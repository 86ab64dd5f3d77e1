"""Replay a routing policy on the held-out TEST split from logged results, with no new calls.

:func:`replay` judges a fixed model, the config's winners or a cascade per mode against the best single
model; :func:`cascade_curve` gives a cascade's cost-quality curve over thresholds.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..client.cascade import cascade_models, cascade_steps, is_missing, self_check

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

from .select import RoutingError, Selection, fmt_cost, is_nan, split_rows


@dataclass
class _Cell:
    repeat: int
    score: float
    cost: float  # list cost; NaN when unknown
    errored: bool
    text: Any
    parsed: Any
    parse_error: Any


@dataclass
class _Policy:
    kind: str  # fixed | chain | cascade
    models: list[str]
    threshold: float | None = None
    modes: list[str] | None = None  # a cascade's prompt variant per step (its ``prompts``), else the policy's

    def describe(self) -> str:
        if self.kind == "cascade":
            steps = (
                [f"{m} [{v}]" for m, v in zip(self.models, self.modes, strict=True)]
                if self.modes
                else self.models
            )
            return " > ".join(steps) + f" @ {self.threshold:g}"
        if self.kind == "chain" and len(self.models) > 1:
            return f"{self.models[0]} (fallbacks {', '.join(self.models[1:])})"
        return self.models[0]


@dataclass
class ReplayReport:
    """A policy replayed on logged results.

    ``table``: one row per mode: policy, n_issues (issues in the mean), n_excluded (issues left out because a
    cell the policy needs is missing), n_missing_cells, n_unscored (the policy's answer has no score: a
    failed call or an unscorable cell), mean, ci_low, ci_high (percentile bootstrap over issues), cost_per_issue
    (list price, over issues of known cost; cost_known is their share), escalation_rate (cascade: share of
    answers escalated; fallback chain: share that fell back), best_model (the best single model of the split),
    best_mean, best_cost_per_issue, n_compared, quality_kept (policy mean / best mean) and cost_share (policy
    cost / best cost), both on the issues where both have a value.
    ``missing``: every needed (issue_id, model, mode) cell the results lack; ``missing_per_mode`` counts them.
    ``per_issue``: mode, issue_id, score, cost, escalated for every issue in a mean.
    """

    table: pd.DataFrame
    missing: list[tuple[str, str, str]]
    missing_per_mode: dict[str, int]
    per_issue: pd.DataFrame
    split: str
    policies: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return format_replay(self)


# Column conventions of orchestrator.analysis.summary_table: an absent column reads as unknown, a cell failed
# when error_type is a non-empty string, cost is at list price (a cache hit counts the cost it saved).


def _column(df: pd.DataFrame, col: str) -> np.ndarray:
    import numpy as np
    import pandas as pd

    if col not in df.columns:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _errored(df: pd.DataFrame) -> np.ndarray:
    import numpy as np

    if "error_type" not in df.columns:
        return np.zeros(len(df), dtype=bool)
    return (df["error_type"].astype("string").fillna("") != "").to_numpy(dtype=bool)


def _list_cost(df: pd.DataFrame) -> np.ndarray:
    import numpy as np

    cost = _column(df, "cost_usd")
    if "cost_saved_usd" in df.columns and "from_cache" in df.columns:
        saved = _column(df, "cost_saved_usd")
        hit = df["from_cache"].astype("boolean").fillna(False).to_numpy(dtype=bool)
        cost = np.where(hit & ~np.isnan(saved), saved, cost)
    return cost


def _cells(rows: pd.DataFrame) -> dict[tuple[str, str, str], list[_Cell]]:
    """(mode, issue_id, model) → the cell's repeats, sorted by repeat."""
    import numpy as np

    n = len(rows)
    score = _column(rows, "score")
    cost = _list_cost(rows)
    err = _errored(rows)
    repeat = _column(rows, "repeat")
    repeat = np.where(np.isnan(repeat), 0, repeat).astype(int)

    def col(name: str) -> list[Any]:
        return rows[name].tolist() if name in rows.columns else [None] * n

    out: dict[tuple[str, str, str], list[_Cell]] = {}
    for i, (mode, issue, model, text, parsed, perr) in enumerate(
        zip(
            col("mode"),
            col("issue_id"),
            col("model"),
            col("text"),
            col("parsed"),
            col("parse_error"),
            strict=True,
        )
    ):
        if is_missing(mode) or is_missing(issue) or is_missing(model):
            continue
        cell = _Cell(int(repeat[i]), float(score[i]), float(cost[i]), bool(err[i]), text, parsed, perr)
        out.setdefault((str(mode), str(issue), str(model)), []).append(cell)
    for cells in out.values():
        cells.sort(key=lambda c: c.repeat)
    return out


def _normalize_policy(policy: Any) -> dict[str, _Policy]:
    from ..config import MODES

    if not isinstance(policy, Mapping):
        raise RoutingError(f"a policy is a mapping of mode → model, routing entry or cascade; got {policy!r}")
    out: dict[str, _Policy] = {}
    for mode, spec in policy.items():
        if mode not in MODES:
            raise RoutingError(f"unknown mode {mode!r} in the policy (known: {', '.join(MODES)})")
        mode = _prompt_mode(mode, spec)  # a task's entry names its prompt: replay that variant's rows
        if isinstance(spec, str):
            out[mode] = _Policy("fixed", [spec])
        elif isinstance(spec, Selection):
            out[mode] = (
                _Policy("chain", [spec.model, *spec.fallbacks])
                if not spec.cascade
                else _cascade_policy(spec.cascade, mode)
            )
        elif isinstance(spec, Mapping) and isinstance(spec.get("cascade"), Mapping):
            out[mode] = _cascade_policy(spec["cascade"], mode)
        elif isinstance(spec, Mapping) and spec.get("primary"):
            out[mode] = _Policy("chain", [str(spec["primary"]), *[str(m) for m in spec.get("fallbacks", [])]])
        elif isinstance(spec, Sequence) and spec and all(isinstance(m, str) for m in spec):
            out[mode] = _Policy("chain", list(spec))
        else:
            raise RoutingError(f"policy for {mode!r} is not a model, a routing entry or a cascade: {spec!r}")
    return out


def _cascade_policy(cascade: Mapping[str, Any], mode: str) -> _Policy:
    """A cascade replayed per (model, prompt): with ``prompts``, each step's rows are its variant's."""
    models, threshold = cascade_models(cascade)
    modes = [m for _, m in cascade_steps(cascade, mode)] if cascade.get("prompts") is not None else None
    return _Policy("cascade", models, threshold, modes)


def _prompt_mode(mode: str, spec: Any) -> str:
    """The mode whose rows a task's routing entry replays: the variant its ``prompt`` names (the task's own
    name for its default variant), else ``mode`` itself."""
    from ..modes import MODES

    prompt = (
        spec.prompt
        if isinstance(spec, Selection)
        else spec.get("prompt")
        if isinstance(spec, Mapping)
        else None
    )
    if not prompt:
        return mode
    for name, candidate in MODES.items():
        if getattr(candidate, "task", "") == mode and candidate.prompt == prompt:
            return name
    raise RoutingError(f"the policy for {mode!r} names prompt {prompt!r}, which the task does not have")


def _pick(cells: list[_Cell], repeat: int) -> _Cell:
    for c in cells:
        if c.repeat == repeat:
            return c
    return cells[0]


def _eval_issue(
    pol: _Policy, mode: str, issue: str, cells: dict[tuple[str, str, str], list[_Cell]]
) -> tuple[float, float, float, list[tuple[str, str, str]]]:
    """(score, cost, escalated share, missing cells) of ``pol`` on one issue; repeats of the first model
    drive the answer, each averaged at the end (scores over the scored repeats)."""
    step_modes = pol.modes or [mode] * len(pol.models)
    first = cells.get((step_modes[0], issue, pol.models[0]))
    if not first:
        return math.nan, math.nan, math.nan, [(issue, pol.models[0], step_modes[0])]
    scores, costs, escalated = [], [], []
    missing: list[tuple[str, str, str]] = []
    for repeat in (c.repeat for c in first):
        cost, score, moved = 0.0, math.nan, False
        for k, (model, step_mode) in enumerate(zip(pol.models, step_modes, strict=True)):
            rows = cells.get((step_mode, issue, model))
            if not rows:
                missing.append((issue, model, step_mode))
                break
            cell = _pick(rows, repeat)
            # a failed call is not billed: the store records no cost for it
            cost += 0.0 if cell.errored and math.isnan(cell.cost) else cell.cost
            last = k == len(pol.models) - 1
            if pol.kind == "cascade":
                passed = self_check(step_mode, cell.text, cell.parsed, cell.parse_error) >= (
                    pol.threshold or 0.0
                )
                if last or passed:
                    score = cell.score
                    break
            elif last or not cell.errored:
                score = cell.score
                break
            moved = True
        scores.append(score)
        costs.append(cost)
        escalated.append(1.0 if moved else 0.0)
    if missing:
        return math.nan, math.nan, math.nan, list(dict.fromkeys(missing))
    scored = [s for s in scores if not math.isnan(s)]
    mean_score = sum(scored) / len(scored) if scored else math.nan
    mean_cost = math.nan if any(math.isnan(c) for c in costs) else sum(costs) / len(costs)
    return mean_score, mean_cost, sum(escalated) / len(escalated), []


@dataclass
class _ModeResult:
    issues: list[str]
    scores: list[float]
    costs: list[float]
    escalated: list[float]
    excluded: int
    unscored: int
    missing: list[tuple[str, str, str]]

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else math.nan

    @property
    def cost(self) -> float:
        known = [c for c in self.costs if not math.isnan(c)]
        return sum(known) / len(known) if known else math.nan

    def by_issue(self) -> dict[str, tuple[float, float]]:
        return dict(zip(self.issues, zip(self.scores, self.costs, strict=True), strict=True))


def _eval_mode(pol: _Policy, mode: str, issues: list[str], cells: dict) -> _ModeResult:
    res = _ModeResult([], [], [], [], 0, 0, [])
    for issue in issues:
        score, cost, esc, missing = _eval_issue(pol, mode, issue, cells)
        if missing:
            res.excluded += 1
            res.missing.extend(missing)
            continue
        if math.isnan(score):
            res.unscored += 1
            continue
        res.issues.append(issue)
        res.scores.append(score)
        res.costs.append(cost)
        res.escalated.append(esc)
    return res


def _mode_index(cells: dict) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    issues: dict[str, set[str]] = {}
    models: dict[str, set[str]] = {}
    for mode, issue, model in cells:
        issues.setdefault(mode, set()).add(issue)
        models.setdefault(mode, set()).add(model)
    return ({m: sorted(v) for m, v in issues.items()}, {m: sorted(v) for m, v in models.items()})


def _best_single(
    mode: str, models: list[str], issues: list[str], cells: dict, min_n: int
) -> tuple[str, _ModeResult] | None:
    """The best single model on these issues: highest mean, then lowest cost, then name."""
    best: tuple[tuple, str, _ModeResult] | None = None
    for model in models:
        res = _eval_mode(_Policy("fixed", [model]), mode, issues, cells)
        if len(res.scores) < max(1, min_n):
            continue
        cost = res.cost
        key = (-res.mean, math.isnan(cost), 0.0 if math.isnan(cost) else cost, model)
        if best is None or key < best[0]:
            best = (key, model, res)
    return None if best is None else (best[1], best[2])


def _compare(policy: _ModeResult, best: _ModeResult) -> tuple[int, float, float]:
    """(n, quality kept, cost share) of the policy against the best model on their common issues."""
    p, b = policy.by_issue(), best.by_issue()
    common = [i for i in p if i in b]
    if not common:
        return 0, math.nan, math.nan
    p_mean = sum(p[i][0] for i in common) / len(common)
    b_mean = sum(b[i][0] for i in common) / len(common)
    priced = [i for i in common if not math.isnan(p[i][1]) and not math.isnan(b[i][1])]
    p_cost = sum(p[i][1] for i in priced) / len(priced) if priced else math.nan
    b_cost = sum(b[i][1] for i in priced) / len(priced) if priced else math.nan
    kept = p_mean / b_mean if b_mean > 0 else math.nan
    share = p_cost / b_cost if priced and b_cost > 0 else math.nan
    return len(common), kept, share


def _bootstrap_ci(values: list[float], n_boot: int, seed: int, label: str) -> tuple[float, float]:
    import numpy as np

    from ..analysis import bootstrap_means

    if not values or n_boot <= 0:
        return math.nan, math.nan
    rng = np.random.default_rng([int(seed), zlib.crc32(label.encode())])
    boot = bootstrap_means(np.asarray(values, dtype=np.float64), n_boot, rng)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return float(lo), float(hi)


def replay(
    df: pd.DataFrame,
    policy: Mapping[str, Any],
    *,
    split: str = "test",
    allow_any_split: bool = False,
    n_boot: int = 2000,
    seed: int = 0,
    min_n_best: int = 1,
) -> ReplayReport:
    """Replay a routing ``policy`` on the logged results of ``split`` (default: the held-out TEST split).

    ``policy`` maps each mode to a fixed model id (``{"classify": "m1"}``), a routing entry as in the toml
    (``{"primary": m, "fallbacks": [...]}``, a :class:`Selection`, or a whole ``[routing]`` table; a failed
    primary cell falls back to the next model like the client would), or a cascade
    (``{"cascade": {"models": [cheap, strong], "threshold": t}}``: when the logged cheap answer passes
    :func:`self_check`, its score and cost; else the strong model's score at cheap + strong cost).

    Per issue, repeats are averaged first; a failed call costs 0 (not billed; the store records no cost).
    An issue where a cell the policy needs is absent from the results is left out of that mode's mean and
    counted; every such cell is listed in ``missing``; nothing is imputed. The best single model of the
    split (highest mean over at least ``min_n_best`` scored issues) is the reference for quality kept and
    cost share.
    """
    import pandas as pd

    policies = _normalize_policy(policy)
    rows, split_used = split_rows(df, split, allow_any_split)
    needs_text = any(p.kind == "cascade" for p in policies.values())
    if needs_text and "text" not in rows.columns:
        raise RoutingError(
            "replaying a cascade needs the logged answers (a 'text' column) for the self-check"
        )
    cells = _cells(rows)
    issues_by_mode, models_by_mode = _mode_index(cells)
    records, per_issue, missing_all = [], [], []
    missing_per_mode: dict[str, int] = {}
    for mode, pol in policies.items():
        issues = issues_by_mode.get(pol.modes[0] if pol.modes else mode, [])
        res = _eval_mode(pol, mode, issues, cells)
        missing_all.extend(res.missing)
        missing_per_mode[mode] = len(res.missing)
        lo, hi = _bootstrap_ci(res.scores, n_boot, seed, mode)
        best = _best_single(mode, models_by_mode.get(mode, []), issues, cells, min_n_best)
        if best is not None:
            n_cmp, kept, share = _compare(res, best[1])
            best_name, best_mean, best_cost = best[0], best[1].mean, best[1].cost
        else:
            n_cmp, kept, share, best_name, best_mean, best_cost = (
                0,
                math.nan,
                math.nan,
                None,
                math.nan,
                math.nan,
            )
        costs = res.costs
        records.append(
            {
                "mode": mode,
                "policy": pol.describe(),
                "n_issues": len(res.scores),
                "n_excluded": res.excluded,
                "n_missing_cells": len(res.missing),
                "n_unscored": res.unscored,
                "mean": res.mean,
                "ci_low": lo,
                "ci_high": hi,
                "cost_per_issue": res.cost,
                "cost_known": (sum(not math.isnan(c) for c in costs) / len(costs)) if costs else math.nan,
                "escalation_rate": (sum(res.escalated) / len(res.escalated)) if res.escalated else math.nan,
                "best_model": best_name,
                "best_mean": best_mean,
                "best_cost_per_issue": best_cost,
                "n_compared": n_cmp,
                "quality_kept": kept,
                "cost_share": share,
            }
        )
        per_issue += [
            {"mode": mode, "issue_id": i, "score": s, "cost": c, "escalated": e}
            for i, s, c, e in zip(res.issues, res.scores, res.costs, res.escalated, strict=True)
        ]
    return ReplayReport(
        table=pd.DataFrame(records),
        missing=missing_all,
        missing_per_mode=missing_per_mode,
        per_issue=pd.DataFrame(per_issue, columns=["mode", "issue_id", "score", "cost", "escalated"]),
        split=split_used,
        policies={m: p.describe() for m, p in policies.items()},
    )


def cascade_curve(
    df: pd.DataFrame,
    mode: str,
    cheap: str,
    strong: str,
    thresholds: Iterable[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    *,
    split: str = "test",
    allow_any_split: bool = False,
    min_n_best: int = 1,
) -> pd.DataFrame:
    """The cost-quality curve of the cascade cheap → strong over self-check thresholds (RouteLLM-style).

    Columns: threshold, escalation_rate, mean, cost_per_issue, quality_kept, cost_share (against the best
    single model of the split, on common issues), n_issues, n_excluded. Threshold 0 never escalates; a
    threshold above 1 always does.
    """
    import pandas as pd

    rows, _ = split_rows(df, split, allow_any_split)
    if "text" not in rows.columns:
        raise RoutingError("a cascade curve needs the logged answers (a 'text' column) for the self-check")
    cells = _cells(rows)
    issues_by_mode, models_by_mode = _mode_index(cells)
    issues = issues_by_mode.get(mode, [])
    best = _best_single(mode, models_by_mode.get(mode, []), issues, cells, min_n_best)
    out = []
    for t in thresholds:
        res = _eval_mode(_Policy("cascade", [cheap, strong], float(t)), mode, issues, cells)
        _, kept, share = _compare(res, best[1]) if best else (0, math.nan, math.nan)
        out.append(
            {
                "threshold": float(t),
                "escalation_rate": (sum(res.escalated) / len(res.escalated)) if res.escalated else math.nan,
                "mean": res.mean,
                "cost_per_issue": res.cost,
                "quality_kept": kept,
                "cost_share": share,
                "n_issues": len(res.scores),
                "n_excluded": res.excluded,
            }
        )
    return pd.DataFrame(out)


def parse_policy(text: str) -> dict[str, Any]:
    """A policy from its CLI form: ``fixed:classify=M,fix=M2`` or ``cascade:classify=CHEAP>STRONG@0.5``
    (``A>B>C@t`` for longer cascades; several modes separated by commas)."""
    kind, _, body = text.partition(":")
    if kind not in ("fixed", "cascade") or not body:
        raise RoutingError(
            f"unknown policy {text!r}: use winners, config, fixed:MODE=MODEL[,MODE=MODEL] or "
            "cascade:MODE=CHEAP>STRONG@THRESHOLD"
        )
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        mode, eq, value = part.partition("=")
        if not eq or not value:
            raise RoutingError(f"policy part {part!r}: expected MODE=...")
        mode = mode.strip()
        if kind == "fixed":
            out[mode] = value.strip()
            continue
        chain, at, threshold = value.rpartition("@")
        if not at:
            chain, threshold = value, "0.5"
        models = [m.strip() for m in chain.split(">") if m.strip()]
        if len(models) < 2:
            raise RoutingError(f"cascade {part!r}: expected MODE=CHEAP>STRONG@THRESHOLD")
        try:
            t = float(threshold)
        except ValueError:
            raise RoutingError(f"cascade {part!r}: threshold {threshold!r} is not a number") from None
        out[mode] = {"cascade": {"models": models, "threshold": t}}
    return out


def format_replay(report: ReplayReport) -> str:
    """The replay as a text table: per mode the policy's quality and cost, then how it compares with the best
    single model of the split (quality kept, cost share), then the missing cells (if any)."""

    def num(x: Any, spec: str) -> str:
        return "n/a" if is_nan(x) or (isinstance(x, float) and math.isnan(x)) else format(x, spec)

    lines = [
        f"replay on the {report.split} split (issue means, 95% bootstrap CI over issues)",
        f"{'mode':<10} {'n':>4} {'excl':>4} {'score [95% CI]':<22} {'$/issue':>12} {'escal':>6} "
        f"{'kept':>6} {'cost':>6}  policy | best single model",
    ]
    for r in report.table.to_dict("records"):
        score = (
            f"{r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
            if not math.isnan(r["mean"]) and not math.isnan(r["ci_low"])
            else num(r["mean"], ".3f")
        )
        cost = fmt_cost(r["cost_per_issue"]) if not math.isnan(r["cost_per_issue"]) else "unknown"
        best = (
            f"{r['best_model']} {r['best_mean']:.3f} at {fmt_cost(r['best_cost_per_issue'])}/issue"
            if r["best_model"]
            else "none"
        )
        lines.append(
            f"{r['mode']:<10} {r['n_issues']:>4} {r['n_excluded']:>4} {score:<22} {cost:>12} "
            f"{num(r['escalation_rate'], '.0%'):>6} {num(r['quality_kept'], '.0%'):>6} "
            f"{num(r['cost_share'], '.0%'):>6}  {r['policy']} | {best}"
        )
    lines.append(
        "n: issues in the mean; excl: issues left out for a missing cell; escal: answers escalated (cascade) or "
        "fallen back; kept / cost: the policy's quality and cost as a share of the best single model's "
        "(n/a when that model is free)"
    )
    if report.missing:
        counts = ", ".join(f"{m}: {n}" for m, n in report.missing_per_mode.items() if n)
        lines.append(f"missing cells the policy needs ({counts}); their issues are left out, not imputed:")
        lines += [f"  {issue}  {model}  {mode}" for issue, model, mode in report.missing[:20]]
        if len(report.missing) > 20:
            lines.append(f"  ... and {len(report.missing) - 20} more")
    return "\n".join(lines)
