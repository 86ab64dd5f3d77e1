"""``orchestrator issues fetch`` end to end against a fake GitHub REST server on a real loopback socket.

PyGithub is not mocked: it talks HTTP to :mod:`fake_github`, whose bodies come from the GitHub
OpenAPI description in ``../shared/specs`` (skipped where that folder is absent).
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import pytest
from helpers import fake_github
from helpers.fake_github import COMMIT_SHA, PR_FILES, FakeGitHub

from orchestrator.cli.issues import EXIT_STOPPED, register
from orchestrator.issues import hash_split, load_issues
from orchestrator.issues.github import GitHubFetchError, fetch_issues

pytestmark = pytest.mark.skipif(
    not fake_github.spec_available(),
    reason=f"GitHub OpenAPI description not found at {fake_github.SPEC_PATH} (../shared/specs from the project root)",
)

TOKEN = "test-gh-token-7f3a9c1e55d2"
LABEL_MAP = "bug=bug,enhancement=feature,question=question,documentation=docs"
ALL_IDS = [f"o/r#{n}" for n in (1, 2, 3, 4, 5, 6)]


class SleepRecorder:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def run_cli(argv: list[str], sleep: SleepRecorder | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orchestrator")
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args, sleep=sleep) if sleep is not None else args.func(args)


def fetch_argv(fake: FakeGitHub, out: Path, *extra: str) -> list[str]:
    return [
        "issues",
        "fetch",
        "o/r",
        "--with-comments",
        "--label-map",
        LABEL_MAP,
        "--base-url",
        fake.base_url,
        "--no-progress",
        "-o",
        str(out),
        *extra,
    ]


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    return TOKEN


def issue_list_requests(fake: FakeGitHub) -> list[dict]:
    return [r for r in fake.requests if r["path"].endswith("/repos/o/r/issues")]


def test_fetch_end_to_end_through_cli(tmp_path, token_env, capsys):
    out = tmp_path / "issues.jsonl"
    sleep = SleepRecorder()
    with FakeGitHub(rate_limit="secondary", retry_after=1) as fake:
        code = run_cli(fetch_argv(fake, out), sleep=sleep)
        requests = list(fake.requests)
    captured = capsys.readouterr()
    assert code == 0, captured.err

    rows = read_lines(out)
    # both pages, the pull request (#10) skipped, in listing order
    assert [r["id"] for r in rows] == ALL_IDS
    assert all("pull_request" not in r for r in rows)
    by_id = {r["id"]: r for r in rows}

    # schema fields and order
    assert list(rows[0])[:13] == [
        "id",
        "repo",
        "number",
        "title",
        "body",
        "labels",
        "comments",
        "state",
        "created_at",
        "closed_at",
        "url",
        "gold",
        "split",
    ]
    first = by_id["o/r#1"]
    assert first["repo"] == "o/r" and first["number"] == 1 and first["state"] == "open"
    assert first["body"] == "Steps:\n1. run `x ''`\n2. 💥"
    assert first["labels"] == ["bug"]
    assert first["url"].endswith("/o/r/issues/1")
    # comments of #1 (the only issue with comments)
    assert [(c["author"], c["body"]) for c in first["comments"]] == [
        ("alice", "Same here 🐛 on 3.12"),
        ("bob", "Fixed by\nupgrading"),
    ]
    assert first["comments"][0]["created_at"] == "2024-01-02T10:00:00Z"
    assert all(not by_id[i]["comments"] for i in ALL_IDS[1:])
    assert by_id["o/r#4"]["body"] == ""  # a null body becomes ""

    # gold.type from --label-map; no mapped label → None
    assert {i: r["gold"]["type"] for i, r in by_id.items()} == {
        "o/r#1": "bug",
        "o/r#2": "feature",
        "o/r#3": "bug",
        "o/r#4": "question",
        "o/r#5": "docs",
        "o/r#6": None,
    }
    # gold.files: #3 from the merged cross-referenced PR #10 (not the unmerged #12),
    # #4 from the PR of the commit in its "closed" event, #6 closed without a PR, open ones none
    assert by_id["o/r#3"]["gold"]["files"] == PR_FILES[10]
    assert by_id["o/r#3"]["closing_pr"] == 10
    assert by_id["o/r#4"]["gold"]["files"] == PR_FILES[11]
    assert by_id["o/r#4"]["closing_pr"] == 11
    assert by_id["o/r#6"]["gold"]["files"] == [] and "closing_pr" not in by_id["o/r#6"]
    assert all(by_id[i]["gold"]["files"] == [] for i in ("o/r#1", "o/r#2", "o/r#5"))
    # splits: a stable hash of the id
    assert all(r["split"] == hash_split(r["id"]) for r in rows)

    # the secondary rate limit on page 2 was waited out, visibly
    assert sleep.calls == [pytest.approx(1.0, abs=0.01)]
    assert "secondary rate limit" in captured.err and "waiting 1 s" in captured.err
    pages = [r["query"].get("page", "1") for r in issue_list_requests_from(requests)]
    assert pages == ["1", "2", "2"]
    assert all(r["query"]["state"] == "all" for r in issue_list_requests_from(requests))
    # only what is needed: the unmerged PR #12 is never fetched, comments only where there are some
    paths = [r["path"] for r in requests]
    assert "/api/v3/repos/o/r/pulls/12" not in paths
    assert [p for p in paths if p.endswith("/comments")] == ["/api/v3/repos/o/r/issues/1/comments"]
    assert f"/api/v3/repos/o/r/commits/{COMMIT_SHA}/pulls" in paths

    # the token was sent on every request and appears nowhere else
    assert requests and all(r["headers"].get("Authorization") == f"token {TOKEN}" for r in requests)
    assert TOKEN not in out.read_text(encoding="utf-8")
    assert TOKEN not in captured.out and TOKEN not in captured.err
    assert "fetched 6 new issues" in captured.out and "1 pull requests" in captured.out

    # the output is a valid issue set
    assert [i.id for i in load_issues(out)] == ALL_IDS
    assert run_cli(["issues", "check", str(out)]) == 0


def issue_list_requests_from(requests: list[dict]) -> list[dict]:
    return [r for r in requests if r["path"].endswith("/repos/o/r/issues")]


def test_resume_skips_what_is_already_there(tmp_path, token_env, capsys):
    out = tmp_path / "issues.jsonl"
    with FakeGitHub(rate_limit=None) as fake:
        assert run_cli(fetch_argv(fake, out), sleep=SleepRecorder()) == 0
        first = out.read_text(encoding="utf-8")
        capsys.readouterr()
        fake.requests.clear()

        sleep = SleepRecorder()
        assert run_cli(fetch_argv(fake, out), sleep=sleep) == 0
        captured = capsys.readouterr()
        second_requests = list(fake.requests)

    assert out.read_text(encoding="utf-8") == first  # nothing duplicated, nothing rewritten
    ids = [r["id"] for r in read_lines(out)]
    assert ids == ALL_IDS and len(set(ids)) == len(ids)
    assert "fetched 0 new issues" in captured.out and "skipped 6 already in the file" in captured.out
    assert sleep.calls == []
    # skipped issues cost no comment/timeline/PR requests: only the repository and the two pages
    assert sorted({r["path"] for r in second_requests}) == ["/api/v3/repos/o/r", "/api/v3/repos/o/r/issues"]


def test_long_rate_limit_stops_cleanly_and_resumes(tmp_path, token_env, capsys):
    out = tmp_path / "issues.jsonl"
    sleep = SleepRecorder()
    with FakeGitHub(rate_limit="secondary", retry_after=3600, rate_limit_times=100) as fake:
        code = run_cli(fetch_argv(fake, out), sleep=sleep)
        captured = capsys.readouterr()
        assert code == EXIT_STOPPED
        assert sleep.calls == []  # 3600 s > --max-wait 120 s: no waiting
        # page 1 was kept
        assert [r["id"] for r in read_lines(out)] == ["o/r#1", "o/r#2"]
        assert "run the same command again" in captured.err
        assert "--max-wait 120" in captured.err
        assert "fetched 2 new issues" in captured.out
        assert TOKEN not in captured.out + captured.err

        # once the limit is gone, the same command completes the set without duplicates
        fake.rate_limit = None
        code = run_cli(fetch_argv(fake, out), sleep=sleep)
        captured = capsys.readouterr()
    assert code == 0
    assert [r["id"] for r in read_lines(out)] == ALL_IDS
    assert "fetched 4 new issues" in captured.out and "skipped 2 already in the file" in captured.out


def test_max_wait_is_honoured(tmp_path, token_env):
    out = tmp_path / "issues.jsonl"
    with FakeGitHub(rate_limit="secondary", retry_after=5) as fake:
        code = run_cli(fetch_argv(fake, out, "--max-wait", "2"), sleep=SleepRecorder())
    assert code == EXIT_STOPPED
    assert len(read_lines(out)) == 2


@pytest.mark.parametrize(
    ("mode", "low", "high"),
    [("primary", 1.0, 3.5), ("429", 0.99, 1.01)],
)
def test_primary_and_429_rate_limits_are_waited_out(tmp_path, capsys, mode, low, high):
    out = tmp_path / "issues.jsonl"
    sleep = SleepRecorder()
    with FakeGitHub(rate_limit=mode, retry_after=2 if mode == "primary" else 1) as fake:
        result = fetch_issues("o/r", out, base_url=fake.base_url, progress=False, sleep=sleep, token=None)
        requests = list(fake.requests)
    assert result.complete and result.written == 6
    assert len(sleep.calls) == 1 and low <= sleep.calls[0] <= high
    assert f"GitHub {'primary' if mode == 'primary' else 'secondary'} rate limit" in capsys.readouterr().err
    # anonymous: no Authorization header at all
    assert all("Authorization" not in r["headers"] for r in requests)
    # without --with-comments no comments are fetched; default label map: labels named like a type
    rows = {r["id"]: r for r in read_lines(out)}
    assert not any(r["path"].endswith("/comments") for r in requests)
    assert rows["o/r#1"]["gold"]["type"] == "bug" and rows["o/r#2"]["gold"]["type"] is None


def test_limit_state_and_no_files(tmp_path):
    out = tmp_path / "issues.jsonl"
    with FakeGitHub(rate_limit=None) as fake:
        result = fetch_issues(
            "o/r", out, state="closed", limit=2, with_files=False, base_url=fake.base_url, progress=False
        )
        requests = list(fake.requests)
    assert result.written == 2
    assert [r["id"] for r in read_lines(out)] == ["o/r#3", "o/r#4"]
    assert all(r["state"] == "closed" for r in read_lines(out))
    assert not any("timeline" in r["path"] or "/pulls/" in r["path"] for r in requests)
    assert issue_list_requests(fake)[0]["query"]["state"] == "closed"


def test_torn_last_line_is_repaired_on_resume(tmp_path):
    out = tmp_path / "issues.jsonl"
    with FakeGitHub(rate_limit=None) as fake:
        fetch_issues("o/r", out, base_url=fake.base_url, progress=False, limit=3)
        text = out.read_text(encoding="utf-8")
        out.write_text(text + '{"id": "o/r#4", "title": "half a li', encoding="utf-8")  # killed mid-write
        result = fetch_issues("o/r", out, base_url=fake.base_url, progress=False)
    assert result.skipped_existing == 3 and result.written == 3
    assert [i.id for i in load_issues(out)] == ALL_IDS


def test_unknown_repository_is_a_clean_error(tmp_path, token_env, capsys):
    out = tmp_path / "issues.jsonl"
    with FakeGitHub(rate_limit=None) as fake:
        with pytest.raises(GitHubFetchError, match="not found"):
            fetch_issues("o/missing", out, base_url=fake.base_url, progress=False)
        code = run_cli(["issues", "fetch", "o/missing", "--base-url", fake.base_url, "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert "o/missing not found" in captured.err
    assert TOKEN not in captured.out + captured.err


def test_fake_bodies_match_the_openapi_schemas():
    """The fake serves what GitHub's own description says these endpoints return."""
    jsonschema = pytest.importorskip("jsonschema")
    spec = fake_github.load_spec()
    components = _openapi30_to_jsonschema(copy.deepcopy(spec["components"]["schemas"]))

    def check(instance, name):
        schema = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": components}}
        jsonschema.Draft202012Validator(schema).validate(instance)

    with FakeGitHub(rate_limit=None) as fake:
        check(fake.repository, "full-repository")
        for item in fake.page1 + fake.page2:
            check(item, "issue")
        for comments in fake.comments.values():
            for c in comments:
                check(c, "issue-comment")
        for events in fake.timelines.values():
            for ev in events:
                name = (
                    "timeline-cross-referenced-event"
                    if ev["event"] == "cross-referenced"
                    else "state-change-issue-event"
                )
                check(ev, name)
        for pr in fake.pulls.values():
            check(pr, "pull-request")
        for pr in fake.commit_pulls[COMMIT_SHA]:
            check(pr, "pull-request-simple")
        for n in PR_FILES:
            for entry in fake.files(n):
                check(entry, "diff-entry")


def _openapi30_to_jsonschema(node):
    """OpenAPI 3.0 ``nullable: true`` → JSON Schema (null allowed); refs re-rooted at ``components``."""
    if isinstance(node, list):
        return [_openapi30_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _openapi30_to_jsonschema(v) for k, v in node.items()}
    if node.pop("nullable", False):
        if "type" in node and isinstance(node["type"], str):
            node["type"] = [node["type"], "null"]
            if "enum" in node and None not in node["enum"]:
                node["enum"] = [*node["enum"], None]
        else:
            return {"anyOf": [node, {"type": "null"}]}
    return node


def test_unreachable_server_is_a_clean_error(tmp_path, token_env):
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(GitHubFetchError, match=f"cannot reach http://127.0.0.1:{port}/api/v3") as info:
        fetch_issues("o/r", tmp_path / "x.jsonl", base_url=f"http://127.0.0.1:{port}/api/v3", progress=False)
    assert TOKEN not in str(info.value)
