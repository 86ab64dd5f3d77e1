"""``orchestrator issues check | import | fetch``: the issue-set subcommands.

Exit codes:

- 0 done;
- 1 ``check`` found problems in a file (or warnings, with ``--strict``; the problems are printed), or
  ``fetch`` failed;
- 2 invalid input: ``check`` cannot read a file at all (missing, a directory), or ``import`` was given
  a source it cannot import (missing file, a column named twice, a bad row, a bad ``--map``); the
  message names the file and line, the column or the flag;
- 3 ``fetch`` stopped early by a long rate limit (what was fetched is kept; run the same command again
  to resume).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import OrchestratorError, redact
from ..issues import (
    MAX_PROBLEMS,
    DatasetError,
    dataset_stats,
    import_issues,
    parse_pairs,
    read_issues_lenient,
    validate_issues,
    write_issues,
)

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_INPUT = 2
EXIT_STOPPED = 3


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def format_stats(stats: dict) -> str:
    """The by-type (with dev/test columns), by-split and by-repo tables."""
    out = []
    total = stats["total"] or 1
    type_rows = []
    for t, n in stats["by_type"].items():
        per = stats["by_type_split"].get(t, {})
        type_rows.append([t, n, f"{100 * n / total:.0f}%", per.get("dev", 0), per.get("test", 0)])
    out.append(format_table(["type", "count", "share", "dev", "test"], type_rows))
    out.append("")
    out.append(format_table(["split", "count"], [[s, n] for s, n in stats["by_split"].items()]))
    out.append("")
    out.append(format_table(["repo", "count"], [[r, n] for r, n in stats["by_repo"].items()]))
    return "\n".join(out)


def _type_counts(issues) -> str:
    stats = dataset_stats(issues)
    return ", ".join(f"{t} {n}" for t, n in stats["by_type"].items()) or "none"


# ------------------------------------------------------------------------------------------------ check


def cmd_check(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for path in args.files:
        try:
            issues, problems, total = read_issues_lenient(path, limit=MAX_PROBLEMS)
        except DatasetError as exc:  # the file cannot be read at all
            print(str(exc), file=sys.stderr)
            status = EXIT_INPUT
            continue
        stats = dataset_stats(issues)
        print(f"{path}: {stats['total']} issues, {len(stats['by_repo'])} repos")
        print()
        print(format_stats(stats))
        print()
        if total:
            status = max(status, EXIT_PROBLEMS)
            print(f"problems ({total}{'' if total <= len(problems) else f', first {len(problems)} shown'}):")
            for p in problems:
                print(f"  {p}")
        else:
            print("problems: none")
        warnings = validate_issues(issues) if issues else []
        if warnings:
            shown = warnings[:MAX_PROBLEMS]
            more = f", first {len(shown)} shown" if len(warnings) > len(shown) else ""
            print(f"warnings ({len(warnings)}{more}):")
            for w in shown:
                print(f"  {w}")
            if args.strict:
                status = max(status, EXIT_PROBLEMS)
        if len(args.files) > 1:
            print()
    return status


# ----------------------------------------------------------------------------------------------- import


def cmd_import(args: argparse.Namespace) -> int:
    notes: list[str] = []
    try:
        mapping = parse_pairs(args.map, what="--map") if args.map else None
        label_map = parse_pairs(args.labels, what="--labels")
        issues = import_issues(
            args.file,
            mapping,
            label_map,
            split_from_file=args.split_from_file,
            fmt=args.format,
            on_note=notes.append,
        )
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        count = write_issues(args.output, issues)
    except DatasetError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INPUT
    except OSError as exc:
        print(f"-o {args.output}: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INPUT
    stats = dataset_stats(issues)
    print(f"wrote {count} issues to {args.output}")
    print(f"by type: {_type_counts(issues)}")
    print(f"by split: {', '.join(f'{s} {n}' for s, n in stats['by_split'].items()) or 'none'}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------ fetch


def cmd_fetch(args: argparse.Namespace, *, sleep: Callable[[float], None] | None = None) -> int:
    """``issues fetch``; ``sleep`` (default ``time.sleep``) waits out rate limits, for tests."""
    from ..issues.github import GitHubFetchError, fetch_issues

    try:
        label_map = parse_pairs(args.label_map, what="--label-map") or None
        labels = [x.strip() for x in args.labels.split(",") if x.strip()] if args.labels else None
        result = fetch_issues(
            args.repo,
            args.output,
            state=args.state,
            labels=labels,
            since=args.since,
            limit=args.limit,
            with_comments=args.with_comments,
            with_files=not args.no_files,
            label_map=label_map,
            base_url=args.base_url,
            max_wait=args.max_wait,
            progress=not args.no_progress,
            sleep=sleep or time.sleep,
        )
    except (DatasetError, GitHubFetchError) as exc:
        print(redact(str(exc)), file=sys.stderr)
        return EXIT_PROBLEMS
    except OrchestratorError as exc:  # pragma: no cover - defensive
        print(redact(str(exc)), file=sys.stderr)
        return EXIT_PROBLEMS
    print(
        f"fetched {result.written} new issues from {result.repo} into {result.out_path}; "
        f"skipped {result.skipped_existing} already in the file and "
        f"{result.skipped_pull_requests} pull requests"
    )
    if result.stopped:
        print(redact(result.resume_hint or "stopped early"), file=sys.stderr)
        return EXIT_STOPPED
    return EXIT_OK


# --------------------------------------------------------------------------------------------- register


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``issues`` with ``check``, ``import`` and ``fetch`` to a parent parser's subparsers."""
    issues = subparsers.add_parser("issues", help="check, import and fetch issue sets (JSONL)")
    issues.set_defaults(func=lambda args: (issues.print_help(), EXIT_PROBLEMS)[1])
    sub = issues.add_subparsers(dest="issues_command", metavar="{check,import,fetch}")

    check = sub.add_parser(
        "check",
        help="validate issue files and print counts by type, split and repo",
        description=(
            "Validate JSONL issue files: print counts and the first problems "
            "(exit 1 if any; exit 2 if a file cannot be read)."
        ),
    )
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")
    check.add_argument("--strict", action="store_true", help="warnings (e.g. missing gold labels) fail too")
    check.set_defaults(func=cmd_check)

    imp = sub.add_parser(
        "import",
        help="import a labeled CSV, JSONL or Parquet file as an issue set",
        description=(
            "Import a labeled file. Example (NLBSE): orchestrator issues import nlbse.csv "
            "--map title=title,body=body,label=gold.type,repo=repo,created_at=created_at -o out.jsonl"
        ),
    )
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.add_argument(
        "--map",
        metavar="SRC=TARGET,...",
        help="source column → field (any Issue field, gold.<field> or extra.<name>); "
        "default: columns named like a field",
    )
    imp.add_argument(
        "--labels", metavar="VALUE=TYPE,...", help="label values → gold types, e.g. enhancement=feature"
    )
    imp.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.jsonl")
    imp.add_argument(
        "--split-from-file",
        action="store_true",
        help="take the split from the file name (*_train*/*dev* → dev, *_test* → test)",
    )
    imp.add_argument("--format", choices=["csv", "jsonl", "parquet"], help="default: from the extension")
    imp.set_defaults(func=cmd_import)

    fetch = sub.add_parser(
        "fetch",
        help="fetch a repository's issues from GitHub (token from GITHUB_TOKEN)",
        description=(
            "Fetch issues (pull requests skipped) into OUT.jsonl, appending and skipping ids already "
            "there, so re-running resumes. The token comes from GITHUB_TOKEN. Exit 3 when a long rate "
            "limit stopped the run early."
        ),
    )
    fetch.add_argument("repo", metavar="OWNER/REPO")
    fetch.add_argument("--state", choices=["open", "closed", "all"], default="all")
    fetch.add_argument("--labels", metavar="L1,L2", help="only issues with all these labels")
    fetch.add_argument("--since", metavar="DATE", help="only issues updated at or after DATE (ISO 8601)")
    fetch.add_argument(
        "--limit", type=int, metavar="N", help="at most N issues (counting ones already in OUT)"
    )
    fetch.add_argument("--with-comments", action="store_true", help="also fetch each issue's comments")
    fetch.add_argument("--no-files", action="store_true", help="skip gold.files from closing pull requests")
    fetch.add_argument(
        "--label-map",
        metavar="LABEL=TYPE,...",
        help="labels → gold.type, e.g. bug=bug,enhancement=feature,question=question,documentation=docs",
    )
    fetch.add_argument(
        "--base-url", metavar="URL", help="GitHub Enterprise API, e.g. https://ghe.example.com/api/v3"
    )
    fetch.add_argument(
        "--max-wait",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="wait out rate limits up to this long; stop (resumable) beyond (default 120)",
    )
    fetch.add_argument("--no-progress", action="store_true", help="no progress bar")
    fetch.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.jsonl")
    fetch.set_defaults(func=cmd_fetch)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``issues ...`` on its own (the package CLI wires :func:`register` in)."""
    parser = argparse.ArgumentParser(prog="orchestrator")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return EXIT_PROBLEMS
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
