"""Building a prompt since the shipped modes became task files, against the modes as ``str.format`` code.

The four shipped tasks (orchestrator/tasks/builtin/*.toml) are templates; their user prompts are only text
and ``{{ fields.<name> }}``, which are joined without Jinja2, and any other template (a user's task) renders
in Jinja2's sandbox. Before, the modes were Python ``str.format`` templates. Per prompt built (both
messages), over the sample issue set, interleaved rounds, in one run:

- ``str.format``: the old way, the legacy template over the same ``issue_fields`` (the reference);
- ``shipped task file``: ``mode.messages(issue)`` for each shipped task, the way the client builds a call;
- ``Jinja2 template``: the README's priority task (filters, ``issue`` as data), through Jinja2's sandbox.

It also times, in fresh processes, the first prompt of a process: a shipped task's (no Jinja2 import) and a
Jinja2 template's (its import and compilation, paid once per process). The figures sit beside
bench_overhead.py's per-call client overhead (a few hundred microseconds).

    python bench/bench_prompts.py --rounds 5
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from _report import Report, Target  # noqa: E402
from with_tree import import_tree_code  # noqa: E402

from orchestrator.modes import MODES, issue_fields  # noqa: E402
from orchestrator.types import Issue, Message  # noqa: E402

LEGACY_BLOCK = (
    "Repository: {repo}\nIssue #{number}: {title}\nLabels: {labels}\n\n"
    "Description:\n{body}\n\nComments:\n{comments}\n"
)
LEGACY_ENDINGS = {
    "classify": "\nReturn the JSON label.",
    "explain": "\nExplain this issue.",
    "fix": "\nPropose a fix.",
    "summarize": "\nSummarize this issue in one paragraph.",
}
TARGET_SHIPPED = Target("<=", 2.0)  # shipped task file / str.format, round by round
TARGET_RENDER_US = Target("<", 100.0, "us")  # a Jinja2 prompt: small beside the client's per-call overhead
PRIORITY = r"""name = "priority"
gold = "priority"
labels = ["p0", "p1", "p2", "p3"]
scorer = "label"

[prompts.default]
system = "You triage GitHub issues. Answer with one JSON object {\"label\": L} where L is one of {{ labels | join(', ') }}."
user = "Issue: {{ issue.title }}\n\n{{ issue.body | truncate(4000) }}"
"""
FIRST_SHIPPED = (
    "import time; from orchestrator.modes import MODES; t = time.perf_counter(); "
    "MODES['classify'].messages('x'); print(time.perf_counter() - t)"
)
FIRST_JINJA = (
    "import sys, time, tomllib; from pathlib import Path; from orchestrator.tasks.loader import task_from_data; "
    "text = sys.argv[1]; t = time.perf_counter(); "
    "task = task_from_data(Path('priority.toml'), tomllib.loads(text), text); "
    "task.variant().messages(__import__('orchestrator.types').types.Issue(title='x'), task.labels); "
    "print(time.perf_counter() - t)"
)


def issues() -> list[Issue]:
    lines = (ROOT / "datasets" / "sample.jsonl").read_text(encoding="utf-8").splitlines()
    return [Issue.model_validate_json(line) for line in lines if line.strip()]


def per_prompt_us(build, sample: list[Issue], repeat: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        for issue in sample:
            for name in LEGACY_ENDINGS:
                build(name, issue)
    return (time.perf_counter() - t0) / (repeat * len(sample) * len(LEGACY_ENDINGS)) * 1e6


def legacy(name: str, issue: Issue) -> str:
    """What Mode.messages did: format the user template, and build the two messages."""
    user = (LEGACY_BLOCK + LEGACY_ENDINGS[name]).format(**issue_fields(issue))
    messages = [Message(role="system", content=MODES[name].system_prompt), Message(role="user", content=user)]
    return messages[1].content


def task_file(name: str, issue: Issue) -> str:
    return MODES[name].messages(issue)[1].content


def priority_task():
    import tomllib

    from orchestrator.tasks.loader import task_from_data

    return task_from_data(Path("priority.toml"), tomllib.loads(PRIORITY), PRIORITY)


def fresh(code: str, *args: str) -> float:
    proc = subprocess.run(
        [sys.executable, "-c", import_tree_code() + code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return float(proc.stdout.strip()) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=200, help="passes over the sample set per round")
    args = parser.parse_args()
    sample = issues()
    assert all(legacy(n, i) == task_file(n, i) for n in LEGACY_ENDINGS for i in sample)  # same bytes
    task = priority_task()
    variant, labels = task.variant(), task.labels or ()

    def jinja(name: str, issue: Issue) -> str:
        return variant.messages(issue, labels)[-1].content

    old, new, user, first_shipped, first_jinja = [], [], [], [], []
    for _ in range(args.rounds):
        old.append(per_prompt_us(legacy, sample, args.repeat))
        new.append(per_prompt_us(task_file, sample, args.repeat))
        user.append(per_prompt_us(jinja, sample, args.repeat))
        first_shipped.append(fresh(FIRST_SHIPPED))
        first_jinja.append(fresh(FIRST_JINJA, PRIORITY))
    report = Report(f"python bench/bench_prompts.py --rounds {args.rounds} --repeat {args.repeat}")
    report.section(f"one prompt built ({len(sample)} sample issues x {len(LEGACY_ENDINGS)} shipped tasks)")
    report.add("str.format (the modes as code)", old, unit="us")
    report.add("shipped task file", new, unit="us")
    report.add(
        "shipped task file / str.format",
        [b / a for a, b in zip(old, new, strict=True)],
        target=TARGET_SHIPPED,
    )
    report.add("Jinja2 template (the priority example)", user, unit="us", target=TARGET_RENDER_US)
    report.section("the first prompt of a process, fresh processes")
    report.add("a shipped task's (no Jinja2 import)", first_shipped, unit="ms")
    report.add("a Jinja2 template's (import + compile)", first_jinja, unit="ms")
    report.print()


if __name__ == "__main__":
    main()
