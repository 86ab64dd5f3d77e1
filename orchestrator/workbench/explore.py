"""Explore issues one at a time: search, an issue card, every model's answer side by side, a widget."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .html import CSS, _html, _is_nan, esc, fmt_num, fmt_s, fmt_usd, no_math, split_list
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


def compare_answers(
    client: LLMClient, issue: Issue, models: Sequence[str] | str, mode: str, *, cache: bool = True
) -> pd.DataFrame:
    """Ask each model about one issue in one mode (concurrently, through the response cache): one row per
    model with the answer, its score against the gold labels, tokens, cost, latency and whether it was cached."""
    import asyncio

    import pandas as pd

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
    cols = [
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
    return pd.DataFrame(rows, columns=cols)


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


def model_status(config: Any, model_id: str) -> str:
    """What a model needs before it can answer, for the picker: free, key set, or the key to set."""
    import os

    from ..providers import provider_info

    spec = config.model_spec(model_id)
    if provider_info(spec.provider).free:
        return "free"
    if spec.api_key_env and not os.environ.get(spec.api_key_env):
        return (
            f"no key: set {spec.api_key_env} (a call falls back)"
            if spec.fallbacks
            else f"no key: set {spec.api_key_env}"
        )
    return "key set" if spec.api_key_env else "no key needed"


def bindable_modes(issues: Sequence[Issue]) -> tuple[list[str], list[str]]:
    """The modes the widget offers for ``issues``, bound to them (a task with ``labels = "dataset"`` takes
    its labels from these issues; a label task gets its floor), and why any other mode is left out."""
    from ..errors import ConfigError
    from ..modes import MODES
    from ..tasks.modes import bind_to_issues

    offered, unbound = [], []
    for name in list(MODES):
        try:
            bind_to_issues([name], issues)
        except ConfigError as exc:
            unbound.append(f"{name} left out: {exc}")
            continue
        offered.append(name)
    return offered, unbound


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

    issues = list(issues)
    offered, unbound = bindable_modes(issues)
    known = client.models()
    chosen = [m for m in split_list(models) if m in known] or known[:2]

    def options(found: Sequence[Issue]) -> list[tuple[str, int]]:
        return [(_clip(f"{i.id} · {i.title}", 110), issues.index(i)) for i in found]

    search = W.Text(
        placeholder="words in the title or body, or label:bug",
        description="Search",
        layout=W.Layout(width="32em"),
    )
    count = W.HTML(value=no_math(f"{len(issues)} issues", "span"))
    picker = W.Dropdown(options=options(issues), description="Issue", layout=W.Layout(width="60em"))
    model_pick = W.SelectMultiple(
        options=[(f"{m} · {model_status(client.config, m)}", m) for m in known],
        value=tuple(chosen),
        description="Models",
        rows=min(8, max(3, len(known))),
        layout=W.Layout(width="28em"),
    )
    mode_pick = W.ToggleButtons(
        options=offered, value=mode if mode in offered else offered[0], description="Mode"
    )
    use_cache = W.Checkbox(value=True, description="use the cache (re-running is free)", indent=False)
    run_button = W.Button(description="Run", button_style="primary", icon="play")
    status = W.HTML(value=no_math(esc("; ".join(unbound)), "span"))
    issue_out, answers_out = W.Output(), W.Output()

    def current() -> Issue | None:
        return issues[picker.value] if picker.value is not None else None

    def on_search(_: Any = None) -> None:
        found = find_issues(issues, search.value)
        picker.options = options(found)
        if found and picker.value is None:
            picker.value = issues.index(found[0])
        count.value = no_math(esc(f"{len(found)} of {len(issues)} issues"), "span")

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
            status.value = no_math(esc("pick an issue and at least one model"), "span")
            return None
        run_button.disabled = True
        status.value = no_math(esc(f"asking {len(model_pick.value)} model(s)…"), "span")
        try:
            frame = compare_answers(
                client, issue, list(model_pick.value), mode_pick.value, cache=use_cache.value
            )
        except Exception as exc:
            from ..errors import redact

            status.value = no_math(f"<span class='orc-err'>{esc(redact(str(exc)))}</span>", "span")
            return None
        finally:
            run_button.disabled = False
        spent = sum(c for c in frame["cost_usd"].fillna(0) if not _is_nan(c))
        failed = int((frame["error"].fillna("") != "").sum())
        fell_back = int((frame["fallback"].fillna("") != "").sum())
        parts = [f"{len(frame) - failed} answered", *([f"{failed} failed"] if failed else [])]
        parts += [
            *([f"{fell_back} by a fallback"] if fell_back else []),
            f"{int(frame['cached'].fillna(False).sum())} cached",
        ]
        done = f"done: {', '.join(parts)}, spent {fmt_usd(spent)}"
        status.value = no_math(esc(done), "span")
        answers_out.clear_output(wait=True)
        with answers_out:
            display(answers_html(frame, issue, mode_pick.value))
        return frame

    def on_mode(_: Any = None) -> None:
        answers_out.clear_output()  # the previous mode's cards and gold are not this mode's answers
        status.value = ""

    search.observe(on_search, names="value")
    picker.observe(on_pick, names="value")
    mode_pick.observe(on_mode, names="value")
    model_pick.observe(on_mode, names="value")
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
    names = ("search", "picker", "models", "mode", "use_cache", "run", "status", "issue_out", "answers_out")
    widgets = (search, picker, model_pick, mode_pick, use_cache, run_button, status, issue_out, answers_out)
    box.controls = SimpleNamespace(**dict(zip(names, widgets, strict=True)))
    box.run = run
    on_pick()
    return box
