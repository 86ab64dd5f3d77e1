"""Figures render headless to valid PNG files, including NaN costs, free models and a single model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from orchestrator.analysis import summary_table
from orchestrator.workbench import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _results(
    models: list[str], modes: tuple[str, ...] = ("classify", "fix"), n_issues: int = 15
) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    prices = {"local/smollm2": 0.0, "openai/gpt-x": 2e-3, "openrouter/cheap": 1e-5, "mystery/model": np.nan}
    rows = []
    for model in models:
        for mode in modes:
            for i in range(n_issues):
                rows.append(
                    {
                        "model": model,
                        "mode": mode,
                        "issue_id": f"acme/x#{i}",
                        "score": float(rng.random() < 0.6),
                        "cost_usd": prices.get(model, 1e-4),
                        "latency_s": float(rng.lognormal(0, 1)),
                        "error_type": None if rng.random() > 0.1 else "timeout",
                        "from_cache": bool(rng.random() < 0.1),
                    }
                )
    return pd.DataFrame(rows)


def _assert_png(fig: Figure, path) -> None:
    assert isinstance(fig, Figure)
    fig.savefig(path, dpi=60)
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_MAGIC


ALL = ["local/smollm2", "openai/gpt-x", "openrouter/cheap", "mystery/model"]


def test_cost_quality_with_nan_cost_free_model_and_log_axis(tmp_path):
    summary = summary_table(_results(ALL), n_boot=200)
    fig = plots.cost_quality(summary)
    _assert_png(fig, tmp_path / "cost_quality.png")
    assert len(fig.axes) == 2  # one panel per mode
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"  # 1e-5 .. 2e-3 spans two decades
    texts = [t.get_text() for t in ax.texts]
    assert "free" in texts
    assert any("mystery/model" in t and "no price" in t for t in texts)
    assert any(line.get_label() == "Pareto frontier" for line in ax.get_lines())


def test_cost_quality_single_model_and_single_mode(tmp_path):
    summary = summary_table(_results(["openai/gpt-x"], modes=("explain",)), n_boot=100)
    fig = plots.cost_quality(summary, mode="explain")
    _assert_png(fig, tmp_path / "one.png")
    assert fig.axes[0].get_xscale() == "linear" and fig.axes[0].get_title() == "explain"


def test_cost_quality_when_no_model_has_a_price(tmp_path):
    summary = summary_table(_results(["mystery/model"]), n_boot=100)
    _assert_png(plots.cost_quality(summary, mode="fix"), tmp_path / "unpriced.png")


def test_latency_vs_quality_uses_the_same_function(tmp_path):
    summary = summary_table(_results(ALL), n_boot=100)
    fig = plots.cost_quality(summary, mode="classify", x="latency_p50", xlabel="median latency (s)")
    _assert_png(fig, tmp_path / "latency_quality.png")


def test_heatmap_annotates_values_and_missing_cells(tmp_path):
    df = _results(ALL)
    df = df[~((df["model"] == "mystery/model") & (df["mode"] == "fix"))]  # one empty cell
    summary = summary_table(df, n_boot=100)
    fig = plots.model_mode_heatmap(summary)
    _assert_png(fig, tmp_path / "heatmap.png")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "n/a" in texts
    assert sum("[" in t for t in texts) == len(summary)  # every present cell shows its CI
    single = summary_table(_results(["openai/gpt-x"], modes=("fix",)), n_boot=100)
    _assert_png(plots.model_mode_heatmap(single), tmp_path / "heatmap1.png")


def test_latency_boxplots_per_model(tmp_path):
    df = _results(ALL)
    fig = plots.latency_distribution(df)
    _assert_png(fig, tmp_path / "latency.png")
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert sorted(labels) == sorted(ALL)
    _assert_png(plots.latency_distribution(_results(["local/smollm2"]), mode="fix"), tmp_path / "lat1.png")
    empty = df.assign(latency_s=np.nan)
    _assert_png(plots.latency_distribution(empty), tmp_path / "lat0.png")
    assert len(fig.axes) == 1  # nothing streamed: no time-to-first-token panel


def test_latency_plot_adds_time_to_first_token_with_tokens_per_second(tmp_path):
    df = _results(ALL)
    streamed = df["model"] == ALL[0]
    df.loc[streamed, "ttft_s"] = df.loc[streamed, "latency_s"] / 4
    df.loc[streamed, "output_tps"] = 42.0
    fig = plots.latency_distribution(df)
    _assert_png(fig, tmp_path / "ttft.png")
    assert len(fig.axes) == 2 and "first token" in fig.axes[1].get_title()
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == [ALL[0]]
    assert "42 tok/s" in [t.get_text() for t in fig.axes[1].texts]


def test_model_colors_are_stable_and_distinct():
    a = plots.model_colors(["b", "a", "c"])
    b = plots.model_colors(["c", "b", "a", "a"])
    assert a == b and len(set(a.values())) == 3
    many = plots.model_colors([f"m{i}" for i in range(25)])
    assert len(set(many.values())) == 25


def test_no_pyplot_state_is_left_behind():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plots.cost_quality(summary_table(_results(["openai/gpt-x"]), n_boot=50))
    assert plt.get_fignums() == before


@pytest.mark.parametrize("fn", [plots.cost_quality, plots.model_mode_heatmap])
def test_summary_plots_accept_an_empty_mode_filter(fn, tmp_path):
    summary = summary_table(_results(["openai/gpt-x"]), n_boot=50)
    fig = fn(summary[summary["mode"] == "classify"])
    _assert_png(fig, tmp_path / "filtered.png")


def test_equal_costs_are_said_in_words_and_no_cost_axis_is_drawn(monkeypatch, tmp_path):
    """All free: no degenerate cost axis (−0.04..0.04); a note says why, and quality is plotted against
    latency, two panels per figure; a single x value gets a readable axis around it, labelled."""
    from orchestrator.workbench import html

    summary = summary_table(
        _results(["local/smollm2", "local/other"], ("classify", "fix", "summarize", "explain")).assign(
            cost_usd=0.0
        ),
        n_boot=50,
    )
    notes, figures = [], []
    monkeypatch.setattr(html, "show_text_now", lambda text, css_class="orc-note": notes.append(text))
    monkeypatch.setattr(html, "show_figure", lambda fig, **kw: figures.append(fig))
    html.show_cost_quality(summary)
    assert notes == [
        "Cost–quality: every model costs the same, $0 (free) per issue, so quality is plotted against "
        "p50 latency instead."
    ]
    assert len(figures) == 2 and all(len(f.axes) == 2 for f in figures)  # 4 modes, 2 per figure
    assert all("latency" in f.axes[0].get_xlabel() for f in figures)
    one = summary_table(_results(["local/smollm2"], ("classify",)).assign(cost_usd=0.0), n_boot=50)
    fig = plots.cost_quality(one)
    low, high = fig.axes[0].get_xlim()
    assert (low, high) == (-1.0, 1.0)
    _assert_png(fig, tmp_path / "one.png")
