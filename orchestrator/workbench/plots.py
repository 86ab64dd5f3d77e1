"""Matplotlib figures over analysis tables: cost vs quality, a model x mode heatmap, latency boxplots.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot, so nothing is shown or
kept open behind the caller's back (a notebook displays a returned figure; ``fig.savefig`` writes one).
The Agg backend is selected only when nothing chose a backend before (a notebook's inline backend stays).
Each model keeps one color across figures (:func:`model_colors`, by sorted model name).
"""

from __future__ import annotations

from collections.abc import Iterable

import matplotlib
import numpy as np
import pandas as pd

if getattr(matplotlib.rcParams, "_get_backend_or_none", lambda: "set")() is None:
    matplotlib.use("Agg")

from matplotlib import colormaps  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..analysis import pareto_frontier  # noqa: E402
from ..modes import ordered_modes  # noqa: E402

__all__ = ["cost_quality", "latency_distribution", "model_colors", "model_mode_heatmap", "router_curve"]

LOG_SPAN = 100.0  # use a log axis when positive values span at least two decades


def model_colors(models: Iterable[str]) -> dict[str, tuple[float, float, float, float]]:
    """One color per model, stable for a given set of names (sorted, tab10 / tab20 / a hue wheel)."""
    names = sorted({str(m) for m in models})
    if len(names) <= 10:
        palette = colormaps["tab10"]
        return {m: palette(i) for i, m in enumerate(names)}
    if len(names) <= 20:
        palette = colormaps["tab20"]
        return {m: palette(i) for i, m in enumerate(names)}
    wheel = colormaps["hsv"]
    return {m: wheel(i / len(names)) for i, m in enumerate(names)}


def _modes(frame: pd.DataFrame, mode: str | None) -> list[str | None]:
    if mode is not None or "mode" not in frame.columns:
        return [mode]
    present = [str(m) for m in frame["mode"].dropna().unique()]
    return list(ordered_modes(present))


def _spans_decades(values: np.ndarray) -> bool:
    positive = values[np.isfinite(values) & (values > 0)]
    return positive.size >= 2 and positive.max() / positive.min() >= LOG_SPAN


# ----------------------------------------------------------------------------------------- cost-quality


def cost_quality(
    summary: pd.DataFrame,
    mode: str | None = None,
    *,
    x: str = "cost_per_issue",
    xlabel: str = "cost per issue (USD)",
    colors: dict[str, tuple[float, float, float, float]] | None = None,
) -> Figure:
    """Mean score (with CI error bars) against cost per issue, one panel per mode, Pareto frontier drawn.

    ``summary`` is :func:`orchestrator.analysis.summary_table` output. The x axis turns logarithmic when
    costs span two decades; free models (cost 0) sit at the left edge, marked "free"; models with an
    unknown price cannot be placed and are listed under the panel. Pass ``x="latency_p50"`` (and an
    ``xlabel``) for latency vs quality.
    """
    colors = colors or model_colors(summary["model"])
    modes = _modes(summary, mode)
    fig = Figure(figsize=(5.2 * len(modes) + 2.2, 4.6), layout="constrained")
    axes = fig.subplots(1, len(modes), squeeze=False)[0]
    for ax, m in zip(axes, modes, strict=True):
        sub = summary if m is None or "mode" not in summary.columns else summary[summary["mode"] == m]
        _cost_quality_panel(ax, sub, x=x, xlabel=xlabel, colors=colors)
        ax.set_title(m or "all modes")
    handles = {h.get_label(): h for ax in axes for h in ax.get_legend_handles_labels()[0]}
    if handles:
        fig.legend(
            handles.values(), handles.keys(), loc="outside right upper", fontsize="small", frameon=False
        )
    fig.suptitle(f"Quality vs {xlabel}")
    return fig


def _cost_quality_panel(ax: Axes, sub: pd.DataFrame, *, x: str, xlabel: str, colors: dict) -> None:
    cost = sub[x].to_numpy(dtype=np.float64)
    log = _spans_decades(cost)
    positive = cost[np.isfinite(cost) & (cost > 0)]
    free_x = (positive.min() / 10 if positive.size else 1e-6) if log else 0.0
    placed = sub.assign(plot_x=np.where(cost == 0, free_x, cost))  # where each point is drawn
    placed = placed[np.isfinite(placed["plot_x"]) & placed["mean"].notna()]
    for row in placed.itertuples(index=False):
        _point(ax, row, colors)
        if getattr(row, x) == 0:
            ax.annotate(
                "free", (row.plot_x, row.mean), textcoords="offset points", xytext=(6, -12), fontsize=8
            )
    front = pareto_frontier(placed, x="plot_x", y="mean")
    if len(front) >= 1:
        ax.plot(
            front["plot_x"],
            front["mean"],
            drawstyle="steps-post",
            color="0.35",
            lw=1.2,
            ls="--",
            zorder=1,
            label="Pareto frontier",
        )
    if log:
        ax.set_xscale("log")
    elif len(placed) and placed["plot_x"].nunique() == 1:  # one value: a readable axis around it, said so
        value = float(placed["plot_x"].iloc[0])
        pad = abs(value) * 0.5 or 1.0
        ax.set_xlim(value - pad, value + pad)
        ax.text(0.5, 0.02, f"all at {value:g}", transform=ax.transAxes, ha="center", fontsize=8, color="0.4")
    elif len(placed):
        ax.set_xlim(
            left=min(0.0, float(placed["plot_x"].min())) - 0.05 * (float(placed["plot_x"].max()) or 1.0)
        )
    unknown = sorted(str(m) for m in sub.loc[~np.isfinite(cost), "model"])
    if unknown:
        note = "no price (not shown): " + ", ".join(unknown)
        ax.text(0.0, -0.2, note, transform=ax.transAxes, fontsize=7, color="0.3", va="top", wrap=True)
    if placed.empty:
        ax.text(0.5, 0.5, "nothing to plot", transform=ax.transAxes, ha="center", color="0.4")
    ax.set_xlabel(xlabel + (", log scale" if log else ""))
    ax.set_ylabel("mean score (95 % CI)")
    ax.set_ylim(-0.02, 1.05)
    ax.grid(True, alpha=0.3)


def _point(ax: Axes, row, colors: dict) -> None:
    low, high = getattr(row, "ci_low", np.nan), getattr(row, "ci_high", np.nan)
    yerr = None
    if np.isfinite(low) and np.isfinite(high):
        yerr = [[max(0.0, row.mean - low)], [max(0.0, high - row.mean)]]
    ax.errorbar(
        [row.plot_x],
        [row.mean],
        yerr=yerr,
        fmt="o",
        ms=7,
        capsize=3,
        color=colors.get(str(row.model)),
        label=str(row.model),
        zorder=3,
    )


# ---------------------------------------------------------------------------------------------- heatmap


def model_mode_heatmap(summary: pd.DataFrame, value: str = "mean") -> Figure:
    """Models x modes grid of ``value`` (default mean score), each cell annotated (with its CI when known)."""
    grid = summary.pivot_table(index="model", columns="mode", values=value, aggfunc="mean", dropna=False)
    grid = grid[[m for m in _modes(summary, None) if m in grid.columns]]
    grid = grid.loc[grid.mean(axis=1).sort_values(ascending=False, kind="stable").index]
    lows = _aligned(summary, "ci_low", grid)
    highs = _aligned(summary, "ci_high", grid)
    data = grid.to_numpy(dtype=np.float64)
    fig = Figure(
        figsize=(1.9 * max(grid.shape[1], 1) + 3.0, 0.65 * max(grid.shape[0], 1) + 1.8), layout="constrained"
    )
    ax = fig.subplots()
    cmap = colormaps["viridis"].with_extremes(bad="0.85")
    finite = data[np.isfinite(data)]
    unit = finite.size == 0 or (finite.min() >= 0 and finite.max() <= 1)
    image = ax.imshow(
        np.ma.masked_invalid(data),
        cmap=cmap,
        aspect="auto",
        vmin=0 if unit else None,
        vmax=1 if unit else None,
    )
    for (i, j), v in np.ndenumerate(data):
        _annotate_cell(ax, i, j, v, lows[i, j], highs[i, j], image)
    ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [str(r) for r in grid.index])
    ax.set_xlabel("mode")
    ax.set_ylabel("model")
    fig.colorbar(image, ax=ax, label=value)
    ax.set_title(f"{value} by model and mode")
    return fig


def _aligned(summary: pd.DataFrame, col: str, grid: pd.DataFrame) -> np.ndarray:
    if col not in summary.columns:
        return np.full(grid.shape, np.nan)
    table = summary.pivot_table(index="model", columns="mode", values=col, aggfunc="mean", dropna=False)
    return table.reindex(index=grid.index, columns=grid.columns).to_numpy(dtype=np.float64)


def _annotate_cell(ax: Axes, i: int, j: int, v: float, low: float, high: float, image) -> None:
    if not np.isfinite(v):
        ax.text(j, i, "n/a", ha="center", va="center", fontsize=9, color="0.3")
        return
    r, g, b, _ = image.cmap(image.norm(v))
    color = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
    text = f"{v:.2f}"
    if np.isfinite(low) and np.isfinite(high):
        text += f"\n[{low:.2f}, {high:.2f}]"
    ax.text(j, i, text, ha="center", va="center", fontsize=9, color=color)


# ---------------------------------------------------------------------------------------------- latency


def latency_distribution(
    df: pd.DataFrame,
    *,
    mode: str | None = None,
    colors: dict[str, tuple[float, float, float, float]] | None = None,
) -> Figure:
    """Boxplots of per-call latency per model (successful calls not served from the cache), fastest first;
    where calls streamed, a second panel of time to first token, each box labelled with the model's median
    output tokens per second."""
    rows = _latency_rows(df, mode)
    colors = colors or model_colors(df["model"].dropna())
    streamed = rows.dropna(subset=["ttft_s"])
    panels = 2 if not streamed.empty else 1
    width = max(5.0, 1.0 * rows["model"].nunique() + 2.5) * (1.6 if panels == 2 else 1.0)
    fig = Figure(figsize=(width, 4.6), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    where = f" ({mode})" if mode else ""
    axes[0].set_title("Latency per call" + where + ", successful calls not from cache")
    if rows.empty:
        axes[0].text(0.5, 0.5, "no latency data", transform=axes[0].transAxes, ha="center", color="0.4")
        axes[0].set_xticks([])
        return fig
    _boxes(axes[0], rows, "latency_s", colors)
    if panels == 2:
        axes[1].set_title("Time to first token" + where + ", streamed calls; median tok/s above")
        order = _boxes(axes[1], streamed, "ttft_s", colors)
        tps = streamed.groupby("model")["output_tps"].median()
        top = axes[1].get_ylim()[1]
        for i, m in enumerate(order, start=1):
            value = tps.get(m)
            label = "tok/s n/a" if value is None or pd.isna(value) else f"{value:.0f} tok/s"
            axes[1].text(i, top, label, ha="center", va="bottom", fontsize=8, color="0.25")
    return fig


def _boxes(
    ax: Axes, rows: pd.DataFrame, column: str, colors: dict[str, tuple[float, float, float, float]]
) -> list[str]:
    """One box per model of ``rows[column]``, smallest median first; returns the models in that order."""
    order = [str(m) for m in rows.groupby("model")[column].median().sort_values(kind="stable").index]
    data = [rows.loc[rows["model"] == m, column].to_numpy() for m in order]
    parts = ax.boxplot(
        data,
        tick_labels=order,
        patch_artist=True,
        showfliers=True,
        flierprops={"markersize": 3, "alpha": 0.5},
        medianprops={"color": "black"},
    )
    for box, m in zip(parts["boxes"], order, strict=True):
        box.set_facecolor(colors.get(m, "0.7"))
        box.set_alpha(0.8)
    if _spans_decades(rows[column].to_numpy(dtype=np.float64)):
        ax.set_yscale("log")
    ax.set_ylabel("seconds" + (" (log scale)" if ax.get_yscale() == "log" else ""))
    ax.tick_params(axis="x", labelrotation=30)
    ax.grid(True, axis="y", alpha=0.3)
    return order


def _latency_rows(df: pd.DataFrame, mode: str | None) -> pd.DataFrame:
    keep = pd.Series(True, index=df.index)
    if mode is not None and "mode" in df.columns:
        keep &= df["mode"] == mode
    if "error_type" in df.columns:
        keep &= df["error_type"].isna() | (df["error_type"].astype(str) == "")
    if "from_cache" in df.columns:
        keep &= ~df["from_cache"].fillna(False).astype(bool)
    latency = pd.to_numeric(df["latency_s"], errors="coerce")
    keep &= latency.notna() & df["model"].notna()

    def column(name: str) -> pd.Series:
        if name not in df.columns:
            return pd.Series(np.nan, index=df.index)
        return pd.to_numeric(df[name], errors="coerce")

    return pd.DataFrame(
        {
            "model": df.loc[keep, "model"].astype(str),
            "latency_s": latency[keep],
            "ttft_s": column("ttft_s")[keep],
            "output_tps": column("output_tps")[keep],
        }
    )


def router_curve(result) -> Figure:
    """A learned router's test cost-quality curve over tau, with every comparator of the replay as a point
    (quality with its 95 % CI against cost per issue), in the units of ``result.cost_axis``."""
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    curve = result.test_curve.dropna(subset=["cost_per_issue"])
    ax.plot(
        curve["cost_per_issue"], curve["mean"], "-o", color="0.3", ms=3, label="learned router, tau swept"
    )
    markers = iter("sDv^P*Xh")
    for _, row in result.comparators.iterrows():
        if pd.isna(row["cost_per_issue"]) or pd.isna(row["mean"]):
            continue
        lo, hi = row["mean"] - row["ci_low"], row["ci_high"] - row["mean"]
        ax.errorbar(
            row["cost_per_issue"],
            row["mean"],
            yerr=[[max(lo, 0)], [max(hi, 0)]],
            fmt=next(markers, "o"),
            capsize=3,
            label=str(row["policy"])[:60],
        )
    unit = "cost per issue (USD)" if result.cost_axis == "usd" else "latency per issue (s)"
    ax.set_xlabel(unit)
    ax.set_ylabel("mean score (test)")
    ax.set_title(f"{result.task}: per-issue routing on the test split ({result.n_test} issues)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return fig
