"""Tasks as data: a TOML file per task (gold field, labels, scorer, defaults, prompt variants as templates).

- :mod:`.loader`: read and check task files (:func:`load_task`, :func:`load_tasks`), label schemas,
  variant versions;
- :mod:`.templates`: the sandboxed Jinja2 templates and their errors (file, variant, field, line);
- :mod:`.modes`: each variant served as a mode (``task`` or ``task:prompt``), bound to a run's issues.

Names load on first use, so the grid can check for task modes without importing Jinja2.
"""

from __future__ import annotations

import importlib
from typing import Any

# orchestrator.modes registers the shipped tasks through .modes when it loads: load it first, so that
# importing .modes on its own (a fresh process unpickling a mode, such as a Ray worker) is not circular
from .. import modes as _modes  # noqa: F401

_EXPORTS = {
    "Task": "loader",
    "Variant": "loader",
    "gold_value": "loader",
    "label_schema": "loader",
    "load_task": "loader",
    "load_tasks": "loader",
    "TemplateError": "templates",
    "TaskMode": "modes",
    "bind_to_issues": "modes",
    "expand": "modes",
    "register_task": "modes",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
