"""Per-issue drill-down for the report: an issues × (model, prompt) matrix per task, every cell expandable.

What promptfoo's viewer and inspect_ai's log viewer give, as static HTML with no script: each cell is a
``<details>`` holding the full answer, the scorer's details, tokens, cost, latency, who served it and any
fallback; each row holds the prompt the variant sent for that issue (once per row, not once per cell: a
prompt is the same for every model). Three anchored views follow the matrices: every failure (an error, or a
score of 0), and the issues where models disagree. Everything untrusted is escaped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .html import CSS, _html, esc, fmt_num, fmt_s, fmt_usd
from .tables import _json_list

if TYPE_CHECKING:
    import pandas as pd

    from ..types import Issue

__all__ = ["drilldown_html"]

ANSWER_CHARS = 4000  # an answer longer than this is cut in the report (the results database has it whole)

_CSS = """
.orc-drill td, .orc-drill th { vertical-align: top; }
.orc-drill details summary { cursor: pointer; white-space: nowrap; }
.orc-drill details[open] { min-width: 24em; }
.orc-drill .orc-bad summary { color: #b00020; }
.orc-drill .orc-good summary { color: #2e7d32; }
.orc-drill pre { white-space: pre-wrap; max-height: 24em; overflow: auto; font-size: 0.85em; margin: 4px 0; }
.orc-drill dl { margin: 4px 0; font-size: 0.88em; }
.orc-drill dt { font-weight: 600; }
.orc-drill dd { margin: 0 0 4px 0; }
"""


def drilldown_html(
    df: pd.DataFrame, issues: Mapping[str, Issue] | Sequence[Issue], *, answer_chars: int = ANSWER_CHARS
) -> Any:
    """The drill-down of a run's results ``df`` over its ``issues`` (by id, or a list: for the prompts and
    titles)."""
    if df.empty:
        return _html("<p>No results to drill into.</p>")
    by_id = dict(issues) if isinstance(issues, Mapping) else {i.id: i for i in issues}
    tasks = _tasks(df)
    nav = " · ".join(f"<a href='#drill-{esc(_slug(t))}'>{esc(t)}</a>" for t in tasks)
    nav += " · <a href='#drill-failures'>failures only</a> · <a href='#drill-disagreements'>disagreements</a>"
    parts = [f"<style>{CSS}{_CSS}</style><div class='orc-drill'><p>Jump to: {nav}</p>"]
    for task in tasks:
        parts.append(_matrix(df[_task_of(df) == task], task, by_id, answer_chars))
    parts.append(_failures(df, by_id, answer_chars))
    parts.append(_disagreements(df, by_id))
    parts.append("</div>")
    return _html("".join(parts))


def _task_of(df: pd.DataFrame) -> pd.Series:
    task = df["task"] if "task" in df.columns else df["mode"]
    return task.fillna(df["mode"]).astype(str)


def _tasks(df: pd.DataFrame) -> list[str]:
    from ..modes import ordered_modes

    return ordered_modes(_task_of(df).unique())


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower())


def _column(row: dict[str, Any]) -> tuple[str, str]:
    return str(row["model"]), str(row.get("prompt") or "default")


def _matrix(df: pd.DataFrame, task: str, by_id: dict[str, Issue], answer_chars: int) -> str:
    records = df.sort_values(["issue_id", "model", "mode", "repeat"]).to_dict("records")
    columns = sorted({_column(r) for r in records})
    prompts = sorted({p for _, p in columns})
    cells: dict[tuple[str, tuple[str, str]], list[dict[str, Any]]] = {}
    modes: dict[tuple[str, str], str] = {}
    for r in records:
        cells.setdefault((str(r["issue_id"]), _column(r)), []).append(r)
        modes[(str(r["issue_id"]), _column(r)[1])] = str(r["mode"])
    label = (lambda c: f"{c[0]} · {c[1]}") if len(prompts) > 1 else (lambda c: c[0])
    head = "".join(f"<th>{esc(label(c))}</th>" for c in columns)
    rows = []
    for issue_id in dict.fromkeys(str(r["issue_id"]) for r in records):
        issue = by_id.get(issue_id)
        title = esc(issue.title if issue else "")
        prompt_cells = "".join(
            _prompt_details(issue, modes.get((issue_id, p)), p, records)
            for p in prompts
            if (issue_id, p) in modes
        )
        first = f"<th><b>{esc(issue_id)}</b><br><small>{title}</small>{prompt_cells}</th>"
        row = "".join(f"<td>{_cell(cells.get((issue_id, c), []), answer_chars)}</td>" for c in columns)
        rows.append(f"<tr>{first}{row}</tr>")
    return (
        f"<h3 id='drill-{esc(_slug(task))}'>{esc(task)}: {len(rows)} issues × {len(columns)} "
        f"{'(model, prompt) pairs' if len(prompts) > 1 else 'models'}</h3>"
        f"<table class='orc-table'><thead><tr><th>issue</th>{head}</tr></thead><tbody>{''.join(rows)}"
        "</tbody></table>"
    )


def _prompt_details(issue: Issue | None, mode: str | None, prompt: str, records: list[dict[str, Any]]) -> str:
    """The messages the variant sent for this issue, rebuilt from its task file when the recorded version is
    the file's current one (else said: the file has changed since the run)."""
    from ..modes import MODES

    spec = MODES.get(mode or "")
    recorded = next(
        (r.get("prompt_version") for r in records if r["mode"] == mode and r.get("prompt_version")), None
    )
    if issue is None or spec is None:
        body = "<p>the prompt cannot be rebuilt here (the issue or the task is not loaded)</p>"
    elif recorded and recorded != spec.version:
        body = f"<p>sent with prompt version {esc(recorded)}; the task file now makes {esc(spec.version)}</p>"
    else:
        try:
            messages = spec.messages(issue)
        except Exception as exc:  # a template that no longer renders: say so, keep the report
            body = f"<p>cannot rebuild the prompt: {esc(exc)}</p>"
        else:
            body = "".join(f"<dt>{esc(m.role)}</dt><dd><pre>{esc(m.content)}</pre></dd>" for m in messages)
            body = f"<dl>{body}</dl>"
    return f"<details><summary>prompt: {esc(prompt)}</summary>{body}</details>"


def _score_text(rows: list[dict[str, Any]]) -> tuple[str, str]:
    scores = [float(r["score"]) for r in rows if _number(r.get("score")) is not None]
    errors = sum(1 for r in rows if r.get("error_type"))
    if errors and not scores:
        return "error", "orc-bad"
    if not scores:
        return "not scored", ""
    mean = sum(scores) / len(scores)
    text = fmt_num(mean, 2) + (f" (mean of {len(scores)})" if len(scores) > 1 else "")
    if errors:
        text += f", {errors} error{'s' if errors > 1 else ''}"
    return text, "orc-good" if mean >= 0.999 else "orc-bad" if mean <= 0.001 else ""


def _cell(rows: list[dict[str, Any]], answer_chars: int) -> str:
    if not rows:
        return "—"
    text, css = _score_text(rows)
    r = rows[0]
    path = _json_list(r.get("fallback_path"))
    served = esc(r.get("served_model") or r["model"])
    if len(path) > 1:
        served += f" <b>(fallback: {esc(' → '.join(path))})</b>"
    facts = [
        ("served by", served),
        (
            "tokens",
            f"{_int(r.get('input_uncached')) + _int(r.get('cache_read'))} in / {_int(r.get('output'))} out",
        ),
        ("cost", esc(fmt_usd(r.get("cost_usd")))),
        ("latency", esc(fmt_s(r.get("latency_s"))) + (" (cached)" if r.get("from_cache") else "")),
    ]
    if r.get("error_type"):
        facts.append(
            ("error", f"<span class='orc-err'>{esc(r['error_type'])}: {esc(r.get('error_message'))}</span>")
        )
    details = _pretty(r.get("scores"))
    if details:
        facts.append(("scorer", f"<pre>{esc(details)}</pre>"))
    answer = str(r.get("text") or "")
    cut = ""
    if len(answer) > answer_chars:
        cut = f"<p><small>cut at {answer_chars:,} of {len(answer):,} characters</small></p>"
        answer = answer[:answer_chars]
    more = f"<p><small>repeat 0 of {len(rows)}</small></p>" if len(rows) > 1 else ""
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in facts)
    return (
        f"<details class='{css}'><summary>{esc(text)}</summary>{more}<dl>{dl}</dl>"
        f"<pre>{esc(answer) or '(empty answer)'}</pre>{cut}</details>"
    )


def _failures(df: pd.DataFrame, by_id: dict[str, Issue], answer_chars: int) -> str:
    bad = df[(df["error_type"].fillna("") != "") | (df["score"] == 0)]
    if bad.empty:
        return "<h3 id='drill-failures'>Failures only</h3><p>No cell failed or scored 0.</p>"
    rows = []
    for r in bad.sort_values(["mode", "issue_id", "model"]).to_dict("records"):
        issue = by_id.get(str(r["issue_id"]))
        rows.append(
            f"<tr><td>{esc(r['mode'])}</td><td>{esc(r['issue_id'])}<br><small>{esc(issue.title if issue else '')}"
            f"</small></td><td>{esc(r['model'])}</td><td>{_cell([r], answer_chars)}</td></tr>"
        )
    return (
        f"<h3 id='drill-failures'>Failures only: {len(rows)} cells (an error, or a score of 0)</h3>"
        "<table class='orc-table'><thead><tr><th>mode</th><th>issue</th><th>model</th><th>cell</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _disagreements(df: pd.DataFrame, by_id: dict[str, Issue]) -> str:
    """Issues where the models' mean scores differ by at least 0.5, or their labels differ (label tasks)."""
    rows = []
    scored = df[df["score"].notna()]
    for (mode, issue_id), group in scored.groupby(["mode", "issue_id"], sort=True):
        means = group.groupby("model")["score"].mean()
        labels = group.groupby("model")["pred_type"].first() if "pred_type" in group else None
        differ = labels is not None and labels.dropna().nunique() > 1
        if len(means) < 2 or (means.max() - means.min() < 0.5 and not differ):
            continue
        issue = by_id.get(str(issue_id))
        each = ", ".join(
            f"{m}: {fmt_num(s, 2)}"
            + (f" ({labels[m]})" if labels is not None and isinstance(labels[m], str) else "")
            for m, s in means.items()
        )
        rows.append(
            f"<tr><td>{esc(mode)}</td><td>{esc(issue_id)}<br><small>{esc(issue.title if issue else '')}</small>"
            f"</td><td>{esc(each)}</td></tr>"
        )
    if not rows:
        return "<h3 id='drill-disagreements'>Disagreements</h3><p>The models agree on every issue.</p>"
    return (
        f"<h3 id='drill-disagreements'>Disagreements: {len(rows)} (issue, mode) pairs</h3>"
        "<table class='orc-table'><thead><tr><th>mode</th><th>issue</th><th>score per model (label)</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _int(value: Any) -> int:
    number = _number(value)
    return int(number) if number is not None else 0


def _pretty(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        return ""
    try:
        return json.dumps(json.loads(value), indent=1, ensure_ascii=False, default=str)
    except json.JSONDecodeError:
        return value
