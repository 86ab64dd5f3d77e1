"""Fetch GitHub issues into an issue set (JSONL), on PyGithub.

:func:`fetch_issues` lists a repository's issues (pull requests skipped), optionally with their
comments, and writes each issue to the output file as soon as it is fetched (flushed), so an
interruption keeps everything fetched so far. Running it again resumes: ids already in the output are
skipped. Works with GitHub Enterprise through ``base_url`` (e.g. ``https://ghe.example.com/api/v3``).

Rate limits are handled here, not by PyGithub: the client is built with ``retry=None`` and no
``seconds_between_requests``, so every 403/429 reaches this module. A primary limit
(``x-ratelimit-remaining: 0`` + ``x-ratelimit-reset``) or a secondary one (``retry-after``) whose wait is
at most ``max_wait`` seconds is waited out with a message on stderr; a longer one stops the fetch
cleanly, keeping what was written, and says when to run the same command again.

The token (``GITHUB_TOKEN`` by default) is only handed to PyGithub: it is registered with
:func:`orchestrator.errors.register_secret` and never written to the output, messages or logs.
"""

from __future__ import annotations

import email.utils
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from ..errors import OrchestratorError, redact, register_secret
from ..types import ISSUE_TYPES, Comment, Gold, Issue
from .files import issue_to_json
from .splits import hash_split

__all__ = ["DEFAULT_LABEL_MAP", "FetchResult", "GitHubFetchError", "fetch_issues", "parse_since"]

T = TypeVar("T")

#: used when no label map is given: labels named like a gold type give that type
DEFAULT_LABEL_MAP: dict[str, str] = {t: t for t in ISSUE_TYPES}

#: a merged PR counts as closing the issue when merged at most this long after the issue closed
_MERGE_TOLERANCE_S = 600.0
#: cross-referencing PRs looked at per issue (each costs a request)
_MAX_PR_CANDIDATES = 3
_MAX_RATE_LIMIT_WAITS = 8
_MAX_SERVER_ERROR_RETRIES = 3
_SECONDARY_DEFAULT_WAIT_S = 60.0


class GitHubFetchError(OrchestratorError):
    """The fetch cannot go on (unknown repository, bad token, network down); the message is redacted."""


class _RateLimitStop(Exception):
    def __init__(self, wait_s: float, kind: str) -> None:
        super().__init__(kind)
        self.wait_s = wait_s
        self.kind = kind


@dataclass
class FetchResult:
    """What one :func:`fetch_issues` run did."""

    repo: str
    out_path: Path
    written: int = 0
    skipped_existing: int = 0
    skipped_pull_requests: int = 0
    stopped: bool = False
    stop_reason: str | None = None
    resume_hint: str | None = None
    waits: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.stopped


def parse_since(text: str | None) -> datetime | None:
    """``2024-01-31`` or an ISO date-time (``Z`` allowed) → an aware UTC datetime."""
    if not text:
        return None
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise GitHubFetchError(
            f"--since: expected a date like 2024-01-31 or 2024-01-31T12:00:00Z (got {text!r})"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _say(message: str) -> None:
    """A visible message on stderr that does not break a progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(redact(message), file=sys.stderr)


def _raw(obj: Any) -> dict[str, Any]:
    """The JSON a PyGithub object was built from.

    Read directly: ``raw_data`` and attributes absent from a list response (e.g. ``pull_request`` on a
    plain issue) make PyGithub "complete" the object with one extra request per issue.
    """
    data = getattr(obj, "_rawData", None)
    return data if isinstance(data, dict) else obj.raw_data


def _header(headers: dict[str, Any] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return None


def _retry_after_s(value: str) -> float | None:
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())


def _rate_limit_wait(exc: Exception) -> tuple[float, str] | None:
    """(seconds to wait, kind) when ``exc`` is a GitHub rate limit, else None."""
    from github import GithubException, RateLimitExceededException

    if not isinstance(exc, GithubException) or exc.status not in (403, 429):
        return None
    headers = exc.headers or {}
    retry_after = _header(headers, "retry-after")
    if retry_after is not None:
        seconds = _retry_after_s(retry_after)
        if seconds is not None:
            return seconds, "secondary"
    remaining = _header(headers, "x-ratelimit-remaining")
    reset = _header(headers, "x-ratelimit-reset")
    if remaining == "0" and reset is not None:
        try:
            return max(0.0, float(reset) - time.time()) + 1.0, "primary"
        except ValueError:
            pass
    if isinstance(exc, RateLimitExceededException) or exc.status == 429:
        # GitHub's advice for a secondary limit without retry-after: wait at least a minute
        return _SECONDARY_DEFAULT_WAIT_S, "secondary"
    return None


def _describe(exc: Exception) -> str:
    from github import GithubException

    if isinstance(exc, GithubException):
        message = exc.message or (exc.data.get("message") if isinstance(exc.data, dict) else None)
        return redact(f"HTTP {exc.status}" + (f": {message}" if message else ""))
    return redact(f"{type(exc).__name__}: {exc}")


class _Caller:
    """Runs PyGithub calls, waiting out short rate limits and stopping on long ones."""

    def __init__(self, max_wait: float, sleep: Callable[[float], None], result: FetchResult) -> None:
        self.max_wait = max_wait
        self.sleep = sleep
        self.result = result

    def __call__(self, fn: Callable[[], T], what: str) -> T:
        from github import GithubException

        waits = 0
        server_errors = 0
        while True:
            try:
                return fn()
            except GithubException as exc:
                limit = _rate_limit_wait(exc)
                if limit is not None:
                    seconds, kind = limit
                    waits += 1
                    if seconds > self.max_wait or waits > _MAX_RATE_LIMIT_WAITS:
                        raise _RateLimitStop(seconds, kind) from None
                    seconds_shown = f"{seconds:.0f}" if seconds >= 1 else f"{seconds:.1f}"
                    _say(
                        f"GitHub {kind} rate limit while fetching {what}: waiting {seconds_shown} s "
                        f"(at most --max-wait {self.max_wait:g} s), then retrying"
                    )
                    self.result.waits.append(seconds)
                    self.sleep(seconds)
                    continue
                if exc.status >= 500 and server_errors < _MAX_SERVER_ERROR_RETRIES:
                    server_errors += 1
                    delay = 2.0**server_errors
                    _say(f"GitHub answered {_describe(exc)} for {what}; retrying in {delay:g} s")
                    self.sleep(delay)
                    continue
                raise


def _read_existing_ids(out_path: Path) -> set[str]:
    """Ids already in ``out_path``; a torn last line (an interrupted write) is cut off."""
    ids: set[str] = set()
    if not out_path.exists():
        return ids
    data = out_path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        try:
            json.loads(tail.decode("utf-8"))
            with open(out_path, "ab") as fh:  # a complete last line without its newline
                fh.write(b"\n")
        except (ValueError, UnicodeDecodeError):
            _say(f"{out_path}: removing an incomplete last line left by an interrupted run")
            with open(out_path, "r+b") as fh:
                fh.truncate(cut)
            data = data[:cut]
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(obj, dict) and isinstance(obj.get("id"), str):
            ids.add(obj["id"])
    return ids


def _gold_type(labels: list[str], label_map: dict[str, str]) -> str | None:
    lowered = {k.lower(): v for k, v in label_map.items()}
    for name in labels:
        mapped = lowered.get(name.lower())
        if mapped in ISSUE_TYPES:
            return mapped
    return None


def _repo_of(api_url: str | None) -> str | None:
    """``.../repos/OWNER/REPO[/...]`` → ``owner/repo`` (lower case)."""
    if not api_url:
        return None
    m = re.search(r"/repos/([^/]+/[^/]+)", api_url)
    return m.group(1).lower() if m else None


def _parse_time(value: Any) -> float | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _closing_pr_files(repo: Any, gh_issue: Any, call: _Caller) -> tuple[int | None, list[str]]:
    """The pull request that closed a closed issue, and the files it changed.

    Rule, from the issue timeline (``GET /repos/{o}/{r}/issues/{n}/timeline``):

    1. ``cross-referenced`` events whose source is a pull request of the same repository, skipping
       those the timeline already shows unmerged (``pull_request.merged_at`` null); the
       :data:`_MAX_PR_CANDIDATES` most recent are fetched (``GET /pulls/{n}``) and the one merged last,
       at most 10 minutes after the issue was closed, wins (a PR merged later did not close it).
    2. Otherwise the last ``closed`` event that carries a ``commit_id``: the merged pull request of
       the same repository associated with that commit (``GET /commits/{sha}/pulls``).

    Files are the PR's changed filenames (``GET /pulls/{n}/files``). No PR found → ``(None, [])``.
    """
    from github.PaginatedList import PaginatedList
    from github.PullRequest import PullRequest

    issue_raw = _raw(gh_issue)
    number = issue_raw["number"]
    this_repo = repo.full_name.lower()
    closed_at = _parse_time(issue_raw.get("closed_at"))
    events = call(lambda: [_raw(e) for e in gh_issue.get_timeline()], f"the timeline of #{number}")

    candidates: list[tuple[float, int]] = []
    closing_commit: str | None = None
    for event in events:
        kind = event.get("event")
        if kind == "cross-referenced":
            source = (event.get("source") or {}).get("issue") or {}
            pr = source.get("pull_request")
            if not pr or source.get("number") is None:
                continue
            if _repo_of(source.get("repository_url") or source.get("url")) != this_repo:
                continue
            if "merged_at" in pr and not pr["merged_at"]:
                continue
            when = _parse_time(pr.get("merged_at")) or _parse_time(event.get("created_at")) or 0.0
            candidates.append((when, int(source["number"])))
        elif kind == "closed" and event.get("commit_id"):
            closing_commit = str(event["commit_id"])

    best: tuple[float, Any] | None = None
    seen: set[int] = set()
    for _when, pr_number in sorted(candidates, reverse=True):
        if pr_number in seen:
            continue
        seen.add(pr_number)
        if len(seen) > _MAX_PR_CANDIDATES:
            break
        pull = call(lambda n=pr_number: repo.get_pull(n), f"pull request #{pr_number}")
        merged_at = _parse_time(_raw(pull).get("merged_at"))
        if not merged_at:
            continue
        if closed_at is not None and merged_at > closed_at + _MERGE_TOLERANCE_S:
            continue
        if best is None or merged_at > best[0]:
            best = (merged_at, pull)

    if best is None and closing_commit:
        url = f"{repo.url}/commits/{closing_commit}/pulls"
        pulls = call(
            lambda: list(PaginatedList(PullRequest, repo.requester, url, None)),
            f"the pull requests of commit {closing_commit[:12]}",
        )
        for pull in pulls:
            data = _raw(pull)
            base_repo = ((data.get("base") or {}).get("repo") or {}).get("full_name") or ""
            same_repo = base_repo.lower() == this_repo or _repo_of(data.get("url")) == this_repo
            if data.get("merged_at") and same_repo:
                best = (_parse_time(data["merged_at"]) or 0.0, pull)
                break

    if best is None:
        return None, []
    pull = best[1]
    pr_number = int(_raw(pull)["number"])
    files = call(
        lambda: [_raw(f)["filename"] for f in pull.get_files()], f"the files of pull request #{pr_number}"
    )
    return pr_number, files


def _to_issue(
    raw: dict[str, Any],
    full_name: str,
    comments: list[dict[str, Any]],
    label_map: dict[str, str],
    closing: tuple[int | None, list[str]],
) -> Issue:
    labels = [
        str(lbl.get("name")) for lbl in raw.get("labels") or [] if isinstance(lbl, dict) and lbl.get("name")
    ]
    issue_id = f"{full_name}#{raw['number']}"
    extra: dict[str, Any] = {}
    if closing[0] is not None:
        extra["closing_pr"] = closing[0]
    if raw.get("state_reason"):
        extra["state_reason"] = raw["state_reason"]
    return Issue(
        id=issue_id,
        repo=full_name,
        number=int(raw["number"]),
        title=raw.get("title") or "",
        body=raw.get("body") or "",
        labels=labels,
        comments=[
            Comment(
                author=(c.get("user") or {}).get("login"),
                body=c.get("body") or "",
                created_at=c.get("created_at"),
            )
            for c in comments
        ],
        state=raw.get("state"),
        created_at=raw.get("created_at"),
        closed_at=raw.get("closed_at"),
        url=raw.get("html_url") or raw.get("url"),
        gold=Gold(type=_gold_type(labels, label_map), files=closing[1]),  # type: ignore[arg-type]
        split=hash_split(issue_id),  # type: ignore[arg-type]
        extra=extra,
    )


def _kept(result: FetchResult) -> str:
    if not result.written:
        return ""
    return (
        f"; the {result.written} issues fetched before are kept in {result.out_path}: "
        "run the same command again to resume"
    )


def fetch_issues(
    repo: str,
    out_path: str | Path,
    *,
    state: str = "all",
    labels: list[str] | None = None,
    since: datetime | str | None = None,
    limit: int | None = None,
    with_comments: bool = False,
    with_files: bool = True,
    label_map: dict[str, str] | None = None,
    base_url: str | None = None,
    token: str | None = None,
    max_wait: float = 120.0,
    progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    timeout: int = 30,
) -> FetchResult:
    """Fetch the issues of ``repo`` (``OWNER/REPO``) and append them to ``out_path`` (JSONL).

    - Pull requests are skipped; ids already in ``out_path`` are skipped (resume), and count toward
      ``limit`` (so re-running an interrupted ``--limit N`` run completes the same N issues).
    - ``since`` filters on the last update (GitHub's ``since``); ``labels`` must all be present.
    - ``label_map`` (label → gold type, case-insensitive) sets ``gold.type``; without it a label named
      like a gold type gives that type.
    - Closed issues get ``gold.files`` from the pull request that closed them (see
      :func:`_closing_pr_files` for the rule) unless ``with_files`` is false; the PR number is kept in
      ``extra.closing_pr``.
    - The split is a stable hash of the id (50/50).
    - ``token`` defaults to ``$GITHUB_TOKEN``; anonymous access otherwise.
    - ``sleep`` is what waits out rate limits (tests inject it).

    Returns a :class:`FetchResult`; ``stopped`` is true when a long rate limit ended the run early
    (everything fetched so far is in ``out_path``; ``resume_hint`` says when to run again).
    """
    from github import Auth, BadCredentialsException, Github, GithubException, UnknownObjectException
    from tqdm.auto import tqdm

    full_name = repo.strip().strip("/")
    if not re.fullmatch(r"[^/\s]+/[^/\s]+", full_name):
        raise GitHubFetchError(f"repository must be OWNER/REPO (got {repo!r})")
    if state not in ("open", "closed", "all"):
        raise GitHubFetchError(f"state must be open, closed or all (got {state!r})")
    if token is None:
        token = os.environ.get("GITHUB_TOKEN") or None
    register_secret(token)
    since_dt = parse_since(since) if isinstance(since, str) else since
    label_map = dict(label_map) if label_map else dict(DEFAULT_LABEL_MAP)
    bad = {k: v for k, v in label_map.items() if v not in ISSUE_TYPES}
    if bad:
        k, v = next(iter(bad.items()))
        raise GitHubFetchError(f"--label-map: {k}={v}: {v!r} is not a gold type ({', '.join(ISSUE_TYPES)})")

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    existing = _read_existing_ids(out)
    result = FetchResult(repo=full_name, out_path=out)
    call = _Caller(max_wait, sleep, result)

    kwargs: dict[str, Any] = {
        "retry": None,
        "seconds_between_requests": None,
        "seconds_between_writes": None,
        "per_page": 100,
        "timeout": timeout,
    }
    if base_url:
        kwargs["base_url"] = base_url.rstrip("/")
    if token:
        kwargs["auth"] = Auth.Token(token)
    gh = Github(**kwargs)
    where = base_url or "github.com"
    bar = tqdm(total=limit, desc=f"fetch {full_name}", unit="issue", disable=not progress, file=sys.stderr)
    try:
        try:
            gh_repo = call(lambda: gh.get_repo(full_name), f"repository {full_name}")
            full_name = gh_repo.full_name or full_name
            result.repo = full_name
            list_kwargs: dict[str, Any] = {"state": state}
            if labels:
                list_kwargs["labels"] = list(labels)
            if since_dt is not None:
                list_kwargs["since"] = since_dt
            listing = gh_repo.get_issues(**list_kwargs)
            index = 0
            seen = 0
            with open(out, "a", encoding="utf-8", newline="\n") as fh:
                while limit is None or seen < limit:
                    try:
                        item = call(lambda i=index: listing[i], "the issue list")
                    except IndexError:
                        break
                    index += 1
                    raw = _raw(item)
                    if raw.get("pull_request"):
                        result.skipped_pull_requests += 1
                        continue
                    seen += 1
                    issue_id = f"{full_name}#{raw['number']}"
                    if issue_id in existing:
                        result.skipped_existing += 1
                        bar.update(1)
                        continue
                    comments: list[dict[str, Any]] = []
                    if with_comments and raw.get("comments", 1):
                        comments = call(
                            lambda it=item: [_raw(c) for c in it.get_comments()],
                            f"the comments of #{raw['number']}",
                        )
                    closing: tuple[int | None, list[str]] = (None, [])
                    if with_files and raw.get("state") == "closed":
                        closing = _closing_pr_files(gh_repo, item, call)
                    issue = _to_issue(raw, full_name, comments, label_map, closing)
                    fh.write(issue_to_json(issue) + "\n")
                    fh.flush()
                    existing.add(issue.id)
                    result.written += 1
                    result.ids.append(issue.id)
                    bar.update(1)
        except _RateLimitStop as stop:
            resume_at = datetime.fromtimestamp(time.time() + stop.wait_s, UTC).strftime("%Y-%m-%d %H:%M UTC")
            result.stopped = True
            result.stop_reason = (
                f"GitHub {stop.kind} rate limit: the wait ({stop.wait_s:.0f} s) is longer than "
                f"--max-wait {max_wait:g} s"
            )
            result.resume_hint = (
                f"stopped early: {result.stop_reason}. {result.written} new issues were written to {out} "
                f"({len(existing)} in the file). To resume, run the same command again after {resume_at}: "
                "issues already in the output file are skipped."
            )
            _say(result.resume_hint)
    except UnknownObjectException:
        raise GitHubFetchError(
            f"repository {full_name} not found at {where} (or the token cannot see it)"
        ) from None
    except BadCredentialsException:
        raise GitHubFetchError(f"{where} rejected the token (401 Bad credentials)") from None
    except GithubException as exc:
        raise GitHubFetchError(f"GitHub request failed: {_describe(exc)}{_kept(result)}") from None
    except OSError as exc:  # connection refused, DNS, timeouts (requests' errors are OSErrors)
        raise GitHubFetchError(f"cannot reach {where}: {_describe(exc)}{_kept(result)}") from None
    finally:
        bar.close()
        gh.close()
    return result
