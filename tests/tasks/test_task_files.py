"""Task files: the issue's example verbatim, label schemas, versions, and errors that name file, variant, line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.tasks import TemplateError, label_schema, load_task, load_tasks
from orchestrator.types import Gold, Issue

# Verbatim from the tasks-as-data issue: it must load and render with no Python edits.
PRIORITY = r"""# tasks/priority.toml
name = "priority"
description = "How urgently maintainers should look at the issue"
gold = "priority"                  # reads the issue's gold["priority"]
labels = ["p0", "p1", "p2", "p3"]
scorer = "label"                   # answer label == gold label; macro-F1 over `labels` in the analysis

[prompts.default]
system = "You triage GitHub issues. Answer with one JSON object {\"label\": L} where L is one of {{ labels | join(', ') }}."
user = "Issue: {{ issue.title }}\n\n{{ issue.body | truncate(4000) }}"

[prompts.terse]
system = "Reply only with JSON {\"label\": L}, L in {{ labels | join(', ') }}."
user = "{{ issue.title }}"
"""

ISSUE = Issue(title="Crash on start", body="x" * 5000, gold=Gold(priority="p1"))


def write(tmp_path: Path, text: str, name: str = "priority.toml") -> Path:
    folder = tmp_path / "tasks"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_loads_and_renders_both_variants(tmp_path):
    task = load_task(write(tmp_path, PRIORITY))
    assert (task.name, task.gold, task.scorer, task.labels) == (
        "priority",
        "priority",
        "label",
        ("p0", "p1", "p2", "p3"),
    )
    assert task.schema == label_schema(task.labels)
    assert task.schema["properties"]["label"]["enum"] == ["p0", "p1", "p2", "p3"]
    system, user = task.variant().messages(ISSUE, task.labels)
    assert system.role == "system" and system.content.endswith("where L is one of p0, p1, p2, p3.")
    assert user.content.startswith("Issue: Crash on start\n\n") and len(user.content) < 4100  # truncate(4000)
    terse = task.variant("terse").messages(ISSUE, task.labels)
    assert terse[-1].content == "Crash on start"
    assert task.variant("default").version != task.variant("terse").version


def test_gold_extra_fields_are_read_and_dataset_labels_come_from_the_issues(tmp_path):
    task = load_task(
        write(tmp_path, PRIORITY.replace('labels = ["p0", "p1", "p2", "p3"]', 'labels = "dataset"'))
    )
    assert task.labels is None and task.labels_from_dataset and task.scorer == "label"
    issues = [Issue(title=str(i), gold=Gold(priority=p)) for i, p in enumerate(["p2", "p0", "p2", ""])]
    issues.append(Issue(title="no gold"))
    assert task.labels_for(issues) == ("p0", "p2")  # never a label the data lacks


def test_one_character_changes_one_version_and_no_other(tmp_path):
    before = load_task(write(tmp_path, PRIORITY))
    after = load_task(write(tmp_path, PRIORITY.replace('{{ issue.title }}"\n', '{{ issue.title }}!"\n')))
    assert after.variant("terse").version != before.variant("terse").version
    assert after.variant("default").version == before.variant("default").version
    relabeled = load_task(write(tmp_path, PRIORITY.replace('"p3"]', '"p4"]')))
    assert relabeled.variant("default").version != before.variant("default").version  # labels shape prompts


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '"{{ issue.title }}"\n',
            '"{{ issue.title "\n',
            r"priority\.toml:14 \(prompts\.terse\.user, template line 1\)",
        ),
        (
            '"{{ issue.title }}"\n',
            '"{{ issue.title | shout }}"\n',
            r"priority\.toml:14 .*No filter named 'shout'",
        ),
        (
            '"{{ issue.title }}"\n',
            '"{{ titel }}"\n',
            r"priority\.toml:14 \(prompts\.terse\.user\): unknown name 'titel'",
        ),
        ('scorer = "label"', "scorer = 3", r"priority\.toml: key 'scorer'"),
        (
            'labels = ["p0", "p1", "p2", "p3"]',
            'labels = ["p0", "p0"]',
            r"key 'labels': a label is listed twice",
        ),
        ("[prompts.terse]", "colour = 1\n[prompts.terse]", r"unknown key 'colour'"),
    ],
)
def test_bad_task_files_are_one_line_errors(tmp_path, old, new, message):
    assert old in PRIORITY
    with pytest.raises(ConfigError, match=message) as info:
        load_task(write(tmp_path, PRIORITY.replace(old, new, 1)))
    assert "\n" not in str(info.value)


def test_a_missing_gold_field_fails_at_render_naming_the_line(tmp_path):
    text = PRIORITY.replace(
        'user = "{{ issue.title }}"', 'user = """\nTitle: {{ issue.title }}\nSeen: {{ issue.gold.seen }}\n"""'
    )
    task = load_task(write(tmp_path, text))
    with pytest.raises(
        TemplateError, match=r"priority\.toml:16 \(prompts\.terse\.user, template line 2\): .*'seen'"
    ):
        task.variant("terse").messages(ISSUE, task.labels)


def test_the_sandbox_refuses_python_internals(tmp_path):
    text = PRIORITY.replace('user = "{{ issue.title }}"', 'user = "{{ labels.__class__.__mro__ }}"')
    task = load_task(write(tmp_path, text))
    with pytest.raises(TemplateError, match="prompts.terse.user"):
        task.variant("terse").messages(ISSUE, task.labels)


def test_two_files_naming_one_task_are_refused(tmp_path):
    write(tmp_path, PRIORITY)
    write(tmp_path, PRIORITY, "again.toml")
    with pytest.raises(
        ConfigError, match=r"priority\.toml: task 'priority' is already defined in .*again\.toml"
    ):
        load_tasks([tmp_path / "tasks"])


def test_loading_tasks_does_not_slow_the_package_import():
    code = "import sys, orchestrator; assert 'jinja2' not in sys.modules and 'orchestrator.tasks' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_compiled_template_pickles_and_renders_the_same_after(tmp_path) -> None:
    """Ray ships a run's modes to its workers by pickle; a compiled Jinja2 template does not unpickle, so
    it is left out and compiled again on the other side."""
    import pickle

    from orchestrator.tasks.templates import Where, compile_template

    where = Where(tmp_path / "t.toml", "default", "user", 3)
    template = compile_template("{{ issue.title | upper }} ({{ labels | join(', ') }})", where)
    context = {"issue": {"title": "crash"}, "labels": ["bug", "docs"], "fields": {}, "task": "t"}
    before = template.render(context)  # compiled and cached on the object
    copy = pickle.loads(pickle.dumps(template))
    assert copy.render(context) == before == "CRASH (bug, docs)"
    assert copy.where == where and copy.names == {"issue", "labels"}
