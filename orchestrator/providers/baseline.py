"""A deterministic non-LLM baseline: keyword and rule based, instant, free. The floor every model must beat.

It reads the issue's fields (``ChatRequest.issue``), never the rendered prompt; free text with no issue
is read as a description.

- classify: keyword votes over title, body and labels for type and severity; the component is the
  most frequent source-path directory or a label that is not a type label.
- summarize: the title and the first sentence of the body.
- fix: names the files that appear in stack traces and paths in the text.
- explain: what the issue says it observed, expected and how to reproduce, from its own sentences.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..modes import issue_fields
from ..types import Issue, Usage
from .base import Adapter, ChatRequest, ProviderResponse

TYPE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "bug": (
        "error",
        "crash",
        "exception",
        "traceback",
        "panic",
        "fails",
        "failed",
        "broken",
        "regression",
        "wrong",
        "bug",
        "stack trace",
        "doesn't work",
        "does not work",
        "unexpected",
        "incorrect",
    ),
    "feature": (
        "feature",
        "support for",
        "would be nice",
        "add a",
        "add an",
        "add support",
        "allow",
        "proposal",
        "request",
        "enhancement",
        "option to",
        "it would be great",
        "please add",
    ),
    "question": (
        "how do i",
        "how can i",
        "how to",
        "is it possible",
        "question",
        "what is the",
        "why does",
        "can i",
        "?",
        "help",
    ),
    "docs": (
        "documentation",
        "docs",
        "readme",
        "typo",
        "example in",
        "tutorial",
        "docstring",
        "guide",
        "broken link",
        "undocumented",
    ),
}
SEVERITY_KEYWORDS: dict[str, tuple[str, ...]] = {
    "critical": ("data loss", "security", "vulnerability", "corrupt", "production down", "all users"),
    "high": ("crash", "panic", "exception", "cannot", "can't", "blocker", "regression", "fails"),
    "low": ("typo", "cosmetic", "minor", "nit", "docs", "documentation", "would be nice"),
}
PATH_RE = re.compile(
    r"(?<![\w/.-])((?:[\w.-]+/)+[\w.-]+\.(?:py|go|kt|java|js|ts|tsx|rs|rb|md|rst|xml|toml|yaml|yml|json|c|h|cpp|swift))\b"
)
TRACE_FILE_RE = re.compile(r'File "([^"]+)", line \d+|\b([\w./-]+\.(?:go|kt|java|py)):\d+')
TYPE_LABELS = {
    "bug",
    "feature",
    "question",
    "docs",
    "documentation",
    "enhancement",
    "kind/bug",
    "kind/feature",
}


@dataclass(frozen=True)
class Document:
    """What the rules read: the issue's fields as a prompt shows them (body clipped, comments listed),
    and all of it as one text for keyword and path counts."""

    title: str
    labels: str
    description: str
    text: str

    @classmethod
    def of_issue(cls, issue: Issue) -> Document:
        f = issue_fields(issue)
        text = "\n".join((f["repo"], f["title"], f["labels"], f["body"], f["comments"]))
        return cls(f["title"], f["labels"], f["body"], text)

    @classmethod
    def of_text(cls, text: str) -> Document:
        """Free text (no issue): all of it is the description."""
        return cls("", "", text, text)


def _document(req: ChatRequest) -> Document:
    if req.issue is not None:
        return Document.of_issue(req.issue)
    return Document.of_text("\n".join(m.content for m in req.chat))


def sentences(text: str) -> list[str]:
    """The prose sentences of ``text`` (code blocks and heading marks dropped), each over 15 characters."""
    prose = re.sub(r"```.*?```", " ", text, flags=re.DOTALL)
    prose = re.sub(r"^\s*#+\s*", "", prose, flags=re.MULTILINE)
    parts = re.split(r"(?<=[.!?])\s+|\n{2,}", prose)
    return [p.strip().replace("\n", " ") for p in parts if len(p.strip()) > 15]


def classify(doc: Document) -> dict[str, Any]:
    lowered = doc.text.lower()
    title_text = doc.title.lower()
    votes = Counter({t: 0.0 for t in TYPE_KEYWORDS})
    for issue_type, words in TYPE_KEYWORDS.items():
        for word in words:
            votes[issue_type] += lowered.count(word) + 2 * title_text.count(word)
    labels = doc.labels.lower()
    if "enhancement" in labels or "feature" in labels:
        votes["feature"] += 3
    if "question" in labels:
        votes["question"] += 3
    if "doc" in labels:
        votes["docs"] += 3
    if "bug" in labels:
        votes["bug"] += 2
    issue_type = max(TYPE_KEYWORDS, key=lambda t: (votes[t], -list(TYPE_KEYWORDS).index(t)))
    severity = "medium"
    for level in ("critical", "high", "low"):
        if any(word in lowered for word in SEVERITY_KEYWORDS[level]):
            severity = level
            break
    return {"type": issue_type, "component": component(doc), "severity": severity}


def component(doc: Document) -> str:
    dirs = Counter()
    for path in PATH_RE.findall(doc.text):
        parts = [
            p
            for p in path.split("/")[:-1]
            if p not in {"src", "main", "java", "com", "app", "internal", "pkg"}
        ]
        if parts:
            dirs[parts[-1].lower()] += 1
    if dirs:
        return dirs.most_common(1)[0][0]
    for label in [x.strip().lower() for x in doc.labels.split(",")]:
        if (
            label
            and label != "(none)"
            and label not in TYPE_LABELS
            and "/" not in label
            and "triage" not in label
        ):
            return label
    return "core"


def files(text: str) -> list[str]:
    found: list[str] = []
    for a, b in TRACE_FILE_RE.findall(text):
        found.append(a or b)
    found.extend(PATH_RE.findall(text))
    seen: dict[str, None] = {}
    for path in found:
        path = path.lstrip("./")
        if "site-packages" in path or path.startswith(("usr/", "/usr")):
            continue
        seen.setdefault(path, None)
    return list(seen)


def answer(mode: str | None, doc: Document) -> str:
    lead = sentences(doc.description)
    title_text = doc.title.strip()
    if mode == "classify":
        return json.dumps(classify(doc))
    if mode == "summarize":
        first = lead[0] if lead else ""
        return f"{title_text}. {first}".strip()
    if mode == "fix":
        named = files(doc.text)
        if not named:
            return "No file is named in the issue; the baseline cannot propose a change."
        listing = "\n".join(f"- {p}" for p in named[:5])
        return f"Files to look at (named in the issue or its stack traces):\n{listing}"
    # explain (and free text): the issue's own key sentences
    picked = lead[:3]
    return " ".join([f"The issue reports: {title_text}.", *picked]).strip()


def _label_floor(mode: str | None) -> str | None:
    """For a user's label task, the documented floor: the most common gold label of the run's dev split
    (bound to the mode before the run, :func:`orchestrator.tasks.modes.bind_to_issues`), else its first
    label. None for the built-in modes, which keep their rules."""
    if not mode:
        return None
    from ..modes import MODES

    task_mode = MODES.get(mode)
    if task_mode is None or getattr(task_mode, "variant", None) is None or task_mode.scorer != "label":
        return None
    if getattr(task_mode, "shipped", False):
        return None  # classify (and a project's extra prompts for it) keeps the rules
    labels = getattr(task_mode, "labels", ())
    return getattr(task_mode, "floor_label", None) or (labels[0] if labels else None)


class BaselineAdapter(Adapter):
    name = "baseline"

    def supports_schema(self, spec: Any) -> bool:
        return True

    async def send(self, req: ChatRequest, pool: Any) -> ProviderResponse:
        floor = _label_floor(req.mode)
        task = req.mode.partition(":")[0] if req.mode else None  # classify:mine answers as classify
        out = json.dumps({"label": floor}) if floor is not None else answer(task, _document(req))
        # Word counts of what a model would have read stand in for tokens: comparable, never priced.
        prompt = "\n".join(m.content for m in req.chat)
        usage = Usage(input_uncached=len(prompt.split()), output=len(out.split()))
        return ProviderResponse(text=out, usage=usage, served_model="baseline-rules-v1", finish_reason="stop")


ADAPTER = BaselineAdapter()
