"""Scorers: pure functions from (gold, answer) to a :class:`Score`, found by name, plus an optional LLM judge.

One module per scorer, each registering itself with :func:`scorer` (see :mod:`.registry`):

- ``label`` (:mod:`.labels`): the classify answer's type against the gold type;
- ``files`` (:mod:`.files`): the share of the fix's gold files an answer names;
- ``chrf`` (:mod:`.chrf`): character n-gram F-score of a summary against the reference;
- ``key_points`` (:mod:`.key_points`): the share of gold key points an explanation states;
- ``contains``, ``regex``, ``json_field`` (:mod:`.matching`): generic matches against a gold field any task
  names, configured by parameters (:func:`check_params` checks them);
- :mod:`.judge`: an LLM judge (rubric 1-5) through the client, so judge calls are cached and costed.

A mode names its scorer (``Mode.scorer``); :func:`score` scores one answer of a mode with it. Scorers never
raise on model output and never call the network; only :func:`judge_explain` does.
"""

from __future__ import annotations

import functools
from typing import Any

from ..types import Gold
from .chrf import score_summarize
from .files import extract_paths, has_code_change, path_matches, score_fix
from .judge import JUDGE_SYSTEM, build_judge_messages, judge_explain, parse_judge_score
from .key_points import EXPLAIN_MATCH_THRESHOLD, key_point_coverage, score_explain
from .labels import component_match, score_classify
from .matching import score_contains, score_json_field, score_regex
from .registry import SCORERS, Score, Scorer, ScorerInfo, check_params, get_scorer, scorer, scorer_params

__all__ = [
    "EXPLAIN_MATCH_THRESHOLD",
    "JUDGE_SYSTEM",
    "SCORERS",
    "Score",
    "Scorer",
    "ScorerInfo",
    "build_judge_messages",
    "check_params",
    "component_match",
    "extract_paths",
    "get_scorer",
    "has_code_change",
    "judge_explain",
    "key_point_coverage",
    "parse_judge_score",
    "path_matches",
    "score",
    "score_classify",
    "score_contains",
    "score_explain",
    "score_fix",
    "score_json_field",
    "score_regex",
    "score_summarize",
    "scorer",
    "scorer_for_mode",
    "scorer_params",
]


def scorer_for_mode(mode: str) -> Scorer:
    """The scorer a mode names (``Mode.scorer``), with the mode's parameters bound."""
    from ..modes import MODES

    try:
        spec = MODES[mode]
    except KeyError:
        raise ValueError(f"no scorer for mode {mode!r}; known modes: {', '.join(MODES)}") from None
    fn = get_scorer(spec.scorer)
    return functools.partial(fn, **spec.scorer_params) if spec.scorer_params else fn


def score(
    mode: str, gold: Gold, text: str, parsed: dict[str, Any] | None = None, parse_error: str | None = None
) -> Score:
    """Score one answer with the scorer of ``mode`` (and the parameters the mode gives it)."""
    return scorer_for_mode(mode)(gold, text, parsed, parse_error)
