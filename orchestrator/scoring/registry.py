"""What a scorer is, and the one registry where scorers are found by name.

A scorer is a pure function ``(gold, completion_text, parsed, parse_error, **params) -> Score``: it never
raises on model output and never calls the network. Its parameters (``pattern``, ``field``...) are keyword-only
arguments, given by the mode or task that names it; :func:`check_params` checks them before any call. ``Score.value`` is in [0, 1], or ``None`` when the cell cannot
be scored (no gold, judge failure); ``flagged`` says why a score deserves a look (``"parse_error"``,
``"empty_answer"``, ``"no_gold"``, ``"judge_error: ..."``).

Scorers register themselves once with :func:`scorer`; a mode names its scorer (``Mode.scorer``), and
everything else (``score``, the CLI, the docs) looks it up here by name::

    @scorer("exact", description="the answer equals the gold summary")
    def exact(gold, text, parsed, parse_error) -> Score: ...
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..types import Gold

__all__ = [
    "SCORERS",
    "Score",
    "Scorer",
    "ScorerInfo",
    "check_params",
    "empty_answer",
    "get_scorer",
    "scorer",
    "scorer_params",
]


@dataclass(frozen=True)
class Score:
    """One scored cell: ``value`` in [0, 1] or None (not scorable), ``details``, and an optional flag."""

    value: float | None
    details: dict[str, Any] = field(default_factory=dict)
    flagged: str | None = None

    def __post_init__(self) -> None:
        if self.value is not None and not (0.0 <= self.value <= 1.0):
            raise ValueError(f"score value must be in [0, 1] or None, got {self.value!r}")


Scorer = Callable[[Gold, str, "dict[str, Any] | None", "str | None"], Score]


@dataclass(frozen=True)
class ScorerInfo:
    """A registered scorer: its name, the function, and one line saying what it measures.

    ``asks`` is set for a scorer that grades by asking a model (``judge``): an async
    ``(client, model, issue, text, *, ledger, **params) -> Score`` that the grid and ``orchestrator score``
    call with a client; ``fn`` is then what scoring without a client gives (an unscored, flagged cell).
    """

    name: str
    fn: Scorer
    description: str = ""
    asks: Callable[..., Any] | None = None


SCORERS: dict[str, ScorerInfo] = {}


def scorer(
    name: str, *, description: str = "", asks: Callable[..., Any] | None = None
) -> Callable[[Scorer], Scorer]:
    """Register the decorated function as the scorer ``name`` (a second registration of a name is an error);
    ``asks``: the model-asking grader of a judge-like scorer (see :class:`ScorerInfo`)."""

    def register(fn: Scorer) -> Scorer:
        known = SCORERS.get(name)
        reloaded = known is not None and (known.fn.__module__, known.fn.__qualname__) == (
            fn.__module__,
            fn.__qualname__,
        )  # a project's scorer file run again by a second load of its config
        if known is not None and known.fn is not fn and not reloaded:
            raise ValueError(
                f"a scorer named {name!r} is already registered ({SCORERS[name].fn.__qualname__})"
            )
        doc = (fn.__doc__ or "").strip().splitlines()
        SCORERS[name] = ScorerInfo(name, fn, description or (doc[0] if doc else ""), asks)
        return fn

    return register


def get_scorer(name: str) -> Scorer:
    """The scorer registered as ``name``; an unknown name is a ValueError that lists the known ones."""
    try:
        return SCORERS[name].fn
    except KeyError:
        raise ValueError(f"no scorer named {name!r}; known: {', '.join(sorted(SCORERS))}") from None


def scorer_params(name: str) -> tuple[str, ...]:
    """The parameters scorer ``name`` accepts: its keyword-only arguments (``pattern``, ``field``, ...)."""
    fn = get_scorer(name)
    return tuple(
        p.name for p in inspect.signature(fn).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY
    )


def check_params(name: str, params: dict[str, Any]) -> list[str]:
    """Problems with ``params`` for scorer ``name`` (unknown scorer, unknown or missing parameter), as text."""
    try:
        accepted = scorer_params(name)
    except ValueError as exc:
        return [str(exc)]
    fn = get_scorer(name)
    unknown = sorted(set(params) - set(accepted))
    problems = [
        f"scorer {name!r} takes no parameter {p!r} (it takes: {', '.join(accepted) or 'none'})"
        for p in unknown
    ]
    validate = getattr(fn, "check_params", None)
    if not problems and validate is not None:
        problems += validate(**params)
    return problems


def empty_answer(text: str | None) -> bool:
    """Whether an answer is empty or whitespace only (scored, but flagged ``"empty_answer"``)."""
    return not (text or "").strip()
