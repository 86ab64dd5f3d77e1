"""The tables of a benchmark: summary, paired comparisons, ties, sample answers, errors, each as a Styler.

Every Styler escapes cells and index (``format(escape="html")``), so untrusted text cannot become markup.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .html import NO_MATH, _is_nan, _ordered_modes, esc, fmt_ci, fmt_num, fmt_pct, fmt_s, fmt_usd, show_text

if TYPE_CHECKING:
    import pandas as pd
    from pandas.io.formats.style import Styler

    from ..types import Issue


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
    sty = (
        sty.hide(axis="index")
        .format_index(escape="html", axis=1)
        .set_table_attributes(f'class="orc-table {NO_MATH}"')
    )
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
                "TTFT p50",
                "TTFT p95",
                "tok/s",
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
            "TTFT p50": _column(s, "ttft_p50"),
            "TTFT p95": _column(s, "ttft_p95"),
            "tok/s": _column(s, "output_tps_p50"),
            "error rate": s["error_rate"].astype(float).to_numpy(),
        }
    )


def _column(summary: pd.DataFrame, name: str) -> Any:
    """A float column of the summary (all NaN in a summary computed before the column existed)."""
    import numpy as np

    if name not in summary:
        return np.full(len(summary), np.nan)
    return summary[name].astype(float).to_numpy()


def fmt_rate(value: Any) -> str:
    return "—" if value is None or value != value else f"{value:.0f}"


# How each number column is written, by its name without a run suffix (" A", " B").
FORMATS = {
    "score": fmt_num,
    "$ / issue": fmt_usd,
    "$ / correct": fmt_usd,
    "latency p50": fmt_s,
    "latency p95": fmt_s,
    "TTFT p50": fmt_s,
    "TTFT p95": fmt_s,
    "tok/s": fmt_rate,
    "p50": fmt_s,
    "error rate": fmt_pct,
}


def column_formats(columns: Iterable[str]) -> dict[str, Any]:
    """The formatter of each column :data:`FORMATS` knows (``"score A"`` is written as ``"score"``)."""
    out = {}
    for col in columns:
        stem = col.removesuffix(" A").removesuffix(" B")
        if stem in FORMATS:
            out[col] = FORMATS[stem]
    return out


def styled_summary(
    summary: pd.DataFrame, modes: Sequence[str] | None = None, df: pd.DataFrame | None = None
) -> Styler:
    """Per model × mode: mean score [95% CI], cost per issue and per correct answer, latency, errors.

    The best model of each mode is in bold; the score bar spans 0–1. With the run's rows ``df``, a row whose
    answers came (partly) from a fallback says so in an "answered by" column ("baseline/rules: 12 of 12")."""
    frame = summary_frame(summary, modes)
    if df is not None and len(frame):
        by = fallbacks_table(df)
        if not by.empty:
            cells = df.groupby(["model", "mode"]).size().to_dict()
            notes: dict[tuple[str, str], str] = {}
            for r in by.to_dict("records"):
                key = (r["model"], r["mode"])
                text = f"{r['answered by']}: {r['cells']} of {cells.get(key, r['cells'])}"
                notes[key] = f"{notes[key]}; {text}" if key in notes else text
            frame["answered by"] = [
                notes.get((m, d), "itself") for m, d in zip(frame["model"], frame["mode"], strict=True)
            ]
    sty = frame.style.format(column_formats(frame.columns), escape="html", na_rep="—")
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

    from ..analysis import PAIRED_COLUMNS, paired_comparison

    frames = []
    for mode in modes or _ordered_modes(df["mode"].dropna()):
        if not (df["mode"] == mode).any():
            continue
        table = paired_comparison(df, mode, n_boot=n_boot, seed=seed)
        if len(table):
            frames.append(table.assign(mode=mode))
    if not frames:
        return pd.DataFrame(columns=["mode", *PAIRED_COLUMNS])
    out = pd.concat(frames, ignore_index=True)
    return out[["mode", *[c for c in out.columns if c != "mode"]]]


def styled_comparisons(comparisons: pd.DataFrame, labels: tuple[str, str] = ("model A", "model B")) -> Any:
    """Paired comparisons: difference of means with its CI, raw and Holm-corrected p, the test used."""

    if comparisons.empty:
        return show_text("No paired comparison: each mode has a single model.", "orc-note")
    c = comparisons
    lead = {
        "mode": c["mode"].astype(str) if "mode" in c else "",
        labels[0]: c["model_a"].astype(str),
        labels[1]: c["model_b"].astype(str),
    }
    frame = paired_frame(c, lead, ("mean A", "mean B", "A − B"))
    return _style_paired(
        frame,
        ("mean A", "mean B", "A − B"),
        "paired on the issues both answered; CI: paired bootstrap; p: McNemar's exact test "
        "for 0/1 scores, else a sign-flip permutation test; Holm-corrected per mode",
    )


def paired_frame(
    pairs: pd.DataFrame, lead: dict[str, Any], names: tuple[str, str, str], *, flip: bool = False
) -> pd.DataFrame:
    """The columns every paired table shows, after ``lead``: n, both means, the difference with its CI,
    raw and Holm p, the test. ``flip`` shows B − A for a frame that holds A − B."""
    import pandas as pd

    sign = -1.0 if flip else 1.0
    # 0.0 + sign * x: never a "-0.000"
    bounds = zip(pairs["ci_low"], pairs["ci_high"], strict=True)
    ci = [fmt_ci(0.0 - hi, 0.0 - lo, 3) if flip else fmt_ci(lo, hi, 3) for lo, hi in bounds]
    return pd.DataFrame(
        {
            **lead,
            "issues": pairs["n"],
            names[0]: pairs["mean_a"],
            names[1]: pairs["mean_b"],
            names[2]: 0.0 + sign * pairs["diff"],
            "95% CI": ci,
            "p": pairs["p_value"],
            "p (Holm)": pairs["p_holm"],
            "test": pairs["test"].fillna("—").astype(str),
            "significant": ["yes" if s else "no" for s in pairs["significant"]],
        }
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
                path = _json_list(getattr(r, "fallback_path", None))
                answered = path[-1] if len(path) > 1 and not r.error_type else None
                rows.append(
                    {
                        "mode": mode,
                        "issue": f"{issue_id}: {issue.title}" if issue else issue_id,
                        "model": f"{r.model} (answered by {answered})" if answered else r.model,
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


def _json_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str) and value.startswith("["):
        try:
            return [str(v) for v in json.loads(value)]
        except json.JSONDecodeError:
            return []
    return []


def fallbacks_table(df: pd.DataFrame) -> pd.DataFrame:
    """The answers another model gave: per model asked and mode, who answered, how many cells, and why the
    model asked did not (an example of the recorded reason)."""
    import pandas as pd

    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in df.to_dict("records") if len(df) else []:
        path = _json_list(r.get("fallback_path"))
        if len(path) < 2 or r.get("error_type"):
            continue
        key = (str(r["model"]), str(r["mode"]), path[-1])
        entry = rows.setdefault(
            key, {"model": key[0], "mode": key[1], "answered by": key[2], "cells": 0, "why": ""}
        )
        entry["cells"] += 1
        reasons = _json_list(r.get("fallback_reasons"))
        if reasons and not entry["why"]:
            entry["why"] = _clip(reasons[0], 200)
    frame = pd.DataFrame(list(rows.values()), columns=["model", "mode", "answered by", "cells", "why"])
    frame["why"] = frame["why"].replace("", "not recorded (a run from before this was kept)")
    return frame


def show_fallbacks(df: pd.DataFrame) -> Any:
    """Say plainly which answers another model gave, and why; or that every answer is the asked model's."""
    table = fallbacks_table(df)
    if table.empty:
        return show_text(f"Every answer came from the model asked ({len(df)} cells).", "orc-ok")
    sty = table.style.format(escape="html", na_rep="—")
    return _base_style(
        sty,
        f"{int(table['cells'].sum())} of {len(df)} cells were answered by a fallback, not the model asked: "
        "their scores count for the model asked in the tables above",
    )


def show_changes(frame: pd.DataFrame, caption: str) -> Any:
    """A :func:`config_diff` table, or a note that nothing changed."""
    if frame.empty:
        return show_text(f"No change ({caption}).", "orc-ok")
    return styled_diff(frame, caption)


def styled_diff(frame: pd.DataFrame, caption: str | None = None) -> Styler:
    sty = frame.style.format(escape="html", na_rep="—")
    if len(frame):
        sty = sty.set_properties(
            subset=["run A", "run B"], **{"font-family": "monospace", "white-space": "pre-wrap"}
        )
    return _base_style(sty, caption)
