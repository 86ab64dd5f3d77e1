"""How the notebooks show things: one stylesheet, escaping, number formats, text, figures.

Untrusted text (issue titles and bodies, model answers, error messages) only ever reaches HTML escaped:
free text through :func:`esc`, tables through the Stylers in :mod:`.tables`; figures are shown as PNG images.
"""

from __future__ import annotations

import html
import io
import math
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..modes import DISPLAY_ORDER, ordered_modes

if TYPE_CHECKING:
    import pandas as pd


SMOKE_ENV = "ORCHESTRATOR_NB_SMOKE"
MODE_ORDER = DISPLAY_ORDER

# One stylesheet for the notebook outputs and the rendered report (the report template inlines it too).
CSS = """
.orc-header h1 { font-size: 1.9em; margin: 0.2em 0 0.1em; border: none; }
.orc-header .orc-sub { color: #555; margin: 0 0 0.8em; }
.orc-meta { border-collapse: collapse; margin: 0.4em 0 1em; font-size: 0.95em; }
.orc-meta th, .jp-RenderedHTMLCommon .orc-meta th { text-align: left; padding: 2px 14px 2px 0; color: #555;
  font-weight: 600; background: none; }
.orc-meta td, .jp-RenderedHTMLCommon .orc-meta td { text-align: left; padding: 2px 0; background: none; }
.orc-meta tr, .jp-RenderedHTMLCommon .orc-meta tr { background: none; }
.orc-table { border-collapse: collapse; font-size: 0.92em; margin: 0.3em 0 1em; }
.orc-table caption { caption-side: bottom; text-align: left; color: #666; font-size: 0.88em; padding-top: 4px; }
.orc-table th, .jp-RenderedHTMLCommon .orc-table th { background: #f3f4f6; padding: 4px 8px;
  border-bottom: 1px solid #d0d4da; text-align: left; }
.orc-table td, .jp-RenderedHTMLCommon .orc-table td { padding: 4px 8px; border-bottom: 1px solid #eceef1;
  vertical-align: top; text-align: left; }
.orc-table .orc-left, .jp-RenderedHTMLCommon .orc-table .orc-left { text-align: left; }
.orc-table .orc-right, .jp-RenderedHTMLCommon .orc-table .orc-right { text-align: right; }
.orc-table tr:hover td { background: #fafbfc; }
.orc-note { border-left: 4px solid #d9a400; background: #fff8e1; padding: 6px 10px; margin: 0.5em 0; }
.orc-ok { border-left: 4px solid #2e7d32; background: #eef7ee; padding: 6px 10px; margin: 0.5em 0; }
.orc-words { font-size: 1.02em; line-height: 1.5; }
.orc-words li { margin: 0.2em 0; }
.orc-pre, .jp-RenderedHTMLCommon pre.orc-pre { white-space: pre-wrap; background: #f6f8fa;
  border: 1px solid #e1e4e8; padding: 8px; font-size: 0.85em; max-width: 100em; }
.orc-cards { display: flex; gap: 12px; flex-wrap: wrap; align-items: stretch; }
.orc-card { flex: 1 1 22em; border: 1px solid #d0d4da; border-radius: 6px; padding: 8px 10px; min-width: 18em; }
.orc-card h4 { margin: 0 0 4px; }
.orc-card .orc-usage { color: #555; font-size: 0.88em; margin-bottom: 6px; }
.orc-card pre { white-space: pre-wrap; margin: 0; font-size: 0.88em; }
.orc-err { color: #b00020; }
"""


# JupyterLab runs MathJax over every HTML output and widget, which reads "$0.01 (saved $0.02)" as a formula:
# everything the package displays sits in an element with the class MathJax 3 (and 2) skips.
NO_MATH = "mathjax_ignore tex2jax_ignore"


def no_math(markup: str, tag: str = "div") -> str:
    """``markup`` inside a ``tag`` that MathJax leaves alone."""
    return f'<{tag} class="{NO_MATH}">{markup}</{tag}>'


def esc(value: Any) -> str:
    """HTML-escape any value (quotes too)."""
    return html.escape("" if value is None else str(value), quote=True)


def _html(markup: str) -> Any:
    """An IPython HTML output of ``markup``, out of MathJax's reach."""
    from IPython.display import HTML

    return HTML(no_math(markup))


def _is_nan(value: Any) -> bool:
    try:
        return value is None or (isinstance(value, float) and math.isnan(value)) or bool(value != value)
    except (TypeError, ValueError):
        return False


def fmt_usd(value: Any) -> str:
    """A cost for people: "unknown" when not known, "$0 (free)" for free models."""
    if _is_nan(value):
        return "unknown"
    value = float(value)
    if value == 0:
        return "$0 (free)"
    if value < 0.01:
        return f"${value:.6f}"
    return f"${value:.4f}"


def fmt_num(value: Any, digits: int = 3) -> str:
    return "—" if _is_nan(value) else f"{float(value):.{digits}f}"


def fmt_ci(low: Any, high: Any, digits: int = 2) -> str:
    if _is_nan(low) or _is_nan(high):
        return "—"
    return f"[{float(low):.{digits}f}, {float(high):.{digits}f}]"


def fmt_pct(value: Any) -> str:
    return "—" if _is_nan(value) else f"{float(value):.0%}"


def fmt_s(value: Any) -> str:
    return "—" if _is_nan(value) else f"{float(value):.2f} s"


def split_list(value: str | Sequence[str] | None) -> list[str]:
    """ "a,b" or ["a", "b"] → ["a", "b"] (blank items dropped)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(v).strip() for v in items if str(v).strip()]


def _ordered_modes(modes: Iterable[str]) -> list[str]:
    return ordered_modes(modes)


def smoke() -> bool:
    """True when the notebooks should run at CI size (``ORCHESTRATOR_NB_SMOKE=1``)."""
    return os.environ.get(SMOKE_ENV) == "1"


def show_figure(fig: Any, *, dpi: int = 110) -> None:
    """Display a matplotlib Figure as an embedded PNG (works without pyplot or an inline backend)."""
    from IPython.display import Image, display

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    title = getattr(fig, "_suptitle", None)
    alt = title.get_text() if title is not None else ""
    if not alt:
        alt = "; ".join(ax.get_title() for ax in fig.get_axes() if ax.get_title()) or "figure"
    display(Image(data=buf.getvalue(), format="png"), metadata={"orchestrator": {"alt": alt}})
    try:  # a pyplot-managed figure must not be shown twice by the inline backend
        import matplotlib.pyplot as plt

        plt.close(fig)
    except Exception:  # pragma: no cover - pyplot unavailable
        pass


def show_cost_quality(summary: pd.DataFrame, modes: Sequence[str] | None = None, *, per_row: int = 2) -> None:
    """The cost–quality frontier, ``per_row`` modes per figure (readable at page width). When every known
    cost is the same (all free, or none known), that is said in words and quality is plotted against p50
    latency instead of over a degenerate cost axis."""
    from .plots import cost_quality

    order = list(modes) if modes else _ordered_modes(summary["mode"].dropna())
    order = [
        m
        for m in order
        if (summary["mode"] == m).any() and summary.loc[summary["mode"] == m, "mean"].notna().any()
    ]
    if not order:
        show_text_now("Nothing scored: no cost–quality plot.")
        return
    costs = summary.loc[summary["mode"].isin(order), "cost_per_issue"].dropna()
    axes = [("cost_per_issue", "cost per issue (USD)", per_row)]
    if costs.nunique() <= 1:  # a flat cost axis (all free, or all unpriced) would plot nothing but noise
        flat = (
            "no model has a known cost"
            if costs.empty
            else f"every model costs the same, {fmt_usd(costs.iloc[0])} per issue"
        )
        show_text_now(f"Cost–quality: {flat}, so quality is plotted against p50 latency instead.")
        axes = [("latency_p50", "p50 latency (s)", per_row)]
    for x, label, n in axes:
        for i in range(0, len(order), n):
            part = summary[summary["mode"].isin(order[i : i + n])]
            show_figure(cost_quality(part, x=x, xlabel=label))


def show_heatmap(summary: pd.DataFrame) -> Any:
    """The model × mode heatmap of mean scores (with CIs), or a note when nothing was scored."""
    from .plots import model_mode_heatmap

    if summary.empty or summary["mean"].isna().all():
        return show_text("Nothing scored: no heatmap.", "orc-note")
    show_figure(model_mode_heatmap(summary))
    return None


def show_latency(df: pd.DataFrame) -> Any:
    """Per-call latency per model (calls not served from the cache), or a note when there is none."""
    from .plots import latency_distribution

    ok = (
        df[(df["error_type"] == "") & ~df["from_cache"].astype(bool) & df["latency_s"].notna()]
        if len(df)
        else df
    )
    if ok.empty:
        return show_text(
            "No fresh call to time (every answer came from the cache, or none succeeded).", "orc-note"
        )
    show_figure(latency_distribution(df))
    return None


def show_text_now(text: str, css_class: str = "orc-note") -> None:
    from IPython.display import display

    display(show_text(text, css_class))


def show_text(text: str, css_class: str = "orc-note") -> Any:
    """Plain text as an escaped HTML block."""
    return _html(f'<div class="{esc(css_class)}">{esc(text)}</div>')


def show_pre(text: str) -> Any:
    return _html(f'<pre class="orc-pre">{esc(text)}</pre>')
