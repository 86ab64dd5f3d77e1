"""The ``key_points`` scorer: the share of the gold key points an explanation states (deterministic)."""

from __future__ import annotations

import os
import re
import unicodedata
from typing import TYPE_CHECKING, Any

from ..types import Gold
from .registry import Score, empty_answer, scorer

if TYPE_CHECKING:
    pass

# Calibrated on tests/scoring/test_scoring.py::CALIBRATION: 10 hand-written explanations of quillweb issues, each
# labelled per gold key point (33 pairs: 21 stated, 12 not; the unstated ones share the issue's
# vocabulary, so it is the hard case). Best agreement, 29/33, holds for any threshold in (0.43, 0.50]:
# 18/21 stated points found (the misses are loose paraphrases), 1/12 unstated points counted.
# 0.45 is the middle of that plateau. Lexical matching cannot see paraphrase; use judge_explain for that.
EXPLAIN_MATCH_THRESHOLD = 0.45

_STOPWORD_TEXT = """a about above after again against all also am an and any are as at be because been before being
    below between both but by can cannot could did do does doing done down during each either else even
    ever every few for from further had has have having he her here hers him his how however i if in into
    is it its itself just let may me might more most much must my neither no nor not now of off on once
    one only or other ought our ours out over own per rather same shall she should since so some such
    than that the their theirs them then there these they this those though through thus to too under
    until up upon us very via was we were what when where whether which while who whom whose why will
    with within without would yet you your yours e g eg ie etc"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[^\W_]+")


def _stem(word: str) -> str:
    """A light, deterministic English suffix stripper (plural, -ing, -ed); other scripts pass through."""
    for suffix, repl in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: len(word) - len(suffix)] + repl
    return word


def _content_tokens(text: str) -> list[str]:
    """Lowercased, NFKC-normalized content-word stems; CJK runs become character bigrams."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    out: list[str] = []
    for word in _WORD.findall(text):
        if _CJK.search(word):
            chars = [c for c in word if c.strip()]
            out.extend(chars if len(chars) < 2 else ["".join(p) for p in zip(chars, chars[1:], strict=False)])
        elif word not in _STOPWORDS:
            out.append(_stem(word))
    return out


def _shared_stem(a: str, b: str) -> bool:
    """Same word up to inflection: a common prefix of >= 4 chars covering all but one char of the shorter."""
    n = len(os.path.commonprefix([a, b]))
    return n >= 4 and n >= min(len(a), len(b)) - 1


def _token_in(token: str, answer: set[str]) -> bool:
    """Exact stem, a shared stem (:func:`_shared_stem`), or a typo (rapidfuzz ratio >= 90)."""
    if token in answer:
        return True
    if len(token) >= 4 and any(_shared_stem(token, a) for a in answer):
        return True
    if len(token) >= 6:
        from rapidfuzz import fuzz, process

        return process.extractOne(token, answer, scorer=fuzz.ratio, score_cutoff=90) is not None
    return False


def key_point_coverage(key_point: str, answer_text: str) -> float:
    """Share of the key point's content words (stems) that the answer states; 0.0 for an empty answer."""
    kp = list(dict.fromkeys(_content_tokens(key_point)))
    if not kp:
        return 0.0
    answer = set(_content_tokens(answer_text))
    if not answer:
        return 0.0
    return sum(_token_in(t, answer) for t in kp) / len(kp)


@scorer("key_points", description="share of the gold key points the answer states")
def score_explain(
    gold: Gold,
    completion_text: str,
    parsed: dict[str, Any] | None,
    parse_error: str | None,
    *,
    threshold: float = EXPLAIN_MATCH_THRESHOLD,
) -> Score:
    """Share of gold key points the answer states: a key point counts when its content-word coverage
    (:func:`key_point_coverage`) reaches ``threshold``. Deterministic; per-point coverage in ``details``."""
    points = [k for k in gold.key_points if k and k.strip()]
    if not points:
        return Score(None, {"reason": "gold has no key points"}, "no_gold")
    text = completion_text or ""
    cover = [key_point_coverage(k, text) for k in points]
    stated = [c >= threshold for c in cover]
    details = {
        "key_points": len(points),
        "key_points_stated": sum(stated),
        "coverage": cover,
        "mean_coverage": sum(cover) / len(cover),
        "threshold": threshold,
    }
    return Score(sum(stated) / len(points), details, "empty_answer" if empty_answer(text) else None)
