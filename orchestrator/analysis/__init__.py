"""Statistics over a results DataFrame: means with clustered bootstrap CIs, paired tests, F1, Pareto.

The frame has one row per cell (columns: run_id, issue_id, repo, split, model, mode, repeat, score,
error_type, cost_usd, latency_s, input_uncached, cache_read, cache_write, output, reasoning, pred_type,
gold_type, from_cache; missing optional columns are treated as unknown). Rows of the same
(model, mode, issue) are repeats: they are averaged within the issue first, and every bootstrap resamples
issues, never cells, because repeats of one issue are not independent.

Bootstrap mechanics (exact, and fast at a million rows): resampling k issue means with replacement only
depends on how many times each distinct value is drawn, which is Multinomial(k, counts / k). So a group
with at most 256 distinct values (binary scores, shares of a few files or key points, averages of a few
repeats) is resampled exactly from that multinomial. Continuous scores over many issues are put on the
coarsest grid of 32 to 1024 bins (each bin represented by the mean of its members, so the mean is exact)
that keeps >= 99.9 % of the variance (CI widths then change by < 0.05 %, far below the Monte Carlo error
of 2000 resamples); when none does, or the group is small, issues are resampled by index. Each group and each pair draws from
its own generator seeded by ``seed`` and its labels, so adding a model never changes another's interval.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from itertools import combinations
from typing import Literal

import numpy as np
import pandas as pd

__all__ = [
    "classification_report_df",
    "f1_per_repo",
    "holm",
    "issue_means",
    "macro_f1",
    "paired_comparison",
    "pareto_frontier",
    "summary_table",
    "tied_with_best",
]

MAX_DISTINCT = 256
MAX_VARIANCE_LOST = 1e-3
_GRID_SIZES = (32, 64, 128, 256, 1024)
_CHUNK_ELEMENTS = 2_000_000
INVALID_LABEL = "<invalid>"

# ------------------------------------------------------------------------------------------- columns


def _num(df: pd.DataFrame, col: str) -> np.ndarray:
    """A float64 column (NaN for missing values, or all NaN when the column is absent)."""
    if col not in df.columns:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _flag(df: pd.DataFrame, col: str) -> np.ndarray:
    """A boolean column; missing values and an absent column read as False."""
    if col not in df.columns:
        return np.zeros(len(df), dtype=bool)
    s = df[col]
    if s.dtype == bool:
        return s.to_numpy()
    return s.fillna(False).astype(bool).to_numpy(dtype=bool)


def _errored(df: pd.DataFrame) -> np.ndarray:
    """True where ``error_type`` names an error (None, NaN and "" mean the cell succeeded)."""
    if "error_type" not in df.columns:
        return np.zeros(len(df), dtype=bool)
    s = df["error_type"]
    return (s.notna() & (s.fillna("").astype(str) != "")).to_numpy(dtype=bool)


def _tokens(df: pd.DataFrame, cols: Sequence[str]) -> np.ndarray:
    present = [c for c in cols if c in df.columns]
    if not present:
        return np.full(len(df), np.nan)
    return np.sum([np.nan_to_num(_num(df, c)) for c in present], axis=0)


def _list_cost(df: pd.DataFrame) -> np.ndarray:
    """Cost per cell at list price: a cache hit counts what it saved (``cost_saved_usd``) when known."""
    cost = _num(df, "cost_usd")
    if "cost_saved_usd" in df.columns:
        saved = _num(df, "cost_saved_usd")
        use = _flag(df, "from_cache") & ~np.isnan(saved)
        cost = np.where(use, saved, cost)
    return cost


def _factorize(df: pd.DataFrame, cols: Sequence[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Group codes 0..G-1 over ``cols`` (sorted by label) and a frame of the group labels."""
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"results frame lacks column(s) {missing}; it has {list(df.columns)}")
    combined = np.zeros(len(df), dtype=np.int64)
    for col in cols:
        codes, uniques = pd.factorize(df[col], sort=True, use_na_sentinel=False)
        combined = combined * max(len(uniques), 1) + codes
    codes, uniques = pd.factorize(combined, sort=True)
    first = np.zeros(len(uniques), dtype=np.int64)
    first[codes] = np.arange(len(df))  # any row of a group carries its labels
    labels = df[list(cols)].iloc[first].reset_index(drop=True)
    return codes.astype(np.int64), labels


def _stable_hash(*parts: object) -> int:
    return zlib.crc32("\x1f".join(map(str, parts)).encode())


def _rng(seed: int, *labels: object) -> np.random.Generator:
    return np.random.default_rng([int(seed), _stable_hash(*labels)])


# ---------------------------------------------------------------------------------------- bootstrap


Support = tuple[np.ndarray, np.ndarray, np.ndarray]


def _discretize(x: np.ndarray, n_draws: int, *, centered: bool = True) -> Support | None:
    """``(values, counts, inverse)`` standing for ``x`` (``x ~ values[inverse]``), or None (use indices).

    Exact when ``x`` has at most :data:`MAX_DISTINCT` distinct values (and few compared with its size,
    unless it is large); None when ``x`` is small enough to resample by index; else a grid whose bins keep
    the exact mean and at least ``1 - MAX_VARIANCE_LOST`` of the (centered or raw) sum of squares.
    """
    vals, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    small = x.size * n_draws <= _CHUNK_ELEMENTS  # resampling by index is cheap
    if vals.size <= MAX_DISTINCT and (not small or 8 * vals.size <= x.size):
        return vals, counts, inverse
    if small:
        return None
    lo, hi = float(vals[0]), float(vals[-1])
    ref = x.mean() if centered else 0.0
    total = float(np.sum((x - ref) ** 2))
    for n_bins in _GRID_SIZES:
        b = np.minimum(((x - lo) / (hi - lo) * n_bins).astype(np.int64), n_bins - 1)
        cnt = np.bincount(b, minlength=n_bins)
        keep = cnt > 0
        means = np.bincount(b, weights=x, minlength=n_bins)[keep] / cnt[keep]
        kept = float(np.sum(cnt[keep] * (means - ref) ** 2))
        if total == 0 or 1 - kept / total <= MAX_VARIANCE_LOST:
            return means, cnt[keep], (np.cumsum(keep) - 1)[b]
    return None


def bootstrap_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` means of resamples (with replacement, same size) of ``x``."""
    x = np.asarray(x, dtype=np.float64)
    k = x.size
    if k == 0:
        return np.full(n_boot, np.nan)
    support = _discretize(x, n_boot)
    if support is not None:
        vals, counts, _ = support
        draws = rng.multinomial(k, counts / k, size=n_boot)
        return draws @ vals / k
    out = np.empty(n_boot)
    step = max(1, _CHUNK_ELEMENTS // k)
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        out[start:stop] = x[rng.integers(0, k, size=(stop - start, k))].mean(axis=1)
    return out


def _percentile_ci(boot: np.ndarray, ci: float) -> tuple[float, float]:
    if boot.size == 0 or np.isnan(boot).all():
        return np.nan, np.nan
    tail = (1 - ci) / 2
    lo, hi = np.quantile(boot, [tail, 1 - tail])
    return float(lo), float(hi)


# ------------------------------------------------------------------------------------ summary table


def _per_group(codes: np.ndarray, n: int, weights: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(codes, weights=weights, minlength=n).astype(np.float64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _latency_quantiles(lat: np.ndarray, g: np.ndarray, ok: np.ndarray, n: int) -> np.ndarray:
    """p50 and p95 of latency per group over the rows in ``ok``; NaN for groups without any."""
    out = np.full((n, 2), np.nan)
    if ok.any():
        q = pd.Series(lat[ok]).groupby(g[ok]).quantile([0.5, 0.95]).unstack()
        out[q.index.to_numpy()] = q.to_numpy()
    return out


def summary_table(
    df: pd.DataFrame,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    by: Sequence[str] = ("model", "mode"),
    errors_as_zero: bool = False,
) -> pd.DataFrame:
    """One row per ``by`` group (model x mode): quality with a clustered bootstrap CI, cost, tokens, latency.

    - ``mean``: mean over issues of the per-issue mean score (repeats averaged first); ``ci_low``/``ci_high``:
      percentile bootstrap over issues (``n_boot`` resamples, seeded). Failed cells have no score and are
      left out unless ``errors_as_zero`` (then they count 0); ``error_rate`` reports them either way.
    - ``cost_per_issue``: mean over issues of (issue's total cost / its repeats), at list price (a cache hit
      counts the cost it saved, when ``cost_saved_usd`` is present); cells with unknown cost are left out
      and ``cost_known`` is the share of cells with a known cost (NaN cost when none is known).
    - ``cost_per_correct``: total cost / sum of scores over cells with a known cost (NaN when the sum is 0).
    - ``spent_usd``: what the cells actually cost (a cache hit is free).
    - ``tokens_in``/``tokens_out``: mean per successful cell (input = uncached + cache read + cache write,
      output = output + reasoning). ``latency_p50``/``latency_p95``: successful calls not served from cache.
    """
    score = _num(df, "score")
    err = _errored(df)
    if errors_as_zero:
        score = np.where(err & np.isnan(score), 0.0, score)
    g, groups = _factorize(df, by)
    n_groups = len(groups)
    if n_groups == 0:
        return _empty_summary(by)
    issue = pd.factorize(df["issue_id"], use_na_sentinel=False)[0].astype(np.int64)
    cell, cell_keys = pd.factorize(g * (issue.max() + 1) + issue)
    cell_group = (cell_keys // (issue.max() + 1)).astype(np.int64)
    n_cells_issue = len(cell_keys)

    scored = ~np.isnan(score)
    issue_mean = _ratio(
        _per_group(cell, n_cells_issue, np.where(scored, score, 0.0)), _per_group(cell, n_cells_issue, scored)
    )
    cost = _list_cost(df)
    known = ~np.isnan(cost)
    issue_cost = _ratio(
        _per_group(cell, n_cells_issue, np.where(known, cost, 0.0)), _per_group(cell, n_cells_issue, known)
    )

    out = groups.copy()
    out["n_issues"] = np.bincount(cell_group, minlength=n_groups)
    out["n_cells"] = np.bincount(g, minlength=n_groups)
    valid = ~np.isnan(issue_mean)
    out["n_scored_issues"] = np.bincount(cell_group[valid], minlength=n_groups)
    means, lows, highs = _group_bootstrap(issue_mean[valid], cell_group[valid], groups, n_boot, seed, ci)
    out["mean"], out["ci_low"], out["ci_high"] = means, lows, highs

    has_cost = ~np.isnan(issue_cost)
    out["cost_per_issue"] = _ratio(
        _per_group(cell_group, n_groups, np.where(has_cost, issue_cost, 0.0)),
        _per_group(cell_group, n_groups, has_cost),
    )
    total_cost = _per_group(g, n_groups, np.where(known, cost, 0.0))
    correct = _per_group(g, n_groups, np.where(known & scored, score, 0.0))
    n_known = _per_group(g, n_groups, known)
    out["cost_per_correct"] = np.where(n_known > 0, _ratio(total_cost, correct), np.nan)
    spent = _num(df, "cost_usd")
    out["spent_usd"] = np.where(
        _per_group(g, n_groups, ~np.isnan(spent)) > 0, _per_group(g, n_groups, np.nan_to_num(spent)), np.nan
    )
    out["cost_known"] = n_known / out["n_cells"].to_numpy()

    ok = ~err
    for name, cols in (
        ("tokens_in", ("input_uncached", "cache_read", "cache_write")),
        ("tokens_out", ("output", "reasoning")),
    ):
        tok = _tokens(df, cols)
        usable = ok & ~np.isnan(tok)
        out[name] = _ratio(
            _per_group(g, n_groups, np.where(usable, tok, 0.0)), _per_group(g, n_groups, usable)
        )
    cached = _flag(df, "from_cache")
    lat = _num(df, "latency_s")
    q = _latency_quantiles(lat, g, ok & ~cached & ~np.isnan(lat), n_groups)
    out["latency_p50"], out["latency_p95"] = q[:, 0], q[:, 1]
    out["error_rate"] = _per_group(g, n_groups, err) / out["n_cells"].to_numpy()
    out["cache_hit_rate"] = _per_group(g, n_groups, cached) / out["n_cells"].to_numpy()
    return out


def _group_bootstrap(
    values: np.ndarray, group: np.ndarray, groups: pd.DataFrame, n_boot: int, seed: int, ci: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and percentile CI per group of the issue means ``values`` (``group`` gives each one's group)."""
    n = len(groups)
    means, lows, highs = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(n + 1))
    labels = groups.itertuples(index=False, name=None)
    for gi, label in enumerate(labels):
        x = values[order[bounds[gi] : bounds[gi + 1]]]
        if x.size == 0:
            continue
        means[gi] = x.mean()
        boot = bootstrap_means(x, n_boot, _rng(seed, *label))
        lows[gi], highs[gi] = _percentile_ci(boot, ci)
    return means, lows, highs


def _empty_summary(by: Sequence[str]) -> pd.DataFrame:
    cols = [*by, "n_issues", "n_cells", "n_scored_issues", "mean", "ci_low", "ci_high", "cost_per_issue"]
    cols += ["cost_per_correct", "spent_usd", "cost_known", "tokens_in", "tokens_out", "latency_p50"]
    cols += ["latency_p95", "error_rate", "cache_hit_rate"]
    return pd.DataFrame(columns=cols)


# ---------------------------------------------------------------------------------------- paired tests


def issue_means(df: pd.DataFrame, mode: str | None = None, *, metric: str = "score") -> pd.DataFrame:
    """Issues x models matrix of ``metric`` averaged over repeats (NaN where a model has no value)."""
    sub = df if mode is None or "mode" not in df.columns else df[df["mode"] == mode]
    value = _num(sub, metric)
    issues, issue_labels = pd.factorize(sub["issue_id"], sort=True)
    models, model_labels = pd.factorize(sub["model"], sort=True)
    has = ~np.isnan(value) & (issues >= 0) & (models >= 0)
    n_i, n_m = len(issue_labels), len(model_labels)
    key = issues.astype(np.int64) * max(n_m, 1) + models
    total = np.bincount(key[has], weights=value[has], minlength=n_i * n_m)
    count = np.bincount(key[has], minlength=n_i * n_m)
    matrix = _ratio(total, count).reshape(n_i, n_m)
    return pd.DataFrame(matrix, index=pd.Index(issue_labels, name="issue_id"), columns=list(model_labels))


def holm(p_values: Iterable[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN entries stay NaN and are not counted as tests)."""
    p = np.asarray(list(p_values), dtype=np.float64)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adjusted, 1.0)
    return out


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value: binomial test of the discordant pairs against 1/2."""
    from scipy.stats import binomtest

    only_a = int(np.sum((a == 1) & (b == 0)))
    only_b = int(np.sum((a == 0) & (b == 1)))
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def sign_flip_p(d: np.ndarray, n_perm: int, rng: np.random.Generator) -> float:
    """Two-sided paired sign-flip permutation p-value for mean(d) = 0.

    Under H0 (the two models' scores on an issue are exchangeable) each difference is as likely to have
    either sign, so flipping signs at random gives the null distribution of the sum. Exact enumeration
    when there are at most log2(n_perm) non-zero differences; otherwise ``(1 + hits) / (1 + n_perm)``
    (a valid Monte Carlo p-value). For many distinct magnitudes the statistic is computed on the grid of
    :func:`_discretize` (each |d| replaced by its bin mean, signs kept): still an exact permutation test.
    """
    nz = np.asarray(d, dtype=np.float64)
    nz = nz[nz != 0]
    m = nz.size
    if m == 0:
        return 1.0
    if 2**m <= n_perm:
        signs = ((np.arange(2**m)[:, None] >> np.arange(m)) & 1) * 2 - 1
        stats = np.abs(signs @ nz)
        t_obs = abs(nz.sum())
        return float(np.mean(stats >= t_obs * (1 - 1e-12) - 1e-12))
    mag = np.abs(nz)
    support = _discretize(mag, n_perm, centered=False)
    if support is not None:
        vals, counts, inverse = support
        t_obs = abs(float(np.sum(np.sign(nz) * vals[inverse])))
        heads = rng.binomial(counts, 0.5, size=(n_perm, counts.size))
        stats = np.abs((2 * heads - counts) @ vals)
    else:
        t_obs = abs(nz.sum())
        stats = np.empty(n_perm)
        step = max(1, _CHUNK_ELEMENTS // m)
        for start in range(0, n_perm, step):
            stop = min(n_perm, start + step)
            flips = rng.integers(0, 2, size=(stop - start, m)) * 2 - 1
            stats[start:stop] = np.abs(flips @ nz)
    hits = int(np.sum(stats >= t_obs * (1 - 1e-12) - 1e-12))
    return (1 + hits) / (1 + n_perm)


def _pair_row(
    names: tuple[str, str],
    a: np.ndarray,
    b: np.ndarray,
    *,
    mode: str,
    n_boot: int,
    seed: int,
    ci: float,
    method: str,
) -> dict[str, object]:
    """Statistics for one pair of models on their common issues (``a``, ``b`` aligned per issue)."""
    row: dict[str, object] = {"model_a": names[0], "model_b": names[1], "n": int(a.size)}
    if a.size == 0:
        empty = dict.fromkeys(("mean_a", "mean_b", "diff", "ci_low", "ci_high", "p_value"), np.nan)
        return {**row, **empty, "test": None}
    d = a - b
    diff = float(d.mean())
    rng = _rng(seed, mode, *names)
    boot = bootstrap_means(d, n_boot, rng)
    lo, hi = _percentile_ci(boot, ci)
    if np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all():
        p, test = mcnemar_exact(a, b), "mcnemar"
    elif method == "permutation":
        p, test = sign_flip_p(d, n_boot, rng), "paired_permutation"
    else:
        hits = int(np.sum(np.abs(boot - diff) >= abs(diff) * (1 - 1e-12) - 1e-12))
        p, test = (1 + hits) / (1 + n_boot), "paired_bootstrap"
    stats = {"mean_a": float(a.mean()), "mean_b": float(b.mean()), "diff": diff, "ci_low": lo, "ci_high": hi}
    return {**row, **stats, "p_value": p, "test": test}


def paired_comparison(
    df: pd.DataFrame,
    mode: str,
    *,
    metric: str = "score",
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    models: Sequence[str] | None = None,
    reference: str | None = None,
    method: Literal["permutation", "bootstrap"] = "permutation",
) -> pd.DataFrame:
    """Every pair of models (or ``reference`` against each other model) on their common issues.

    Per-issue means (repeats averaged) are joined on ``issue_id``. ``diff = mean_a - mean_b`` with a
    paired percentile-bootstrap CI (level ``1 - alpha``, issues resampled). The p-value is McNemar's exact
    test when both models' scores are all 0/1 on those issues, else a paired sign-flip permutation test
    (``method="permutation"``, exact under exchangeability; see :func:`sign_flip_p`) or the two-sided
    bootstrap test of the difference re-centred under the null (``method="bootstrap"``). ``p_holm`` is
    Holm-corrected over the pairs in the table; ``significant`` is ``p_holm < alpha``.
    """
    matrix = issue_means(df, mode, metric=metric)
    names = [m for m in matrix.columns if models is None or m in set(models)]
    if reference is not None and reference not in names:
        raise ValueError(f"reference model {reference!r} has no {metric} in mode {mode!r}")
    if reference is None:
        pairs = list(combinations(names, 2))
    else:
        pairs = [(reference, m) for m in names if m != reference]
    rows = []
    for a_name, b_name in pairs:
        a, b = matrix[a_name].to_numpy(), matrix[b_name].to_numpy()
        both = ~np.isnan(a) & ~np.isnan(b)
        rows.append(
            _pair_row(
                (a_name, b_name),
                a[both],
                b[both],
                mode=mode,
                n_boot=n_boot,
                seed=seed,
                ci=1 - alpha,
                method=method,
            )
        )
    cols = ["model_a", "model_b", "n", "mean_a", "mean_b", "diff", "ci_low", "ci_high", "p_value", "p_holm"]
    out = pd.DataFrame(rows, columns=[c for c in cols if c != "p_holm"] + ["test"])
    out["p_holm"] = holm(out["p_value"]) if len(out) else []
    out["significant"] = (out["p_holm"] < alpha).astype(bool)
    return out[[*cols, "test", "significant"]]


def model_means(df: pd.DataFrame, mode: str, *, metric: str = "score") -> pd.Series:
    """Mean over issues of the per-issue mean ``metric`` per model, best first (ties by name)."""
    means = issue_means(df, mode, metric=metric).mean(axis=0, skipna=True).dropna()
    frame = pd.DataFrame({"model": means.index, "mean": means.to_numpy()})
    frame = frame.sort_values(["mean", "model"], ascending=[False, True], kind="stable")
    return pd.Series(frame["mean"].to_numpy(), index=frame["model"].to_numpy(), name="mean")


def tied_with_best(
    df: pd.DataFrame,
    mode: str,
    *,
    metric: str = "score",
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    method: Literal["permutation", "bootstrap"] = "permutation",
) -> list[str]:
    """The best model by mean, then every model whose Holm-corrected paired test against it is not
    significant (Holm over the comparisons with the best). Models sharing no issue with it are left out."""
    means = model_means(df, mode, metric=metric)
    if means.empty:
        return []
    best = str(means.index[0])
    table = paired_comparison(
        df, mode, metric=metric, n_boot=n_boot, seed=seed, alpha=alpha, reference=best, method=method
    )
    tied = set(table.loc[(table["n"] > 0) & ~table["significant"], "model_b"])
    return [best] + [str(m) for m in means.index[1:] if m in tied]


# ------------------------------------------------------------------------------------------- Pareto


def pareto_frontier(
    points: pd.DataFrame, x: str = "cost_per_issue", y: str = "mean", lower_x_better: bool = True
) -> pd.DataFrame:
    """Rows no other row dominates (at least as good on both axes, better on one); higher ``y`` is better.

    Rows with NaN in ``x`` or ``y`` are left out. Sorted by ``x`` (best first when ``lower_x_better``).
    """
    pts = points[points[x].notna() & points[y].notna()]
    if pts.empty:
        return pts.copy()
    xs = pts[x].to_numpy(dtype=np.float64)
    xs = xs if lower_x_better else -xs
    ys = pts[y].to_numpy(dtype=np.float64)
    no_worse = (xs[None, :] <= xs[:, None]) & (ys[None, :] >= ys[:, None])
    better = (xs[None, :] < xs[:, None]) | (ys[None, :] > ys[:, None])
    dominated = (no_worse & better).any(axis=1)
    front = pts[~dominated]
    return front.sort_values([x, y], ascending=[lower_x_better, False], kind="stable")


# ---------------------------------------------------------------------------------------- classify F1


def macro_f1(
    y_true: Iterable[object], y_pred: Iterable[object], labels: Sequence[object] | None = None
) -> float:
    """Macro-averaged F1, identical to ``sklearn.metrics.f1_score(average="macro")``.

    ``labels`` defaults to the sorted union of true and predicted labels; a label with no true and no
    predicted sample scores 0.0 (sklearn's ``zero_division="warn"`` value). NaN for empty input.
    """
    yt = np.asarray(list(y_true), dtype=object)
    yp = np.asarray(list(y_pred), dtype=object)
    if yt.shape != yp.shape:
        raise ValueError(f"y_true and y_pred differ in length: {yt.size} != {yp.size}")
    if labels is None:
        labels = sorted(set(yt.tolist()) | set(yp.tolist()))
    if yt.size == 0 or len(labels) == 0:
        return float("nan")
    scores = []
    for label in labels:
        t, p = yt == label, yp == label
        tp, fp, fn = int(np.sum(t & p)), int(np.sum(~t & p)), int(np.sum(t & ~p))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def _pred_label(value: object) -> str:
    """A normalized predicted label; missing or empty predictions become :data:`INVALID_LABEL`."""
    if value is None or (not isinstance(value, str) and pd.isna(value)) or not str(value).strip():
        return INVALID_LABEL
    return str(value).strip().lower()


def _classify_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Classify cells with a gold type that did not fail; predictions normalized, missing ones invalid."""
    sub = df[df["mode"] == "classify"] if "mode" in df.columns else df
    sub = sub[sub["gold_type"].notna() & ~_errored(sub)]
    gold = sub["gold_type"].astype(str).str.strip().str.lower()
    raw = sub["pred_type"] if "pred_type" in sub.columns else pd.Series(None, index=sub.index, dtype=object)
    pred = raw.astype(object).map(_pred_label)
    repo = sub["repo"] if "repo" in sub.columns else pd.Series("", index=sub.index)
    model = sub["model"] if "model" in sub.columns else pd.Series("", index=sub.index)
    return pd.DataFrame({"model": model, "repo": repo, "gold": gold, "pred": pred})


def _labels_of(gold: pd.Series, pred: pd.Series) -> list[str]:
    return sorted((set(gold) | set(pred)) - {INVALID_LABEL})


def f1_per_repo(df: pd.DataFrame, labels: Sequence[str] | None = None) -> float:
    """Macro-F1 per repository, averaged over repositories (the NLBSE issue-report metric), for one model.

    Uses classify rows with a gold type; failed cells are left out; a missing or empty prediction counts
    as wrong (it never forms a class of its own). Labels per repository: ``labels`` or the sorted union of
    its gold and predicted types.
    """
    rows = _classify_rows(df)
    if rows["model"].nunique() > 1:
        raise ValueError("f1_per_repo takes one model's rows; use classification_report_df for several")
    return _mean_repo_f1(rows, labels)


def _repo_f1(rows: pd.DataFrame, labels: Sequence[str] | None) -> dict[str, float]:
    return {
        str(repo): macro_f1(r["gold"], r["pred"], labels or _labels_of(r["gold"], r["pred"]))
        for repo, r in rows.groupby("repo", sort=True)
    }


def _mean_repo_f1(rows: pd.DataFrame, labels: Sequence[str] | None) -> float:
    scores = list(_repo_f1(rows, labels).values())
    return float(np.mean(scores)) if scores else float("nan")


def classification_report_df(df: pd.DataFrame, labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Per model: cells, accuracy, macro-F1 over all repositories pooled, per-repo-averaged F1
    (:func:`f1_per_repo`), the share of invalid predictions, and one ``f1:<repo>`` column per repository."""
    rows = _classify_rows(df)
    out = []
    for model, r in rows.groupby("model", sort=True):
        per_repo = _repo_f1(r, labels)
        record: dict[str, object] = {
            "model": model,
            "n": len(r),
            "accuracy": float((r["gold"] == r["pred"]).mean()),
            "macro_f1": macro_f1(r["gold"], r["pred"], labels or _labels_of(r["gold"], r["pred"])),
            "f1_per_repo": float(np.mean(list(per_repo.values()))),
            "invalid_rate": float((r["pred"] == INVALID_LABEL).mean()),
        }
        record.update({f"f1:{repo}": f1 for repo, f1 in per_repo.items()})
        out.append(record)
    return pd.DataFrame(out)
