"""``orchestrator tasks`` lists shipped and project tasks with every variant's version; ``tasks show`` prints
the exact messages a variant sends (the same ones a run sends), and bad input is exit 2 with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from orchestrator.cli import main
from orchestrator.modes import get_mode
from orchestrator.types import Gold, Issue

PRIORITY = r"""name = "priority"
description = "How urgently maintainers should look at the issue"
labels = "dataset"

[prompts.default]
system = "One of {{ labels | join(', ') }}."
user = "Issue: {{ issue.title }}"

[prompts.terse]
user = "{{ issue.title }}"
"""

CLASSIFY_MINE = """name = "classify"

[prompts.mine]
system = "Label it."
user = "{{ fields.title }}"
"""


def project(tmp_path: Path) -> Path:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "priority.toml").write_text(PRIORITY, encoding="utf-8")
    (tmp_path / "tasks" / "classify.toml").write_text(CLASSIFY_MINE, encoding="utf-8")
    cfg = tmp_path / "orchestrator.toml"
    cfg.write_text(
        '[defaults]\nmodel = "baseline/rules"\n\n[models."baseline/rules"]\nprovider = "baseline"\n\n'
        '[routing.priority]\nprimary = "baseline/rules"\nprompt = "terse"\n',
        encoding="utf-8",
    )
    issues = [
        Issue(id=f"a/b#{i}", title=f"Crash {i}", gold=Gold(priority=p)) for i, p in enumerate(["p2", "p0"])
    ]
    (tmp_path / "issues.jsonl").write_text("".join(i.model_dump_json() + "\n" for i in issues))
    return cfg


def test_tasks_lists_shipped_and_project_tasks_with_versions(tmp_path, capsys):
    cfg = project(tmp_path)
    assert main(["--config", str(cfg), "tasks", "--json"]) == 0
    rows = {r["task"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(rows) == ["classify", "explain", "fix", "summarize", "priority"]
    assert [p["prompt"] for p in rows["classify"]["prompts"]] == ["default", "mine"]
    assert rows["classify"]["prompts"][0]["version"] == "5a336f08f9f3"  # the shipped prompt, unchanged
    assert rows["classify"]["source"].endswith("classify.toml") and rows["explain"]["source"] == "shipped"
    assert rows["priority"]["labels"] == "dataset" and rows["priority"]["routed_prompt"] == "terse"
    assert {p["mode"]: p["version"] for p in rows["priority"]["prompts"]} == {
        m: get_mode(m).version for m in ("priority", "priority:terse")
    }
    assert main(["--config", str(cfg), "tasks"]) == 0
    table = capsys.readouterr().out
    assert "terse* (" in table and "* the prompt [routing] picks" in table


def test_tasks_show_prints_what_the_variant_sends(tmp_path, capsys):
    cfg = project(tmp_path)
    args = ["--config", str(cfg), "tasks", "show", "priority", "--dataset", str(tmp_path / "issues.jsonl")]
    assert main([*args, "--index", "1"]) == 0
    out = capsys.readouterr().out
    assert "=== priority (version" in out and "=== priority:terse (version" in out
    assert "--- system\nOne of p0, p2.\n--- user\nIssue: Crash 1\n" in out  # labels from this file's gold
    assert "--- user\nCrash 1\n" in out  # the terse variant: no system prompt


def test_tasks_show_errors_are_exit_2_with_one_line(tmp_path):
    cfg = project(tmp_path)
    for extra, message in [
        (["nope"], "unknown mode 'nope'"),
        (["priority:loud"], "has no prompt 'loud'"),
        (["priority", "--index", "5", "--dataset", str(tmp_path / "issues.jsonl")], "--index 5"),
        (["priority"], "no issue has a gold 'priority'"),  # the sample set: no such gold
        (["priority", "--dataset", str(tmp_path / "missing.jsonl")], "missing.jsonl"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "--config", str(cfg), "tasks", "show", *extra],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        err = proc.stderr.strip()
        assert proc.returncode == 2 and message in err and len(err.splitlines()) == 1, (extra, err)
