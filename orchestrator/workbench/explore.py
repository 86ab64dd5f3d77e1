"""Explore issues one at a time: search, an issue card, every model's answer side by side, a widget."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .html import CSS, _html, esc, fmt_num, fmt_s, fmt_usd, split_list
from .tables import _clip, _gold_brief

if TYPE_CHECKING:
    import pandas as pd

    from ..client.llm_client import LLMClient
    from ..types import Issue


def find_issues(issues: Sequence[Issue], query: str) -> list[Issue]:
    """Issues matching ``query``: every word must occur as a whole word in the id, title, body or labels
    (case-insensitive: "sync" does not find "Async"); ``label:X`` matches a label (or gold type) exactly."""
    words = (query or "").lower().split()
    wanted_labels = [w[6:] for w in words if w.startswith("label:")]
    terms = [t for w in words if not w.startswith("label:") for t in _WORD.findall(w)]
    out = []
    for issue in issues:
        labels = {lab.lower() for lab in issue.labels} | ({issue.gold.type} if issue.gold.type else set())
        hay = set(_WORD.findall(" ".join([issue.id, issue.title, issue.body, *issue.labels]).lower()))
        if all(lab in labels for lab in wanted_labels) and all(t in hay for t in terms):
            out.append(issue)
    return out


_WORD = re.compile(r"\w+")


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


async def ask_models(
    client: LLMClient,
    issue: Issue,
    models: Sequence[str] | str,
    mode: str,
    *,
    cache: bool = True,
    on_answer: Callable[[str, Any], None] | None = None,
    training: Sequence[Issue] | None = None,
) -> list[Any]:
    """Ask each model about ``issue`` in ``mode``, concurrently, through the response cache: a Completion or
    the exception, per model, in order. ``on_answer(model, result)`` is called as each one finishes (the
    widget's progress). Cancelling the task cancels the calls still in flight; finished ones stay cached.
    ``training``: the issues a trained baseline among ``models`` fits on (their dev split; a dev ``issue``
    is answered by a fit without it)."""
    import asyncio

    untrained: dict[str, Exception] = {}
    if training is not None:
        from ..runs.plan import prepare_models

        for model in split_list(models):
            try:
                prepare_models(client.config, [model], [mode], [issue], training, progress=False)
            except Exception as exc:  # the model's row shows why it could not be made ready (trained)
                untrained[model] = exc

    async def one(model: str) -> Any:
        try:
            if model in untrained:
                raise untrained[model]
            result: Any = await client.complete(
                issue, model=model, mode=mode, cache="use" if cache else "off"
            )
        except Exception as exc:  # a failed model is a row with its error, not a failed comparison
            result = exc
        if on_answer is not None:
            on_answer(model, result)
        return result

    return list(await asyncio.gather(*(one(m) for m in split_list(models))))


def stream_answer(
    client: LLMClient,
    issue: Issue,
    model: str,
    mode: str,
    *,
    cache: bool = True,
    every_s: float = 0.1,
) -> Any:
    """Ask one model and show its answer in the cell's output as it arrives (one display, updated at
    most every ``every_s`` seconds), then a line with the time to first token, tokens per second, tokens
    and cost. Returns the Completion; a failure shows the error under what arrived, and is raised."""
    import time

    from IPython.display import display

    from ..errors import StreamInterruptedError
    from ..types import Completion

    handle = display(_streaming_card(model, "", "waiting for the first token…"), display_id=True)
    text, shown = "", 0.0
    try:
        for item in client.stream_sync(issue, model=model, mode=mode, cache="use" if cache else "off"):
            if isinstance(item, Completion):
                handle.update(_streaming_card(model, item.text, _stream_usage(item)))
                return item
            text += item
            if time.monotonic() - shown >= every_s:
                handle.update(_streaming_card(model, text, "streaming…"))
                shown = time.monotonic()
    except Exception as exc:
        partial = exc.partial_text if isinstance(exc, StreamInterruptedError) else text
        handle.update(_streaming_card(model, partial, error_line(exc), error=True))
        raise
    raise AssertionError("the stream ended without its Completion")  # pragma: no cover


def _streaming_card(model: str, text: str, status: str, error: bool = False) -> Any:
    css = "orc-err" if error else "orc-usage"
    return _html(
        f"<style>{CSS}</style><div class='orc-card'><h4>{esc(model)}</h4>"
        f"<div class='{css}'>{esc(status)}</div><pre>{esc(text)}</pre></div>"
    )


def _stream_usage(c: Any) -> str:
    parts = []
    if c.from_cache:
        parts.append("cached (free), arrived whole")
    elif c.ttft_s is not None:
        parts.append(f"first token {fmt_s(c.ttft_s)}")
    if c.output_tps is not None:
        parts.append(f"{c.output_tps:.0f} tok/s")
    parts += [
        f"{c.usage.input_total} in / {c.usage.output_total} out",
        fmt_usd(c.cost_usd),
        fmt_s(c.latency_s),
    ]
    return " · ".join(parts)


def compare_answers(
    client: LLMClient,
    issue: Issue,
    models: Sequence[str] | str,
    mode: str,
    *,
    cache: bool = True,
    training: Sequence[Issue] | None = None,
) -> pd.DataFrame:
    """Ask each model about one issue in one mode (concurrently, through the response cache): one row per
    model with the answer, its score against the gold labels, tokens, cost, latency and whether it was cached."""
    results = client.run_sync(ask_models(client, issue, models, mode, cache=cache, training=training))
    return answers_frame(issue, split_list(models), mode, results)


def answers_frame(issue: Issue, models: Sequence[str], mode: str, results: Sequence[Any]) -> pd.DataFrame:
    """The rows of :func:`compare_answers` for ``results`` (a Completion or an exception per model)."""
    import pandas as pd

    from ..scoring import score

    rows = []
    for model, c in zip(models, results, strict=True):
        if isinstance(c, BaseException):
            rows.append({"model": model, "answer": "", "error": error_line(c)})
            continue
        try:
            value = score(mode, issue.gold, c.text, c.parsed, c.parse_error).value
        except Exception:  # a scorer problem must not hide the answers
            value = None
        rows.append(
            {
                "model": model,
                "served by": c.served_model or c.model,
                "answered by": c.fallback_path[-1] if c.fallback_path else c.model,
                "fallback": "; ".join(c.fallback_reasons),
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
    return pd.DataFrame(rows, columns=ANSWER_COLUMNS)


ANSWER_COLUMNS = [
    "model",
    "answered by",
    "fallback",
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


def error_line(exc: BaseException) -> str:
    """One clean line for a failed answer: the kind once, then what happened (redacted)."""
    from ..errors import ProviderError, redact

    if isinstance(exc, ProviderError):
        return redact(f"{exc.kind}: {exc.detail}")
    return redact(f"{type(exc).__name__}: {exc}")


def _score_label(mode: str | None) -> str:
    """What a card's score covers: classify scores the type only (component and severity are details)."""
    if mode is not None and mode.partition(":")[0] == "classify":
        return "type score"
    return "score"


def answers_html(frame: pd.DataFrame, issue: Issue | None = None, mode: str | None = None) -> Any:
    """Answers side by side (one card per model) with usage, cost and latency; a card answered by another
    model than the one asked (a fallback) says so in its title, with why; everything escaped."""
    cards = []
    for r in frame.to_dict("records"):
        title = esc(r["model"])
        fallback = ""
        answered = r.get("answered by") or r["model"]
        if not r.get("error") and answered != r["model"]:
            title = (
                f"{esc(answered)} <span class='orc-err'>(fallback: {esc(r['model'])} did not answer)</span>"
            )
            fallback = f"<div class='orc-note'>why: {esc(r.get('fallback') or 'not recorded')}</div>"
        if r.get("error"):
            body = f"<pre class='orc-err'>{esc(r['error'])}</pre>"
            usage = ""
        else:
            cached = " · cached (free)" if r.get("cached") else ""
            usage = (
                f"{_score_label(mode)} {fmt_num(r.get('score'), 2)} · {r.get('tokens in')} in / "
                f"{r.get('tokens out')} out · {fmt_usd(r.get('cost_usd'))} · {fmt_s(r.get('latency_s'))}{cached}"
            )
            body = f"<pre>{esc(r.get('answer'))}</pre>"
            if r.get("parsed") and mode is not None and mode.partition(":")[0] == "classify":
                body += f"<div class='orc-usage'>parsed: {esc(r['parsed'])}</div>"
        cards.append(
            f"<div class='orc-card'><h4>{title}</h4>{fallback}<div class='orc-usage'>{esc(usage)}</div>"
            f"{body}</div>"
        )
    gold = ""
    if issue is not None and mode:
        gold = f"<p><b>gold ({esc(mode)}):</b> {esc(_gold_brief(issue, mode))}</p>"
    return _html(f"<style>{CSS}</style>{gold}<div class='orc-cards'>{''.join(cards)}</div>")
