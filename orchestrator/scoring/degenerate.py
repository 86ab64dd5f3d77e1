"""Degenerate answers: text stuck in a loop, told apart from text that is merely regular.

Definition. An answer is *degenerate* when any of three tests fires:

1. **Loop** (short period): somewhere in the text one unit of 1 to :data:`MAX_PERIOD` tokens, holding at
   least one letter or digit, is repeated back to back at least :data:`MIN_REPEATS` times, e.g.
   ``3.0.1.1.1.1.1.1`` (unit ``. 1``) or ``the the the ...``.
2. **Repetition** (long period): the text has at least :data:`MIN_NGRAMS` word 5-grams and at least
   :data:`MAX_REPEAT_SHARE` of them already occurred earlier in the text, e.g. a sentence or a paragraph
   said again and again;
3. **Repeated sentence**: one sentence or line of at least :data:`MIN_SENTENCE_WORDS` words occurs
   :data:`MIN_SENTENCE_COPIES` times or more (compared by its lowercased words), e.g. "The issue is that
   the service is not able to display the list." three times in one short explanation.

Why this shape. Small models (SmolLM2-135M under greedy decoding) fall into loops whose unit is often
*inside one whitespace word*: ``3.0.1.1.1.1.1``, ``foo/foo/foo/foo`` or ``ctx_ctx_ctx_ctx``. Whitespace
words would hide them, so the tokens are runs of letters and digits, or runs of one punctuation character
(``_`` included; ``---`` and ``...`` are one token each). The tests measure repetition *in a row* or *in
bulk*, never mere regularity: a file list (``src/a/b.py``, ``src/a/c.py``) repeats its directory prefix
but no unit back to back and no line, and a JSON object repeats its punctuation but not its keys and
values; units made only of punctuation (``|---|---|---|`` table rules, ``}}}`` in code) are not loops.
Word 5-grams rather than 3-grams keep a list of paths that share a deep prefix under the share threshold.
Short answers (a classify JSON, one sentence) have too few 5-grams for test 2 and too few copies of
anything for tests 1 and 3. What it does not catch: rambling that never repeats itself exactly (a list of
made-up ratings), and a loop whose copies each change a little (``step 1 ... step 2 ...``).

:func:`repetition_stats` gives the figures behind the verdict. Pure standard library, no import cost.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "MAX_PERIOD",
    "MAX_REPEAT_SHARE",
    "MIN_NGRAMS",
    "MIN_REPEATS",
    "MIN_SENTENCE_COPIES",
    "MIN_SENTENCE_WORDS",
    "NGRAM",
    "is_degenerate",
    "longest_loop",
    "repeat_share",
    "repeated_sentence",
    "repetition_stats",
    "tokens",
]

MAX_PERIOD = 8
"""The longest loop unit looked for, in tokens (a longer loop is caught by the 5-gram share)."""
MIN_REPEATS = 6
"""Back-to-back copies of one unit that make a loop (``1.1.1`` has 3 copies of ``1 .``; a loop has 6)."""
NGRAM = 5
"""Word n-gram length of the repetition share."""
MIN_NGRAMS = 20
"""Fewer word 5-grams than this (about 24 words): too short for the repetition share to mean anything."""
MAX_REPEAT_SHARE = 0.4
"""Share of word 5-grams seen before in the text at or above which an answer is degenerate: a paragraph
said again almost in full reaches it (two full copies: 0.5); a diff, a JSON list of records or a list of
files six directories deep stays at or below 0.25, ordinary prose below 0.1."""

MIN_SENTENCE_WORDS = 4
"""A sentence or line shorter than this (``}``, ``return x``, ``- [ ] done``) may legitimately recur."""
MIN_SENTENCE_COPIES = 3
"""Copies of one sentence that make an answer degenerate (twice can be a summary restating itself)."""

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_TOKEN = re.compile(r"[^\W_]+|(_|[^\w\s])\1*")
_WORD = re.compile(r"[^\W_]+")


def tokens(text: str) -> list[str]:
    """Fine tokens: runs of letters and digits, or runs of one punctuation character (``_`` included);
    whitespace dropped."""
    return [m.group(0) for m in _TOKEN.finditer(text)]


def longest_loop(toks: list[str], max_period: int = MAX_PERIOD) -> tuple[int, tuple[str, ...]]:
    """The most back-to-back copies of any unit of 1..``max_period`` tokens holding a letter or digit,
    and that unit (``(0, ())`` when there is none; a unit seen once counts 1)."""
    best: tuple[int, tuple[str, ...]] = (0, ())
    n = len(toks)
    for p in range(1, min(max_period, n) + 1):
        i = 0
        while i + p <= n:
            j = i + p
            while j + p <= n and toks[j : j + p] == toks[i : i + p]:
                j += p
            copies = (j - i) // p
            unit = tuple(toks[i : i + p])
            if copies > best[0] and any(_WORD.search(t) for t in unit) and _primitive(unit):
                best = (copies, unit)
            # a run of copies cannot restart inside itself with more copies: skip to its last copy
            i = j - p + 1 if copies > 1 else i + 1
    return best


def _primitive(unit: tuple[str, ...]) -> bool:
    """Whether ``unit`` is not itself a smaller unit repeated (``a b a b`` is ``a b`` twice)."""
    p = len(unit)
    return not any(p % d == 0 and unit == unit[:d] * (p // d) for d in range(1, p))


def repeat_share(text: str, n: int = NGRAM) -> tuple[float, int]:
    """The share of the text's word ``n``-grams (lowercased) that occurred earlier in it, and their count."""
    words = [w.lower() for w in _WORD.findall(text)]
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0, 0
    return 1.0 - len(set(grams)) / len(grams), len(grams)


def repeated_sentence(text: str) -> tuple[int, str]:
    """The most copies of one sentence or line of :data:`MIN_SENTENCE_WORDS` words or more, and it."""
    counts: dict[str, int] = {}
    for part in _SENTENCE_END.split(text):
        words = [w.lower() for w in _WORD.findall(part)]
        if len(words) >= MIN_SENTENCE_WORDS:
            key = " ".join(words)
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return 0, ""
    sentence = max(counts, key=counts.__getitem__)
    return counts[sentence], sentence


def repetition_stats(text: str) -> dict[str, Any]:
    """The figures behind :func:`is_degenerate`.

    ``tokens``: fine tokens; ``loop_repeats`` / ``loop_unit``: the longest back-to-back repetition and its
    unit (joined without spaces); ``ngrams`` / ``repeat_share``: word 5-grams and the share seen before;
    ``sentence_copies`` / ``sentence``: the most repeated sentence (its words); ``loop`` / ``repetitive`` /
    ``repeated``: whether each test fires; ``degenerate``: any of them.
    """
    toks = tokens(text)
    copies, unit = longest_loop(toks)
    share, count = repeat_share(text)
    loop = copies >= MIN_REPEATS
    repetitive = count >= MIN_NGRAMS and share >= MAX_REPEAT_SHARE
    copies_s, sentence = repeated_sentence(text)
    repeated = copies_s >= MIN_SENTENCE_COPIES
    return {
        "tokens": len(toks),
        "loop_repeats": copies,
        "loop_unit": "".join(unit),
        "ngrams": count,
        "repeat_share": round(share, 4),
        "sentence_copies": copies_s,
        "sentence": sentence,
        "loop": loop,
        "repetitive": repetitive,
        "repeated": repeated,
        "degenerate": loop or repetitive or repeated,
    }


def is_degenerate(text: str) -> bool:
    """Whether ``text`` is stuck in a loop (see the module docstring for the three tests)."""
    return bool(repetition_stats(text)["degenerate"])
