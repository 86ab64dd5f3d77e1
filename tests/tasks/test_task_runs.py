"""A task file in a scratch project runs through the CLI with no code change: run, results, ask, resume.

The model is an OpenAI-compatible loopback server (the shared fault server) that answers every prompt with
a label and records each request, so the tests can see what was sent (the label schema, the prompt) and
what was answered from the cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.fault_server import Action, FaultServer

from orchestrator.cli import main
from orchestrator.types import Gold, Issue

from .test_task_files import PRIORITY  # the issue's example, verbatim


def answer(req) -> Action:
    body = req.json or {}
    system = body["messages"][0]["content"] if body.get("messages") else ""
    return Action(content=json.dumps({"label": "p1" if "p0, p1" in system else "bug"}))


@pytest.fixture
def server():
    with FaultServer(script=answer) as srv:
        yield srv


def project(tmp_path: Path, url: str, task: str = PRIORITY) -> Path:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "priority.toml").write_text(task, encoding="utf-8")
    (tmp_path / "orchestrator.toml").write_text(
        f"""[defaults]
model = "openai/stub"

[models."openai/stub"]
provider = "openai"
model = "stub"
base_url = "{url}"
max_tokens = 20
price = {{ input = 1.0, output = 2.0, as_of = 2026-12-01 }}
""",
        encoding="utf-8",
    )
    issues = [
        Issue(
            id=f"acme/app#{i}",
            repo="acme/app",
            number=i,
            title=f"Crash {i}",
            body="It fails.",
            gold=Gold(priority=["p1", "p2", "p1", "p0"][i % 4]),
            split="dev" if i % 2 else "test",
        )
        for i in range(1, 7)
    ]
    (tmp_path / "issues.jsonl").write_text("".join(i.model_dump_json() + "\n" for i in issues))
    return tmp_path / "orchestrator.toml"


def results(cfg: Path, run_id: str, tmp_path: Path, capsys) -> list[dict]:
    out = tmp_path / f"{run_id}.json"
    assert main(["--config", str(cfg), "results", run_id, "--format", "json", "-o", str(out)]) == 0
    capsys.readouterr()
    return json.loads(out.read_text())


def test_the_example_task_runs_every_variant_and_rows_carry_task_prompt_and_version(
    tmp_path, server, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    cfg = project(tmp_path, server.url)
    args = ["--config", str(cfg), "run", "--dataset", "issues.jsonl", "--tasks", "priority", "--run-id", "t1"]
    assert main(args) == 0
    rows = results(cfg, "t1", tmp_path, capsys)
    assert len(rows) == 12  # 6 issues x 2 prompt variants
    assert {(r["task"], r["prompt"]) for r in rows} == {("priority", "default"), ("priority", "terse")}
    versions = {r["prompt"]: r["prompt_version"] for r in rows}
    assert len(set(versions.values())) == 2
    assert {r["mode"] for r in rows} == {"priority", "priority:terse"}
    scored = {(r["issue_id"], r["prompt"]): r["score"] for r in rows}
    assert scored[("acme/app#2", "default")] == 1.0 and scored[("acme/app#1", "default")] == 0.0
    assert all(r["pred_type"] == "p1" for r in rows) and {r["gold_type"] for r in rows} == {"p0", "p1", "p2"}
    sent = [r.json for r in server.requests]
    schema = sent[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["label"]["enum"] == ["p0", "p1", "p2", "p3"]  # structured output, derived
    assert any(m["content"] == "Crash 1" for body in sent for m in body["messages"])  # the terse prompt


def test_editing_one_variant_misses_its_cache_only(tmp_path, server, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = project(tmp_path, server.url)
    run = ["--config", str(cfg), "run", "--dataset", "issues.jsonl", "--tasks", "priority"]
    assert main([*run, "--run-id", "a"]) == 0
    first = server.count()
    edited = PRIORITY.replace('user = "{{ issue.title }}"', 'user = "{{ issue.title }}?"')
    (tmp_path / "tasks" / "priority.toml").write_text(edited, encoding="utf-8")
    assert main([*run, "--run-id", "b"]) == 0
    assert server.count() - first == 6  # the edited variant only: the default one came from the cache
    a, b = results(cfg, "a", tmp_path, capsys), results(cfg, "b", tmp_path, capsys)
    version = {(r["prompt"], name): r["prompt_version"] for name, rs in (("a", a), ("b", b)) for r in rs}
    assert version[("default", "a")] == version[("default", "b")]
    assert version[("terse", "a")] != version[("terse", "b")]


def test_one_variant_and_ask_with_the_task(tmp_path, server, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = project(tmp_path, server.url)
    args = [
        "--config",
        str(cfg),
        "run",
        "--dataset",
        "issues.jsonl",
        "--tasks",
        "priority:terse",
        "--run-id",
        "one",
    ]
    assert main(args) == 0
    assert {r["prompt"] for r in results(cfg, "one", tmp_path, capsys)} == {"terse"}
    issue = tmp_path / "issue.json"
    issue.write_text(Issue(title="Login broken", body="500 on submit").model_dump_json())
    assert (
        main(["--config", str(cfg), "ask", "--task", "priority", "--issue-file", str(issue), "--json"]) == 0
    )
    completion = json.loads(capsys.readouterr().out)
    assert completion["parsed"] == {"label": "p1"} and completion["mode"] == "priority"
    assert server.requests[-1].json["messages"][-1]["content"].startswith("Issue: Login broken")


def test_dataset_labels_are_the_gold_values_of_the_issues_run(tmp_path, server, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    task = PRIORITY.replace('labels = ["p0", "p1", "p2", "p3"]', 'labels = "dataset"')
    cfg = project(tmp_path, server.url, task)
    args = ["--config", str(cfg), "run", "--dataset", "issues.jsonl", "--tasks", "priority", "--run-id", "d"]
    assert main(args) == 0
    schema = server.requests[0].json["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["label"]["enum"] == ["p0", "p1", "p2"]  # no p3: the data has none
    system = server.requests[0].json["messages"][0]["content"]
    assert system.endswith("one of p0, p1, p2.")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["run", "--dataset", "issues.jsonl", "--tasks", "priority:loud"],
            "task 'priority' has no prompt 'loud'",
        ),
        (
            ["run", "--dataset", "issues.jsonl", "--tasks", "nope"],
            "unknown mode 'nope'; known modes: .*priority",
        ),
        (["ask", "--task", "nope", "hello"], "--task/--mode: unknown mode 'nope'"),
    ],
)
def test_unknown_tasks_and_prompts_are_exit_2_naming_the_flag(
    tmp_path, server, capsys, monkeypatch, argv, message
):
    import re

    monkeypatch.chdir(tmp_path)
    cfg = project(tmp_path, server.url)
    assert main(["--config", str(cfg), *argv]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err


def test_a_broken_task_file_stops_every_command_with_one_line(tmp_path, server, capsys):
    cfg = project(tmp_path, server.url, PRIORITY.replace('"{{ issue.title }}"', '"{{ issue.title "'))
    assert main(["--config", str(cfg), "models"]) == 2
    err = capsys.readouterr().err.strip()
    assert "priority.toml:14 (prompts.terse.user, template line 1)" in err and len(err.splitlines()) == 1


GOLD_BY_TITLE = {f"Crash {i}": ["p1", "p2", "p1", "p0"][i % 4] for i in range(1, 7)}


def terse_knows(req) -> Action:
    """The terse prompt (the title alone) gets the right label; the default prompt always says p3."""
    user = (req.json or {})["messages"][-1]["content"]
    return Action(content=json.dumps({"label": GOLD_BY_TITLE.get(user, "p3")}))


def test_route_picks_model_and_prompt_and_ask_then_uses_the_routed_prompt(tmp_path, capsys, monkeypatch):
    import tomllib

    monkeypatch.chdir(tmp_path)
    with FaultServer(script=terse_knows) as srv:
        cfg = project(tmp_path, srv.url)
        run = [
            "--config",
            str(cfg),
            "run",
            "--dataset",
            "issues.jsonl",
            "--tasks",
            "priority",
            "--run-id",
            "r",
        ]
        assert main(run) == 0
        assert (
            main(["--config", str(cfg), "route", "r", "--min-n", "2", "--objective", "quality", "--write"])
            == 0
        )
        out = capsys.readouterr().out
        assert "openai/stub with prompt 'terse'" in out
        entry = tomllib.loads(cfg.read_text())["routing"]["priority"]
        assert (entry["primary"], entry["prompt"]) == ("openai/stub", "terse")
        assert main(["--config", str(cfg), "replay", "r", "--policy", "config"]) == 0
        replayed = capsys.readouterr().out
        assert "priority:terse" in replayed  # the routed variant's test rows are replayed
        terse_rows = [r for r in results(cfg, "r", tmp_path, capsys) if r["prompt"] == "terse"]
        assert entry["prompt_version"] == terse_rows[0]["prompt_version"]  # provenance: the variant's version
        issue = tmp_path / "issue.json"
        issue.write_text(Issue(title="Crash 1", body="It fails.").model_dump_json())
        n = srv.count()
        ask = [
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
        assert main(ask) == 0
        assert json.loads(capsys.readouterr().out)["parsed"] == {"label": "p2"}
        assert srv.count() == n + 1 and srv.requests[-1].json["messages"][-1]["content"] == "Crash 1"


def test_a_routing_prompt_the_task_lacks_is_a_config_error(tmp_path, server, capsys):
    cfg = project(tmp_path, server.url)
    cfg.write_text(cfg.read_text() + '\n[routing.priority]\nprimary = "openai/stub"\nprompt = "loud"\n')
    assert main(["--config", str(cfg), "models"]) == 2
    assert "[routing.priority] key 'prompt': task 'priority' has no prompt 'loud'" in capsys.readouterr().err


NLBSE_TASK = """name = "nlbse"
description = "NLBSE'24 issue report classification"
gold = "label"
labels = "dataset"

[prompts.default]
system = "Classify the GitHub issue. Answer {\\"label\\": L}, L one of {{ labels | join(', ') }}."
user = "{{ issue.title }}\\n\\n{{ issue.body }}"
"""


def nlbse_csv(path: Path) -> None:
    """A small file shaped like NLBSE'24's (repo, created_at, label, title, body), three labels only."""
    import csv
    import random

    rng = random.Random(7)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["repo", "created_at", "label", "title", "body"])
        for repo in ("facebook/react", "microsoft/vscode", "opencv/opencv"):
            for i in range(12):
                label = rng.choice(["bug", "feature", "question"])
                writer.writerow([repo, "2023-01-01", label, f"{repo} issue {i}", f"body {i} {label[:2]}"])


def guessing(req) -> Action:
    """Answers a label from the title's hash, sometimes 'docs', a label the data lacks."""
    import hashlib

    user = (req.json or {})["messages"][-1]["content"]
    pick = ["bug", "feature", "question", "docs"][hashlib.sha256(user.encode()).digest()[0] % 4]
    return Action(content=json.dumps({"label": pick}))


def test_an_nlbse_import_runs_over_its_own_labels_and_f1_matches_sklearn(
    tmp_path, capsys, monkeypatch, isolated_home
):
    from sklearn.metrics import f1_score

    from orchestrator.analysis import f1_per_repo
    from orchestrator.runs.store import results_df

    monkeypatch.chdir(tmp_path)
    nlbse_csv(tmp_path / "nlbse.csv")
    imp = [
        "issues",
        "import",
        "nlbse.csv",
        "--map",
        "title=title,body=body,label=gold.label,repo=repo,created_at=created_at",
    ]
    assert main([*imp, "-o", "nlbse.jsonl"]) == 0
    with FaultServer(script=guessing) as srv:
        cfg = project(tmp_path, srv.url)
        (tmp_path / "tasks" / "nlbse.toml").write_text(NLBSE_TASK, encoding="utf-8")
        args = ["--config", str(cfg), "run", "--dataset", "nlbse.jsonl", "--tasks", "nlbse", "--run-id", "n"]
        assert main(args) == 0
        enum = srv.requests[0].json["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"]
    assert enum == ["bug", "feature", "question"]  # the data's own labels: no 'docs'
    df = results_df("n", home=isolated_home)
    assert len(df) == 36
    predicted = set(df["pred_type"].dropna())
    assert predicted <= {"bug", "feature", "question"}  # an answer of 'docs' fails the schema: never a label
    assert df["pred_type"].isna().any() and (df.loc[df["pred_type"].isna(), "score"] == 0).all()
    ours = f1_per_repo(df, labels=enum, mode="nlbse")
    per_repo = []
    for _, rows in df.groupby("repo"):
        pred = rows["pred_type"].fillna("<invalid>").astype(str)
        per_repo.append(
            f1_score(rows["gold_type"].astype(str), pred, average="macro", labels=enum, zero_division=0)
        )
    assert abs(ours - sum(per_repo) / len(per_repo)) < 1e-9


def test_the_rule_baseline_answers_a_label_task_with_the_dev_majority(tmp_path, server, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = project(tmp_path, server.url)
    cfg.write_text(cfg.read_text() + '\n[models."baseline/rules"]\nprovider = "baseline"\n')
    args = ["--config", str(cfg), "run", "--dataset", "issues.jsonl", "--models", "baseline/rules"]
    assert main([*args, "--tasks", "priority:default", "--run-id", "floor"]) == 0
    rows = results(cfg, "floor", tmp_path, capsys)
    # dev issues are #1, #3, #5 with gold p2, p0, p2: the floor is p2, for every issue, dev and test
    assert {r["pred_type"] for r in rows} == {"p2"} and len(rows) == 6
    assert sorted(r["score"] for r in rows) == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert server.count() == 0  # the baseline is local


def test_old_results_read_with_their_mode_as_task_and_the_default_prompt(tmp_path, isolated_home):
    import sqlite3

    from orchestrator.runs.store import ResultStore, default_db_path, results_df

    path = default_db_path(isolated_home)
    ResultStore(path).close()
    with sqlite3.connect(path) as conn:  # a row as written before tasks existed: no task, prompt or version
        conn.execute(
            "INSERT INTO results (run_id, issue_id, model, mode, repeat, error_type) "
            "VALUES ('old', 'a#1', 'baseline/rules', 'classify', 0, '')"
        )
    df = results_df("old", home=isolated_home)
    assert (df.loc[0, "task"], df.loc[0, "prompt"]) == ("classify", "default")


SCORER_FILE = """from orchestrator.scoring import Score, scorer


@scorer("shouty", description="the answer is in capitals")
def shouty(gold, text, parsed, parse_error, *, min_len: int = 1):
    return Score(1.0 if text.isupper() and len(text) >= min_len else 0.0)
"""


def test_a_project_scorer_file_registers_a_scorer_a_task_can_name(tmp_path, server, capsys, monkeypatch):
    from orchestrator.scoring import registry

    monkeypatch.setattr(registry, "SCORERS", dict(registry.SCORERS))
    monkeypatch.chdir(tmp_path)
    cfg = project(tmp_path, server.url)
    (tmp_path / "scorers.py").write_text(SCORER_FILE)
    cfg.write_text(cfg.read_text() + '\n[scoring]\nfiles = ["scorers.py"]\n')
    (tmp_path / "tasks" / "loud.toml").write_text(
        'scorer = { name = "shouty", min_len = 3 }\n[prompts.default]\nuser = "{{ issue.title }}"\n'
    )
    assert main(["--config", str(cfg), "models"]) == 0  # loads twice in one process: no double registration
    assert (
        main(["--config", str(cfg), "run", "--dataset", "issues.jsonl", "--tasks", "loud", "--run-id", "s"])
        == 0
    )
    rows = results(cfg, "s", tmp_path, capsys)
    assert len(rows) == 6 and {r["score"] for r in rows} == {0.0}  # the stub answers JSON in lower case


def test_a_failing_scorer_file_is_one_line_naming_file_and_line(tmp_path, server, capsys):
    cfg = project(tmp_path, server.url)
    (tmp_path / "scorers.py").write_text("x = 1\nraise RuntimeError('boom')\n")
    cfg.write_text(cfg.read_text() + '\n[scoring]\nfiles = ["scorers.py"]\n')
    assert main(["--config", str(cfg), "models"]) == 2
    err = capsys.readouterr().err.strip()
    assert "scorers.py:2: the scorer file failed: RuntimeError: boom" in err and len(err.splitlines()) == 1


def test_a_variant_naming_a_gold_field_an_issue_lacks_stops_the_run_before_any_call(tmp_path, server, capsys):
    text = PRIORITY.replace(
        'user = "{{ issue.title }}"', 'user = "{{ issue.title }} seen {{ issue.gold.seen }}"'
    )
    cfg = project(tmp_path, server.url, text)
    args = ["--config", str(cfg), "run", "--dataset", str(tmp_path / "issues.jsonl"), "--tasks", "priority"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "priority.toml:14 (prompts.terse.user, template line 1): " in err and "'seen'" in err
    assert "(issue 'acme/app#1')" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert server.count() == 0


def judging(req) -> Action:
    system = (req.json or {})["messages"][0]["content"]
    if system.startswith("Is the answer kind?"):
        return Action(content='{"score": 4, "reason": "kind enough"}')
    return Action(content="Thank you for the report; we will look at it.")


def test_a_judge_task_is_graded_with_its_own_rubric(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with FaultServer(script=judging) as srv:
        cfg = project(tmp_path, srv.url)
        (tmp_path / "tasks" / "reply.toml").write_text(
            'scorer = { name = "judge", rubric = "Is the answer kind?", model = "openai/stub" }\n'
            '[prompts.default]\nuser = "Reply to: {{ issue.title }}"\n'
        )
        args = ["--config", str(cfg), "run", "--dataset", "issues.jsonl", "--tasks", "reply", "--run-id", "j"]
        assert main(args) == 0
        judged = [
            r.json for r in srv.requests if r.json["messages"][0]["content"].startswith("Is the answer")
        ]
    rows = results(cfg, "j", tmp_path, capsys)
    assert {r["score"] for r in rows} == {0.75} and {r["judge_score"] for r in rows} == {0.75}
    assert len(judged) == 6 and '{"score": n' in judged[0]["messages"][0]["content"]
    assert "Thank you for the report" in judged[0]["messages"][-1]["content"]  # the answer being graded


def test_a_judge_scorer_without_a_rubric_fails_when_the_task_loads(tmp_path, server, capsys):
    cfg = project(tmp_path, server.url)
    (tmp_path / "tasks" / "reply.toml").write_text('scorer = "judge"\n[prompts.default]\nuser = "x"\n')
    assert main(["--config", str(cfg), "models"]) == 2
    assert "scorer 'judge' needs a rubric" in capsys.readouterr().err
