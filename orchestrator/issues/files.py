"""Issue files: load and write JSONL files of :class:`~orchestrator.types.Issue`, reporting every problem.

File format: one JSON object per line (UTF-8), keys in schema order
(``id, repo, number, title, body, labels, comments, state, created_at, closed_at, url, gold, split``);
any other top-level key is kept in ``Issue.extra`` on load and written back at the top level, so a
load → write round trip is lossless. Blank lines are skipped.

Lines are read defensively (:mod:`orchestrator.issues.jsonl`): a line over 32 MiB, nesting deeper than 100
levels, a number too large, ``NaN`` or a duplicate key is a problem for that line, never a crash. Lone
surrogates (``"\\ud83d"``) are replaced with U+FFFD on load and reported.

Every problem names ``file:line`` and the field, e.g.
``datasets/x.jsonl:17: field 'gold.type': must be one of bug, feature, question, docs (got 'enhancment')``.
Loading collects up to :data:`MAX_PROBLEMS` problems and reports them at once in a :class:`DatasetError`.

Checks live in :mod:`~orchestrator.issues.checks`, ids and splits in :mod:`~orchestrator.issues.splits`,
importers in :mod:`~orchestrator.issues.importers`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import ValidationError

from ..errors import InputError
from ..safe_text import repair_value
from ..types import ISSUE_TYPES, SEVERITIES, Gold, Issue
from . import jsonl

__all__ = [
    "MAX_PROBLEMS",
    "DatasetError",
    "issue_to_dict",
    "issue_to_json",
    "load_issues",
    "read_issues_lenient",
    "write_issues",
]

MAX_PROBLEMS = 20
SPLITS: tuple[str, ...] = ("dev", "test")
ISSUE_FIELDS: tuple[str, ...] = tuple(Issue.model_fields)
GOLD_FIELDS: tuple[str, ...] = tuple(Gold.model_fields)
NONE_KEY = "(none)"

_CHOICES: dict[str, tuple[str, ...]] = {
    "gold.type": ISSUE_TYPES,
    "gold.severity": SEVERITIES,
    "split": SPLITS,
}


class DatasetError(InputError):
    """An issue file (or an import source) is invalid.

    ``problems`` lists up to :data:`MAX_PROBLEMS` messages, each naming ``file:line`` (or the row)
    and the field; ``total`` counts every problem found. The message starts with the first problem.
    """

    def __init__(self, problems: list[str], *, total: int | None = None) -> None:
        if not problems:
            problems = ["invalid dataset"]
        self.problems = list(problems)
        self.total = max(total or 0, len(self.problems))
        message = self.problems[0]
        if len(self.problems) > 1:
            message += "\n" + "\n".join(f"  {p}" for p in self.problems[1:])
        if self.total > len(self.problems):
            message += f"\n  ... and {self.total - len(self.problems)} more problems"
        super().__init__(message)


class Problems:
    """Collects the first ``limit`` problems and counts the rest."""

    def __init__(self, limit: int = MAX_PROBLEMS) -> None:
        self.limit = limit
        self.items: list[str] = []
        self.total = 0

    def add(self, message: str) -> None:
        self.total += 1
        if len(self.items) < self.limit:
            self.items.append(message)

    def __bool__(self) -> bool:
        return self.total > 0

    def raise_if_any(self) -> None:
        if self.total:
            raise DatasetError(self.items, total=self.total)


# ---------------------------------------------------------------------------------------------------------
# pydantic errors → "file:line: field 'x': ..." messages


def _loc_to_field(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(record)"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe_error(err: dict[str, Any]) -> tuple[str, str]:
    field = _loc_to_field(tuple(err.get("loc", ())))
    kind = err.get("type", "")
    value = err.get("input")
    if kind == "literal_error":
        choices = _CHOICES.get(field)
        if choices is None:
            expected = (err.get("ctx") or {}).get("expected", "")
            return field, f"must be one of {expected} (got {_short(value)})"
        return field, f"must be one of {', '.join(choices)} (got {_short(value)})"
    if kind == "missing":
        return field, "is required but missing"
    if kind == "string_type":
        return field, f"must be a string (got {type(value).__name__} {_short(value)})"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return field, f"must be an integer (got {_short(value)})"
    if kind == "list_type":
        return field, f"must be a list (got {type(value).__name__} {_short(value)})"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return field, f"must be an object (got {type(value).__name__} {_short(value)})"
    msg = err.get("msg", "invalid value")
    return field, f"{msg} (got {_short(value)})"


def validation_messages(where: str, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        field, text = _describe_error(err)
        out.append(f"{where}: field '{field}': {text}")
    return out


# ---------------------------------------------------------------------------------------------------------
# reading


def _record_to_issue(obj: dict[str, Any]) -> Issue:
    """Build an Issue from a JSON object: unknown top-level keys go to ``extra``."""
    data: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "extra":
            continue
        if key in ISSUE_FIELDS:
            data[key] = value
        else:
            extra[key] = value
    explicit = obj.get("extra")
    if explicit is not None:
        if not isinstance(explicit, dict):
            # let pydantic report it with the right field name
            data["extra"] = explicit
            return Issue.model_validate(data)
        extra = {**explicit, **extra}
    if extra:
        data["extra"] = extra
    return Issue.model_validate(data)


def open_binary(path: Path, label: str) -> BinaryIO:
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        raise DatasetError([f"{label}: file not found"]) from None
    except OSError as exc:  # a directory, no permission, ...
        raise DatasetError([f"{label}: cannot read: {exc.strerror or exc}"]) from None


def iter_jsonl(path: Path, label: str, problems: Problems) -> Iterator[tuple[int, str, Any]]:
    """Yield (line number, text, decoded JSON) for every usable non-blank line.

    Problems (bad UTF-8, bad JSON, a line over :data:`jsonl.MAX_LINE_BYTES`, too deep, a huge number,
    NaN, a duplicate key) go to ``problems`` and the line is skipped.
    """
    with open_binary(path, label) as fh:
        for lineno, raw in jsonl.read_lines(fh):
            if raw is None:
                problems.add(f"{label}:{lineno}: {jsonl.too_long()} (skipped)")
                continue
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.add(f"{label}:{lineno}: not valid UTF-8 at byte {exc.start} of the line")
                continue
            if not text.strip():
                continue
            try:
                obj = jsonl.parse_line(text)
            except json.JSONDecodeError as exc:
                problems.add(f"{label}:{lineno}: invalid JSON: {exc.msg} (column {exc.colno})")
                continue
            except jsonl.LineProblem as exc:
                problems.add(f"{label}:{lineno}: {exc}")
                continue
            yield lineno, text, obj


# A lone surrogate can only come from a \uD800-\uDFFF escape: the line itself decoded as UTF-8
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def describe_surrogates(hits: list[tuple[str, str]], noun: str = "field") -> str:
    return ", ".join(f"{noun} '{field}' ({where})" for field, where in hits)


def read_issues_lenient(
    path: str | Path,
    *,
    limit: int = MAX_PROBLEMS,
    on_repair: Callable[[str], None] | None = None,
) -> tuple[list[Issue], list[str], int]:
    """Read an issue file, keeping every valid line.

    Returns ``(issues, problems, total_problems)``: ``problems`` holds the first ``limit`` messages.
    A missing or unreadable file raises :class:`DatasetError`.

    Strings holding lone surrogates are repaired (U+FFFD) and the issue is kept. With ``on_repair``
    each repaired line is reported through it; without, each such field is also a problem, so
    ``issues check`` flags the file.
    """
    label = str(path)
    problems = Problems(limit)
    issues: list[Issue] = []
    first_line: dict[str, int] = {}
    for lineno, text, obj in iter_jsonl(Path(path), label, problems):
        where = f"{label}:{lineno}"
        if not isinstance(obj, dict):
            problems.add(f"{where}: expected a JSON object, got {type(obj).__name__}")
            continue
        if _SURROGATE_ESCAPE.search(text):
            hits = list(jsonl.surrogate_fields(obj))
            if hits:
                obj = repair_value(obj)[0]
                if on_repair is not None:
                    on_repair(f"{where}: replaced lone surrogates with U+FFFD: {describe_surrogates(hits)}")
                else:
                    for field, at in hits:
                        problems.add(
                            f"{where}: field '{field}': lone surrogate {at} "
                            "(not valid Unicode; a run replaces it with U+FFFD)"
                        )
        try:
            issue = _record_to_issue(obj)
        except ValidationError as exc:
            for message in validation_messages(where, exc):
                problems.add(message)
            continue
        if not issue.id:
            problems.add(f"{where}: field 'id': missing (give 'id', or both 'repo' and 'number')")
            continue
        if issue.id in first_line:
            problems.add(
                f"{where}: field 'id': duplicate id {issue.id!r} (lines {first_line[issue.id]} and {lineno})"
            )
            continue
        first_line[issue.id] = lineno
        issues.append(issue)
    return issues, problems.items, problems.total


def load_issues(
    path: str | Path,
    split: str | None = None,
    *,
    on_repair: Callable[[str], None] | None = None,
) -> list[Issue]:
    """Load a JSONL issue file; keep only ``split`` ("dev" or "test") when given.

    Raises :class:`DatasetError` listing up to :data:`MAX_PROBLEMS` problems, each naming ``file:line``
    and the field. Lone surrogates are not a problem here: every one is replaced with U+FFFD and each
    repaired line is reported through ``on_repair`` (default: a warning on the ``orchestrator`` logger).
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)} or None (got {split!r})")
    if on_repair is None:
        on_repair = logging.getLogger("orchestrator").warning
    issues, problems, total = read_issues_lenient(path, on_repair=on_repair)
    if total:
        raise DatasetError(problems, total=total)
    if split is not None:
        issues = [i for i in issues if i.split == split]
    return issues


# ---------------------------------------------------------------------------------------------------------
# writing


def issue_to_dict(issue: Issue) -> dict[str, Any]:
    """The JSON object for one issue: schema order, ``extra`` flattened back to the top level."""
    data = issue.model_dump(mode="json")
    extra = data.pop("extra", None) or {}
    for key, value in extra.items():
        if key in data or key == "extra":
            raise DatasetError([f"issue {issue.id!r}: extra field {key!r} clashes with a schema field"])
        data[key] = value
    return data


def issue_to_json(issue: Issue) -> str:
    """One JSONL line (without the newline); UTF-8 text kept as is (``ensure_ascii=False``)."""
    data = issue_to_dict(issue)
    text = json.dumps(data, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (from \\ud83d-style escapes): keep them escaped
        text = json.dumps(data, ensure_ascii=True)
    return text


def write_issues(path: str | Path, issues: Iterable[Issue], append: bool = False) -> int:
    """Write issues as JSONL (overwrite, or ``append``); returns how many were written."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "a" if append else "w", encoding="utf-8", newline="\n") as fh:
        if append and path.stat().st_size > 0:
            with open(path, "rb") as check:
                check.seek(-1, 2)
                if check.read(1) != b"\n":
                    fh.write("\n")
        for issue in issues:
            fh.write(issue_to_json(issue) + "\n")
            count += 1
    return count
