"""Reading untrusted JSON Lines: bounded lines, bounded nesting, finite numbers, no duplicate keys.

:func:`read_lines` yields the lines of a binary file, reading at most :data:`MAX_LINE_BYTES` + 1 bytes at
a time, so one giant line never sits in memory; :func:`parse_line` is a strict ``json.loads`` that raises
:class:`LineProblem` (a plain message, without ``file:line``) instead of a ``RecursionError``, an
int-digit-limit ``ValueError``, ``inf``, ``NaN`` or a silently dropped duplicate key;
:func:`surrogate_fields` finds the strings that hold lone surrogates (see :mod:`orchestrator.safe_text`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any, BinaryIO

from ..safe_text import first_surrogate, repair_text

__all__ = [
    "MAX_DEPTH",
    "MAX_LINE_BYTES",
    "MAX_NUMBER_DIGITS",
    "LineProblem",
    "parse_line",
    "read_lines",
    "surrogate_fields",
    "too_long",
]

MAX_LINE_BYTES = 32 * 1024 * 1024
"""The longest line read, in bytes (not counting its newline); a longer one is skipped and reported."""
MAX_DEPTH = 100
"""The deepest nesting of arrays and objects accepted (an issue needs 4)."""
MAX_NUMBER_DIGITS = 100
"""The most digits an integer may have (Python refuses to convert more than 4300 anyway)."""

_SKIP_CHUNK = 1024 * 1024


class LineProblem(ValueError):
    """One line cannot be used; the message says why (the caller adds ``file:line``)."""


def _size(n: int) -> str:
    mib = 1024 * 1024
    return f"{n // mib} MiB" if n % mib == 0 else f"{n} bytes"


def too_long(max_bytes: int | None = None) -> str:
    """The problem text for a line over the cap, e.g. ``line longer than 32 MiB``."""
    return f"line longer than {_size(MAX_LINE_BYTES if max_bytes is None else max_bytes)}"


def read_lines(fh: BinaryIO, max_bytes: int | None = None) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, raw line with its newline)`` for every line of ``fh``.

    A line longer than ``max_bytes`` (default :data:`MAX_LINE_BYTES`) gives ``None`` instead of its
    bytes; the rest of it is skipped in bounded chunks.
    """
    limit = MAX_LINE_BYTES if max_bytes is None else max_bytes
    lineno = 0
    while True:
        raw = fh.readline(limit + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) <= limit or raw.endswith(b"\n"):
            yield lineno, raw
            continue
        while raw and not raw.endswith(b"\n"):
            raw = fh.readline(_SKIP_CHUNK)
        yield lineno, None


def _short(text: str, limit: int = 40) -> str:
    text = repr(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_NUMBER_DIGITS:
        raise LineProblem(f"number too large (an integer of {digits} digits; at most {MAX_NUMBER_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise LineProblem(f"number too large ({_short(text)} is beyond the range of a float)")
    return value


def _parse_constant(name: str) -> Any:
    raise LineProblem(f"{name} is not valid JSON (numbers must be finite; write null for a missing value)")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise LineProblem(f"duplicate key {_short(key)} in an object")
            seen.add(key)
    return obj


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def parse_line(text: str) -> Any:
    """``json.loads(text)``, strictly; raises :class:`LineProblem` or ``json.JSONDecodeError``.

    Refused: nesting deeper than :data:`MAX_DEPTH`, integers longer than :data:`MAX_NUMBER_DIGITS`
    digits, floats that overflow to infinity, ``NaN``/``Infinity`` literals and duplicate keys.
    """
    if text.startswith("\ufeff"):  # what json.loads says of a BOM (the decoder itself does not check)
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    try:
        value = _DECODER.decode(text)
    except RecursionError:  # json recurses per level: far deeper than MAX_DEPTH
        raise LineProblem(_TOO_DEEP) from None
    # str.count is cheap; only a line with many brackets needs the walk
    if (
        isinstance(value, dict | list)
        and text.count("[") + text.count("{") > MAX_DEPTH
        and _deeper_than(value, MAX_DEPTH)
    ):
        raise LineProblem(_TOO_DEEP)
    return value


_TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"
# One decoder for every line: json.loads with hooks builds a new JSONDecoder per call, a third of the time
# of parsing a short issue line (0.31 s for 20,000 issues before).
_DECODER = json.JSONDecoder(
    parse_int=_parse_int,
    parse_float=_parse_float,
    parse_constant=_parse_constant,
    object_pairs_hook=_object,
)


def _key_field(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def surrogate_fields(value: Any, field: str = "") -> Iterator[tuple[str, str]]:
    """``(field, "U+D83D at character 6")`` for each string of a JSON value holding a lone surrogate.

    Fields are named like ``title``, ``gold.summary`` or ``comments[0].body``; a key holding one is
    named with U+FFFD in its place and described as ``... of the key``.
    """
    if isinstance(value, str):
        found = first_surrogate(value)
        if found:
            yield field or "(record)", f"{found[1]} at character {found[0]}"
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from surrogate_fields(item, f"{field}[{n}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            name = _key_field(field, repair_text(key)[0])
            found = first_surrogate(key)
            if found:
                yield name, f"{found[1]} at character {found[0]} of the key"
            yield from surrogate_fields(item, name)
