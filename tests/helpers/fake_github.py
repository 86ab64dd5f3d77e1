"""A fake GitHub REST server on loopback, with bodies taken from the GitHub OpenAPI description.

Response objects start from the examples in ``../shared/specs/github.openapi.json`` (issue,
issue-comment, timeline events, pull-request, pull-request-simple, diff-entry, full-repository) and
have every ``https://api.github.com`` / ``https://github.com`` URL rewritten to this server, because
PyGithub follows ``url`` fields and ``Link`` headers and refuses other hosts.

Repository ``o/r`` (served under ``/api/v3``, like GitHub Enterprise):

- page 1 of ``/issues``: #1 open bug (2 comments), #2 open enhancement, pull request #10;
  page 2: #3 closed bug, #4 closed question, #5 open documentation, #6 closed, no label.
  Pages are linked by a ``Link`` header; ``state`` filters.
- #3's timeline: a cross-referenced unmerged PR #12, a cross-referenced merged PR #10, ``closed``.
- #4's timeline: ``closed`` with a ``commit_id`` whose ``/commits/{sha}/pulls`` is merged PR #11.
- #6's timeline: ``closed`` without a commit (no files).
- ``/pulls/{10,11,12}`` and ``/pulls/{10,11}/files``.
- The first request for page 2 answers with a rate limit (``rate_limit``: ``"secondary"`` 403 with
  ``retry-after``, ``"primary"`` 403 with ``x-ratelimit-remaining: 0``, ``"429"``, or None),
  ``rate_limit_times`` times.

Every request is recorded (method, path, query, headers) in ``requests``.
"""

from __future__ import annotations

import copy
import functools
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

SPEC_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "github.openapi.json"

OWNER_REPO = "o/r"
PR_FILES = {
    10: ["src/parser.py", "tests/test_parser.py"],
    11: ["docs/faq.md"],
}
COMMIT_SHA = "8f1c0d3e5b7a9c2d4e6f8a0b1c3d5e7f9a1b3c5d"
ISSUE_COMMENTS = {
    1: [
        ("alice", "Same here 🐛 on 3.12", "2024-01-02T10:00:00Z"),
        ("bob", "Fixed by\nupgrading", "2024-01-03T11:00:00Z"),
    ],
}


def spec_available() -> bool:
    return SPEC_PATH.is_file()


@functools.cache
def load_spec() -> dict[str, Any]:
    """The parsed description (13 MB; parsed once per process). Do not mutate it."""
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))


class FakeGitHub:
    """Start with ``with FakeGitHub() as fake:``; ``fake.base_url`` is the API root for PyGithub."""

    def __init__(
        self,
        *,
        prefix: str = "/api/v3",
        rate_limit: str | None = "secondary",
        retry_after: int = 1,
        rate_limit_times: int = 1,
    ) -> None:
        spec = load_spec()
        self.examples = spec["components"]["examples"]
        self.prefix = prefix
        self.rate_limit = rate_limit
        self.retry_after = retry_after
        self.rate_limit_times = rate_limit_times
        self.rate_limited = 0
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.host = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.host}{self.prefix}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._build()

    # -------------------------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        return self.api

    def start(self) -> FakeGitHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------ data

    def _rewrite(self, value: Any, number: int | None = None) -> Any:
        """Example → this server: repo o/r, the given number, every GitHub URL on this host."""
        text = json.dumps(value)
        if number is not None:
            for kind in ("issues", "pulls", "pull"):
                text = text.replace(f"Hello-World/{kind}/1347", f"Hello-World/{kind}/{number}")
        text = text.replace("octocat/Hello-World", OWNER_REPO).replace("github/roadmap", OWNER_REPO)
        text = text.replace("https://api.github.com", self.api).replace("https://github.com", self.host)
        return json.loads(text)

    def _example(self, name: str, number: int | None = None) -> Any:
        return self._rewrite(copy.deepcopy(self.examples[name]["value"]), number)

    def _label(self, name: str) -> dict[str, Any]:
        label = copy.deepcopy(self._example("issue")["labels"][0])
        label.update(name=name, url=f"{self.api}/repos/{OWNER_REPO}/labels/{name}", default=False)
        return label

    def issue(
        self,
        number: int,
        title: str,
        body: str | None,
        *,
        state: str = "open",
        labels: tuple[str, ...] = (),
        comments: int = 0,
        pull_request: dict[str, Any] | None = None,
        created_at: str = "2024-01-01T09:00:00Z",
        closed_at: str | None = None,
    ) -> dict[str, Any]:
        issue = self._example("issue", number)
        issue.update(
            id=1000 + number,
            number=number,
            title=title,
            body=body,
            state=state,
            labels=[self._label(n) for n in labels],
            comments=comments,
            created_at=created_at,
            updated_at=closed_at or created_at,
            closed_at=closed_at,
            state_reason="completed" if state == "closed" else None,
            locked=False,
            active_lock_reason=None,
            milestone=None,
            url=f"{self.api}/repos/{OWNER_REPO}/issues/{number}",
            repository_url=f"{self.api}/repos/{OWNER_REPO}",
            comments_url=f"{self.api}/repos/{OWNER_REPO}/issues/{number}/comments",
            events_url=f"{self.api}/repos/{OWNER_REPO}/issues/{number}/events",
            labels_url=f"{self.api}/repos/{OWNER_REPO}/issues/{number}/labels{{/name}}",
            html_url=f"{self.host}/{OWNER_REPO}/issues/{number}",
            timeline_url=f"{self.api}/repos/{OWNER_REPO}/issues/{number}/timeline",
        )
        if pull_request is None:
            issue.pop("pull_request", None)
        else:
            issue["pull_request"] = pull_request
            issue["html_url"] = f"{self.host}/{OWNER_REPO}/pull/{number}"
        if state != "closed":
            issue["closed_by"] = None
        return issue

    def pr_ref(self, number: int, merged_at: str | None) -> dict[str, Any]:
        """The ``pull_request`` object of an issue that is a PR."""
        return {
            "url": f"{self.api}/repos/{OWNER_REPO}/pulls/{number}",
            "html_url": f"{self.host}/{OWNER_REPO}/pull/{number}",
            "diff_url": f"{self.host}/{OWNER_REPO}/pull/{number}.diff",
            "patch_url": f"{self.host}/{OWNER_REPO}/pull/{number}.patch",
            "merged_at": merged_at,
        }

    def pull(self, number: int, merged_at: str | None, *, simple: bool = False) -> dict[str, Any]:
        pr = (
            self._rewrite(copy.deepcopy(self.examples["pull-request-simple-items"]["value"][0]), number)
            if simple
            else self._example("pull-request", number)
        )
        pr.update(
            id=5000 + number,
            number=number,
            state="closed" if merged_at else "open",
            title=f"PR {number}",
            merged_at=merged_at,
            closed_at=merged_at,
            url=f"{self.api}/repos/{OWNER_REPO}/pulls/{number}",
            html_url=f"{self.host}/{OWNER_REPO}/pull/{number}",
            issue_url=f"{self.api}/repos/{OWNER_REPO}/issues/{number}",
        )
        if not simple:
            pr.update(merged=merged_at is not None, changed_files=len(PR_FILES.get(number, [])))
        for team in pr.get("requested_teams") or []:
            team.setdefault("type", "organization")  # required by the schema, missing from its example
        return pr

    def files(self, number: int) -> list[dict[str, Any]]:
        template = self._example("diff-entry-items")[0]
        out = []
        for name in PR_FILES.get(number, []):
            entry = copy.deepcopy(template)
            entry.update(filename=name, contents_url=f"{self.api}/repos/{OWNER_REPO}/contents/{name}")
            out.append(entry)
        return out

    def comment(self, cid: int, number: int, author: str, body: str, created_at: str) -> dict[str, Any]:
        c = self._example("issue-comment", number)
        c.update(
            id=cid,
            body=body,
            created_at=created_at,
            updated_at=created_at,
            url=f"{self.api}/repos/{OWNER_REPO}/issues/comments/{cid}",
            html_url=f"{self.host}/{OWNER_REPO}/issues/{number}#issuecomment-{cid}",
            issue_url=f"{self.api}/repos/{OWNER_REPO}/issues/{number}",
        )
        c["user"]["login"] = author
        return c

    def _event(self, event: str, created_at: str, commit_id: str | None = None) -> dict[str, Any]:
        ev = self._example("timeline-issue-events")[0]  # a "locked" event: a plain issue event
        ev.update(event=event, created_at=created_at, commit_id=commit_id, commit_url=None)
        ev.pop("lock_reason", None)
        if commit_id:
            ev["commit_url"] = f"{self.api}/repos/{OWNER_REPO}/commits/{commit_id}"
        return ev

    def _cross_ref(self, pr_issue: dict[str, Any], created_at: str) -> dict[str, Any]:
        return {
            "event": "cross-referenced",
            "actor": self._example("issue")["user"],
            "created_at": created_at,
            "updated_at": created_at,
            "source": {"type": "issue", "issue": pr_issue},
        }

    def _build(self) -> None:
        merged10 = "2024-02-01T12:00:00Z"
        merged11 = "2024-02-05T08:00:00Z"
        pr10 = self.issue(
            10,
            "Fix the parser crash",
            "Fixes #3",
            state="closed",
            pull_request=self.pr_ref(10, merged10),
            created_at="2024-01-20T09:00:00Z",
            closed_at=merged10,
        )
        pr12 = self.issue(
            12,
            "Attempt at parser fix",
            "Refs #3",
            state="closed",
            pull_request=self.pr_ref(12, None),
            created_at="2024-01-15T09:00:00Z",
            closed_at="2024-01-16T09:00:00Z",
        )
        self.page1 = [
            self.issue(
                1,
                "Crash when parsing empty file",
                "Steps:\n1. run `x ''`\n2. 💥",
                labels=("bug",),
                comments=2,
            ),
            self.issue(2, "Support TOML config", "It would be nice…", labels=("enhancement",)),
            pr10,
        ]
        self.page2 = [
            self.issue(
                3,
                "Parser crashes on unicode ü",
                "Traceback ...",
                state="closed",
                labels=("bug",),
                created_at="2024-01-10T09:00:00Z",
                closed_at=merged10,
            ),
            self.issue(
                4,
                "How do I configure the cache?",
                None,
                state="closed",
                labels=("question",),
                created_at="2024-01-11T09:00:00Z",
                closed_at=merged11,
            ),
            self.issue(5, "Typo in README", "teh → the", labels=("documentation",)),
            self.issue(
                6,
                "Old idea",
                "",
                state="closed",
                created_at="2024-01-12T09:00:00Z",
                closed_at="2024-01-13T09:00:00Z",
            ),
        ]
        self.timelines = {
            3: [
                self._cross_ref(pr12, "2024-01-15T09:00:00Z"),
                self._cross_ref(pr10, "2024-01-20T09:00:00Z"),
                self._event("closed", merged10),
            ],
            4: [self._event("closed", merged11, commit_id=COMMIT_SHA)],
            6: [self._event("closed", "2024-01-13T09:00:00Z")],
        }
        self.pulls = {10: self.pull(10, merged10), 11: self.pull(11, merged11), 12: self.pull(12, None)}
        self.commit_pulls = {COMMIT_SHA: [self.pull(11, merged11, simple=True)]}
        self.comments = {
            n: [self.comment(100 * n + k, n, a, b, t) for k, (a, b, t) in enumerate(items)]
            for n, items in ISSUE_COMMENTS.items()
        }
        repo = self._example("full-repository")
        repo.update(
            name="r",
            full_name=OWNER_REPO,
            url=f"{self.api}/repos/{OWNER_REPO}",
            html_url=f"{self.host}/{OWNER_REPO}",
            issues_url=f"{self.api}/repos/{OWNER_REPO}/issues{{/number}}",
            pulls_url=f"{self.api}/repos/{OWNER_REPO}/pulls{{/number}}",
        )
        repo["owner"]["login"] = "o"
        repo.setdefault("has_discussions", False)  # required by the schema, missing from its example
        self.repository = repo

    # ------------------------------------------------------------------------------------ HTTP

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # headers and body are written separately: without this, Nagle + delayed ACK add ~40 ms
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                with fake._lock:
                    fake.requests.append(
                        {
                            "method": "GET",
                            "path": parts.path,
                            "query": query,
                            "headers": dict(self.headers.items()),
                        }
                    )
                status, body, headers = fake.route(parts.path, query)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-ratelimit-limit", "5000")
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _not_found(self) -> tuple[int, Any, dict[str, str]]:
        return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}, {}

    def _rate_limit_response(self) -> tuple[int, Any, dict[str, str]]:
        docs = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
        if self.rate_limit == "primary":
            reset = int(time.time()) + self.retry_after
            headers = {
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(reset),
                "x-ratelimit-used": "5000",
                "x-ratelimit-resource": "core",
            }
            return (
                403,
                {"message": "API rate limit exceeded for user ID 1.", "documentation_url": docs},
                headers,
            )
        message = (
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
            "If you reach out to GitHub Support for help, please include the request ID ABCD:1234."
        )
        status = 429 if self.rate_limit == "429" else 403
        return status, {"message": message, "documentation_url": docs}, {"retry-after": str(self.retry_after)}

    def route(self, path: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if not path.startswith(self.prefix + "/"):
            return self._not_found()
        path = path[len(self.prefix) :]
        repo_root = f"/repos/{OWNER_REPO}"
        if path == repo_root:
            return 200, self.repository, {}
        if not path.startswith(repo_root + "/"):
            return self._not_found()
        rest = path[len(repo_root) + 1 :].split("/")
        if rest == ["issues"]:
            page = int(query.get("page", "1"))
            if page == 2 and self.rate_limit and self.rate_limited < self.rate_limit_times:
                self.rate_limited += 1
                return self._rate_limit_response()
            items = self.page1 if page == 1 else self.page2 if page == 2 else []
            state = query.get("state", "open")
            if state != "all":
                items = [i for i in items if i["state"] == state]
            per_page = query.get("per_page", "30")
            base = f"{self.api}{repo_root}/issues?state={state}&per_page={per_page}"
            if page == 1:
                link = f'<{base}&page=2>; rel="next", <{base}&page=2>; rel="last"'
            else:
                link = f'<{base}&page=1>; rel="prev", <{base}&page=1>; rel="first"'
            return 200, items, {"Link": link}
        if len(rest) == 3 and rest[0] == "issues" and rest[1].isdigit():
            number = int(rest[1])
            if rest[2] == "comments":
                return 200, self.comments.get(number, []), {}
            if rest[2] == "timeline":
                return 200, self.timelines.get(number, []), {}
        if len(rest) == 2 and rest[0] == "pulls" and rest[1].isdigit() and int(rest[1]) in self.pulls:
            return 200, self.pulls[int(rest[1])], {}
        if len(rest) == 3 and rest[0] == "pulls" and rest[2] == "files" and rest[1].isdigit():
            return 200, self.files(int(rest[1])), {}
        if len(rest) == 3 and rest[0] == "commits" and rest[2] == "pulls" and rest[1] in self.commit_pulls:
            return 200, self.commit_pulls[rest[1]], {}
        return self._not_found()
