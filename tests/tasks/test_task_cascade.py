"""Cascades per (model, prompt): a task's routing entry can ask the cheap model with one prompt variant and
escalate to the strong model with another; the client follows it on a loopback server, replay follows it
over logged rows, and the self-check of a label task is its schema.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers.fault_server import Action, FaultServer

from orchestrator.cli import main
from orchestrator.client.cascade import cascade_steps, self_check
from orchestrator.config import load_config
from orchestrator.routing import replay
from orchestrator.types import Issue

from .test_task_files import PRIORITY


def cheap_fails_terse(req) -> Action:
    """The cheap model answers prose (no JSON: the self-check fails); the strong one a label."""
    body = req.json or {}
    if body.get("model") == "cheap":
        return Action(content="I think this is probably urgent.")
    return Action(content=json.dumps({"label": "p0"}))


def project(tmp_path: Path, url: str, routing: str) -> Path:
    (tmp_path / "tasks").mkdir(exist_ok=True)
    (tmp_path / "tasks" / "priority.toml").write_text(PRIORITY, encoding="utf-8")
    models = "".join(
        f"""
[models."openai/{name}"]
provider = "openai"
model = "{name}"
base_url = "{url}"
max_tokens = 20
price = {{ input = {price}, output = {price}, as_of = 2026-12-01 }}
"""
        for name, price in (("cheap", 0.1), ("strong", 5.0))
    )
    cfg = tmp_path / "orchestrator.toml"
    cfg.write_text(f'[defaults]\nmodel = "openai/strong"\n{models}\n{routing}', encoding="utf-8")
    return cfg


CASCADE = """[routing.priority]
prompt = "terse"
cascade = { models = ["openai/cheap", "openai/strong"], prompts = ["terse", "default"], threshold = 0.5 }
"""


def ask(cfg: Path, tmp_path: Path, capsys) -> dict:
    issue = tmp_path / "issue.json"
    issue.write_text(Issue(title="Crash 1", body="It fails.").model_dump_json())
    args = [
        "--config",
        str(cfg),
        "ask",
        "--task",
        "priority",
        "--issue-file",
        str(issue),
        "--json",
        "--no-cache",
    ]
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_a_cascade_asks_each_model_with_its_own_prompt(tmp_path, capsys):
    with FaultServer(script=cheap_fails_terse) as srv:
        answer = ask(project(tmp_path, srv.url, CASCADE), tmp_path, capsys)
        sent = [(r.json["model"], r.json["messages"][-1]["content"]) for r in srv.requests]
    assert sent[0] == ("cheap", "Crash 1")  # the terse prompt: the title alone
    assert sent[1][0] == "strong" and sent[1][1].startswith("Issue: Crash 1")  # escalated, default prompt
    assert answer["parsed"] == {"label": "p0"}
    assert answer["fallback_path"] == ["openai/cheap", "openai/strong"]


def test_without_prompts_every_step_asks_with_the_routed_prompt(tmp_path, capsys):
    routing = CASCADE.replace(', prompts = ["terse", "default"]', "")
    with FaultServer(script=cheap_fails_terse) as srv:
        ask(project(tmp_path, srv.url, routing), tmp_path, capsys)
        sent = [(r.json["model"], r.json["messages"][-1]["content"]) for r in srv.requests]
    assert sent == [("cheap", "Crash 1"), ("strong", "Crash 1")]


@pytest.mark.parametrize(
    "prompts, message",
    [
        ('["terse"]', "key 'cascade.prompts': one prompt variant per model"),
        ('["terse", "loud"]', "key 'cascade.prompts': task 'priority' has no prompt 'loud'"),
    ],
)
def test_bad_cascade_prompts_are_config_errors(tmp_path, capsys, prompts, message):
    cfg = project(tmp_path, "http://127.0.0.1:9", CASCADE.replace('["terse", "default"]', prompts))
    assert main(["--config", str(cfg), "models"]) == 2
    err = capsys.readouterr().err
    assert message in err and "[routing.priority]" in err


def test_the_self_check_of_a_label_task_is_its_schema(tmp_path):
    load_config(project(tmp_path, "http://127.0.0.1:9", ""))
    assert self_check("priority", '{"label": "p1"}') == 1.0
    assert self_check("priority:terse", '{"label": "p9"}') == 0.0  # outside the labels
    assert self_check("priority", "p1 probably") == 0.0
    assert self_check("priority", None, parse_error="no JSON") == 0.0
    assert self_check("classify:anything", "", parse_error="bad") == 0.0  # a variant checks as its task
    steps = cascade_steps({"models": ["a", "b"], "prompts": ["terse", "default"]}, "priority:terse")
    assert steps == [("a", "priority:terse"), ("b", "priority")]


def test_replay_follows_a_cascade_per_model_and_prompt(tmp_path):
    load_config(project(tmp_path, "http://127.0.0.1:9", ""))
    rows = []
    for i in range(4):
        issue = f"a/b#{i}"
        passes = i % 2 == 0  # the cheap terse answer parses on even issues
        cheap = {"text": '{"label": "p1"}' if passes else "prose", "score": 1.0 if passes else 0.0}
        for mode, model, cost, cell in [
            ("priority:terse", "openai/cheap", 0.001, cheap),
            ("priority", "openai/strong", 0.1, {"text": '{"label": "p1"}', "score": 1.0}),
            ("priority", "openai/cheap", 0.001, {"text": "prose", "score": 0.0}),  # not the cascade's
            ("priority:terse", "openai/strong", 0.1, {"text": "prose", "score": 0.0}),  # not the cascade's
        ]:
            rows.append(
                {
                    "mode": mode,
                    "model": model,
                    "issue_id": issue,
                    "split": "test",
                    "repeat": 0,
                    "cost_usd": cost,
                    "error_type": None,
                    "parsed": None,
                    "parse_error": None,
                    **cell,
                }
            )
    policy = {
        "priority": {
            "prompt": "terse",
            "cascade": {"models": ["openai/cheap", "openai/strong"], "prompts": ["terse", "default"]},
        }
    }
    report = replay(pd.DataFrame(rows), policy, n_boot=50)
    row = report.table.iloc[0]
    assert row["mean"] == 1.0  # cheap+terse when it passes, else strong+default: right every time
    assert row["escalation_rate"] == 0.5
    assert row["cost_per_issue"] == pytest.approx(0.001 + 0.5 * 0.1)
    assert "openai/cheap [priority:terse] > openai/strong [priority]" in row["policy"]
