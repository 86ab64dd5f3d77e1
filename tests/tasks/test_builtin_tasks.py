"""The four shipped tasks are task files that send, byte for byte, the prompts the Python modes sent, and
keep the versions results recorded; a project extends one with its own prompt variants.

``LEGACY`` is the record of the modes as code (orchestrator/modes.py before tasks were files, commit
a21024d): their system prompts, user templates (``str.format`` over ``issue_fields``), defaults and the
version formula. It is frozen here on purpose: the shipped files must keep matching it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.errors import ConfigError
from orchestrator.modes import CLASSIFY_SCHEMA, MODES, get_mode, issue_fields
from orchestrator.tasks import load_task, load_tasks
from orchestrator.tasks.builtin import PINS, SHIPPED, SHIPPED_DIR
from orchestrator.tasks.loader import task_from_data
from orchestrator.types import ISSUE_TYPES, SEVERITIES, Comment, Gold, Issue

ROOT = Path(__file__).resolve().parents[2]

_BLOCK = (
    "Repository: {repo}\nIssue #{number}: {title}\nLabels: {labels}\n\n"
    "Description:\n{body}\n\nComments:\n{comments}\n"
)
_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": ["bug", "feature", "question", "docs"]},
        "component": {"type": "string"},
        "severity": {"type": "string", "enum": ["low", "medium", "high", "critical"]},
    },
    "required": ["type", "component", "severity"],
    "additionalProperties": False,
}
LEGACY = {
    "explain": (
        "You are a senior maintainer triaging GitHub issues. Explain the issue to a teammate who has not "
        "read it: what the reporter observed, what they expected, the most likely cause, and what "
        "information is still missing. Be concrete and brief (at most 150 words).",
        _BLOCK + "\nExplain this issue.",
        {"temperature": 0.7},
        None,
    ),
    "fix": (
        "You are a senior maintainer. Propose a fix for the GitHub issue: name the files to change "
        "(full paths from the repository root), explain the change in two or three sentences, and give "
        "the change as a unified diff or a code block. If it is not a bug, say what should change instead.",
        _BLOCK + "\nPropose a fix.",
        {"temperature": 0.0},
        None,
    ),
    "classify": (
        "You label GitHub issues. Answer with one JSON object and nothing else: "
        '{"type": one of "bug", "feature", "question", "docs"; '
        '"component": the part of the project concerned, one or two lowercase words; '
        '"severity": one of "low", "medium", "high", "critical"}. '
        "bug = something behaves wrongly; feature = a request for new behaviour; question = the reporter "
        "asks how to do something; docs = the documentation is missing, wrong or unclear.",
        _BLOCK + "\nReturn the JSON label.",
        {"temperature": 0.0},
        _SCHEMA,
    ),
    "summarize": (
        "You summarize GitHub issues for a weekly triage digest. Write one paragraph of two to four "
        "sentences: the problem or request, where in the project it sits, and its current state. "
        "No preamble.",
        _BLOCK + "\nSummarize this issue in one paragraph.",
        {"temperature": 0.2},
        None,
    ),
}


def legacy_version(name: str) -> str:
    system, user, defaults, schema = LEGACY[name]
    blob = json.dumps([name, system, user, defaults, schema], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def sample_issues() -> list[Issue]:
    """The shipped sample set and the shapes that stress a template: no body, a long one, no number, seven
    comments (five shown, long ones cut), braces and Jinja2 syntax in the text, CJK."""
    lines = (ROOT / "datasets" / "sample.jsonl").read_text(encoding="utf-8").splitlines()
    issues = [Issue.model_validate_json(line) for line in lines if line.strip()]
    issues += [
        Issue(title="(untitled)", body=""),
        Issue(title="blank body", body="  \n\t", repo="a/b", number=0),
        Issue(title="long", body="start " + "x" * 9000 + " end", labels=["bug", "p1"]),
        Issue(
            title="{title} {{ issue.body }} {% raw %}",
            body="uses {braces} and {{ jinja }} and {# comment #}",
            comments=[Comment(author=None if i % 2 else f"u{i}", body="c" * (300 * i)) for i in range(7)],
        ),
        Issue(
            title="表示がずれる", body="日本語のサービス名\r\nwith CRLF\r\n", repo="acme/dunectl", number=7
        ),
    ]
    return issues


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_the_shipped_file_sends_the_legacy_prompt_byte_for_byte(name):
    system, user, defaults, schema = LEGACY[name]
    mode = get_mode(name)
    assert mode.defaults == defaults and mode.schema == schema
    issues = sample_issues()
    assert len(issues) > 12
    for issue in issues:
        sent = [(m.role, m.content) for m in mode.messages(issue)]
        assert sent == [("system", system), ("user", user.format(**issue_fields(issue)))], issue.title
    free_text = [(m.role, m.content) for m in mode.messages("just some text")]
    assert free_text[1][1] == user.format(**issue_fields(Issue(title="(untitled)", body="just some text")))


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_the_shipped_task_keeps_the_version_results_recorded(name):
    assert get_mode(name).version == legacy_version(name)
    assert legacy_version(name) in PINS.values()
    # the pin applies to the file's exact content: the strict loader (a user's path) computes the same
    # content version, and the same pin maps it
    strict = load_task(SHIPPED_DIR / f"{name}.toml")
    assert PINS[strict.variant().version] == legacy_version(name)


def test_editing_a_shipped_prompt_by_one_character_gives_it_a_new_version(tmp_path):
    path = SHIPPED_DIR / "explain.toml"
    text = path.read_text(encoding="utf-8").replace("Explain this issue.", "Explain this issue!")
    edited = task_from_data(tmp_path / "explain.toml", tomllib.loads(text), text, shipped=True, pins=PINS)
    assert edited.variant().version not in PINS.values()
    assert edited.variant().version != get_mode("explain").version


def test_the_shipped_files_pass_the_strict_loader_and_match_the_label_constants():
    strict = load_tasks([SHIPPED_DIR])
    assert sorted(strict) == sorted(SHIPPED) == ["classify", "explain", "fix", "summarize"]
    for name, task in strict.items():
        assert task.scorer == SHIPPED[name].scorer and list(task.variants) == ["default"]
    assert tuple(CLASSIFY_SCHEMA["properties"]["type"]["enum"]) == ISSUE_TYPES == SHIPPED["classify"].labels
    assert tuple(CLASSIFY_SCHEMA["properties"]["severity"]["enum"]) == SEVERITIES
    assert json.dumps(CLASSIFY_SCHEMA) == json.dumps(_SCHEMA)  # key order too: request bodies stay the same


def test_the_shipped_tasks_load_and_render_without_jinja2():
    code = (
        "import sys; from orchestrator.modes import MODES; assert 'classify' in MODES; "
        "assert 'jinja2' not in sys.modules, 'jinja2 loaded'; "
        "MODES['classify'].messages('text'); assert 'jinja2' not in sys.modules, 'jinja2 loaded to render'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_wheel_manifest_ships_the_task_files():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    data = pyproject["tool"]["setuptools"]["package-data"]["orchestrator"]
    assert "tasks/builtin/*.toml" in data


# --------------------------------------------------------------------------- extending a shipped task

TERSE = """name = "classify"

[prompts.terse]
system = "Label the issue. JSON only: type, component, severity."
user = "{{ issue.title }}"
"""


def project(tmp_path: Path, task_text: str) -> Path:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "classify.toml").write_text(task_text, encoding="utf-8")
    (tmp_path / "orchestrator.toml").write_text(
        '[defaults]\nmodel = "baseline/rules"\n\n[models."baseline/rules"]\nprovider = "baseline"\n',
        encoding="utf-8",
    )
    issues = [
        Issue(id=f"a/b#{i}", title=t, body=b, gold=Gold(type=g), split="dev" if i % 2 else "test")
        for i, (t, b, g) in enumerate(
            [
                ("Crash on start", "Traceback: KeyError in loader.py", "bug"),
                ("Add dark mode", "It would be nice to support a dark theme", "feature"),
                ("How do I configure the proxy?", "How can I set it up?", "question"),
                ("README typo", "The docs say 'recieve'", "docs"),
            ]
        )
    ]
    (tmp_path / "issues.jsonl").write_text("".join(i.model_dump_json() + "\n" for i in issues))
    return tmp_path / "orchestrator.toml"


def test_a_project_file_adds_a_prompt_to_a_shipped_task_and_runs_both(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = project(tmp_path, TERSE)
    args = ["--config", str(cfg), "run", "--dataset", "issues.jsonl", "--tasks", "classify", "--run-id", "x"]
    assert main(args) == 0
    out = tmp_path / "rows.json"
    assert main(["--config", str(cfg), "results", "x", "--format", "json", "-o", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert {(r["task"], r["prompt"]) for r in rows} == {("classify", "default"), ("classify", "terse")}
    versions = {r["prompt"]: r["prompt_version"] for r in rows}
    assert versions["default"] == legacy_version("classify")  # the shipped prompt keeps its version
    assert versions["terse"] != versions["default"]
    # the rule baseline answers the added prompt as classify (its rules), never a label floor
    by = {(r["issue_id"], r["prompt"]): r["pred_type"] for r in rows}
    assert all(by[(i, "default")] == by[(i, "terse")] for i, _ in by)
    assert {r["pred_type"] for r in rows} <= set(ISSUE_TYPES)
    assert MODES["classify:terse"].schema == CLASSIFY_SCHEMA


@pytest.mark.parametrize(
    "text, message",
    [
        (TERSE + '\n[prompts.default]\nuser = "x"\n', "already has this prompt"),
        ('labels = ["a", "b"]\n' + TERSE, "fixes its labels"),
        ('scorer = "chrf"\n' + TERSE, "fixes its scorer"),
        ('name = "classify"\n', "no prompt variant"),
        (TERSE.replace("{{ issue.title }}", "{{ issue.title "), "classify.toml:5 (prompts.terse.user"),
    ],
)
def test_a_bad_extension_is_one_line_naming_the_file(tmp_path, capsys, text, message):
    cfg = project(tmp_path, text)
    code = main(["--config", str(cfg), "models"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert str(tmp_path / "tasks" / "classify.toml") in err


def test_repeating_the_shipped_keys_unchanged_is_allowed(tmp_path):
    text = 'gold = "type"\nlabels = ["bug", "feature", "question", "docs"]\n' + TERSE
    (tmp_path / "classify.toml").write_text(text, encoding="utf-8")
    task = load_task(tmp_path / "classify.toml", shipped=SHIPPED)
    assert list(task.variants) == ["default", "terse"]
    with pytest.raises(ConfigError, match="shipped task"):
        from orchestrator.tasks.modes import register_task

        register_task(load_task(tmp_path / "classify.toml"))  # not extending: a clash with the shipped name


def test_plain_substitution_renders_what_jinja2_renders():
    """The shipped user prompts are joined without Jinja2; the same source through Jinja2 gives the same
    bytes, and any other markup (a filter, a tag, a dict method's name) goes through Jinja2."""
    from orchestrator.tasks.templates import Where, _env, compile_template

    where = Where(Path("t.toml"), "v", "user")
    for issue in sample_issues():
        fields = issue_fields(issue)
        for name in LEGACY:
            template = MODES[name].variant.user
            assert template._substitution is not None
            jinja = _env().from_string(template.source).render({"fields": fields})
            assert template.render({"fields": fields}) == jinja
    for source in [
        "{{ fields.title | upper }}",
        "{% if 1 %}{{ fields.title }}{% endif %}",
        "{{ fields.items }}",
    ]:
        assert compile_template(source, where)._substitution is None, source
    assert compile_template("{{fields.title}}!", where).render({"fields": {"title": "T"}}) == "T!"
