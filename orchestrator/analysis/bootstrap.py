"""Bootstrap means of issue-level scores, exact and fast at a million rows.

Resampling k issue means with replacement only depends on how many times each distinct value is drawn,
which is Multinomial(k, counts / k). So a group with at most 256 distinct values (binary scores, shares of
a few files or key points, averages of a few repeats) is resampled exactly from that multinomial.
Continuous scores over many issues are put on the coarsest grid of 32 to 1024 bins (each bin represented
by the mean of its members, so the mean is exact) that keeps >= 99.9 % of the variance (CI widths then
change by < 0.05 %, far below the Monte Carlo error of 2000 resamples); when none does, or the group is
small, issues are resampled by index.
"""

from __future__ import annotations

import numpy as np

MAX_DISTINCT = 256
MAX_VARIANCE_LOST = 1e-3
_GRID_SIZES = (32, 64, 128, 256, 1024)
_CHUNK_ELEMENTS = 2_000_000


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
