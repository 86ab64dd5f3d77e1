"""What the notebooks call: run a benchmark, show its tables, say it in words, compare runs, explore.

The notebooks in ``notebooks/`` stay thin: every computation and every piece of HTML lives here.

Untrusted text (issue titles and bodies, model answers, error messages) only ever reaches HTML escaped:
tables go through ``Styler.format(escape="html")`` / ``format_index(escape="html")``, free text through
:func:`html.escape`, and nothing untrusted is displayed as Markdown. Figures are shown as PNG images.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..paths import project_root, relative_label, resolve_path
from ..resources import is_default_config

if TYPE_CHECKING:
    import pandas as pd
    from pandas.io.formats.style import Styler

    from ..client.llm_client import LLMClient
    from ..config import Config
    from ..runs.estimate import GridEstimate
    from ..runs.runner import RunSummary
    from ..types import Issue

__all__ = [
    "Benchmark",
    "RoutingProposal",
    "RunComparison",
    "all_comparisons",
    "answers_html",
    "compare_answers",
    "compare_runs",
    "config_diff",
    "estimate_benchmark",
    "explore_widget",
    "find_issues",
    "load_bench_config",
    "report_header",
    "routing_proposal",
    "run_benchmark",
    "sample_answers",
    "show_figure",
    "styled_comparisons",
    "styled_summary",
    "summary_in_words",
    "tied_groups",
]

SMOKE_ENV = "ORCHESTRATOR_NB_SMOKE"
MODE_ORDER = ("classify", "summarize", "fix", "explain")

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


# ------------------------------------------------------------------------------------------ helpers


def esc(value: Any) -> str:
    """HTML-escape any value (quotes too)."""
    return html.escape("" if value is None else str(value), quote=True)


def _html(markup: str) -> Any:
    from IPython.display import HTML

    return HTML(markup)


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
    seen = list(dict.fromkeys(str(m) for m in modes))
    return sorted(seen, key=lambda m: (MODE_ORDER.index(m) if m in MODE_ORDER else len(MODE_ORDER), m))


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
    """The cost–quality frontier, ``per_row`` modes per figure (readable at page width). When no model has a
    non-zero known cost (all free or unpriced), quality against p50 latency is shown as well."""
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
    costs = summary["cost_per_issue"].dropna()
    axes = [("cost_per_issue", "cost per issue (USD)", per_row)]
    if costs.empty or (costs == 0).all():  # nothing to see on cost: one compact row, then latency
        axes = [
            ("cost_per_issue", "cost per issue (USD)", max(1, len(order))),
            ("latency_p50", "p50 latency (s)", per_row),
        ]
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


def load_bench_config(
    config: Config | str | os.PathLike[str] | None = None,
    *,
    max_tokens: int | None = None,
    root: Path | None = None,
) -> Config:
    """Load the config; ``max_tokens`` caps every model's output length for this session only (the file is
    unchanged, and the run's config snapshot records the cap)."""
    from ..config import Config, load_config

    if isinstance(config, Config):
        cfg = config
    else:
        cfg = load_config(resolve_path(config, root or Path.cwd()) if config else None)
    if not max_tokens:
        return cfg
    models = {}
    for model_id, spec in cfg.models.items():
        modes = {
            name: o.model_copy(update={"max_tokens": min(o.max_tokens, max_tokens)}) if o.max_tokens else o
            for name, o in spec.modes.items()
        }
        models[model_id] = spec.model_copy(
            update={"max_tokens": min(spec.max_tokens, int(max_tokens)), "modes": modes}
        )
    return cfg.model_copy(update={"models": models})


def load_issues(
    dataset: str | os.PathLike[str],
    *,
    split: str | None = None,
    limit: int | None = None,
    config: Config | None = None,
) -> list[Issue]:
    """Issues of ``dataset`` (relative paths resolve from the project root too), optionally the first N."""
    from ..resources import load_issues as _load  # datasets.load_issues; the shipped sample if it is missing

    issues = _load(resolve_path(dataset, project_root(config)), split=split)
    return issues[: int(limit)] if limit else issues


# ----------------------------------------------------------------------------------------- benchmark


@dataclass
class Benchmark:
    """A finished (or stopped) benchmark run with everything the notebook shows."""

    run_id: str
    summary: RunSummary
    df: pd.DataFrame
    issues: dict[str, Issue]
    run: dict[str, Any]
    config: Config
    root: Path
    dataset: str
    split: str | None
    models: list[str]
    modes: list[str]

    @property
    def has_dev_rows(self) -> bool:
        return bool((self.df["split"] == "dev").fillna(False).any()) if len(self.df) else False


def estimate_benchmark(
    dataset: str | os.PathLike[str] = "datasets/sample.jsonl",
    *,
    split: str | None = None,
    models: str | Sequence[str] = "baseline/rules",
    modes: str | Sequence[str] = "classify",
    repeats: int = 1,
    concurrency: int = 2,
    budget_usd: float | None = None,
    run_id: str | None = None,
    config: Config | str | os.PathLike[str] | None = None,
    limit: int | None = None,
    max_tokens: int | None = None,
) -> GridEstimate:
    """What :func:`run_benchmark` with the same arguments would call and cost; nothing is sent."""
    from ..runs.estimate import estimate_grid

    cfg = load_bench_config(config, max_tokens=max_tokens)
    return estimate_grid(
        load_issues(dataset, split=split, limit=limit, config=cfg),
        split_list(models),
        split_list(modes),
        repeats=int(repeats),
        config=cfg,
        budget_usd=budget_usd,
        run_id=run_id,
        concurrency=int(concurrency),
    )


def run_benchmark(
    dataset: str | os.PathLike[str] = "datasets/sample.jsonl",
    *,
    split: str | None = None,
    models: str | Sequence[str] = "baseline/rules",
    modes: str | Sequence[str] = "classify",
    repeats: int = 1,
    concurrency: int = 2,
    budget_usd: float | None = None,
    judge_model: str | None = None,
    run_id: str | None = None,
    config: Config | str | os.PathLike[str] | None = None,
    limit: int | None = None,
    max_tokens: int | None = None,
    progress: bool = True,
) -> Benchmark:
    """Run the grid (with a progress bar) and load its results: the notebook's one call."""
    from ..client.llm_client import LLMClient
    from ..runs.runner import new_run_id, run_grid
    from ..runs.store import open_store

    cfg = load_bench_config(config, max_tokens=max_tokens)
    root = project_root(cfg)
    issues = load_issues(dataset, split=split, limit=limit, config=cfg)
    if not issues:
        raise ValueError(
            f"{relative_label(resolve_path(dataset, root), root)}: no issues"
            + (f" in split {split!r}" if split else "")
        )
    model_ids, mode_names = split_list(models), split_list(modes)
    label = relative_label(resolve_path(dataset, root), root)
    run_id = run_id or new_run_id()
    client = LLMClient(cfg)
    try:
        summary = client.run_sync(
            run_grid(
                issues,
                model_ids,
                mode_names,
                repeats=int(repeats),
                concurrency=int(concurrency),
                budget_usd=budget_usd,
                run_id=run_id,
                client=client,
                dataset=label,
                split=split,
                judge_model=judge_model or None,
                progress=progress,
            )
        )
    finally:
        client.close()
    with open_store(config=cfg) as store:
        df = store.results_df(run_id)
        run = store.run(run_id) or {}
        run_issues = store.issues(run_id)
    return Benchmark(
        run_id=run_id,
        summary=summary,
        df=df,
        issues=run_issues,
        run=run,
        config=cfg,
        root=root,
        dataset=label,
        split=split,
        models=model_ids,
        modes=_ordered_modes(mode_names),
    )


def report_header(bench: Benchmark, title: str = "Benchmark report") -> Any:
    """Title, run id, dataset, date and the run's vital numbers, as escaped HTML."""
    s = bench.summary
    created = bench.run.get("created") or datetime.now(UTC).isoformat()
    try:
        when = datetime.fromisoformat(str(created).replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        when = str(created)
    commit = (bench.run.get("git_commit") or "")[:10] or "—"
    cfg_name = bench.config.path.name if bench.config.path else "—"
    rows = [
        ("Run", bench.run_id),
        ("Date", when),
        ("Dataset", bench.dataset + (f" (split {bench.split})" if bench.split else "")),
        ("Issues", f"{len(bench.issues)}"),
        ("Models", ", ".join(bench.models)),
        ("Modes", ", ".join(bench.modes)),
        (
            "Cells",
            f"{s.cells_total} ({s.cells_run} run now, {s.cells_done_before} already done, {s.errors} errors)",
        ),
        ("Status", s.status),
        ("Spent", f"${s.spent_usd:.4f} (cache saved ${s.saved_usd:.4f})"),
        ("Wall time", f"{s.wall_s:.1f} s"),
        ("Config", cfg_name + (f" (git {commit})" if commit != "—" else "")),
    ]
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    n_m, n_d, n_i = len(bench.models), len(bench.modes), len(bench.issues)
    sub = (
        f"{n_m} model{'s' if n_m != 1 else ''} × {n_d} mode{'s' if n_d != 1 else ''} × {n_i} "
        f"issue{'s' if n_i != 1 else ''} of {bench.dataset}"
        + (
            f" (repeats: {s.cells_total // max(1, n_m * n_d * n_i)})"
            if s.cells_total > n_m * n_d * n_i
            else ""
        )
    )
    return _html(
        f"<style>{CSS}</style>"
        f'<div class="orc-header"><h1>{esc(title)}</h1>'
        f'<p class="orc-sub">{esc(sub)}</p>'
        f'<table class="orc-meta">{body}</table></div>'
    )


# ---------------------------------------------------------------------------------------- tables


def _base_style(sty: Styler, caption: str | None = None) -> Styler:
    """Common look: no index, escaped headers, text columns left and numbers right, a caption."""
    import pandas as pd

    frame = sty.data
    styles = {}
    for col in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[col]) and not pd.api.types.is_bool_dtype(frame[col])
        align = "right" if numeric else "left"
        styles[col] = [
            {"selector": "th", "props": f"text-align: {align};"},
            {"selector": "td", "props": f"text-align: {align};"},
        ]
    if styles and len(frame):
        sty = sty.set_table_styles(styles, overwrite=False)
    sty = sty.hide(axis="index").format_index(escape="html", axis=1).set_table_attributes('class="orc-table"')
    if caption:
        sty = sty.set_caption(esc(caption))
    return sty


def summary_frame(summary: pd.DataFrame, modes: Sequence[str] | None = None) -> pd.DataFrame:
    """The summary table as displayed: one row per mode × model, best first within a mode."""
    import pandas as pd

    if summary.empty:
        return pd.DataFrame(
            columns=[
                "mode",
                "model",
                "issues",
                "score",
                "95% CI",
                "$ / issue",
                "$ / correct",
                "latency p50",
                "latency p95",
                "error rate",
            ]
        )
    order = list(modes) if modes else _ordered_modes(summary["mode"])
    rank = {m: i for i, m in enumerate(order)}
    s = summary.assign(_r=summary["mode"].map(lambda m: rank.get(m, len(rank))))
    s = s.sort_values(["_r", "mean", "model"], ascending=[True, False, True], kind="stable")
    return pd.DataFrame(
        {
            "mode": s["mode"].astype(str).to_numpy(),
            "model": s["model"].astype(str).to_numpy(),
            "issues": s["n_issues"].astype(int).to_numpy(),
            "score": s["mean"].astype(float).to_numpy(),
            "95% CI": [fmt_ci(lo, hi) for lo, hi in zip(s["ci_low"], s["ci_high"], strict=True)],
            "$ / issue": s["cost_per_issue"].astype(float).to_numpy(),
            "$ / correct": s["cost_per_correct"].astype(float).to_numpy(),
            "latency p50": s["latency_p50"].astype(float).to_numpy(),
            "latency p95": s["latency_p95"].astype(float).to_numpy(),
            "error rate": s["error_rate"].astype(float).to_numpy(),
        }
    )


def styled_summary(summary: pd.DataFrame, modes: Sequence[str] | None = None) -> Styler:
    """Per model × mode: mean score [95% CI], cost per issue and per correct answer, latency, errors.

    The best model of each mode is in bold; the score bar spans 0–1."""
    frame = summary_frame(summary, modes)
    sty = frame.style.format(
        {
            "score": fmt_num,
            "$ / issue": fmt_usd,
            "$ / correct": fmt_usd,
            "latency p50": fmt_s,
            "latency p95": fmt_s,
            "error rate": fmt_pct,
        },
        escape="html",
        na_rep="—",
    )
    if len(frame):
        sty = sty.bar(subset=["score"], vmin=0.0, vmax=1.0, color="#cfe0f5", height=70)
        best = frame.groupby("mode", sort=False)["score"].transform("max")
        is_best = (frame["score"] == best) & frame["score"].notna()

        def bold(data: pd.DataFrame) -> pd.DataFrame:
            import pandas as pd

            css = pd.DataFrame("", index=data.index, columns=data.columns)
            css.loc[is_best.to_numpy(), ["model", "score"]] = "font-weight: 700"
            return css

        sty = sty.apply(bold, axis=None)
    return _base_style(
        sty,
        "score: mean over issues (repeats averaged), 95% bootstrap CI over issues; "
        "cost at list price; latency of calls not served from the cache; best per mode in bold",
    )


def all_comparisons(
    df: pd.DataFrame, modes: Sequence[str] | None = None, *, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Paired comparisons of every model pair in every mode (Holm-corrected within a mode)."""
    import pandas as pd

    from ..analysis import paired_comparison

    frames = []
    for mode in modes or _ordered_modes(df["mode"].dropna()):
        if not (df["mode"] == mode).any():
            continue
        table = paired_comparison(df, mode, n_boot=n_boot, seed=seed)
        if len(table):
            frames.append(table.assign(mode=mode))
    if not frames:
        return pd.DataFrame(
            columns=[
                "mode",
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
            ]
        )
    out = pd.concat(frames, ignore_index=True)
    return out[["mode", *[c for c in out.columns if c != "mode"]]]


def styled_comparisons(comparisons: pd.DataFrame, labels: tuple[str, str] = ("model A", "model B")) -> Any:
    """Paired comparisons: difference of means with its CI, raw and Holm-corrected p, the test used."""
    import pandas as pd

    if comparisons.empty:
        return show_text("No paired comparison: each mode has a single model.", "orc-note")
    c = comparisons
    frame = pd.DataFrame(
        {
            "mode": c["mode"].astype(str) if "mode" in c else "",
            labels[0]: c["model_a"].astype(str),
            labels[1]: c["model_b"].astype(str),
            "issues": c["n"],
            "mean A": c["mean_a"],
            "mean B": c["mean_b"],
            "A − B": c["diff"],
            "95% CI": [fmt_ci(lo, hi, 3) for lo, hi in zip(c["ci_low"], c["ci_high"], strict=True)],
            "p": c["p_value"],
            "p (Holm)": c["p_holm"],
            "test": c["test"].fillna("—").astype(str),
            "significant": ["yes" if s else "no" for s in c["significant"]],
        }
    )
    return _style_paired(
        frame,
        ("mean A", "mean B", "A − B"),
        "paired on the issues both answered; CI: paired bootstrap; p: McNemar's exact test "
        "for 0/1 scores, else a sign-flip permutation test; Holm-corrected per mode",
    )


def _style_paired(frame: pd.DataFrame, value_cols: tuple[str, str, str], caption: str) -> Styler:
    """Format a paired-comparison table: two means, their signed difference, p values, significance."""
    mean_a, mean_b, diff = value_cols
    sty = frame.style.format(
        {
            mean_a: fmt_num,
            mean_b: fmt_num,
            diff: lambda v: "—" if _is_nan(v) else f"{v:+.3f}",
            "p": lambda v: "—" if _is_nan(v) else f"{v:.3g}",
            "p (Holm)": lambda v: "—" if _is_nan(v) else f"{v:.3g}",
        },
        escape="html",
        na_rep="—",
    )
    if len(frame):
        sty = sty.apply(
            lambda col: ["font-weight: 700; color: #1b5e20" if v == "yes" else "color: #666" for v in col],
            subset=["significant"],
        )
    return _base_style(sty, caption)


def tied_groups(df: pd.DataFrame, summary: pd.DataFrame, modes: Sequence[str] | None = None) -> pd.DataFrame:
    """Per mode: the best model and every model statistically tied with it."""
    import pandas as pd

    from ..analysis import tied_with_best

    rows = []
    for mode in modes or _ordered_modes(df["mode"].dropna()):
        tied = tied_with_best(df, mode)
        if not tied:
            continue
        sub = summary[summary["mode"] == mode].set_index("model")
        best = tied[0]
        others = int(sub["mean"].notna().sum()) - 1
        rows.append(
            {
                "mode": mode,
                "best": best,
                "score": sub["mean"].get(best, float("nan")),
                "tied with the best": ", ".join(tied[1:])
                or ("none: ahead of every other model" if others > 0 else "— (the only model scored)"),
                "issues": int(sub["n_issues"].get(best, 0)),
            }
        )
    frame = pd.DataFrame(rows, columns=["mode", "best", "score", "tied with the best", "issues"])
    return frame


def styled_tied(frame: pd.DataFrame) -> Styler:
    sty = frame.style.format({"score": fmt_num}, escape="html", na_rep="—")
    return _base_style(sty, "tied: the paired test against the best is not significant (Holm, α = 0.05)")


def _gold_brief(issue: Issue | None, mode: str) -> str:
    if issue is None:
        return ""
    g = issue.gold
    if mode == "classify":
        return " / ".join(str(v) for v in (g.type, g.component, g.severity) if v) or "—"
    if mode == "fix":
        return ", ".join(g.files) or "—"
    if mode == "summarize":
        return _clip(g.summary or "—", 220)
    if mode == "explain":
        return _clip("; ".join(g.key_points) or g.summary or "—", 220)
    return ""


def _clip(text: str, limit: int) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def sample_answers(
    df: pd.DataFrame,
    issues: Mapping[str, Issue],
    *,
    per_mode: int = 1,
    max_chars: int = 300,
    max_lines: int = 8,
    modes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """A few answers per mode, every model side by side on the same issue(s), with the issue title and gold.

    Each mode shows different issues (picked round-robin over the sorted issue ids), so the sample covers
    more of the set; answers are clipped to ``max_chars`` and ``max_lines`` (repeated blank lines folded)."""
    import pandas as pd

    rows = []
    ok = df[df["repeat"].fillna(0) == 0] if "repeat" in df else df
    for k, mode in enumerate(modes or _ordered_modes(df["mode"].dropna())):
        sub = ok[ok["mode"] == mode]
        ids = sorted(sub["issue_id"].dropna().unique())
        if not ids:
            continue
        picked = [ids[(k * per_mode + j) % len(ids)] for j in range(min(per_mode, len(ids)))]
        for issue_id in picked:
            issue = issues.get(issue_id)
            for r in sub[sub["issue_id"] == issue_id].sort_values("model").itertuples(index=False):
                answer = r.text if isinstance(r.text, str) and r.text else ""
                if r.error_type:
                    answer = f"[error: {r.error_type}] {r.error_message}"
                rows.append(
                    {
                        "mode": mode,
                        "issue": f"{issue_id}: {issue.title}" if issue else issue_id,
                        "model": r.model,
                        "answer": _clip_lines(answer, max_chars, max_lines),
                        "score": r.score,
                        "gold": _gold_brief(issue, mode),
                    }
                )
    return pd.DataFrame(rows, columns=["mode", "issue", "model", "answer", "score", "gold"])


def _clip_lines(text: str, limit: int, max_lines: int) -> str:
    lines = [line.rstrip() for line in (text or "").strip().splitlines()]
    folded: list[str] = []
    for line in lines:
        if not line and folded and not folded[-1]:
            continue
        folded.append(line)
    clipped = "\n".join(folded[:max_lines])
    if len(folded) > max_lines:
        clipped = clipped.rstrip() + " …"
    return _clip(clipped, limit)


def styled_answers(frame: pd.DataFrame, caption: str | None = None) -> Styler:
    """Answers as text: escaped, whitespace kept, long ones clipped."""
    fmt = {c: fmt_num for c in ("score",) if c in frame}
    for c in ("cost_usd",):
        if c in frame:
            fmt[c] = fmt_usd
    if "latency_s" in frame:
        fmt["latency_s"] = fmt_s
    sty = frame.style.format(fmt, escape="html", na_rep="—")
    text_cols = [c for c in ("answer", "gold", "issue", "error") if c in frame]
    if text_cols and len(frame):
        sty = sty.set_properties(subset=text_cols, **{"white-space": "pre-wrap", "text-align": "left"})
        if "answer" in frame:
            sty = sty.set_properties(
                subset=["answer"],
                **{
                    "min-width": "22em",
                    "max-width": "46em",
                    "font-family": "monospace",
                    "font-size": "0.88em",
                },
            )
    return _base_style(sty, caption)


def errors_table(df: pd.DataFrame) -> pd.DataFrame:
    """Failed cells by model, mode and kind, with one example message."""
    import pandas as pd

    failed = df[df["error_type"] != ""]
    if failed.empty:
        return pd.DataFrame(columns=["model", "mode", "error", "cells", "example"])
    grouped = failed.groupby(["model", "mode", "error_type"], sort=True)
    return pd.DataFrame(
        [
            {
                "model": m,
                "mode": md,
                "error": e,
                "cells": len(g),
                "example": _clip(str(g["error_message"].iloc[0]), 200),
            }
            for (m, md, e), g in grouped
        ]
    )


def show_errors(df: pd.DataFrame) -> Any:
    """The failed cells as a table, or a one-line all-clear."""
    table = errors_table(df)
    if table.empty:
        return show_text(f"No cell failed ({len(df)} cells).", "orc-ok")
    sty = table.style.format(escape="html", na_rep="—")
    return _base_style(
        sty,
        f"{int(table['cells'].sum())} of {len(df)} cells failed (kept in the results; "
        "resume with retry_errors)",
    )


def show_changes(frame: pd.DataFrame, caption: str) -> Any:
    """A :func:`config_diff` table, or a note that nothing changed."""
    if frame.empty:
        return show_text(f"No change ({caption}).", "orc-ok")
    return styled_diff(frame, caption)


# ---------------------------------------------------------------------------------- summary in words


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


# ------------------------------------------------------------------------------------------ routing


@dataclass
class RoutingProposal:
    selections: dict[str, Any]
    table: pd.DataFrame
    note: str
    held_out: bool
    diff: str
    written: bool
    error: str | None = None
    min_n: int = 10

    @property
    def skipped_hint(self) -> str:
        reasons = list(getattr(self.selections, "skipped", {}).values())
        few = "fewer than" in " ".join(reasons) or any(f"< {self.min_n}" in r for r in reasons)
        text = " ".join(reasons[:1]) + (
            f" (and {len(reasons) - 1} more mode(s) alike)" if len(reasons) > 1 else ""
        )
        if few:
            text += (
                f". A routing choice needs at least {self.min_n} scored issues per model (min_n): run on a "
                "larger issue set (e.g. datasets/issues.jsonl), or lower min_n knowingly (-p min_n 5)."
            )
        return text


def routing_proposal(
    bench: Benchmark,
    *,
    objective: str = "cheapest-tied",
    write: bool = False,
    max_cost_per_issue: float | None = None,
    min_n: int = 10,
) -> RoutingProposal:
    """Winners per mode chosen on the run's dev rows (else on all rows, flagged as not held out), and the
    ``[routing]`` diff; written to the config file only when ``write``."""
    import pandas as pd

    from .. import routing

    df = bench.df
    held_out = bench.has_dev_rows
    selections = routing.select_winners(
        df, objective, max_cost_per_issue=max_cost_per_issue, min_n=min_n, allow_any_split=not held_out
    )
    rows = df[df["split"] == "dev"] if held_out else df
    n_issues = int(rows["issue_id"].nunique())
    if held_out:
        note = (
            f"Winners are picked on the run's dev split ({n_issues} issues); the test rows are left for checking "
            "the choice."
        )
    else:
        note = (
            f"Winners are picked on all {n_issues} issues of the run: NOT a held-out choice (the run has no dev "
            "rows), so the scores below are optimistic for the chosen models."
        )
    table_rows = []
    for mode in _ordered_modes([*selections, *getattr(selections, "skipped", {})]):
        sel = selections.get(mode)
        if sel is None:
            table_rows.append(
                {
                    "mode": mode,
                    "model": "—",
                    "fallbacks": "—",
                    "score": None,
                    "95% CI": "—",
                    "$ / issue": None,
                    "issues": None,
                    "reason": "no winner: " + selections.skipped.get(mode, ""),
                }
            )
            continue
        table_rows.append(
            {
                "mode": mode,
                "model": sel.model,
                "fallbacks": ", ".join(sel.fallbacks) or "—",
                "score": sel.score,
                "95% CI": fmt_ci(*sel.ci) if sel.ci else "—",
                "$ / issue": sel.cost_per_issue,
                "issues": sel.n,
                "reason": sel.reason,
            }
        )
    table = pd.DataFrame(
        table_rows, columns=["mode", "model", "fallbacks", "score", "95% CI", "$ / issue", "issues", "reason"]
    )
    provenance = {
        "run_id": bench.run_id,
        "objective": objective,
        "dataset": bench.dataset,
        "split": getattr(selections, "split", "dev" if held_out else "all"),
        "date": datetime.now(UTC).date(),
    }
    diff, error, written = "", None, False
    path = bench.config.path
    if not selections:  # every mode was skipped: nothing to write (the table says why)
        pass
    elif path is None or is_default_config(path):
        error = "the config in use is the package's default: there is no project orchestrator.toml to update"
    else:
        try:
            diff = routing.write_routing(path, selections, provenance, write=bool(write))
            written = bool(write)
        except Exception as exc:  # show the problem in the report instead of failing the whole run
            from ..errors import redact

            error = redact(f"{type(exc).__name__}: {exc}")
    return RoutingProposal(
        selections=selections,
        table=table,
        note=note,
        held_out=held_out,
        diff=diff or "",
        written=written,
        error=error,
        min_n=min_n,
    )


def show_routing(proposal: RoutingProposal, config_name: str = "orchestrator.toml") -> None:
    from IPython.display import display

    display(show_text(proposal.note, "orc-ok" if proposal.held_out else "orc-note"))
    if not proposal.selections:
        display(
            show_text(
                "No mode has a winner, so the routing stays as it is. " + proposal.skipped_hint, "orc-note"
            )
        )
        return
    sty = proposal.table.style.format({"score": fmt_num, "$ / issue": fmt_usd}, escape="html", na_rep="—")
    display(_base_style(sty, "objective and thresholds as passed to routing.select_winners"))
    if proposal.error:
        display(show_text(proposal.error, "orc-note"))
    elif proposal.written:
        display(show_text(f"Written to the [routing] table of {config_name}.", "orc-ok"))
    else:
        display(
            show_text(
                f"Not written (update_routing is false). The change to {config_name} would be:", "orc-note"
            )
        )
    if proposal.diff:
        display(show_pre(proposal.diff))
    elif not proposal.error:
        display(show_text("No change to the routing table.", "orc-ok"))


# ------------------------------------------------------------------------------------- compare runs


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, Mapping) and v:
                out.update(_flatten(v, key))
            else:
                out[key] = v
        return out
    return {prefix: value}


def config_diff(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> pd.DataFrame:
    """What differs between two config snapshots (runs table ``config_snapshot``, mode versions included):
    one row per changed key (dotted path) with both values and whether it was added, removed or changed."""
    import pandas as pd

    fa, fb = _flatten(a or {}), _flatten(b or {})
    rows = []
    for key in sorted(set(fa) | set(fb)):
        va, vb = fa.get(key, _MISSING), fb.get(key, _MISSING)
        if va == vb:
            continue
        change = "added" if va is _MISSING else "removed" if vb is _MISSING else "changed"
        rows.append({"key": key, "run A": _show(va), "run B": _show(vb), "change": change})
    return pd.DataFrame(rows, columns=["key", "run A", "run B", "change"])


class _Missing:
    def __repr__(self) -> str:
        return "—"


_MISSING = _Missing()


def _show(value: Any) -> str:
    if value is _MISSING:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)


@dataclass
class RunComparison:
    run_a: dict[str, Any]
    run_b: dict[str, Any]
    paired: pd.DataFrame
    summary: pd.DataFrame
    config_changes: pd.DataFrame
    param_changes: pd.DataFrame
    created: list[str] = field(default_factory=list)


def ensure_runs(
    config: Config | None = None,
    *,
    needed: int = 2,
    dataset: str = "datasets/sample.jsonl",
    n_issues: int = 3,
) -> list[str]:
    """Create tiny baseline runs until the store holds ``needed`` runs (so the notebook runs standalone)."""
    from ..runs.store import open_store

    cfg = config or load_bench_config()
    with open_store(config=cfg) as store:
        have = len(store.runs())
    created = []
    for _ in range(max(0, needed - have)):
        bench = run_benchmark(
            dataset,
            models="baseline/rules",
            modes="classify,summarize",
            limit=n_issues,
            config=cfg,
            concurrency=2,
            progress=False,
        )
        created.append(bench.run_id)
    return created


def paired_runs(
    df_a: pd.DataFrame, df_b: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
) -> pd.DataFrame:
    """Per model and mode present in both runs: run B against run A on the same issue ids.

    Each pair is :func:`orchestrator.analysis.paired_comparison` on a frame whose ``model`` column is the
    run label; ``diff`` is mean A − mean B as there, and ``p_holm`` is re-corrected over the whole table."""
    import pandas as pd

    from ..analysis import holm, paired_comparison

    rows = []
    common_modes = _ordered_modes(set(df_a["mode"].dropna()) & set(df_b["mode"].dropna()))
    for mode in common_modes:
        models = sorted(
            set(df_a.loc[df_a["mode"] == mode, "model"].dropna())
            & set(df_b.loc[df_b["mode"] == mode, "model"].dropna())
        )
        for model in models:
            a = df_a[(df_a["mode"] == mode) & (df_a["model"] == model)].assign(model="A")
            b = df_b[(df_b["mode"] == mode) & (df_b["model"] == model)].assign(model="B")
            both = pd.concat([a, b], ignore_index=True)
            table = paired_comparison(both, mode, n_boot=n_boot, seed=seed, alpha=alpha, reference="A")
            for r in table.to_dict("records"):
                rows.append({**r, "mode": mode, "model": model, "model_a": "A", "model_b": "B"})
    cols = [
        "mode",
        "model",
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
        "model_a",
        "model_b",
    ]
    out = pd.DataFrame(rows, columns=cols)
    if len(out):
        out["p_holm"] = holm(out["p_value"].fillna(1.0).to_numpy())
        out["significant"] = (out["p_holm"] < alpha) & out["p_value"].notna()
    return out


def styled_run_pairs(paired: pd.DataFrame) -> Styler:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "mode": paired["mode"].astype(str),
            "model": paired["model"].astype(str),
            "issues": paired["n"],
            "run A": paired["mean_a"],
            "run B": paired["mean_b"],
            "B − A": 0.0 - paired["diff"],  # 0.0 - x: no "-0.000"
            "95% CI": [
                fmt_ci(0.0 - hi, 0.0 - lo, 3)
                for lo, hi in zip(paired["ci_low"], paired["ci_high"], strict=True)
            ],
            "p": paired["p_value"],
            "p (Holm)": paired["p_holm"],
            "test": paired["test"].fillna("—").astype(str),
            "significant": ["yes" if s else "no" for s in paired["significant"]],
        }
    )
    return _style_paired(
        frame,
        ("run A", "run B", "B − A"),
        "same model, same issue ids, both runs; B − A with a paired bootstrap CI; McNemar / "
        "sign-flip test; Holm over every row",
    )


def styled_diff(frame: pd.DataFrame, caption: str | None = None) -> Styler:
    sty = frame.style.format(escape="html", na_rep="—")
    if len(frame):
        sty = sty.set_properties(
            subset=["run A", "run B"], **{"font-family": "monospace", "white-space": "pre-wrap"}
        )
    return _base_style(sty, caption)


def compare_runs(
    run_a: str | None = None,
    run_b: str | None = None,
    *,
    config: Config | str | os.PathLike[str] | None = None,
    create_if_missing: bool = True,
    n_boot: int = 2000,
) -> RunComparison:
    """Compare two runs (default: the two most recent; B is the newer). With fewer than two runs in the
    store and ``create_if_missing``, two tiny baseline runs are created first."""
    import pandas as pd

    from ..analysis import summary_table
    from ..runs.store import open_store

    cfg = load_bench_config(config)
    created: list[str] = []
    if (run_a is None or run_b is None) and create_if_missing:
        created = ensure_runs(cfg)
    with open_store(config=cfg) as store:
        runs = store.runs()
        if run_b is None or run_a is None:
            ids = [r["id"] for r in runs if r["id"] not in {run_a, run_b}]
            if run_b is None:
                run_b = ids.pop(0) if ids else None
            if run_a is None:
                run_a = ids.pop(0) if ids else None
        if not run_a or not run_b:
            raise ValueError("compare_runs needs two runs; the store has fewer (run a benchmark first)")
        info_a, info_b = store.run(run_a), store.run(run_b)
        for rid, info in ((run_a, info_a), (run_b, info_b)):
            if info is None:
                raise ValueError(f"no run {rid!r} in the results database; `orchestrator runs` lists them")
        df_a, df_b = store.results_df(run_a), store.results_df(run_b)
    paired = paired_runs(df_a, df_b, n_boot=n_boot)
    summaries = []
    for label, frame in (("A", df_a), ("B", df_b)):
        if len(frame):
            summaries.append(summary_table(frame, n_boot=n_boot).assign(run=label))
    summary = pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame()
    params_a = {k: v for k, v in (info_a.get("params") or {}).items()}
    params_b = {k: v for k, v in (info_b.get("params") or {}).items()}
    for p in (params_a, params_b):
        p.setdefault("dataset", None)
    param_changes = config_diff(
        {**params_a, "git_commit": info_a.get("git_commit")},
        {**params_b, "git_commit": info_b.get("git_commit")},
    )
    return RunComparison(
        run_a=info_a,
        run_b=info_b,
        paired=paired,
        summary=summary,
        config_changes=config_diff(info_a.get("config_snapshot"), info_b.get("config_snapshot")),
        param_changes=param_changes,
        created=created,
    )


def runs_header(cmp: RunComparison) -> Any:
    rows = []
    for label, info in (("A", cmp.run_a), ("B", cmp.run_b)):
        params = info.get("params") or {}
        rows.append(
            f"<tr><th>run {label}</th><td>{esc(info['id'])}</td><td>{esc(str(info.get('created', ''))[:19])}</td>"
            f"<td>{esc(info.get('status'))}</td><td>{esc(info.get('dataset') or '—')}</td>"
            f"<td>{esc(', '.join(params.get('models') or []))}</td><td>{esc(', '.join(params.get('modes') or []))}</td></tr>"
        )
    note = ""
    if cmp.created:
        note = (
            f'<div class="orc-note">Fewer than two runs were stored, so {len(cmp.created)} tiny baseline '
            f"run(s) were created to compare: {esc(', '.join(cmp.created))}.</div>"
        )
    return _html(
        f"<style>{CSS}</style><div class='orc-header'><h1>Run comparison</h1></div>{note}"
        "<table class='orc-table'><thead><tr><th></th><th>run id</th><th>created</th><th>status</th>"
        f"<th>dataset</th><th>models</th><th>modes</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def styled_run_summaries(summary: pd.DataFrame) -> Styler:
    import pandas as pd

    if summary.empty:
        return _base_style(pd.DataFrame().style)
    wide = summary.pivot_table(
        index=["mode", "model"],
        columns="run",
        values=["mean", "cost_per_issue", "latency_p50"],
        aggfunc="first",
    )
    frame = pd.DataFrame(
        {
            "mode": [i[0] for i in wide.index],
            "model": [i[1] for i in wide.index],
            "score A": wide[("mean", "A")].to_numpy() if ("mean", "A") in wide else float("nan"),
            "score B": wide[("mean", "B")].to_numpy() if ("mean", "B") in wide else float("nan"),
            "$ / issue A": wide[("cost_per_issue", "A")].to_numpy()
            if ("cost_per_issue", "A") in wide
            else float("nan"),
            "$ / issue B": wide[("cost_per_issue", "B")].to_numpy()
            if ("cost_per_issue", "B") in wide
            else float("nan"),
            "p50 A": wide[("latency_p50", "A")].to_numpy() if ("latency_p50", "A") in wide else float("nan"),
            "p50 B": wide[("latency_p50", "B")].to_numpy() if ("latency_p50", "B") in wide else float("nan"),
        }
    )
    frame = frame.assign(_r=frame["mode"].map(lambda m: MODE_ORDER.index(m) if m in MODE_ORDER else 9))
    frame = frame.sort_values(["_r", "model"]).drop(columns="_r")
    sty = frame.style.format(
        {
            "score A": fmt_num,
            "score B": fmt_num,
            "$ / issue A": fmt_usd,
            "$ / issue B": fmt_usd,
            "p50 A": fmt_s,
            "p50 B": fmt_s,
        },
        escape="html",
        na_rep="—",
    )
    return _base_style(sty, "each run on its own issues; the paired table above compares them issue by issue")


# ------------------------------------------------------------------------------------------ explore


def find_issues(issues: Sequence[Issue], query: str) -> list[Issue]:
    """Issues matching ``query``: words must all occur in the id, title, body or labels (case-insensitive);
    ``label:X`` matches a label (or gold type) exactly."""
    words = (query or "").lower().split()
    out = []
    for issue in issues:
        labels = {lab.lower() for lab in issue.labels} | ({issue.gold.type} if issue.gold.type else set())
        hay = " ".join([issue.id, issue.title, issue.body, *issue.labels]).lower()
        if all((w[6:] in labels) if w.startswith("label:") else (w in hay) for w in words):
            out.append(issue)
    return out


def issue_card(issue: Issue, max_body: int = 1200) -> Any:
    """The issue as escaped HTML: title, labels, the body's start, and the gold labels."""
    g = issue.gold
    gold = [
        ("type", g.type),
        ("component", g.component),
        ("severity", g.severity),
        ("files", ", ".join(g.files)),
        ("summary", g.summary),
        ("key points", "; ".join(g.key_points)),
    ]
    gold_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in gold if v)
    return _html(
        f"<style>{CSS}</style><div class='orc-card'><h4>{esc(issue.id)}: {esc(issue.title)}</h4>"
        f"<div class='orc-usage'>labels: {esc(', '.join(issue.labels) or '—')} · split: {esc(issue.split or '—')}</div>"
        f"<pre>{esc(_clip(issue.body, max_body))}</pre>"
        f"<table class='orc-meta'><caption>gold</caption>{gold_rows or '<tr><td>no gold labels</td></tr>'}</table></div>"
    )


def compare_answers(
    client: LLMClient, issue: Issue, models: Sequence[str] | str, mode: str, *, cache: bool = True
) -> pd.DataFrame:
    """Ask each model about one issue in one mode (concurrently, through the response cache): one row per
    model with the answer, its score against the gold labels, tokens, cost, latency and whether it was cached."""
    import asyncio

    import pandas as pd

    from ..errors import ProviderError, redact
    from ..scoring import score

    model_ids = split_list(models)

    async def ask_all() -> list[Any]:
        return await asyncio.gather(
            *(client.complete(issue, model=m, mode=mode, cache="use" if cache else "off") for m in model_ids),
            return_exceptions=True,
        )

    results = client.run_sync(ask_all())
    rows = []
    for model, c in zip(model_ids, results, strict=True):
        if isinstance(c, BaseException):
            kind = c.kind if isinstance(c, ProviderError) else type(c).__name__
            rows.append({"model": model, "answer": "", "error": redact(f"{kind}: {c}")})
            continue
        try:
            value = score(mode, issue.gold, c.text, c.parsed, c.parse_error).value
        except Exception:  # a scorer problem must not hide the answers
            value = None
        rows.append(
            {
                "model": model,
                "served by": c.served_model or c.model,
                "answer": c.text,
                "parsed": json.dumps(c.parsed, ensure_ascii=False) if c.parsed else (c.parse_error or ""),
                "score": value,
                "tokens in": c.usage.input_total,
                "tokens out": c.usage.output_total,
                "cost_usd": c.cost_usd,
                "latency_s": c.latency_s,
                "cached": bool(c.from_cache),
                "error": "",
            }
        )
    cols = [
        "model",
        "served by",
        "answer",
        "parsed",
        "score",
        "tokens in",
        "tokens out",
        "cost_usd",
        "latency_s",
        "cached",
        "error",
    ]
    return pd.DataFrame(rows, columns=cols)


def answers_html(frame: pd.DataFrame, issue: Issue | None = None, mode: str | None = None) -> Any:
    """Answers side by side (one card per model) with usage, cost and latency; everything escaped."""
    cards = []
    for r in frame.to_dict("records"):
        if r.get("error"):
            body = f"<pre class='orc-err'>{esc(r['error'])}</pre>"
            usage = ""
        else:
            cached = " · cached (free)" if r.get("cached") else ""
            usage = (
                f"score {fmt_num(r.get('score'), 2)} · {r.get('tokens in')} in / {r.get('tokens out')} out · "
                f"{fmt_usd(r.get('cost_usd'))} · {fmt_s(r.get('latency_s'))}{cached}"
            )
            body = f"<pre>{esc(r.get('answer'))}</pre>"
            if r.get("parsed") and mode == "classify":
                body += f"<div class='orc-usage'>parsed: {esc(r['parsed'])}</div>"
        cards.append(
            f"<div class='orc-card'><h4>{esc(r['model'])}</h4><div class='orc-usage'>{esc(usage)}</div>"
            f"{body}</div>"
        )
    gold = ""
    if issue is not None and mode:
        gold = f"<p><b>gold ({esc(mode)}):</b> {esc(_gold_brief(issue, mode))}</p>"
    return _html(f"<style>{CSS}</style>{gold}<div class='orc-cards'>{''.join(cards)}</div>")


def explore_widget(
    issues: Sequence[Issue],
    client: LLMClient,
    *,
    models: Sequence[str] | str | None = None,
    mode: str = "classify",
) -> Any:
    """An ipywidgets panel: search issues by text or ``label:X``, pick one, pick models and a mode, run, and
    see the answers side by side with usage, cost and latency, next to the gold labels.

    Answers go through the response cache (re-running is free; untick "use the cache" for fresh samples).
    The returned VBox has ``controls`` (the widgets by name) and ``run()`` (what the Run button does)."""
    from types import SimpleNamespace

    import ipywidgets as W
    from IPython.display import display

    from ..modes import MODES

    issues = list(issues)
    known = client.models()
    chosen = [m for m in split_list(models) if m in known] or known[:2]

    def options(found: Sequence[Issue]) -> list[tuple[str, int]]:
        return [(_clip(f"{i.id} · {i.title}", 110), issues.index(i)) for i in found]

    search = W.Text(
        placeholder="words in the title or body, or label:bug",
        description="Search",
        layout=W.Layout(width="32em"),
    )
    count = W.HTML(value=f"{len(issues)} issues")
    picker = W.Dropdown(options=options(issues), description="Issue", layout=W.Layout(width="60em"))
    model_pick = W.SelectMultiple(
        options=known,
        value=tuple(chosen),
        description="Models",
        rows=min(8, max(3, len(known))),
        layout=W.Layout(width="28em"),
    )
    mode_pick = W.ToggleButtons(
        options=list(MODES), value=mode if mode in MODES else "classify", description="Mode"
    )
    use_cache = W.Checkbox(value=True, description="use the cache (re-running is free)", indent=False)
    run_button = W.Button(description="Run", button_style="primary", icon="play")
    status = W.HTML()
    issue_out, answers_out = W.Output(), W.Output()

    def current() -> Issue | None:
        return issues[picker.value] if picker.value is not None else None

    def on_search(_: Any = None) -> None:
        found = find_issues(issues, search.value)
        picker.options = options(found)
        if found and picker.value is None:
            picker.value = issues.index(found[0])
        count.value = esc(f"{len(found)} of {len(issues)} issues")

    def on_pick(_: Any = None) -> None:
        issue_out.clear_output()
        answers_out.clear_output()
        issue = current()
        if issue is not None:
            with issue_out:
                display(issue_card(issue))

    def run(_: Any = None) -> Any:
        issue = current()
        if issue is None or not model_pick.value:
            status.value = esc("pick an issue and at least one model")
            return None
        run_button.disabled = True
        status.value = esc(f"asking {len(model_pick.value)} model(s)…")
        try:
            frame = compare_answers(
                client, issue, list(model_pick.value), mode_pick.value, cache=use_cache.value
            )
        except Exception as exc:
            from ..errors import redact

            status.value = f"<span class='orc-err'>{esc(redact(str(exc)))}</span>"
            return None
        finally:
            run_button.disabled = False
        spent = sum(c for c in frame["cost_usd"].fillna(0) if not _is_nan(c))
        status.value = esc(f"done: {int(frame['cached'].fillna(False).sum())} cached, spent {fmt_usd(spent)}")
        answers_out.clear_output(wait=True)
        with answers_out:
            display(answers_html(frame, issue, mode_pick.value))
        return frame

    search.observe(on_search, names="value")
    picker.observe(on_pick, names="value")
    run_button.on_click(run)
    box = W.VBox(
        [
            W.HBox([search, count]),
            picker,
            W.HBox([model_pick, W.VBox([mode_pick, use_cache, W.HBox([run_button, status])])]),
            issue_out,
            answers_out,
        ]
    )
    box.controls = SimpleNamespace(
        search=search,
        picker=picker,
        models=model_pick,
        mode=mode_pick,
        use_cache=use_cache,
        run=run_button,
        status=status,
        issue_out=issue_out,
        answers_out=answers_out,
    )
    box.run = run
    on_pick()
    return box
