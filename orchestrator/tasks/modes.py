"""Task variants as modes: each prompt variant of a task file joins the mode registry, so the client, the
grid, the scorers and the CLI serve a user's task exactly as they serve a built-in mode.

A task's default variant is the mode ``<task>``; every other variant is ``<task>:<variant>``.
:func:`expand` turns what a user asks for (``priority``: every variant; ``priority:terse``: one) into mode
names. A task whose labels come from the dataset (``labels = "dataset"``) is bound to a run's labels by
:func:`bind_to_issues` before the run; its version then includes the labels, so a different label set
never reuses a cached answer.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..modes import MODES, Mode, get_mode, register_mode
from ..types import Issue, Message

if TYPE_CHECKING:
    from .loader import Task, Variant

__all__ = ["TaskMode", "bind_to_issues", "expand", "register_task"]


@dataclass(frozen=True)
class TaskMode(Mode):
    """A prompt variant of a task file, served as a mode."""

    variant: Variant | None = None
    labels: tuple[str, ...] = ()
    labels_from_dataset: bool = False
    shipped: bool = False  # a variant of a shipped task (its labels, schema and scorer are the package's)
    path: str = ""
    floor_label: str | None = (
        None  # the most common gold label of the run's dev split (the baseline's answer)
    )

    @functools.cached_property
    def version(self) -> str:  # type: ignore[override]
        assert self.variant is not None
        if not self.labels_from_dataset:
            return self.variant.version
        blob = json.dumps([self.variant.version, list(self.labels)])
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def messages(self, issue: Issue | str) -> list[Message]:
        assert self.variant is not None
        if isinstance(issue, str):
            issue = Issue(title="(untitled)", body=issue)
        if self.labels_from_dataset and not self.labels:
            raise ConfigError(
                f'{self.path}: task {self.task!r} takes its labels from the dataset (labels = "dataset"): '
                "run it over a dataset with `orchestrator run --dataset FILE --tasks " + self.task + "`"
            )
        return self.variant.messages(issue, self.labels)


def mode_name(task: Task, variant: str) -> str:
    """The mode name of a variant: the task's name for its default variant, else ``task:variant``."""
    return task.name if variant == task.variant().name else f"{task.name}:{variant}"


def register_task(task: Task) -> list[str]:
    """Register every variant of ``task`` as a mode; returns their names. Only a shipped task (or one a
    project file extends, :func:`~orchestrator.tasks.loader.load_task`) may have a shipped task's name."""
    from .builtin import SHIPPED

    if task.name in SHIPPED and not task.shipped:
        raise ConfigError(f"{task.path}: task {task.name!r} has the name of a shipped task; rename it")
    names = []
    for variant in task.variants.values():
        labels = task.labels or ()
        params: dict[str, Any] = dict(task.scorer_params)
        if task.scorer == "label":
            params = {
                "field": task.gold,
                "key": "label",
                **({"labels": list(labels)} if labels else {}),
                **params,
            }
        mode = TaskMode(
            name=mode_name(task, variant.name),
            system_prompt=variant.system.source,
            user_template=variant.user.source,
            defaults=dict(task.defaults),
            schema=task.schema,
            scorer=task.scorer,
            scorer_params=params,
            task=task.name,
            prompt=variant.name,
            variant=variant,
            labels=tuple(labels),
            labels_from_dataset=task.labels_from_dataset,
            shipped=task.shipped,
            path=str(task.path),
        )
        names.append(register_mode(mode).name)
    return names


def expand(names: Iterable[str]) -> list[str]:
    """Mode names for what a user asks for: a built-in mode, ``task`` (every variant) or ``task:variant``."""
    out: list[str] = []
    for name in names:
        if name in MODES and not isinstance(MODES[name], TaskMode):
            out.append(name)  # a mode registered in code
            continue
        task, _, variant = name.partition(":")
        variants = [m for m in MODES.values() if isinstance(m, TaskMode) and m.task == task]
        if not variants:
            get_mode(name)  # the error lists the known modes
        chosen = [m.name for m in variants if not variant or m.prompt == variant]
        if not chosen:
            known = ", ".join(m.prompt for m in variants)
            raise ValueError(f"task {task!r} has no prompt {variant!r} (its prompts: {known})")
        out += [c for c in chosen if c not in out]
    return out


def bind_to_issues(names: Sequence[str], issues: Sequence[Issue]) -> dict[str, Mode]:
    """Bind the task modes of ``names`` to the issues of a run, re-registering them: a task whose labels
    come from the dataset gets the sorted gold values of ``issues``; every label task gets its floor label,
    the most common gold label of the dev split (ties: the first in label order), which the rule baseline
    answers. Returns the modes by name."""
    from collections import Counter

    out = {}
    for name in names:
        mode = get_mode(name)
        if isinstance(mode, TaskMode) and mode.scorer == "label" and not mode.shipped:
            field = mode.scorer_params.get("field", mode.task)
            golds = [
                (i, str(v))
                for i in issues
                if i.gold is not None and (v := i.gold.value_of(field)) not in (None, "")
            ]
            labels = mode.labels
            if mode.labels_from_dataset:
                labels = tuple(sorted({v for _, v in golds}))
                if not labels:
                    raise ConfigError(
                        f"{mode.path}: task {mode.task!r}: no issue has a gold {field!r} to take labels from"
                    )
            counts = Counter(v for i, v in golds if i.split == "dev" and v in labels)
            floor = max(labels, key=lambda lab: (counts[lab], -labels.index(lab))) if counts else None
            params = {**mode.scorer_params, "labels": list(labels)}
            from .loader import label_schema

            mode = register_mode(
                replace(
                    mode, labels=labels, schema=label_schema(labels), scorer_params=params, floor_label=floor
                )
            )
        if isinstance(mode, TaskMode) and mode.variant is not None and not _from_shipped_file(mode):
            _render_all(mode, issues)
        out[name] = mode
    return out


def _from_shipped_file(mode: TaskMode) -> bool:
    """The variant is one of the package's own files (rendered over sample issues by the tests, not per run)."""
    from .builtin import SHIPPED_DIR

    assert mode.variant is not None
    return mode.variant.user.where.path.parent == SHIPPED_DIR


def _render_all(mode: TaskMode, issues: Sequence[Issue]) -> None:
    """Render the variant for every issue before anything is sent: a field some issue lacks stops the run
    here, naming the file, variant, line and the issue, instead of failing cells one by one."""
    from .templates import TemplateError

    for issue in issues:
        try:
            mode.messages(issue)
        except TemplateError as exc:
            raise TemplateError(f"{exc} (issue {issue.id or issue.title!r})") from None
