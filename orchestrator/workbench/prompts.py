"""Prompts against models: the prompts × models matrix of a task, and the issues that flipped between two
prompts (paired, with the test), for tasks whose file declares several prompt variants."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .html import esc, fmt_ci, fmt_num, show_text
from .tables import _base_style, paired_frame

if TYPE_CHECKING:
    import pandas as pd
    from pandas.io.formats.style import Styler

__all__ = [
    "prompt_flips",
    "prompt_matrix",
    "show_prompt_flips",
    "show_prompt_matrix",
    "styled_prompt_flips",
]


def _with_prompts(df: pd.DataFrame) -> pd.DataFrame:
    """``task`` and ``prompt`` on every row (rows from before tasks: the mode is the task, prompt default)."""
    out = df.copy()
    mode = out["mode"].astype("string")
    task = out["task"].astype("string") if "task" in out else mode.str.partition(":")[0]
    out["task"] = task.fillna(mode.str.partition(":")[0])
    prompt = out["prompt"].astype("string") if "prompt" in out else None
    out["prompt"] = prompt.fillna("default") if prompt is not None else "default"
    return out


def prompt_matrix(df: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per (task, prompt), one column per model: mean score with its 95 % CI over issues, for every
    task run with more than one prompt. ``best`` names the best (model, prompt) cell of each task."""
    import pandas as pd

    from ..analysis import summary_table

    if df.empty:
        return pd.DataFrame()
    rows = _with_prompts(df)
    many = rows.groupby("task")["prompt"].nunique()
    rows = rows[rows["task"].isin(many[many > 1].index)]
    if rows.empty:
        return pd.DataFrame()
    table = summary_table(rows, by=("task", "prompt", "model"), n_boot=n_boot, seed=seed)
    table["cell"] = [
        f"{fmt_num(m)} {fmt_ci(lo, hi)}"
        for m, lo, hi in zip(table["mean"], table["ci_low"], table["ci_high"], strict=True)
    ]
    best = table.loc[table.groupby("task")["mean"].idxmax().dropna()]
    marks = {(t, p, m) for t, p, m in best[["task", "prompt", "model"]].itertuples(index=False)}
    table["cell"] = [
        c + (" ★" if (t, p, m) in marks else "")
        for c, t, p, m in zip(table["cell"], table["task"], table["prompt"], table["model"], strict=True)
    ]
    wide = table.pivot_table(index=["task", "prompt"], columns="model", values="cell", aggfunc="first")
    wide.columns.name = None
    return wide.reset_index()


def show_prompt_matrix(df: pd.DataFrame, *, n_boot: int = 2000) -> Any:
    """The prompts × models matrix as an escaped table (★: the best cell of the task), or a note."""
    frame = prompt_matrix(df, n_boot=n_boot)
    if frame.empty:
        return show_text(
            "Every task here was run with a single prompt: no prompts × models matrix.", "orc-note"
        )
    sty = frame.style.format(escape="html", na_rep="—").format_index(escape="html")
    return _base_style(sty, "mean score [95% CI] over issues per prompt and model; ★ best of the task")


def prompt_flips(
    df: pd.DataFrame,
    task: str,
    prompt_a: str,
    prompt_b: str,
    model: str,
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For one model, the issues whose score changed from ``prompt_a`` to ``prompt_b`` (issue means, repeats
    averaged), and the paired comparison of the two prompts on their common issues (the test included)."""
    import pandas as pd

    from ..analysis import paired_comparison

    rows = _with_prompts(df)
    rows = rows[(rows["task"] == task) & (rows["model"] == model) & rows["prompt"].isin([prompt_a, prompt_b])]
    if rows.empty:
        return pd.DataFrame(columns=["issue_id", prompt_a, prompt_b]), pd.DataFrame()
    as_models = rows.assign(model=rows["prompt"], mode=task)  # the prompts compete as the "models" of a pair
    paired = paired_comparison(as_models, task, n_boot=n_boot, seed=seed, reference=prompt_a)
    means = as_models.groupby(["issue_id", "model"])["score"].mean().unstack("model")
    means = means.dropna(subset=[c for c in (prompt_a, prompt_b) if c in means.columns])
    if prompt_a not in means or prompt_b not in means:
        return pd.DataFrame(columns=["issue_id", prompt_a, prompt_b]), paired
    flipped = means[means[prompt_a] != means[prompt_b]][[prompt_a, prompt_b]].reset_index()
    return flipped, paired


def styled_prompt_flips(
    flipped: pd.DataFrame, paired: pd.DataFrame, prompt_a: str, prompt_b: str, *, title: str = ""
) -> Styler:
    """The flipped issues and, in the caption, the paired difference with its test."""
    caption = (f"{esc(title)}: " if title else "") + (
        f"issues whose score changed from prompt {esc(prompt_a)} to {esc(prompt_b)}"
    )
    if len(paired):
        pair = paired_frame(paired, {}, ("A", "B", "A − B"))
        row = pair.iloc[0]
        caption += (
            f"; A − B = {fmt_num(row['A − B'])} {row['95% CI']}, p = {fmt_num(row['p'])} ({esc(row['test'])})"
        )
    return _base_style(flipped.style.format(escape="html", na_rep="—"), caption)


def show_prompt_flips(df: pd.DataFrame, *, n_boot: int = 2000) -> None:
    """For every task run with several prompts and every model: the issues that flipped between its first
    two prompts (the default first), with the paired test. Shows nothing when no task has two prompts."""
    from IPython.display import display

    rows = _with_prompts(df)
    for task, frame in rows.groupby("task", sort=True):
        prompts = sorted(frame["prompt"].unique(), key=lambda p: (p != "default", p))
        if len(prompts) < 2:
            continue
        a, b = prompts[0], prompts[1]
        for model in sorted(frame["model"].unique()):
            flipped, paired = prompt_flips(rows, str(task), a, b, str(model), n_boot=n_boot)
            display(styled_prompt_flips(flipped, paired, a, b, title=f"{task}, {model}"))
