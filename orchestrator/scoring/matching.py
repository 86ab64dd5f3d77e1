"""Generic scorers for any task: ``contains``, ``regex`` and ``json_field``, each configured by parameters.

They compare an answer with a gold field the task names (``field = "priority"`` reads ``gold.priority``,
declared or extra) or with a fixed value given as a parameter. Matching is on the answer text as the model
wrote it; ``ignore_case`` folds case on both sides. A gold field that is absent makes the cell unscored
(``no_gold``), never 0.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..modes import parse_structured
from ..types import Gold
from .registry import Score, empty_answer, scorer

__all__ = ["score_contains", "score_json_field", "score_regex"]


def _expected(gold: Gold, field: str | None, value: Any) -> Any:
    return value if value is not None else (gold.value_of(field) if field else None)


def _fold(text: str, ignore_case: bool) -> str:
    return text.casefold() if ignore_case else text


@scorer(
    "contains", description="the answer contains the gold field's text (a list field: the share of items)"
)
def score_contains(
    gold: Gold,
    completion_text: str,
    parsed: dict[str, Any] | None,
    parse_error: str | None,
    *,
    field: str | None = None,
    text: str | None = None,
    ignore_case: bool = True,
) -> Score:
    """1.0 when the answer contains ``text`` (or the gold ``field``); for a list field, the share contained."""
    expected = _expected(gold, field, text)
    answer = _fold(completion_text or "", ignore_case)
    items = (
        [str(v) for v in expected]
        if isinstance(expected, list)
        else []
        if expected is None
        else [str(expected)]
    )
    items = [i for i in items if i.strip()]
    if not items:
        return Score(None, {"reason": f"gold has no {field or 'text'}"}, "no_gold")
    found = [i for i in items if _fold(i, ignore_case) in answer]
    details = {"expected": items[:50], "found": found[:50]}
    return Score(len(found) / len(items), details, "empty_answer" if empty_answer(completion_text) else None)


def _check_contains(
    *, field: str | None = None, text: str | None = None, ignore_case: bool = True
) -> list[str]:
    return [] if field or text else ["scorer 'contains' needs 'field' (a gold field) or 'text'"]


score_contains.check_params = _check_contains  # type: ignore[attr-defined]


@scorer("regex", description="the answer matches a regular expression (given, or the gold field's value)")
def score_regex(
    gold: Gold,
    completion_text: str,
    parsed: dict[str, Any] | None,
    parse_error: str | None,
    *,
    pattern: str | None = None,
    field: str | None = None,
    ignore_case: bool = False,
) -> Score:
    """1.0 when ``pattern`` (or the gold ``field``'s value, as a pattern) is found in the answer, else 0.0."""
    expected = _expected(gold, field, pattern)
    if expected is None or not str(expected):
        return Score(None, {"reason": f"gold has no {field or 'pattern'}"}, "no_gold")
    try:
        compiled = re.compile(str(expected), re.IGNORECASE if ignore_case else 0)
    except re.error as exc:  # a gold value that is not a valid pattern: the cell cannot be scored
        return Score(None, {"reason": f"not a regular expression: {exc}"}, "no_gold")
    match = compiled.search(completion_text or "")
    details = {"pattern": str(expected)[:200], "match": match.group(0)[:200] if match else None}
    return Score(1.0 if match else 0.0, details, "empty_answer" if empty_answer(completion_text) else None)


def _check_regex(
    *, pattern: str | None = None, field: str | None = None, ignore_case: bool = False
) -> list[str]:
    if pattern is None:
        return [] if field else ["scorer 'regex' needs 'pattern' or 'field' (a gold field holding patterns)"]
    try:
        re.compile(pattern)
    except re.error as exc:
        return [f"scorer 'regex': pattern {pattern!r} is not a regular expression ({exc})"]
    return []


score_regex.check_params = _check_regex  # type: ignore[attr-defined]


@scorer("json_field", description="a field of the JSON answer equals the gold field (or a given value)")
def score_json_field(
    gold: Gold,
    completion_text: str,
    parsed: dict[str, Any] | None,
    parse_error: str | None,
    *,
    path: str = "label",
    field: str | None = None,
    value: Any = None,
    ignore_case: bool = True,
) -> Score:
    """1.0 when the answer's JSON value at ``path`` (dots for nesting) equals the gold ``field`` (default: the
    path's last part) or ``value``; an answer that is not JSON scores 0.0, flagged ``parse_error``."""
    expected = _expected(gold, field or path.rsplit(".", 1)[-1], value)
    if expected is None or expected == "":
        return Score(None, {"reason": f"gold has no {field or path}"}, "no_gold")
    if parsed is None:
        parsed, parse_error = parse_structured(completion_text or "", {})
    found: Any = parsed
    for part in path.split("."):
        found = found.get(part) if isinstance(found, dict) else None
    details = {"path": path, "expected": expected, "found": found}
    if parsed is None:
        return Score(0.0, {**details, "parse_error": parse_error or "not JSON"}, "parse_error")
    same = _canonical(found, ignore_case) == _canonical(expected, ignore_case)
    return Score(1.0 if same else 0.0, details)


def _canonical(value: Any, ignore_case: bool) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text.strip().casefold() if ignore_case else text.strip()
