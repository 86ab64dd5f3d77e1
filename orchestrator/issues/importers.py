"""Import labeled CSV, JSONL or Parquet files (for example the NLBSE issue-report-classification sets)
as issues, with a column mapping and a label mapping; every problem names the row and the column."""

from __future__ import annotations

import csv
import difflib
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import ValidationError

from ..safe_text import repair_text, repair_value
from ..types import ISSUE_TYPES, Issue
from . import jsonl
from .files import (
    GOLD_FIELDS,
    MAX_PROBLEMS,
    DatasetError,
    Problems,
    describe_surrogates,
    iter_jsonl,
    open_binary,
    validation_messages,
)
from .splits import assign_splits, split_from_name, synthetic_id

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


def _read_csv(path: Path, label: str, problems: Problems) -> tuple[list[str], Iterator[tuple[str, dict]]]:
    fh = open_binary(path, label)
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


def _read_jsonl_rows(path: Path, label: str, problems: Problems) -> tuple[list[str], list[tuple[str, dict]]]:
    rows: list[tuple[str, dict]] = []
    columns: dict[str, None] = {}
    for lineno, _, obj in iter_jsonl(path, label, problems):
        if not isinstance(obj, dict):
            problems.add(f"{label}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            continue
        for key in obj:
            columns.setdefault(key, None)
        rows.append((f"{label}:{lineno}", obj))
    return list(columns), rows


def _decode_parquet_text(values: list[bytes | None], name: str, label: str, problems: Problems) -> list:
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


def _read_parquet(path: Path, label: str, problems: Problems) -> tuple[list[str], list[tuple[str, dict]]]:
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

    problems = Problems()
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
            hits = describe_surrogates(list(jsonl.surrogate_fields(row)), "column")
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
            for message in validation_messages(where, exc):
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
        from_name = split_from_name(path)
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
