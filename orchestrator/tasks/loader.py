"""Task files: a TOML file per task, declaring its gold field, labels, scorer, defaults and prompt variants.

::

    # tasks/priority.toml
    name = "priority"
    description = "How urgently maintainers should look at the issue"
    gold = "priority"                  # reads the issue's gold["priority"]
    labels = ["p0", "p1", "p2", "p3"]  # or "dataset": the gold values of the issues being run
    scorer = "label"                   # or { name = "regex", pattern = "..." }: a scorer with parameters

    [prompts.default]
    system = "... one of {{ labels | join(', ') }}."
    user = "Issue: {{ issue.title }}\\n\\n{{ issue.body | truncate(4000) }}"

A label task (``labels`` given) derives its output schema, ``{"label": one of labels}``, sent as structured
output where the provider supports it. Each variant's :attr:`Variant.version` hashes everything that shapes
its prompt (its two templates, the task's labels, schema and sampling defaults), so editing one variant never
changes another's version, and editing one character changes its own. Every problem is a
:class:`~orchestrator.errors.ConfigError` naming the file, the key or variant, and the line where known.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..types import Issue, Message
from .templates import PromptTemplate, Where, compile_template

__all__ = ["Task", "Variant", "label_schema", "load_task", "load_tasks", "task_from_data"]

TASK_KEYS = frozenset({"name", "description", "gold", "labels", "schema", "scorer", "defaults", "prompts"})
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def label_schema(labels: Sequence[str]) -> dict[str, Any]:
    """The output schema of a label task: one object ``{"label": L}`` with L one of ``labels``."""
    return {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": list(labels)}},
        "required": ["label"],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class Variant:
    """One prompt variant of a task: a system and a user template, and the version of the prompt they make."""

    task: str
    name: str
    system: PromptTemplate
    user: PromptTemplate
    version: str

    @functools.cached_property
    def _names(self) -> frozenset[str]:
        return self.system.names | self.user.names

    def messages(self, issue: Issue, labels: Sequence[str] = ()) -> list[Message]:
        """The chat messages for ``issue``; a missing field is a TemplateError naming file, variant and line."""
        names = self._names
        context: dict[str, Any] = {"labels": list(labels), "task": self.task}
        if "issue" in names:
            context["issue"] = issue.model_dump(mode="json")
        if "fields" in names:
            from ..modes import issue_fields

            context["fields"] = issue_fields(issue)
        system = self.system.render(context)
        user = self.user.render(context)
        out = [Message(role="user", content=user)]
        return [Message(role="system", content=system), *out] if system.strip() else out


@dataclass(frozen=True)
class Task:
    """A task loaded from its file."""

    name: str
    path: Path
    description: str
    gold: str
    scorer: str
    scorer_params: dict[str, Any] = field(default_factory=dict)
    labels: tuple[str, ...] | None = None
    labels_from_dataset: bool = False
    schema: dict[str, Any] | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, Variant] = field(default_factory=dict)
    shipped: bool = False  # one of the package's own tasks (orchestrator/tasks/builtin), or one extending it

    def variant(self, name: str | None = None) -> Variant:
        """The variant ``name`` (default: ``default``, else the first declared)."""
        if name is None:
            return self.variants.get("default") or next(iter(self.variants.values()))
        try:
            return self.variants[name]
        except KeyError:
            known = ", ".join(self.variants)
            raise ConfigError(
                f"{self.path}: task {self.name!r} has no prompt {name!r} (known: {known})"
            ) from None

    def labels_for(self, issues: Iterable[Issue]) -> tuple[str, ...]:
        """The label set: the declared one, or (``labels = "dataset"``) the sorted gold values of ``issues``."""
        if not self.labels_from_dataset:
            return self.labels or ()
        values = {str(v) for i in issues if (v := gold_value(i, self.gold)) not in (None, "")}
        return tuple(sorted(values))


def gold_value(issue: Issue, name: str) -> Any:
    """The issue's gold field ``name``: a declared field or an extra one (``gold.priority``)."""
    return issue.gold.value_of(name) if issue.gold is not None else None


def load_task(path: str | Path, *, shipped: dict[str, Task] | None = None) -> Task:
    """Load and check one task file (every template is compiled now, so errors show before any call).

    A file named like one of the ``shipped`` tasks adds prompt variants to it: it may repeat the task's other
    keys only with the same values, and may not redefine a shipped variant.
    """
    from ..config import read_toml

    path = Path(path)
    data = read_toml(path)
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    base = (shipped or {}).get(data.get("name", path.stem))
    if base is not None:
        return _extend(base, path, data, text)
    return task_from_data(path, data, text)


def task_from_data(
    path: Path, data: dict[str, Any], text: str, *, shipped: bool = False, pins: dict[str, str] | None = None
) -> Task:
    """The task a file's parsed ``data`` (and its ``text``, for line numbers) declares. A ``shipped`` task's
    templates compile on first use and its scorer is not checked here (the tests do both); ``pins`` maps a
    variant's content version to the version results recorded before tasks were files."""
    unknown = sorted(set(data) - TASK_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key {', '.join(repr(k) for k in unknown)} (known: {', '.join(sorted(TASK_KEYS))})"
        )
    name = _string(path, data, "name", default=path.stem)
    if not NAME.match(name):
        raise ConfigError(f"{path}: key 'name': {name!r} must be lowercase letters, digits, '-' or '_'")
    gold = _string(path, data, "gold", default=name)
    scorer, params = _scorer(path, data.get("scorer", "label" if "labels" in data else None))
    if not shipped:
        from ..scoring import check_params

        problems = check_params(scorer, params)
        if problems:
            raise ConfigError(f"{path}: key 'scorer': {problems[0]}")
    labels, from_dataset = _labels(path, data.get("labels"))
    if scorer == "label" and labels is None and not from_dataset:
        raise ConfigError(f"{path}: scorer 'label' needs labels = [...] (or labels = \"dataset\")")
    schema = data.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise ConfigError(f"{path}: key 'schema': must be a table (a JSON schema)")
    if schema is None and labels is not None:
        schema = label_schema(labels)
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: key 'defaults': must be a table of sampling parameters")
    prompts = data.get("prompts")
    if not isinstance(prompts, dict) or not prompts:
        raise ConfigError(f"{path}: no prompt variant: add a [prompts.default] table with system and user")
    variants = _variants(path, text, name, prompts, [labels, from_dataset, schema, defaults], lazy=shipped)
    for variant_name, variant in variants.items():
        if pins and variant.version in pins:
            variants[variant_name] = replace(variant, version=pins[variant.version])
    return Task(
        name=name,
        path=path,
        description=_string(path, data, "description", default=""),
        gold=gold,
        scorer=scorer,
        scorer_params=params,
        labels=labels,
        labels_from_dataset=from_dataset,
        schema=schema,
        defaults=dict(defaults),
        variants=variants,
        shipped=shipped,
    )


def _variants(
    path: Path, text: str, task: str, prompts: dict[str, Any], shaping: list[Any], *, lazy: bool = False
) -> dict[str, Variant]:
    """The ``[prompts.*]`` tables as variants; ``shaping`` is what else shapes a prompt (labels, schema,
    defaults), hashed with the two templates into each variant's version."""
    variants = {}
    for variant, table in prompts.items():
        if not isinstance(table, dict) or not isinstance(table.get("user"), str):
            raise ConfigError(f"{path}: [prompts.{variant}]: needs a string 'user' (and optionally 'system')")
        extra = sorted(set(table) - {"system", "user"})
        if extra:
            raise ConfigError(f"{path}: [prompts.{variant}]: unknown key {', '.join(repr(k) for k in extra)}")
        system_src, user_src = str(table.get("system", "")), table["user"]
        system = compile_template(
            system_src, Where(path, variant, "system", _line_of(text, variant, "system")), lazy=lazy
        )
        user = compile_template(
            user_src, Where(path, variant, "user", _line_of(text, variant, "user")), lazy=lazy
        )
        blob = json.dumps([system_src, user_src, *shaping], sort_keys=True, default=str)
        variants[variant] = Variant(
            task, variant, system, user, hashlib.sha256(blob.encode()).hexdigest()[:12]
        )
    return variants


def _extend(base: Task, path: Path, data: dict[str, Any], text: str) -> Task:
    """``base`` (a shipped task) with the prompt variants of the project file at ``path`` added."""
    unknown = sorted(set(data) - TASK_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key {', '.join(repr(k) for k in unknown)} (known: {', '.join(sorted(TASK_KEYS))})"
        )
    declared = {
        "gold": base.gold,
        "labels": list(base.labels) if base.labels else None,
        "schema": base.schema,
        "defaults": base.defaults,
        "scorer": base.scorer if not base.scorer_params else {"name": base.scorer, **base.scorer_params},
    }
    for key, value in declared.items():
        if key in data and data[key] != value and not (key == "scorer" and data[key] == base.scorer):
            raise ConfigError(
                f"{path}: key {key!r}: the shipped task {base.name!r} fixes its {key} (its results stay "
                "comparable); add prompts here, or give your task another name to change it"
            )
    prompts = data.get("prompts")
    if not isinstance(prompts, dict) or not prompts:
        raise ConfigError(
            f"{path}: no prompt variant: a file extending {base.name!r} adds [prompts.<name>] tables"
        )
    clash = sorted(set(prompts) & set(base.variants))
    if clash:
        raise ConfigError(
            f"{path}: [prompts.{clash[0]}]: the shipped task {base.name!r} already has this prompt; "
            "give yours another name (e.g. [prompts.mine])"
        )
    shaping = [base.labels, base.labels_from_dataset, base.schema, base.defaults]
    added = _variants(path, text, base.name, prompts, shaping)
    return replace(base, variants={**base.variants, **added})


def load_tasks(folders: Iterable[str | Path], *, shipped: dict[str, Task] | None = None) -> dict[str, Task]:
    """Every ``*.toml`` task in ``folders`` (sorted by file name); two files naming one task is an error. A
    file named like a ``shipped`` task extends it (see :func:`load_task`)."""
    tasks: dict[str, Task] = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("*.toml")):
            task = load_task(path, shipped=shipped)
            if task.name in tasks:
                raise ConfigError(f"{path}: task {task.name!r} is already defined in {tasks[task.name].path}")
            tasks[task.name] = task
    return tasks


def _string(path: Path, data: dict[str, Any], key: str, *, default: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{path}: key {key!r}: must be a string (got {type(value).__name__})")
    return value


def _scorer(path: Path, value: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(value, str):
        return value, {}
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return value["name"], {k: v for k, v in value.items() if k != "name"}
    raise ConfigError(f"{path}: key 'scorer': name a scorer (\"label\") or give a table with 'name'")


def _labels(path: Path, value: Any) -> tuple[tuple[str, ...] | None, bool]:
    if value is None:
        return None, False
    if value == "dataset":
        return None, True
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        if len(set(value)) != len(value):
            raise ConfigError(f"{path}: key 'labels': a label is listed twice")
        return tuple(value), False
    raise ConfigError(f"{path}: key 'labels': a list of label strings, or \"dataset\"")


def _line_of(text: str, variant: str, key: str) -> int | None:
    """The file line where ``[prompts.<variant>]``'s ``key`` starts (the first template line for a ``\"\"\"``
    string opened at the end of that line), or None when it cannot be found (an inline table)."""
    header = re.compile(rf"^\s*\[\s*prompts\s*\.\s*(\"{re.escape(variant)}\"|{re.escape(variant)})\s*\]")
    in_table = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("["):
            in_table = bool(header.match(line))
            continue
        if in_table and re.match(rf"^\s*{re.escape(key)}\s*=", line):
            opens_block = re.search(r"=\s*(\"\"\"|''')\s*$", line)
            return number + 1 if opens_block else number
    return None
