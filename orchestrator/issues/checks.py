"""Checks of an issue set that loaded fine: missing gold labels, odd ids, and counts by type, split, repo."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from ..types import ISSUE_TYPES, Issue
from .files import NONE_KEY, SPLITS


def validate_issues(issues: list[Issue]) -> list[str]:
    """Semantic warnings (the file itself is valid): missing gold labels, missing split, odd ids.

    Missing gold fields are reported once per field with a count and the first ids.
    """
    warnings: list[str] = []
    n = len(issues)
    if n == 0:
        return ["the set is empty"]

    def missing(name: str, ids: list[str]) -> None:
        if ids:
            first = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
            warnings.append(f"{name} missing in {len(ids)} of {n} issues (first: {first})")

    missing("gold.type", [i.id for i in issues if i.gold.type is None])
    missing("split", [i.id for i in issues if i.split is None])
    missing("gold.summary", [i.id for i in issues if not i.gold.summary])
    missing("gold.key_points", [i.id for i in issues if not i.gold.key_points])
    missing("gold.severity", [i.id for i in issues if i.gold.severity is None])
    missing("gold.component", [i.id for i in issues if not i.gold.component])
    for issue in issues:
        if not issue.title.strip():
            warnings.append(f"{issue.id}: title is empty")
        if issue.repo and issue.number is not None and issue.id != f"{issue.repo}#{issue.number}":
            warnings.append(f"{issue.id}: id does not match repo and number ({issue.repo}#{issue.number})")
        if issue.repo and not issue.id.startswith(issue.repo + "#"):
            warnings.append(f"{issue.id}: id does not start with repo {issue.repo!r}")
        for f in issue.gold.files:
            if f.startswith("/") or "\\" in f:
                warnings.append(f"{issue.id}: gold.files entry {f!r} is not a relative POSIX path")
    return warnings


def dataset_stats(issues: list[Issue]) -> dict[str, Any]:
    """Counts: ``total``, ``by_type``, ``by_split``, ``by_repo`` and ``by_type_split``.

    Missing values are counted under ``"(none)"``; types follow the schema order.
    """
    by_type: Counter[str] = Counter()
    by_split: Counter[str] = Counter()
    by_repo: Counter[str] = Counter()
    by_type_split: dict[str, Counter[str]] = defaultdict(Counter)
    for issue in issues:
        t = issue.gold.type or NONE_KEY
        s = issue.split or NONE_KEY
        by_type[t] += 1
        by_split[s] += 1
        by_repo[issue.repo or NONE_KEY] += 1
        by_type_split[t][s] += 1

    def ordered(counter: Counter[str], order: Iterable[str]) -> dict[str, int]:
        order = list(order)
        keys = [k for k in order if k in counter] + sorted(k for k in counter if k not in order)
        return {k: counter[k] for k in keys}

    type_order = [*ISSUE_TYPES, NONE_KEY]
    return {
        "total": len(issues),
        "by_type": ordered(by_type, type_order),
        "by_split": ordered(by_split, [*SPLITS, NONE_KEY]),
        "by_repo": dict(sorted(by_repo.items(), key=lambda kv: (-kv[1], kv[0]))),
        "by_type_split": {
            t: {s: by_type_split[t][s] for s in (*SPLITS, NONE_KEY) if by_type_split[t][s]}
            for t in ordered(by_type, type_order)
        },
    }
