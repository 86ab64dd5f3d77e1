"""What each provider accepts for the sampling parameters, so a value it would refuse is refused first.

The config loader checks a model's own values and its per-mode overrides; the client checks per-call
overrides (:func:`check_call_params`). Each range names where it comes from in the providers' API
descriptions (``shared/specs``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import BadRequestError

if TYPE_CHECKING:
    from ..config import ModelSpec

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT64 = (0, 2**64 - 1)


@dataclass(frozen=True)
class SamplingRanges:
    """Inclusive (low, high) bounds a provider accepts; ``None``: the parameter is never sent."""

    temperature: tuple[float, float] | None
    top_p: tuple[float, float] | None
    seed: tuple[int, int] | None
    source: str


# The same limits as orchestrator.config's fields: used where a provider's description states none.
_GENERIC = ((0.0, 2.0), (0.0, 1.0), INT64)

#: The limits of orchestrator.config's own fields: for a provider whose description states none.
GENERIC = SamplingRanges(*_GENERIC, source="no API description states ranges; the config's own limits apply")

# provider: (temperature, top_p, seed) bounds, then where each comes from in the API descriptions under
# shared/specs/ (see its README).
_BOUNDS = {
    "openai": ((0.0, 2.0), (0.0, 1.0), INT64),
    "openrouter": ((0.0, 2.0), (0.0, 1.0), INT64),
    "anthropic": ((0.0, 1.0), (0.0, 1.0), None),
    "cohere": ((0.0, 1.0), (0.0, 1.0), UINT64),
    "gemini": ((0.0, 2.0), (0.0, 1.0), INT32),
    "ollama": _GENERIC,
    "local": _GENERIC,
    "baseline": _GENERIC,
}
_SOURCES = {
    "openai": "openai.openapi.yaml CreateChatCompletionRequest: temperature minimum 0 maximum 2, top_p minimum 0 "
    "maximum 1, seed int64 (printed as +/-9223372036854776000)",
    "openrouter": "no description in shared/specs; OpenRouter takes the OpenAI request shape, so OpenAI's ranges",
    "anthropic": "anthropic.openapi.yaml CreateMessageParams: temperature minimum 0 maximum 1, top_p minimum 0 "
    "maximum 1; no seed field (the adapter does not send one)",
    "cohere": "cohere.openapi.yaml POST /v2/chat: temperature minimum 0 maximum 1; seed minimum 0 maximum "
    "18446744073709552000 (2**64 as a float: uint64); p must be in [0.01, 0.99], which the adapter "
    "clamps top_p to, so any top_p in [0, 1] can be sent",
    "gemini": "gemini.openapi.json GenerationConfig: temperature 'Values can range from [0.0, 2.0]'; topP "
    "states no range (a probability: [0, 1]); seed format int32",
    "ollama": "ollama.openapi.yaml ModelOptions: temperature, top_p and seed state no range; the config's "
    "own limits apply",
    "local": "in-process llama.cpp, no API description; the config's own limits apply",
    "baseline": "the rule baseline samples nothing; the config's own limits apply",
}
SAMPLING_RANGES: dict[str, SamplingRanges] = {
    name: SamplingRanges(*bounds, source=_SOURCES[name]) for name, bounds in _BOUNDS.items()
}


def _show(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return f"{float(value):g}"


def _real_problem(name: str, value: Any, bounds: tuple[float, float] | None, provider: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"{name} must be a number (got {_show(value)})"
    if not math.isfinite(float(value)):
        return f"{name} must be a finite number (got {_show(value)})"
    if bounds is not None and not bounds[0] <= float(value) <= bounds[1]:
        low, high = bounds
        return f"{name} {_show(value)} is outside what {provider} accepts ({_show(low)} to {_show(high)})"
    return None


def _int_problem(name: str, value: Any, bounds: tuple[int, int] | None, provider: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return f"{name} must be a whole number (got {_show(value)})"
    if bounds is not None and not bounds[0] <= int(value) <= bounds[1]:
        low, high = bounds
        return f"{name} {_show(value)} is outside what {provider} accepts ({low} to {high})"
    return None


def sampling_problems(provider: str, params: Mapping[str, Any]) -> list[str]:
    """Human messages for the values of ``params`` that ``provider`` would refuse (empty: all fine).

    Checks ``temperature``, ``top_p``, ``seed`` (against :data:`SAMPLING_RANGES`) and ``max_tokens``
    (a whole number >= 1); ``None`` means "not given"; other keys are not looked at.
    """
    from .registry import provider_info

    ranges = provider_info(provider).sampling
    problems: list[str] = []
    for name in ("temperature", "top_p"):
        value = params.get(name)
        if value is not None:
            problem = _real_problem(name, value, getattr(ranges, name), provider)
            if problem:
                problems.append(problem)
    seed = params.get("seed")
    if seed is not None:
        problem = _int_problem("seed", seed, ranges.seed, provider)
        if problem:
            problems.append(problem)
    max_tokens = params.get("max_tokens")
    if max_tokens is not None:
        problem = _int_problem("max_tokens", max_tokens, None, provider)
        if problem is None and max_tokens < 1:
            problem = f"max_tokens must be at least 1 (got {max_tokens})"
        if problem:
            problems.append(problem)
    return problems


def check_call_params(spec: ModelSpec, params: Mapping[str, Any]) -> None:
    """Refuse per-call parameters ``spec``'s provider would answer with HTTP 400, before anything is sent.

    Raises :class:`~orchestrator.errors.BadRequestError` naming the provider and the model id.
    """
    problems = sampling_problems(spec.provider, params)
    if problems:
        raise BadRequestError("; ".join(problems) + "; not sent", provider=spec.provider, model=spec.id)


# llama.cpp sampling fields the embedded model takes from ``options.sampling`` (beyond the common parameters),
# each with the type and range llama.cpp's server accepts
LOCAL_SAMPLING: dict[str, tuple[type, float | None, float | None]] = {
    "repeat_penalty": (float, 0.0, None),
    "repeat_last_n": (int, -1, None),
    "presence_penalty": (float, -2.0, 2.0),
    "frequency_penalty": (float, -2.0, 2.0),
    "dry_multiplier": (float, 0.0, None),
    "dry_base": (float, 1.0, None),
    "dry_allowed_length": (int, 0, None),
    "dry_penalty_last_n": (int, -1, None),
    "top_k": (int, 0, None),
    "min_p": (float, 0.0, 1.0),
}
MAX_LOCAL_SLOTS = 16


def local_option_problems(options: Mapping[str, Any]) -> list[str]:
    """What is wrong with an embedded model's ``options.slots`` and ``options.sampling`` (empty: fine)."""
    problems: list[str] = []
    slots = options.get("slots")
    if slots is not None and (
        isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= MAX_LOCAL_SLOTS
    ):
        problems.append(f"key 'options.slots': a whole number from 1 to {MAX_LOCAL_SLOTS}, got {slots!r}")
    sampling = options.get("sampling")
    if sampling is None:
        return problems
    if not isinstance(sampling, Mapping):
        return [*problems, f"key 'options.sampling': a table of llama.cpp sampling fields, got {sampling!r}"]
    for name, value in sampling.items():
        if name == "stop":
            if not (isinstance(value, list) and all(isinstance(v, str) and v for v in value)):
                problems.append(f"key 'options.sampling.stop': a list of non-empty strings, got {value!r}")
            continue
        if name not in LOCAL_SAMPLING:
            known = ", ".join([*LOCAL_SAMPLING, "stop"])
            problems.append(f"key 'options.sampling.{name}': not a llama.cpp sampling field (known: {known})")
            continue
        kind, low, high = LOCAL_SAMPLING[name]
        ok = not isinstance(value, bool) and isinstance(value, (int, float) if kind is float else int)
        if ok and isinstance(value, float) and value != value:
            ok = False
        if not ok or (low is not None and value < low) or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
            problems.append(f"key 'options.sampling.{name}': {kind.__name__} {bounds}, got {value!r}")
    return problems
