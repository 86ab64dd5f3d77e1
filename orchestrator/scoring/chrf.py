"""The ``chrf`` scorer: character n-gram F-score (sacrebleu) of an answer against a reference text."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..types import Gold
from .registry import Score, scorer

if TYPE_CHECKING:
    from sacrebleu.metrics import CHRF


@lru_cache(maxsize=1)
def _chrf() -> CHRF:
    from sacrebleu.metrics import CHRF

    return CHRF()


@scorer("chrf", description="chrF of the answer against the gold summary")
def score_summarize(
    gold: Gold, completion_text: str, parsed: dict[str, Any] | None, parse_error: str | None
) -> Score:
    """chrF (sacrebleu, character n-grams, so any language) of the answer against ``gold.summary``.

    ``details["length_ratio"]`` is answer words / reference words (whitespace words).
    """
    ref = (gold.summary or "").strip()
    if not ref:
        return Score(None, {"reason": "gold has no summary"}, "no_gold")
    hyp = (completion_text or "").strip()
    chrf = _chrf().sentence_score(hyp, [ref]).score / 100.0 if hyp else 0.0
    chrf = min(1.0, max(0.0, chrf))
    ref_words, hyp_words = len(ref.split()), len(hyp.split())
    details = {
        "chrf": chrf,
        "length_ratio": hyp_words / ref_words,
        "hyp_words": hyp_words,
        "ref_words": ref_words,
    }
    return Score(chrf, details, "empty_answer" if not hyp else None)
