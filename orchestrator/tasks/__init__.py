"""Tasks as data: a TOML file per task (gold field, labels, scorer, defaults, prompt variants as templates).

- :mod:`.loader`: read and check task files (:func:`load_task`, :func:`load_tasks`), label schemas,
  variant versions;
- :mod:`.templates`: the sandboxed Jinja2 templates and their errors (file, variant, field, line).
"""

from __future__ import annotations

from .loader import Task, Variant, gold_value, label_schema, load_task, load_tasks
from .templates import TemplateError

__all__ = ["Task", "TemplateError", "Variant", "gold_value", "label_schema", "load_task", "load_tasks"]
