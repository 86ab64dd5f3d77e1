"""Issue sets: load, validate, write and import JSONL files of :class:`~orchestrator.types.Issue`.

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

:func:`import_issues` turns a labeled CSV, JSONL or Parquet file (for example the NLBSE
issue-report-classification sets) into issues, with a column mapping and a label mapping.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import json
import logging
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import ValidationError

from ..errors import InputError
from ..safe_text import repair_text, repair_value
from ..types import ISSUE_TYPES, SEVERITIES, Gold, Issue
from . import jsonl

__all__ = [
    "MAX_PROBLEMS",
    "DatasetError",
    "assign_splits",
    "dataset_stats",
    "hash_split",
    "import_issues",
    "issue_to_dict",
    "issue_to_json",
    "load_issues",
    "parse_pairs",
    "read_issues_lenient",
    "synthetic_id",
    "validate_issues",
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


class _Problems:
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


def _validation_messages(where: str, exc: ValidationError) -> list[str]:
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


def _open_binary(path: Path, label: str) -> BinaryIO:
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        raise DatasetError([f"{label}: file not found"]) from None
    except OSError as exc:  # a directory, no permission, ...
        raise DatasetError([f"{label}: cannot read: {exc.strerror or exc}"]) from None


def _iter_jsonl(path: Path, label: str, problems: _Problems) -> Iterator[tuple[int, str, Any]]:
    """Yield (line number, text, decoded JSON) for every usable non-blank line.

    Problems (bad UTF-8, bad JSON, a line over :data:`jsonl.MAX_LINE_BYTES`, too deep, a huge number,
    NaN, a duplicate key) go to ``problems`` and the line is skipped.
    """
    with _open_binary(path, label) as fh:
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


def _describe_surrogates(hits: list[tuple[str, str]], noun: str = "field") -> str:
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
    problems = _Problems(limit)
    issues: list[Issue] = []
    first_line: dict[str, int] = {}
    for lineno, text, obj in _iter_jsonl(Path(path), label, problems):
        where = f"{label}:{lineno}"
        if not isinstance(obj, dict):
            problems.add(f"{where}: expected a JSON object, got {type(obj).__name__}")
            continue
        if _SURROGATE_ESCAPE.search(text):
            hits = list(jsonl.surrogate_fields(obj))
            if hits:
                obj = repair_value(obj)[0]
                if on_repair is not None:
                    on_repair(f"{where}: replaced lone surrogates with U+FFFD: {_describe_surrogates(hits)}")
                else:
                    for field, at in hits:
                        problems.add(
                            f"{where}: field '{field}': lone surrogate {at} "
                            "(not valid Unicode; a run replaces it with U+FFFD)"
                        )
        try:
            issue = _record_to_issue(obj)
        except ValidationError as exc:
            for message in _validation_messages(where, exc):
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


# ---------------------------------------------------------------------------------------------------------
# semantic checks and statistics


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


# ---------------------------------------------------------------------------------------------------------
# ids and splits


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


def _split_from_name(path: Path) -> str | None:
    name = path.stem.lower()
    if "_test" in name or name.startswith("test"):
        return "test"
    if "_train" in name or name.startswith("train") or "dev" in name:
        return "dev"
    return None


# ---------------------------------------------------------------------------------------------------------
# import


_STR_TARGETS = {"id", "repo", "title", "body", "state", "created_at", "closed_at", "url"}
_LIST_TARGETS = {"labels", "gold.files", "gold.key_points"}
_IMPORT_TARGETS: tuple[str, ...] = (
    "id",
    "repo",
    "number",
    "title",
    "body",
    "labels",
    "state",
    "created_at",
    "closed_at",
    "url",
    "split",
    *(f"gold.{f}" for f in GOLD_FIELDS),
)


def parse_pairs(text: str | None, *, what: str = "--map") -> dict[str, str]:
    """Parse ``a=b,c=d`` into ``{"a": "b", "c": "d"}``; an empty text gives ``{}``."""
    out: dict[str, str] = {}
    if not text:
        return out
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.rpartition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise DatasetError(
                [f"{what}: expected NAME=VALUE pairs separated by commas (got {part.strip()!r})"]
            )
        if key in out and out[key] != value:
            raise DatasetError([f"{what}: {key!r} is given twice ({out[key]!r} and {value!r})"])
        out[key] = value
    return out


def _check_target(source: str, target: str) -> None:
    if target in _IMPORT_TARGETS or target.startswith("extra.") and len(target) > 6:
        return
    if target.startswith("gold.") and len(target) > 5:
        return  # Gold keeps unknown fields
    raise DatasetError(
        [
            f"--map: unknown target {target!r} for column {source!r}; targets are: "
            + ", ".join(_IMPORT_TARGETS)
            + ", gold.<name>, extra.<name>"
        ]
    )


class _StopReading(Exception):
    """The CSV reader cannot go on; the message names ``file:line``."""


def _csv_lines(fh: BinaryIO, label: str) -> Iterator[str]:
    """The lines of a CSV file for :mod:`csv`, each decoded alone so a bad byte names its line.

    Lines also end at a lone ``\\r`` (as with ``newline=""``). The WTF-8 form of a lone surrogate is
    let through (``surrogatepass``) to be repaired like a JSON escape; any other bad byte stops reading.
    """
    count = 0
    for lineno, raw in jsonl.read_lines(fh):
        if raw is None:
            raise _StopReading(f"{label}:{count + 1}: {jsonl.too_long()}; reading stopped here")
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        for piece in raw.splitlines(keepends=True):  # bytes split on \r and \n only, unlike str
            count += 1
            try:
                yield piece.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError as exc:
                raise _StopReading(
                    f"{label}:{count}: not valid UTF-8 at byte {exc.start} of the line "
                    f"(byte 0x{piece[exc.start]:02x}; is the file Latin-1 or cp1252? save it as UTF-8); "
                    "reading stopped here"
                ) from None


def _read_csv(path: Path, label: str, problems: _Problems) -> tuple[list[str], Iterator[tuple[str, dict]]]:
    fh = _open_binary(path, label)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    # a field over the line cap (say an unclosed quote swallowing the file) is a csv.Error, not all of
    # memory; the limit is global as csv has no per-reader one
    csv.field_size_limit(jsonl.MAX_LINE_BYTES)
    reader = csv.reader(_csv_lines(fh, label), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        fh.close()
        return [], iter(())
    except csv.Error as exc:
        fh.close()
        raise DatasetError([f"{label}:1: cannot read the CSV header: {exc}"]) from None
    except _StopReading as exc:
        fh.close()
        raise DatasetError([str(exc)]) from None
    header = [h.strip() for h in header]
    first_at: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if name and name in first_at:
            fh.close()
            raise DatasetError(
                [
                    f"{label}:1: column {name!r} appears twice in the header "
                    f"(columns {first_at[name]} and {position})"
                ]
            )
        first_at.setdefault(name, position)

    def rows() -> Iterator[tuple[str, dict]]:
        try:
            end = reader.line_num
            while True:
                start = end + 1
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    problems.add(f"{label}:{start}: cannot parse the CSV record: {exc}")
                    return
                except _StopReading as exc:
                    problems.add(str(exc))
                    return
                end = reader.line_num
                if not row:
                    continue
                if len(row) != len(header):
                    problems.add(
                        f"{label}:{start}: the row has {len(row)} fields, the header has {len(header)}"
                    )
                    continue
                yield f"{label}:{start}", dict(zip(header, row, strict=True))
        finally:
            fh.close()

    return header, rows()


def _read_jsonl_rows(path: Path, label: str, problems: _Problems) -> tuple[list[str], list[tuple[str, dict]]]:
    rows: list[tuple[str, dict]] = []
    columns: dict[str, None] = {}
    for lineno, _, obj in _iter_jsonl(path, label, problems):
        if not isinstance(obj, dict):
            problems.add(f"{label}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            continue
        for key in obj:
            columns.setdefault(key, None)
        rows.append((f"{label}:{lineno}", obj))
    return list(columns), rows


def _decode_parquet_text(values: list[bytes | None], name: str, label: str, problems: _Problems) -> list:
    """A text column holding bytes that are not UTF-8: surrogates kept for repair, the rest problems."""
    out: list[str | None] = []
    for index, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(value.decode("utf-8", "surrogatepass"))
        except UnicodeDecodeError as exc:
            problems.add(f"{label}: row index {index}: column {name!r}: not valid UTF-8 at byte {exc.start}")
            out.append(None)
    return out


def _read_parquet(path: Path, label: str, problems: _Problems) -> tuple[list[str], list[tuple[str, dict]]]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is a dependency
        raise DatasetError([f"{label}: reading Parquet needs pyarrow ({exc})"]) from None
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise DatasetError([f"{label}: file not found"]) from None
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise DatasetError([f"{label}: cannot read Parquet: {exc}"]) from None
    columns = list(table.column_names)
    try:
        records = table.to_pylist()
    except UnicodeDecodeError:  # pyarrow does not check UTF-8 on read; find the column, value by value
        data: dict[str, list] = {}
        for name, column in zip(columns, table.columns, strict=True):
            try:
                data[name] = column.to_pylist()
            except UnicodeDecodeError:
                if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                    raise DatasetError(
                        [f"{label}: column {name!r} holds text that is not valid UTF-8"]
                    ) from None
                binary = pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary()
                data[name] = _decode_parquet_text(column.cast(binary).to_pylist(), name, label, problems)
        records = [dict(zip(columns, values, strict=True)) for values in zip(*data.values(), strict=True)]
    return columns, [(f"{label}: row index {i}", row) for i, row in enumerate(records)]


def _detect_format(path: Path, fmt: str | None) -> str:
    if fmt:
        fmt = fmt.lower()
        if fmt not in ("csv", "jsonl", "parquet"):
            raise DatasetError([f"--format must be csv, jsonl or parquet (got {fmt!r})"])
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise DatasetError([f"{path}: cannot tell the format from the extension {suffix!r}; use --format"])


def _plain(value: Any) -> Any:
    """Source values as JSON-safe Python: NaN → None, datetimes → ISO text, tuples → lists."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _as_text(value: Any) -> str | None:
    value = _plain(value)
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _as_list(value: Any, target: str) -> list[str]:
    value = _plain(value)
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value if v is not None]
    text = str(value).strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            parsed = jsonl.parse_line(text)
        except ValueError:  # not JSON (or hostile JSON): plain text
            parsed = None
        if isinstance(parsed, list):
            return [str(v) for v in parsed if v is not None]
    sep = "\n" if target == "gold.key_points" else ","
    return [part.strip() for part in text.split(sep) if part.strip()]


def _as_number(value: Any) -> int | None:
    value = _plain(value)
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"must be an integer (got {value!r})")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise ValueError(f"must be an integer (got {value!r})")
    text = str(value).strip().lstrip("#")
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        try:
            f = float(text)
        except ValueError:
            f = math.nan
        if f.is_integer():
            return int(f)
        raise ValueError(f"must be an integer (got {str(value)!r})") from None


def _resolve_mapping(mapping: dict[str, str] | None, columns: list[str], label: str) -> dict[str, str]:
    """The mapping to use (``None``: columns named like a target), checked against ``columns``."""
    if mapping is None:
        mapping = {c: c for c in columns if c in _IMPORT_TARGETS}
    for source, target in mapping.items():
        _check_target(source, target)
    targets = Counter(mapping.values())
    twice = [t for t, n in targets.items() if n > 1 and not t.startswith("extra.")]
    if twice:
        raise DatasetError([f"--map: target {twice[0]!r} is given by more than one column"])
    if "title" not in targets:
        raise DatasetError([f"--map: no column maps to 'title' (columns in {label}: {', '.join(columns)})"])
    missing_cols = [s for s in mapping if s not in columns]
    if missing_cols:
        messages = []
        for source in missing_cols:
            hint = difflib.get_close_matches(source, columns, n=1)
            messages.append(
                f"{label}: column {source!r} (from --map {source}={mapping[source]}) not found in {label}; "
                f"columns are: {', '.join(columns) or '(none)'}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
            )
        raise DatasetError(messages)
    return mapping


def _format_map(label_map: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in label_map.items()) if label_map else "(none)"


def import_issues(
    path: str | Path,
    mapping: dict[str, str] | None,
    label_map: dict[str, str] | None = None,
    *,
    split_from_file: bool = False,
    fmt: str | None = None,
    on_note: Callable[[str], None] | None = None,
) -> list[Issue]:
    """Import a labeled CSV, JSONL or Parquet file as issues.

    ``mapping`` maps SOURCE column → TARGET field: any Issue field (``id repo number title body labels
    state created_at closed_at url split``), ``gold.<field>`` or ``extra.<name>``. ``labels``,
    ``gold.files`` split on commas (``gold.key_points`` on newlines) unless given as a list or a JSON
    list. Unmapped columns are dropped. With ``mapping`` None, columns named like a target map to it.

    ``label_map`` maps source label values → gold types (matched case-insensitively); a value that is
    neither mapped nor already a gold type is an error naming the row. An empty value leaves the
    type unset.

    Ids: a mapped ``id``, else ``repo#number``, else the stable ``repo#h<sha1(title+body+created_at)[:10]>``;
    ``repo`` defaults to the file stem. Rows identical to an earlier one are dropped (reported through
    ``on_note``); a different row with the same id is an error naming both lines.

    Split: a mapped ``split`` column (``train`` counts as dev); else with ``split_from_file`` the file
    name (``*_test*`` → test, ``*_train*``/``*dev*`` → dev); else :func:`assign_splits` (stable 50/50,
    stratified by gold type).

    CSV is read with the stdlib csv module (quoted newlines, UTF-8 with or without BOM, empty strings
    kept as "", lines and fields up to :data:`jsonl.MAX_LINE_BYTES`); a column named twice in the
    header is an error. JSONL lines are read as by :func:`load_issues`; Parquet with pyarrow. Lone
    surrogates (JSON escapes, or their WTF-8 bytes in CSV and Parquet) become U+FFFD, noted per row.
    Raises :class:`DatasetError` with up to :data:`MAX_PROBLEMS` problems.
    """
    path = Path(path)
    label = str(path)
    kind = _detect_format(path, fmt)
    if kind != "parquet" and not path.exists():
        raise DatasetError([f"{label}: file not found"])
    label_map = {k.strip().lower(): v.strip() for k, v in (label_map or {}).items()}
    for value, gold_type in label_map.items():
        if gold_type not in ISSUE_TYPES:
            raise DatasetError(
                [
                    f"--labels: {value}={gold_type}: {gold_type!r} is not a gold type ({', '.join(ISSUE_TYPES)})"
                ]
            )

    problems = _Problems()
    if kind == "csv":
        columns, rows_iter = _read_csv(path, label, problems)
        rows: Iterable[tuple[str, dict]] = rows_iter
    elif kind == "jsonl":
        columns, rows = _read_jsonl_rows(path, label, problems)
    else:
        columns, rows = _read_parquet(path, label, problems)
    columns = list(dict.fromkeys(repair_text(c)[0] for c in columns))

    try:
        mapping = _resolve_mapping(mapping, columns, label)
    except DatasetError as exc:
        if problems:  # lines that could not be read may hold the columns the mapping names
            for message in exc.problems:
                problems.add(message)
            problems.raise_if_any()
        raise

    stem_repo = path.stem
    issues: list[Issue] = []
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    dropped = 0
    repaired: list[str] = []
    for where, row in rows:
        fixed, count = repair_value(row)
        if count:
            hits = _describe_surrogates(list(jsonl.surrogate_fields(row)), "column")
            repaired.append(f"{where}: replaced lone surrogates with U+FFFD: {hits}")
            row = fixed
        record, problem = _map_row(row, mapping, label_map, where)
        if problem:
            for message in problem:
                problems.add(message)
            continue
        if not record.get("repo"):
            record["repo"] = stem_repo
        if not record.get("id"):
            if record.get("number") is not None:
                record["id"] = f"{record['repo']}#{record['number']}"
            else:
                record["id"] = synthetic_id(
                    record["repo"],
                    record.get("title") or "",
                    record.get("body") or "",
                    record.get("created_at"),
                )
        try:
            issue = Issue.model_validate(record)
        except ValidationError as exc:
            for message in _validation_messages(where, exc):
                problems.add(message)
            continue
        previous = seen.get(issue.id)
        if previous is not None:
            if previous[1] == record:
                dropped += 1
                continue
            problems.add(
                f"{where}: field 'id': duplicate id {issue.id!r} with different content (first at {previous[0]})"
            )
            continue
        seen[issue.id] = (where, record)
        issues.append(issue)

    problems.raise_if_any()
    if repaired and on_note:
        for note in repaired[:MAX_PROBLEMS]:
            on_note(note)
        if len(repaired) > MAX_PROBLEMS:
            on_note(f"... and {len(repaired) - MAX_PROBLEMS} more rows with lone surrogates replaced")
    if dropped and on_note:
        on_note(f"dropped {dropped} rows identical to an earlier row")
    if split_from_file:
        from_name = _split_from_name(path)
        if from_name:
            for issue in issues:
                if issue.split is None:
                    issue.split = from_name  # type: ignore[assignment]
        elif on_note:
            on_note(f"{path.name}: no _train/_test/dev in the file name; using a stratified 50/50 split")
    assign_splits(issues)
    return issues


def _map_row(
    row: dict[str, Any], mapping: dict[str, str], label_map: dict[str, str], where: str
) -> tuple[dict[str, Any], list[str]]:
    record: dict[str, Any] = {}
    gold: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    problems: list[str] = []
    for source, target in mapping.items():
        value = row.get(source)
        if target.startswith("extra."):
            extra[target[6:]] = _plain(value)
        elif target == "number":
            try:
                record["number"] = _as_number(value)
            except ValueError as exc:
                problems.append(f"{where}: field 'number' (column {source!r}): {exc}")
        elif target in _LIST_TARGETS:
            items = _as_list(value, target)
            if target.startswith("gold."):
                gold[target[5:]] = items
            else:
                record[target] = items
        elif target == "gold.type":
            text = (_as_text(value) or "").strip()
            if not text:
                continue
            key = text.lower()
            if key in label_map:
                gold["type"] = label_map[key]
            elif key in ISSUE_TYPES:
                gold["type"] = key
            else:
                problems.append(
                    f"{where}: column {source!r} value {text!r} is not a gold type "
                    f"({', '.join(ISSUE_TYPES)}) and not in the label mapping "
                    f"(known mapping: {_format_map(label_map)}); add --labels {text}=<type>"
                )
        elif target == "gold.severity":
            text = (_as_text(value) or "").strip()
            if text:
                gold["severity"] = text.lower()
        elif target == "split":
            text = (_as_text(value) or "").strip().lower()
            if text:
                record["split"] = "dev" if text in ("train", "training", "validation", "val") else text
        elif target.startswith("gold."):
            plain = _plain(value)
            gold[target[5:]] = _as_text(plain) if target[5:] in GOLD_FIELDS else plain
        else:
            text = _as_text(value)
            if target in ("repo", "id", "state"):
                text = text.strip() if text is not None else None
            if text is None or (text == "" and target not in ("title", "body")):
                continue
            record[target] = text
    if gold:
        record["gold"] = gold
    if extra:
        record["extra"] = extra
    return record, problems
