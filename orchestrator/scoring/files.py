"""The ``files`` scorer: the share of the gold files (the files the fix touched) that an answer names."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..types import Gold
from .registry import Score, empty_answer, scorer

if TYPE_CHECKING:
    pass

_EXTENSION_WORDS = (
    "py pyi pyx ipynb js mjs cjs jsx ts tsx vue svelte html htm css scss sass less md rst txt adoc toml yaml "
    "yml json jsonc ini cfg conf env lock xml proto sql sh bash zsh ps1 bat c h cc cpp cxx hpp hh cu m mm "
    "go rs java kt kts scala groovy gradle rb php cs fs swift dart lua pl r jl ex exs erl hs ml clj tf hcl "
    "dockerfile mk cmake properties gemspec"
)
_CODE_EXTENSIONS = frozenset(_EXTENSION_WORDS.split())
_PATH_CHARS = re.compile(r"[\w.\-/\\]+")
_PATH_SHAPE = re.compile(r"^(?:[\w.\-]+/)*[\w\-][\w.\-]*\.([A-Za-z][A-Za-z0-9]{0,9})$")
_DIFF_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@", re.MULTILINE)
_DIFF_HEADER = re.compile(r"^--- \S.*\n\+\+\+ \S", re.MULTILINE)
_FENCED = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n.*?^[ \t]*\1", re.MULTILINE | re.DOTALL)


def _clean_path(token: str) -> str:
    """Normalize a path-ish token: forward slashes, no ``./``, no diff ``a/``/``b/`` prefix, no trailing dot."""
    p = token.replace("\\", "/").strip(".,;:!?)('\"`")
    while p.startswith("./"):
        p = p[2:]
    if p.startswith(("a/", "b/")) and p.count("/") >= 1:
        p = p[2:]
    return p.strip("/")


def path_matches(named: str, gold: str) -> bool:
    """True when one path is the other or a suffix of it at a ``/`` boundary.

    ``routing.py`` and ``quillweb/routing.py`` both match gold ``quillweb/routing.py`` (so does a longer
    ``src/quillweb/routing.py``), but ``other/routing.py`` does not.
    """
    a, b = _clean_path(named), _clean_path(gold)
    if not a or not b:
        return False
    if a == b:
        return True
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return long_.endswith("/" + short)


def extract_paths(text: str, gold_files: Iterable[str] = ()) -> list[str]:
    """File paths named in ``text``, in order of first mention, without duplicates.

    A token counts as a path when it looks like ``dir/name.ext`` or ``name.ext`` with a known source
    extension, or when it matches one of ``gold_files`` (so ``Makefile`` counts when it is gold).
    """
    gold_files = list(gold_files)
    seen: dict[str, None] = {}
    for raw in _PATH_CHARS.findall(text or ""):
        p = _clean_path(raw)
        if not p or p in seen:
            continue
        m = _PATH_SHAPE.match(p)
        looks_like = bool(m) and ("/" in p or m.group(1).lower() in _CODE_EXTENSIONS)
        if looks_like or any(path_matches(p, g) for g in gold_files):
            seen[p] = None
    return list(seen)


def has_code_change(text: str) -> dict[str, bool]:
    """Whether ``text`` carries a unified diff (``---``/``+++`` headers or an ``@@`` hunk) or a fenced block."""
    text = text or ""
    diff = bool(_DIFF_HUNK.search(text) or _DIFF_HEADER.search(text))
    block = bool(_FENCED.search(text))
    return {"has_diff": diff, "has_code_block": block, "has_code_change": diff or block}


@scorer("files", description="share of the gold files the answer names (suffix path match)")
def score_fix(
    gold: Gold, completion_text: str, parsed: dict[str, Any] | None, parse_error: str | None
) -> Score:
    """Share of gold files the answer names (suffix path match); code-change presence in ``details``."""
    text = completion_text or ""
    gold_files = list(dict.fromkeys(f for f in gold.files if f and f.strip()))
    named = extract_paths(text, gold_files)
    hits = [g for g in gold_files if any(path_matches(p, g) for p in named)]
    details: dict[str, Any] = {
        "files_hit": len(hits),
        "files_gold": len(gold_files),
        "files_named": len(named),
        "hit_files": hits,
        "named_files": named[:50],
        **has_code_change(text),
    }
    if not gold_files:
        return Score(None, details, "no_gold")
    return Score(len(hits) / len(gold_files), details, "empty_answer" if empty_answer(text) else None)
