"""A cascade: a fallback triggered by a check on the response, not by an error.

Ask the cheap model first; if :func:`self_check` of its answer is below the threshold, ask the next one
(as pydantic-ai's ``FallbackModel`` with ``fallback_on`` a check). It lives with the client because the
client follows a ``[routing.<mode>.cascade]`` entry on every call; the check needs no gold label.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import errors as E

if TYPE_CHECKING:
    from ..types import Completion, Issue


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def self_check(mode: str, text: str | None, parsed: Any = None, parse_error: str | None = None) -> float:
    """A cheap, gold-free check of one answer, in [0, 1]; the cascade escalates when it is below a threshold.

    - classify: 0 when the answer failed to parse into the label schema, else 1.
    - fix: 0.5 for naming a file path + 0.5 for a code change (a unified diff or a fenced code block).
    - summarize: 0 when empty, 1 for 10-200 words, else 0.3.
    - explain: 0 when empty, 1 for 30-300 words, else 0.3.
    - any other task (a task file): with an output schema (a label task), 0 when the answer failed to parse
      into it, else 1; without one, 0 when empty, else 1.

    A prompt variant is checked as its task (``classify:terse`` as classify). ``parsed`` may be a dict or its
    JSON text (as stored in the results database); NaN reads as missing.
    """
    text = "" if is_missing(text) else str(text)
    parse_error = None if is_missing(parse_error) or parse_error == "" else str(parse_error)
    task = mode.partition(":")[0]
    if task not in ("classify", "fix", "summarize", "explain"):
        return _task_check(mode, text, parsed, parse_error)
    mode = task
    if mode == "classify":
        if parse_error is not None:
            return 0.0
        if isinstance(parsed, dict):
            return 1.0
        if isinstance(parsed, str) and parsed.strip() not in ("", "null"):
            try:
                return 1.0 if isinstance(json.loads(parsed), dict) else 0.0
            except json.JSONDecodeError:
                return 0.0
        if not text.strip():
            return 0.0
        from ..modes import CLASSIFY_SCHEMA, parse_structured

        value, error = parse_structured(text, CLASSIFY_SCHEMA)
        return 1.0 if value is not None and error is None else 0.0
    if mode == "fix":
        from ..scoring import extract_paths, has_code_change

        score = 0.5 if extract_paths(text) else 0.0
        return score + (0.5 if has_code_change(text)["has_code_change"] else 0.0)
    bounds = {"summarize": (10, 200), "explain": (30, 300)}
    if mode in bounds:
        words = len(text.split())
        if words == 0:
            return 0.0
        lo, hi = bounds[mode]
        return 1.0 if lo <= words <= hi else 0.3
    raise AssertionError(mode)  # unreachable: the four shipped tasks are handled above


def _task_check(mode: str, text: str, parsed: Any, parse_error: str | None) -> float:
    from ..modes import MODES, parse_structured

    spec = MODES.get(mode)
    if spec is None:
        raise ValueError(f"no self-check for mode {mode!r}: not a known mode ({', '.join(MODES)})")
    if spec.schema is None:
        return 1.0 if text.strip() else 0.0
    if parse_error is not None:
        return 0.0
    if isinstance(parsed, dict):
        return 1.0
    value, error = parse_structured(text, spec.schema)
    return 1.0 if value is not None and error is None else 0.0


def cascade_models(cascade: Mapping[str, Any]) -> tuple[list[str], float]:
    models = [str(m) for m in cascade.get("models", [])]
    if not models:
        raise E.ConfigError(f"a cascade needs models = [cheap, ..., strong]; got {dict(cascade)!r}")
    threshold = float(cascade.get("threshold", 0.5))
    if not 0.0 <= threshold <= 1.0:
        raise E.ConfigError(f"cascade threshold must be in [0, 1], got {threshold}")
    return models, threshold


def cascade_steps(cascade: Mapping[str, Any], mode: str) -> list[tuple[str, str]]:
    """The (model, mode) of each step: the cascade's ``prompts`` (one per model, optional) name the prompt
    variant each step asks with, e.g. a terse prompt on the cheap model and the default on the strong one;
    without them every step asks with ``mode`` (the routed variant)."""
    models, _ = cascade_models(cascade)
    prompts = cascade.get("prompts")
    if prompts is None:
        return [(m, mode) for m in models]
    if not isinstance(prompts, list) or len(prompts) != len(models):
        raise E.ConfigError(
            f"cascade prompts must list one prompt per model ({len(models)}); got {prompts!r}"
        )
    from ..modes import get_mode

    task = get_mode(mode).task_name
    return [
        (model_id, get_mode(task if prompt == "default" else f"{task}:{prompt}").name)
        for model_id, prompt in zip(models, prompts, strict=True)
    ]


async def complete_cascade(
    client: Any, prompt_or_issue: Issue | str | None, mode: str, cascade: Mapping[str, Any], **kw: Any
) -> Completion:
    """Ask the cascade's models in order; return the first answer whose :func:`self_check` reaches the
    threshold (else the last model's answer).

    ``cascade`` is ``{"models": [cheap, ..., strong], "threshold": 0.5}``, optionally with ``"prompts"``
    (see :func:`cascade_steps`); ``mode`` is the routed prompt variant. The returned completion's
    ``fallback_path`` lists every model called (including any configured fallbacks a call went through),
    ``cost_usd`` is summed over the calls (None when any cost is unknown) and ``latency_s`` too. A model
    whose whole chain fails counts as a failed check: the next model is asked (the last one's error is raised).
    """
    if "model" in kw:
        raise TypeError("complete_cascade() takes its models from cascade['models'], not model=")
    _, threshold = cascade_models(cascade)
    steps = cascade_steps(cascade, mode)
    # a streamed cascade hands on the chosen answer only: a cheap answer that fails its check is not shown
    on_delta = kw.pop("on_delta", None)
    if on_delta is not None:
        kw["stream"] = True
    path: list[str] = []
    costs: list[float | None] = []
    charged = 0.0
    latency = 0.0
    chosen: Completion | None = None
    for i, (model_id, step_mode) in enumerate(steps):
        last = i == len(steps) - 1
        try:
            completion = await client.complete(prompt_or_issue, model=model_id, mode=step_mode, **kw)
        except E.BudgetExceededError:
            raise
        except E.ProviderError as exc:
            path.extend(getattr(exc, "fallback_path", None) or [model_id])
            if last:
                exc.fallback_path = list(path)
                raise
            continue
        path.extend(completion.fallback_path or [model_id])
        costs.append(completion.cost_usd)
        charged += completion.charged_usd or 0.0
        latency += completion.latency_s
        chosen = completion
        if (
            last
            or self_check(step_mode, completion.text, completion.parsed, completion.parse_error) >= threshold
        ):
            break
    assert chosen is not None  # the loop either breaks with an answer or raises on the last model
    if on_delta is not None and chosen.text:
        on_delta(chosen.text)
    total = None if any(c is None for c in costs) else float(sum(c for c in costs if c is not None))
    return chosen.model_copy(
        update={"fallback_path": path, "cost_usd": total, "charged_usd": charged, "latency_s": latency}
    )
