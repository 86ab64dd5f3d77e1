"""Hostile issue files: lone surrogates, deep nesting, huge numbers, huge lines, duplicate keys and
columns, bad encodings; through the API and through ``orchestrator issues`` in a subprocess."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.issues import (
    DatasetError,
    import_issues,
    issue_to_json,
    jsonl,
    load_issues,
    read_issues_lenient,
    write_issues,
)

ROOT = Path(__file__).resolve().parents[2]
SURROGATE_NOTE = "(not valid Unicode; a run replaces it with U+FFFD)"


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def good(n: int, **fields) -> str:
    return json.dumps({"id": f"r#{n}", "title": f"t{n}", **fields})


def no_surrogates(value) -> bool:
    return not any(True for _ in jsonl.surrogate_fields(value))


# --------------------------------------------------------------------------------------- lone surrogates

# every kind of string field: schema fields, gold (known and extra), comments, extra (flat and explicit)
SURROGATE_LINE = (
    '{"id": "r#1", "title": "crash \\ud83d", "body": "b \\udc00", "labels": ["ok", "l\\ud800"], '
    '"comments": [{"author": "a", "body": "c\\udfff"}], '
    '"gold": {"summary": "s\\ud83d", "key_points": ["k\\ud83d"], "note": "n\\ud83d"}, '
    '"source": "x\\ud83d", "extra": {"deep": {"list": ["e\\ud83d"]}}}'
)


def test_check_reports_each_lone_surrogate_with_field_and_code_point(tmp_path):
    path = write_lines(tmp_path / "data.jsonl", [good(1), SURROGATE_LINE.replace('"r#1"', '"r#2"')])
    issues, problems, total = read_issues_lenient(path)
    assert problems[0] == f"{path}:2: field 'title': lone surrogate U+D83D at character 6 {SURROGATE_NOTE}"
    fields = [p.split("field '")[1].split("'")[0] for p in problems]
    assert fields == [
        "title",
        "body",
        "labels[1]",
        "comments[0].body",
        "gold.summary",
        "gold.key_points[0]",
        "gold.note",
        "source",
        "extra.deep.list[0]",
    ]
    assert total == 9 and all(p.startswith(f"{path}:2: ") for p in problems)
    # the line is still kept, repaired, as a run would load it
    assert [i.id for i in issues] == ["r#1", "r#2"] and issues[1].title == "crash \ufffd"


def test_load_repairs_every_string_field_and_reports_each_line(tmp_path):
    path = write_lines(
        tmp_path / "data.jsonl", [SURROGATE_LINE, good(2), '{"id": "r#3", "title": "k\\ud83d"}']
    )
    repairs: list[str] = []
    issues = load_issues(path, on_repair=repairs.append)
    assert len(issues) == 3 and len(repairs) == 2
    assert repairs[0].startswith(f"{path}:1: replaced lone surrogates with U+FFFD: field 'title' (U+D83D at")
    assert "field 'extra.deep.list[0]'" in repairs[0] and repairs[1].startswith(f"{path}:3: ")
    issue = issues[0]
    assert issue.title == "crash \ufffd" and issue.body == "b \ufffd" and issue.labels == ["ok", "l\ufffd"]
    assert issue.comments[0].body == "c\ufffd" and issue.gold.summary == "s\ufffd"
    assert issue.gold.key_points == ["k\ufffd"] and issue.gold.model_extra == {"note": "n\ufffd"}
    assert issue.extra == {"deep": {"list": ["e\ufffd"]}, "source": "x\ufffd"}
    assert no_surrogates(issue.model_dump())
    issue.model_dump_json().encode("utf-8")  # what the store writes: must not raise
    assert "\\u" not in issue_to_json(issue)  # plain UTF-8, no escape fallback needed


def test_load_reports_repairs_on_the_orchestrator_logger_by_default(tmp_path, caplog):
    path = write_lines(tmp_path / "data.jsonl", [SURROGATE_LINE])
    with caplog.at_level(logging.WARNING, logger="orchestrator"):
        (issue,) = load_issues(path)
    assert issue.title == "crash \ufffd"
    assert any(f"{path}:1: replaced lone surrogates" in r.getMessage() for r in caplog.records)


def test_import_repairs_lone_surrogates_from_jsonl_csv_and_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    src_jsonl = write_lines(
        tmp_path / "j.jsonl", ['{"t": "crash \\ud83d", "b": "ok"}', '{"t": "fine", "b": "x"}']
    )
    src_csv = tmp_path / "c.csv"
    # the WTF-8 bytes of U+D83D: what a tool that writes surrogates as UTF-8 leaves in a text file
    src_csv.write_bytes(b"t,b\r\ncrash \xed\xa0\xbd,ok\r\nfine,x\r\n")
    src_parquet = tmp_path / "p.parquet"
    titles = pa.array([b"crash \xed\xa0\xbd", b"fine"], type=pa.binary()).view(pa.string())
    pq.write_table(pa.table({"t": titles, "b": ["ok", "x"]}), src_parquet)

    for src, where in ((src_jsonl, "1"), (src_csv, "2"), (src_parquet, " row index 0")):
        notes: list[str] = []
        issues = import_issues(src, {"t": "title", "b": "body"}, {}, on_note=notes.append)
        assert [i.title for i in issues] == ["crash \ufffd", "fine"], src
        assert notes == [
            f"{src}:{where}: replaced lone surrogates with U+FFFD: column 't' (U+D83D at character 6)"
        ], src
        out = tmp_path / f"{src.name}.out.jsonl"
        write_issues(out, issues)
        text = out.read_bytes().decode("utf-8")  # strict: valid UTF-8
        assert "\\ud83d" not in text and "crash \ufffd" in text
        assert [i.title for i in load_issues(out)] == ["crash \ufffd", "fine"]


def test_import_caps_repair_notes(tmp_path):
    lines = [f'{{"t": "x{n}\\ud83d"}}' for n in range(25)]
    notes: list[str] = []
    issues = import_issues(write_lines(tmp_path / "k.jsonl", lines), {"t": "title"}, on_note=notes.append)
    assert len(issues) == 25
    assert len(notes) == 21 and notes[-1] == "... and 5 more rows with lone surrogates replaced"


def test_parquet_text_that_is_not_utf8_names_row_and_column(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "bad.parquet"
    titles = pa.array([b"fine", b"caf\xe9"], type=pa.binary()).view(pa.string())
    pq.write_table(pa.table({"t": titles}), path)
    with pytest.raises(
        DatasetError, match=r"bad\.parquet: row index 1: column 't': not valid UTF-8 at byte 3"
    ):
        import_issues(path, {"t": "title"}, {})


# ------------------------------------------------------------------------------- nesting, numbers, keys


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[" * 100_000, "nested deeper than 100 levels"),
        ('{"a": ' * 100_000, "nested deeper than 100 levels"),
        # parses fine, but deeper than the cap
        ('{"id": "r#9", "title": "t", "x": ' + "[" * 150 + "]" * 150 + "}", "nested deeper than 100 levels"),
        (
            '{"id": "r#9", "title": "t", "n": ' + "9" * 5000 + "}",
            "number too large (an integer of 5000 digits",
        ),
        (
            '{"id": "r#9", "title": "t", "n": -' + "9" * 101 + "}",
            "number too large (an integer of 101 digits",
        ),
        ('{"id": "r#9", "title": "t", "x": 1e400}', "number too large ('1e400' is beyond the range"),
        ('{"id": "r#9", "title": "t", "x": -1e400}', "number too large ('-1e400'"),
        ('{"id": "r#9", "title": "t", "x": NaN}', "NaN is not valid JSON"),
        ('{"id": "r#9", "title": "t", "x": Infinity}', "Infinity is not valid JSON"),
        ('{"id": "r#9", "title": "t", "x": [-Infinity]}', "-Infinity is not valid JSON"),
        ('{"id": "r#9", "title": "a", "title": "b"}', "duplicate key 'title' in an object"),
        ('{"id": "r#9", "title": "a", "gold": {"type": "bug", "type": "docs"}}', "duplicate key 'type'"),
    ],
    ids=[
        "deep-array",
        "deep-object",
        "150-levels",
        "5000-digits",
        "101-digits",
        "1e400",
        "-1e400",
        "nan",
        "infinity",
        "-infinity",
        "duplicate-key",
        "nested-duplicate-key",
    ],
)
def test_hostile_json_line_is_a_problem_naming_file_and_line(tmp_path, line, message):
    path = write_lines(tmp_path / "data.jsonl", [good(1), line, good(3)])
    issues, problems, total = read_issues_lenient(path)
    assert total == 1 and problems[0].startswith(f"{path}:2: {message}"), problems
    assert [i.id for i in issues] == ["r#1", "r#3"]
    with pytest.raises(DatasetError, match=f"^{path}:2: "):
        load_issues(path)
    # the importer reads JSONL the same way
    with pytest.raises(DatasetError) as info:
        import_issues(path, {"title": "title"}, {})
    assert info.value.problems[0].startswith(f"{path}:2: {message}")


def test_limits_are_inclusive(tmp_path):
    deep = "[" * 99 + "]" * 99  # inside the top-level object: 100 levels
    path = write_lines(tmp_path / "data.jsonl", [good(1, big=int("9" * 100), x=json.loads(deep), f=1e300)])
    (issue,) = load_issues(path)
    assert issue.extra["big"] == int("9" * 100) and issue.extra["f"] == 1e300


def test_csv_cell_with_deep_json_list_is_text_not_a_crash(tmp_path):
    src = tmp_path / "d.csv"
    src.write_text("title,labels\nt," + "[" * 100_000 + "\n", encoding="utf-8")
    (issue,) = import_issues(src, {"title": "title", "labels": "labels"}, {})
    assert issue.labels == ["[" * 100_000]


def test_duplicate_key_in_an_import_source(tmp_path):
    path = write_lines(tmp_path / "src.jsonl", ['{"t": "a"}', '{"t": "a", "t": "b"}'])
    with pytest.raises(DatasetError, match=r"src\.jsonl:2: duplicate key 't' in an object"):
        import_issues(path, {"t": "title"}, {})


# ------------------------------------------------------------------------------------------- huge lines


class RecordingReader(io.BytesIO):
    """Records every ``readline`` size and the longest chunk handed out."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.sizes: list[int] = []
        self.longest = 0

    def readline(self, size: int | None = -1) -> bytes:
        self.sizes.append(-1 if size is None else size)
        chunk = super().readline(size)
        self.longest = max(self.longest, len(chunk))
        return chunk


def test_read_lines_skips_a_long_line_in_bounded_chunks():
    data = b"short\n" + b"x" * 5_000_000 + b"\n" + b"y" * 100 + b"\n" + b"z" * 101
    fh = RecordingReader(data)
    assert list(jsonl.read_lines(fh, max_bytes=100)) == [
        (1, b"short\n"),
        (2, None),
        (3, b"y" * 100 + b"\n"),  # exactly the cap: kept
        (4, None),  # one over the cap, at the end of the file without a newline
    ]
    assert all(0 < size <= 1024 * 1024 for size in fh.sizes)  # never an unbounded read
    assert fh.longest <= 1024 * 1024


def test_long_jsonl_line_is_a_problem_and_the_next_line_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 1000)
    path = write_lines(tmp_path / "data.jsonl", [good(1), good(2, body="x" * 5000), good(3)])
    issues, problems, total = read_issues_lenient(path)
    assert problems == [f"{path}:2: line longer than 1000 bytes (skipped)"] and total == 1
    assert [i.id for i in issues] == ["r#1", "r#3"]
    assert jsonl.too_long(32 * 1024 * 1024) == "line longer than 32 MiB"


def test_long_csv_line_or_field_stops_with_file_and_line(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 1000)
    src = tmp_path / "c.csv"
    src.write_text("title,body\nok,x\nlong," + "x" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"c\.csv:3: line longer than 1000 bytes; reading stopped here"):
        import_issues(src, {"title": "title", "body": "body"}, {})
    # an unclosed quote: short lines, but the field grows past the cap
    src.write_text('title,body\nok,x\nopen,"' + "many\n" * 500 + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"c\.csv:3: cannot parse the CSV record: field larger than field"):
        import_issues(src, {"title": "title", "body": "body"}, {})


# ---------------------------------------------------------------------------------- columns and encodings


def test_csv_header_with_a_duplicated_column(tmp_path):
    src = tmp_path / "d.csv"
    src.write_text("title,body,title\na,b,c\n", encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        import_issues(src, None, {})
    assert str(info.value) == f"{src}:1: column 'title' appears twice in the header (columns 1 and 3)"
    # unnamed columns (trailing commas) are not duplicates of each other
    src.write_text("title,body,,\na,b,,\n", encoding="utf-8")
    assert [i.title for i in import_issues(src, None, {})] == ["a"]


def test_latin1_csv_names_file_line_and_byte(tmp_path):
    src = tmp_path / "l.csv"
    src.write_bytes("title,body\nok,fine\ncafé,x\n".encode("latin-1"))
    with pytest.raises(DatasetError) as info:
        import_issues(src, None, {})
    message = str(info.value)
    assert message.startswith(f"{src}:3: not valid UTF-8 at byte 3 of the line (byte 0xe9;")
    assert "Latin-1" in message
    src.write_bytes("titlé,body\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=rf"^{src}:1: not valid UTF-8 at byte 4"):
        import_issues(src, None, {})


def test_csv_keeps_bom_crlf_and_lone_cr_line_endings(tmp_path):
    src = tmp_path / "e.csv"
    src.write_bytes(b'\xef\xbb\xbftitle,body\r\na,"multi\r\nline"\r\nb,x\rc,y\r')
    issues = import_issues(src, None, {})
    assert [(i.title, i.body) for i in issues] == [("a", "multi\r\nline"), ("b", "x"), ("c", "y")]


def test_jsonl_line_with_invalid_utf8_stays_a_problem(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(
        good(1).encode() + b"\n" + b'{"id": "r#2", "title": "caf\xe9"}\n' + good(3).encode() + b"\n"
    )
    _, problems, _ = read_issues_lenient(path)
    assert problems == [f"{path}:2: not valid UTF-8 at byte 27 of the line"]


# ------------------------------------------------------------------------------------ the CLI, for real


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORCHESTRATOR_HOME": str(tmp_path / "home"), "PYTHONIOENCODING": "utf-8"}
    env.pop("ORCHESTRATOR_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "issues", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


CHECK_CASES = {
    "surrogate": (
        '{"id": "r#7", "title": "crash \\ud83d", "body": "..."}',
        f"field 'title': lone surrogate U+D83D at character 6 {SURROGATE_NOTE}",
    ),
    "deep": ("[" * 100_000, "nested deeper than 100 levels"),
    "digits": ('{"id": "r#7", "title": "t", "n": ' + "1" * 5000 + "}", "number too large"),
    "inf": ('{"id": "r#7", "title": "t", "n": 1e400}', "number too large"),
    "nan": ('{"id": "r#7", "title": "t", "n": NaN}', "NaN is not valid JSON"),
    "duplicate-key": ('{"id": "r#7", "title": "a", "title": "b"}', "duplicate key 'title'"),
}


@pytest.mark.parametrize("case", list(CHECK_CASES))
def test_cli_check_reports_hostile_lines(tmp_path, case):
    line, message = CHECK_CASES[case]
    path = write_lines(tmp_path / "data.jsonl", [good(1), line])
    proc = run(tmp_path, "check", "data.jsonl")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"data.jsonl:2: {message}" in proc.stdout, proc.stdout
    assert path.exists()


def test_cli_check_huge_line_and_bad_utf8(tmp_path):
    path = tmp_path / "data.jsonl"
    with open(path, "wb") as fh:
        fh.write(good(1).encode() + b"\n")
        fh.write(b'{"id": "r#2", "title": "' + b"x" * (jsonl.MAX_LINE_BYTES + 10) + b'"}\n')
        fh.write(b'{"id": "r#3", "title": "caf\xe9"}\n')
        fh.write(good(4).encode() + b"\n")
    proc = run(tmp_path, "check", "data.jsonl")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "data.jsonl:2: line longer than 32 MiB (skipped)" in proc.stdout
    assert "data.jsonl:3: not valid UTF-8 at byte 27 of the line" in proc.stdout
    assert "data.jsonl: 2 issues" in proc.stdout


def test_cli_check_unreadable_file_exits_2(tmp_path):
    (tmp_path / "adir.jsonl").mkdir()
    for name, message in (
        ("missing.jsonl", "missing.jsonl: file not found"),
        ("adir.jsonl", "adir.jsonl: cannot read"),
    ):
        proc = run(tmp_path, "check", name)
        assert proc.returncode == 2, (name, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr


def test_cli_import_invalid_input_exits_2(tmp_path):
    (tmp_path / "dup.csv").write_text("title,body,title\na,b,c\n", encoding="utf-8")
    (tmp_path / "latin.csv").write_bytes("title\nok\ncafé\n".encode("latin-1"))
    (tmp_path / "dupkey.jsonl").write_text('{"title": "a", "title": "b"}\n', encoding="utf-8")
    (tmp_path / "ok.csv").write_text("title,body\na,b\n", encoding="utf-8")
    cases = [
        (["missing.csv"], "missing.csv: file not found"),
        (["dup.csv"], "dup.csv:1: column 'title' appears twice in the header (columns 1 and 3)"),
        (["latin.csv"], "latin.csv:3: not valid UTF-8 at byte 3 of the line"),
        (["dupkey.jsonl"], "dupkey.jsonl:1: duplicate key 'title'"),
        (["ok.csv", "--map", "title"], "--map: expected NAME=VALUE pairs"),
        (["ok.csv", "--map", "titel=title"], "column 'titel' (from --map titel=title) not found in ok.csv"),
        (["ok.csv", "--map", "title=gold_type"], "--map: unknown target 'gold_type'"),
    ]
    for args, message in cases:
        proc = run(tmp_path, "import", *args, "-o", "out.jsonl")
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_cli_import_repairs_surrogates_and_writes_utf8(tmp_path):
    (tmp_path / "src.jsonl").write_text('{"title": "crash \\ud83d", "body": "b"}\n', encoding="utf-8")
    proc = run(tmp_path, "import", "src.jsonl", "-o", "out.jsonl")
    assert proc.returncode == 0, proc.stderr
    assert (
        "note: src.jsonl:1: replaced lone surrogates with U+FFFD: column 'title' (U+D83D at character 6)"
        in (proc.stderr)
    )
    text = (tmp_path / "out.jsonl").read_bytes().decode("utf-8")
    assert '"title": "crash \ufffd"' in text
    assert run(tmp_path, "check", "out.jsonl").returncode == 0
