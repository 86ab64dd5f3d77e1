"""Text that can always be stored: lone surrogates replaced, and a count of what was repaired.

JSON allows escapes such as ``"\\ud83d"`` that decode to a lone UTF-16 surrogate: a Python ``str`` holds
it, but UTF-8 cannot encode it, so SQLite, pydantic's JSON and every file write raise on it. Answers from
servers and issue files both carry them in the wild (a truncated emoji is the usual source). They are
replaced with U+FFFD where text enters the workbench, and the repair is noted, never raised.
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogates(text: str) -> bool:
    """Whether ``text`` holds a code point UTF-8 cannot encode (a lone surrogate)."""
    return _SURROGATE.search(text) is not None


def first_surrogate(text: str) -> tuple[int, str] | None:
    """(character index, ``U+XXXX``) of the first lone surrogate in ``text``, or None."""
    found = _SURROGATE.search(text)
    return (found.start(), f"U+{ord(found.group()):04X}") if found else None


def repair_text(text: str) -> tuple[str, int]:
    """``text`` with every lone surrogate replaced by U+FFFD, and how many were replaced."""
    if text.isascii():  # the common case, and much faster than the regex
        return text, 0
    return _SURROGATE.subn(REPLACEMENT, text)


def repair_value(value: Any) -> tuple[Any, int]:
    """A JSON-shaped value (str, list, dict, scalars) with every string repaired; keys included."""
    if isinstance(value, str):
        return repair_text(value)
    if isinstance(value, list):
        total = 0
        out = []
        for item in value:
            fixed, n = repair_value(item)
            out.append(fixed)
            total += n
        return (out, total) if total else (value, 0)
    if isinstance(value, dict):
        total = 0
        pairs = []
        for key, item in value.items():
            fixed_key, n_key = repair_value(key) if isinstance(key, str) else (key, 0)
            fixed, n = repair_value(item)
            pairs.append((fixed_key, fixed))
            total += n + n_key
        return (dict(pairs), total) if total else (value, 0)
    return value, 0
