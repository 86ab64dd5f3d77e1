"""The ``label`` scorer: the answer's label (parsed from structured output) against the gold label."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..modes import CLASSIFY_SCHEMA, parse_structured
from ..types import Gold
from .registry import Score, scorer

if TYPE_CHECKING:
    pass


def _norm_label(value: Any) -> str:
    """Lowercase, trim, collapse ``-``/``_``/spaces, and drop a plural ``s`` from each word."""
    words = re.split(r"[\s_\-/]+", str(value).strip().lower())
    out = []
    for w in words:
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        if w:
            out.append(w)
    return " ".join(out)


def component_match(predicted: Any, gold: str | None) -> bool | None:
    """Normalized component match (see :func:`_norm_label`), or one name containing the other."""
    if gold is None or not str(gold).strip():
        return None
    if predicted is None:
        return False
    p, g = _norm_label(predicted), _norm_label(gold)
    if not p or not g:
        return False
    return p == g or p in g or g in p


def _label_match(predicted: Any, gold: str | None) -> bool | None:
    if gold is None:
        return None
    return predicted is not None and str(predicted).strip().lower() == gold


@scorer(
    "label", description="the answer's label equals the gold label (classify: type; a task: its gold field)"
)
def score_classify(
    gold: Gold,
    completion_text: str,
    parsed: dict[str, Any] | None,
    parse_error: str | None,
    *,
    field: str = "type",
    key: str = "type",
    labels: list[str] | None = None,
) -> Score:
    """The answer's ``key`` equals the gold ``field`` (1.0) or not (0.0). For classify (the defaults) the
    component and severity matches go into ``details``; a task names its gold field and label set.

    When neither ``parsed`` nor ``parse_error`` is given, the text is parsed here (classify's schema, or the
    task's label schema). A parse failure scores 0.0 and is flagged ``"parse_error"``.
    """
    if (field, key) != ("type", "type"):
        return _score_label(gold, completion_text, parsed, parse_error, field=field, key=key, labels=labels)
    if parsed is None and parse_error is None:
        parsed, parse_error = parse_structured(completion_text or "", CLASSIFY_SCHEMA)
    if gold.type is None:
        return Score(None, {"reason": "gold has no type"}, "no_gold")
    if parsed is None:
        details = {
            "parse_error": parse_error or "no parsed answer",
            "type_correct": False,
            "component_match": None if gold.component is None else False,
            "severity_match": None if gold.severity is None else False,
            "predicted_type": None,
            "predicted_component": None,
            "predicted_severity": None,
        }
        return Score(0.0, details, "parse_error")
    p_type, p_comp, p_sev = parsed.get("type"), parsed.get("component"), parsed.get("severity")
    type_ok = bool(_label_match(p_type, gold.type))
    details = {
        "type_correct": type_ok,
        "component_match": component_match(p_comp, gold.component),
        "severity_match": _label_match(p_sev, gold.severity),
        "predicted_type": p_type,
        "predicted_component": p_comp,
        "predicted_severity": p_sev,
    }
    return Score(1.0 if type_ok else 0.0, details)


def _score_label(
    gold: Gold,
    completion_text: str,
    parsed: dict[str, Any] | None,
    parse_error: str | None,
    *,
    field: str,
    key: str,
    labels: list[str] | None,
) -> Score:
    """A task's label: exact match after trimming and case folding; a label outside ``labels`` scores 0."""
    from ..tasks.loader import label_schema

    expected = gold.value_of(field)
    if expected is None or str(expected).strip() == "":
        return Score(None, {"reason": f"gold has no {field}"}, "no_gold")
    if parsed is None and parse_error is None:
        schema = label_schema(labels) if labels else {"type": "object", "required": [key]}
        parsed, parse_error = parse_structured(completion_text or "", schema)
    predicted = parsed.get(key) if parsed is not None else None
    details = {"predicted_label": predicted, "gold_label": str(expected)}
    if parsed is None:
        return Score(0.0, {**details, "parse_error": parse_error or "no parsed answer"}, "parse_error")
    ok = predicted is not None and str(predicted).strip().casefold() == str(expected).strip().casefold()
    if labels and predicted not in labels:
        details["outside_labels"] = True
    return Score(1.0 if ok else 0.0, details)
