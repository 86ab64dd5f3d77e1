"""Paired comparisons of models on the same issues: sign-flip and exact McNemar tests, Holm correction,
and the models statistically tied with the best."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import combinations
from typing import Literal

import numpy as np
import pandas as pd

from .bootstrap import _CHUNK_ELEMENTS, _discretize, _percentile_ci, bootstrap_means
from .columns import _num, _rng
from .summary import _ratio

# The columns of a paired comparison, in order (one row per pair of models).
PAIRED_COLUMNS = (
    "model_a",
    "model_b",
    "n",
    "mean_a",
    "mean_b",
    "diff",
    "ci_low",
    "ci_high",
    "p_value",
    "p_holm",
    "test",
    "significant",
)


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
    cols = list(PAIRED_COLUMNS[:-2])
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
