"""Prompt templates: Jinja2 in a sandbox, with strict undefined, and errors that say where.

A task's prompt variants are templates over ``issue`` (the issue as plain data: ``issue.title``,
``issue.body``, ``issue.gold.priority``, ...) and ``labels`` (the task's label set). They run in Jinja2's
:class:`~jinja2.sandbox.SandboxedEnvironment`, so a task file shared by someone else cannot reach Python
internals, and with :class:`~jinja2.StrictUndefined`, so a missing field is an error instead of an empty
string in the prompt. Every error (syntax, unknown filter, missing field) is a :class:`TemplateError` that
names the task file, the variant, the field (``system`` or ``user``) and the line.

Jinja2's sandbox rather than our own mini-language: it is well kept, its filters (``join``, ``truncate``,
``default``, ``upper``...) are what users already know, and its sandbox is the one promptfoo-style tools use.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.sandbox import SandboxedEnvironment

from ..errors import ConfigError

__all__ = ["CONTEXT_NAMES", "PromptTemplate", "TemplateError", "compile_template"]

# The names a template may use; anything else is an error when the task loads, not when it first runs.
CONTEXT_NAMES = frozenset({"issue", "labels", "task"})

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class TemplateError(ConfigError):
    """A prompt template that cannot compile or render; the message names file, variant, field and line."""


@dataclass(frozen=True)
class Where:
    """Where a template lives: the task file, the variant, the field, and the field's first line in the file."""

    path: Path
    variant: str
    field: str
    first_line: int | None = None

    def at(self, template_line: int | None) -> str:
        """``file:line (prompts.<variant>.<field>, template line N)`` for a line of the template."""
        line = self.first_line
        if line is not None and template_line is not None:
            line += template_line - 1
        place = f"{self.path}:{line}" if line is not None else str(self.path)
        detail = f"prompts.{self.variant}.{self.field}"
        if template_line is not None:
            detail += f", template line {template_line}"
        return f"{place} ({detail})"


@dataclass(frozen=True)
class PromptTemplate:
    """One compiled template and where it came from."""

    source: str
    where: Where
    _template: Any

    def render(self, context: dict[str, Any]) -> str:
        """The text for ``context``; a missing field or a failing filter is a :class:`TemplateError`."""
        try:
            return self._template.render(context)
        except JinjaTemplateError as exc:
            raise TemplateError(f"{self.where.at(_template_line(exc))}: {_reason(exc)}") from None
        except Exception as exc:  # a filter given the wrong type, an arithmetic error in the template
            raise TemplateError(
                f"{self.where.at(_template_line(exc))}: {type(exc).__name__}: {exc}"
            ) from None


def compile_template(source: str, where: Where) -> PromptTemplate:
    """Compile ``source``; a syntax error, an unknown filter or an unknown name is a :class:`TemplateError`."""
    try:
        ast = _ENV.parse(source, name=_name(where))
        unknown = sorted(meta.find_undeclared_variables(ast) - CONTEXT_NAMES)
        if unknown:
            raise TemplateError(
                f"{where.at(None)}: unknown name {', '.join(repr(u) for u in unknown)}; a template can use "
                f"{', '.join(sorted(CONTEXT_NAMES))} (e.g. {{{{ issue.title }}}})"
            )
        template = _ENV.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{where.at(exc.lineno)}: {_reason(exc)}") from None
    return PromptTemplate(source, where, template)


def _name(where: Where) -> str:
    return f"{where.path}#{where.variant}.{where.field}"


def _reason(exc: BaseException) -> str:
    text = str(exc.message if isinstance(exc, JinjaTemplateError) and exc.message else exc)
    return text.replace("'dict object'", "the value").splitlines()[0]


def _template_line(exc: BaseException) -> int | None:
    """The template line of a render error (Jinja2 rewrites the traceback to point into the template)."""
    if isinstance(exc, TemplateSyntaxError):
        return exc.lineno
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<template>"]
    return lines[-1] if lines else None
