"""Stable ids and dev/test splits that depend only on the issues themselves."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

from ..types import ISSUE_TYPES, Issue
from .files import NONE_KEY


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def synthetic_id(repo: str, title: str, body: str, created_at: str | None) -> str:
    """``repo#h<10 hex>``: a stable id for an issue without a number."""
    return f"{repo}#h{_sha1(title + body + (created_at or ''))[:10]}"


def hash_split(issue_id: str) -> str:
    """A deterministic 50/50 split of one id (for streams, where stratifying is impossible)."""
    return "dev" if int(_sha1(issue_id)[:8], 16) % 2 == 0 else "test"


def assign_splits(issues: list[Issue], *, overwrite: bool = False) -> list[Issue]:
    """Give every issue without a split (all of them with ``overwrite``) a stable 50/50 split.

    Stratified by ``gold.type``: within each type, issues ordered by the SHA-1 of their id alternate
    dev/test, so each type is split exactly (within one) and the result depends only on the ids.
    Odd-sized groups give their extra issue alternately to dev and test. Issues are changed in place.
    """
    groups: dict[str, list[Issue]] = defaultdict(list)
    for issue in issues:
        if overwrite or issue.split is None:
            groups[issue.gold.type or NONE_KEY].append(issue)
    extra_to_dev = True
    for key in sorted(groups, key=lambda k: (k not in ISSUE_TYPES, k)):
        group = sorted(groups[key], key=lambda i: (_sha1(i.id), i.id))
        first, second = ("dev", "test") if extra_to_dev else ("test", "dev")
        for n, issue in enumerate(group):
            issue.split = first if n % 2 == 0 else second  # type: ignore[assignment]
        if len(group) % 2:
            extra_to_dev = not extra_to_dev
    return issues


def split_from_name(path: Path) -> str | None:
    name = path.stem.lower()
    if "_test" in name or name.startswith("test"):
        return "test"
    if "_train" in name or name.startswith("train") or "dev" in name:
        return "dev"
    return None
