"""The explore widget: pick an issue, models and a mode, Run; the answers arrive as cards.

A run goes to the client's own event loop (its background thread), so the kernel stays free while models
answer: the status counts answers as they come, a Cancel button stops the calls still in flight (the
finished ones are cached), and changing the issue, the models or the mode clears the cards of the last run
and cancels it. Whatever ends a run (answers, an error, Cancel, an interrupt) puts the buttons back.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .explore import answers_frame, answers_html, ask_models, error_line, find_issues, issue_card
from .html import _is_nan, esc, fmt_usd, no_math, split_list
from .tables import _clip

if TYPE_CHECKING:
    import pandas as pd

    from ..client.llm_client import LLMClient
    from ..types import Issue

__all__ = ["bindable_modes", "explore_widget", "model_status"]


def model_status(config: Any, model_id: str) -> str:
    """What a model needs before it can answer, for the picker: a local server up or not (a 0.3 s connect,
    loopback only), free, key set, or the key to set."""
    import os

    from ..providers import provider_info

    spec = config.model_spec(model_id)
    server = _local_server(spec.base_url)
    if server is not None:  # a server on this machine: whether it answers is what the user needs to know
        up = _reachable(*server)
        return f"server {'up' if up else 'not reachable'} at {server[0]}:{server[1]}"
    if provider_info(spec.provider).free:
        return "free"
    if spec.api_key_env and not os.environ.get(spec.api_key_env):
        hint = " (a call falls back)" if spec.fallbacks else ""
        return f"no key: set {spec.api_key_env}{hint}"
    return "key set" if spec.api_key_env else "no key needed"


_LOOPBACK = ("127.0.0.1", "localhost", "::1", "0.0.0.0")


def _local_server(base_url: str | None) -> tuple[str, int] | None:
    """(host, port) of a ``base_url`` on this machine, else None (remote APIs are never probed)."""
    from urllib.parse import urlsplit

    if not base_url:
        return None
    parts = urlsplit(base_url)
    if parts.hostname not in _LOOPBACK:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _reachable(host: str, port: int, timeout: float = 0.3) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


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


def _done_text(frame: pd.DataFrame) -> str:
    spent = sum(c for c in frame["cost_usd"].fillna(0) if not _is_nan(c))
    failed = int((frame["error"].fillna("") != "").sum())
    fell_back = int((frame["fallback"].fillna("") != "").sum())
    parts = [f"{len(frame) - failed} answered", *([f"{failed} failed"] if failed else [])]
    parts += [*([f"{fell_back} by a fallback"] if fell_back else [])]
    parts.append(f"{int(frame['cached'].fillna(False).sum())} cached")
    return f"done: {', '.join(parts)}, spent {fmt_usd(spent)}"


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
    The returned VBox has ``controls`` (the widgets by name) and ``run(wait=True)`` (what the Run button
    does, without waiting: ``wait=False``)."""
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
    cancel_button = W.Button(description="Cancel", icon="stop", layout=W.Layout(display="none"))
    status = W.HTML(value=no_math(esc("; ".join(unbound)), "span"))
    issue_out, answers_out = W.Output(), W.Output()
    state: dict[str, Any] = {"future": None, "frame": None}

    def say(text: str, error: bool = False) -> None:
        inner = f"<span class='orc-err'>{esc(text)}</span>" if error else esc(text)
        status.value = no_math(inner, "span") if text else ""

    def current() -> Issue | None:
        return issues[picker.value] if picker.value is not None else None

    def idle() -> None:
        run_button.disabled = False
        cancel_button.layout.display = "none"

    def cancel(_: Any = None) -> None:
        future = state["future"]
        if future is not None and not future.done():
            future.cancel()

    def on_search(_: Any = None) -> None:
        found = find_issues(issues, search.value)
        picker.options = options(found)
        if found and picker.value is None:
            picker.value = issues.index(found[0])
        count.value = no_math(esc(f"{len(found)} of {len(issues)} issues"), "span")

    def show_card() -> None:
        issue_out.clear_output()
        issue = current()
        if issue is not None:
            with issue_out:
                display(issue_card(issue))

    def on_pick(_: Any = None) -> None:
        on_change()
        show_card()

    def on_change(_: Any = None) -> None:
        cancel()  # the running comparison is not this selection's
        answers_out.outputs = ()  # nor are the last run's cards and gold (works from any thread)
        say("")

    def run(_: Any = None, *, wait: bool = True) -> pd.DataFrame | None:
        issue = current()
        if issue is None or not model_pick.value:
            say("pick an issue and at least one model")
            return None
        cancel()
        chosen_models, chosen_mode, n = list(model_pick.value), mode_pick.value, len(model_pick.value)
        answered: list[str] = []

        def on_answer(model: str, result: Any) -> None:
            answered.append(model)
            failed = " (failed)" if isinstance(result, BaseException) else ""
            say(f"{len(answered)} of {n} answered, last: {model}{failed}…")

        # "asking" is shown before the first answer can arrive: a fast model answers before submit() returns
        run_button.disabled = True
        cancel_button.layout.display = ""
        say(f"asking {n} model(s)…")
        state["frame"] = None
        coro = ask_models(
            client,
            issue,
            chosen_models,
            chosen_mode,
            cache=use_cache.value,
            on_answer=on_answer,
            training=issues,
        )
        future = client.submit(coro)
        state["future"] = future

        def finish(done: concurrent.futures.Future) -> None:
            if state["future"] is not done:
                return  # a newer run owns the panel
            idle()
            if done.cancelled():
                say(f"cancelled: {len(answered)} of {n} answered (those are cached; Run again to finish)")
                return
            exc = done.exception()
            if exc is not None:
                say(error_line(exc), error=True)
                return
            frame = answers_frame(issue, chosen_models, chosen_mode, done.result())
            state["frame"] = frame
            answers_out.outputs = ()
            answers_out.append_display_data(answers_html(frame, issue, chosen_mode))
            say(_done_text(frame))

        if not wait:
            future.add_done_callback(finish)
            return None
        try:
            concurrent.futures.wait([future])
        except KeyboardInterrupt:
            future.cancel()
            concurrent.futures.wait([future], timeout=5)
        finally:
            finish(future)
        return state["frame"]

    search.observe(on_search, names="value")
    picker.observe(on_pick, names="value")
    mode_pick.observe(on_change, names="value")
    model_pick.observe(on_change, names="value")
    run_button.on_click(lambda _: run(wait=False))
    cancel_button.on_click(cancel)
    box = W.VBox(
        [
            W.HBox([search, count]),
            picker,
            W.HBox([model_pick, W.VBox([mode_pick, use_cache, W.HBox([run_button, cancel_button, status])])]),
            issue_out,
            answers_out,
        ]
    )
    names = (
        "search",
        "picker",
        "models",
        "mode",
        "use_cache",
        "run",
        "cancel",
        "status",
        "issue_out",
        "answers_out",
    )
    widgets = (
        search,
        picker,
        model_pick,
        mode_pick,
        use_cache,
        run_button,
        cancel_button,
        status,
        issue_out,
        answers_out,
    )
    box.controls = SimpleNamespace(**dict(zip(names, widgets, strict=True)))
    box.run = run
    show_card()
    return box
