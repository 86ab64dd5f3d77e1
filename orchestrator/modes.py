"""Prompt modes: a system prompt, a user template over an Issue, defaults, an output schema, a version.

The registry :data:`MODES` holds every prompt the client can serve by name: the variants of the shipped
tasks (``classify``, ``explain``, ``fix``, ``summarize``, task files in ``orchestrator/tasks/builtin``),
then those of a project's task files, registered when its config loads. A mode's ``version`` is a hash of
everything that shapes its prompt, so results and cache entries from an older prompt are never confused
with a newer one.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .types import Issue, Message

# Bodies longer than this are cut in prompts (head and tail kept): a 135M model has a 2k-8k window
# and long logs carry their signal at the ends.
MAX_BODY_CHARS = 6000


@dataclass(frozen=True)
class Mode:
    """One prompt mode."""

    name: str
    system_prompt: str
    user_template: str
    defaults: dict[str, Any] = field(default_factory=dict)
    schema: dict[str, Any] | None = None
    scorer: str = ""  # a name in orchestrator.scoring.SCORERS; not part of the version (it shapes no prompt)
    scorer_params: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the scorer
    task: str = ""  # the task this mode is a prompt of ("" for a built-in mode: its own name)
    prompt: str = "default"  # the prompt variant

    @property
    def task_name(self) -> str:
        """The task this mode answers: its own name for a built-in mode, the task's for a task variant."""
        return self.task or self.name

    @functools.cached_property
    def version(self) -> str:
        blob = json.dumps(
            [self.name, self.system_prompt, self.user_template, self.defaults, self.schema], sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def messages(self, issue: Issue | str) -> list[Message]:
        """The chat messages for ``issue`` (an Issue, or free text taken as the issue body)."""
        if isinstance(issue, str):
            issue = Issue(title="(untitled)", body=issue)
        user = self.user_template.format(**issue_fields(issue))
        return [Message(role="system", content=self.system_prompt), Message(role="user", content=user)]


def _clip(text: str, limit: int = MAX_BODY_CHARS) -> str:
    if len(text) <= limit:
        return text
    head = text[: limit * 2 // 3]
    tail = text[-limit // 3 :]
    return f"{head}\n\n[... {len(text) - len(head) - len(tail)} characters cut ...]\n\n{tail}"


def issue_fields(issue: Issue) -> dict[str, str]:
    """The values a user template may use."""
    comments = "\n\n".join(f"- {c.author or 'someone'}: {_clip(c.body, 800)}" for c in issue.comments[:5])
    return {
        "repo": issue.repo or "(unknown repository)",
        "number": str(issue.number) if issue.number is not None else "",
        "title": issue.title,
        "body": _clip(issue.body) if issue.body.strip() else "(no description)",
        "labels": ", ".join(issue.labels) if issue.labels else "(none)",
        "comments": comments or "(no comments)",
    }


MODES: dict[str, Mode] = {}  # filled at the end of this module with the shipped tasks

# How tables, figures and reports list modes: label answers first, free text last.
DISPLAY_ORDER = ("classify", "summarize", "fix", "explain")


def ordered_modes(modes: Iterable[str]) -> list[str]:
    """``modes`` without repeats, in :data:`DISPLAY_ORDER`; modes it does not name follow, sorted."""
    seen = list(dict.fromkeys(str(m) for m in modes))
    rank = {m: i for i, m in enumerate(DISPLAY_ORDER)}
    return sorted(seen, key=lambda m: (rank.get(m, len(rank)), m))


def build_messages(
    prompt_or_issue: Issue | str | None, mode: Mode | None, messages: list[Message] | None = None
) -> list[Message]:
    """The messages of a call: ``messages`` as given, else the mode's prompt for the issue or text, else
    the text itself (an issue without a mode: its title and body) as one user message."""
    if messages is not None:
        return list(messages)
    if prompt_or_issue is None:
        raise ValueError("complete() needs a prompt, an Issue or messages=")
    if mode is not None:
        return mode.messages(prompt_or_issue)
    if isinstance(prompt_or_issue, Issue):
        text = f"{prompt_or_issue.title}\n\n{prompt_or_issue.body}"
    else:
        text = prompt_or_issue
    return [Message(role="user", content=text)]


def register_mode(mode: Mode) -> Mode:
    """Add (or replace) a mode under its name: how task files join the built-in modes (see orchestrator.tasks)."""
    MODES[mode.name] = mode
    return mode


def get_mode(name: str) -> Mode:
    """The mode called ``name``; an unknown name lists the known ones."""
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"unknown mode {name!r}; known modes: {', '.join(MODES)}") from None


_DECODER = json.JSONDecoder()  # one for every answer: a new one per answer doubled the cost (0.9 -> 1.9 us)


def parse_structured(text: str, schema: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """Parse and validate a JSON answer against ``schema``: ``(parsed, None)`` or ``(None, error)``.

    Tolerates a fenced code block or prose around the JSON object; never raises.
    """
    candidate = text.strip()
    if candidate.startswith("```"):
        candidate = candidate.strip("`")
        candidate = candidate.split("\n", 1)[1] if "\n" in candidate else candidate
    start = candidate.find("{")
    if start == -1 or candidate.rfind("}") < start:
        return None, "no JSON object in the answer"
    try:
        value, _ = _DECODER.raw_decode(candidate[start:])  # prose after the object is ignored
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc.msg} at character {exc.pos}"
    except (RecursionError, ValueError) as exc:
        return None, f"invalid JSON: {type(exc).__name__}"
    if not isinstance(value, dict):
        return None, "the JSON answer is not an object"
    error = validate_against(value, schema)
    return (value, None) if error is None else (None, error)


def validate_against(value: dict[str, Any], schema: dict[str, Any]) -> str | None:
    """A small validator for the flat object schemas modes declare (no jsonschema import at runtime)."""
    props: dict[str, Any] = schema.get("properties", {})
    for key in schema.get("required", []):
        if key not in value:
            return f"missing field {key!r}"
    for key, item in value.items():
        spec = props.get(key)
        if spec is None:
            if schema.get("additionalProperties") is False:
                return f"unexpected field {key!r}"
            continue
        if spec.get("type") == "string" and not isinstance(item, str):
            return f"field {key!r} must be a string, got {type(item).__name__}"
        if "enum" in spec and item not in spec["enum"]:
            return f"field {key!r} must be one of {spec['enum']}, got {item!r}"
    return None


def _register_shipped() -> None:
    from .tasks.builtin import load_shipped
    from .tasks.modes import register_task

    for task in load_shipped().values():
        register_task(task)


_register_shipped()

# classify's output schema (type, component, severity), as its task file declares it
CLASSIFY_SCHEMA: dict[str, Any] = MODES["classify"].schema or {}
