"""Prompt templates: Jinja2 in a sandbox, with strict undefined, and errors that say where.

A task's prompt variants are templates over ``issue`` (the issue as plain data: ``issue.title``,
``issue.body``, ``issue.gold.priority``, ...), ``fields`` (the issue as the shipped prompts show it: the
body cut to its head and tail past 6,000 characters, the first five comments, ``(none)`` for no labels;
see :func:`orchestrator.modes.issue_fields`), ``labels`` (the task's label set) and ``task`` (its name). They run in Jinja2's
:class:`~jinja2.sandbox.SandboxedEnvironment`, so a task file shared by someone else cannot reach Python
internals, and with :class:`~jinja2.StrictUndefined`, so a missing field is an error instead of an empty
string in the prompt. Every error (syntax, unknown filter, missing field) is a :class:`TemplateError` that
names the task file, the variant, the field (``system`` or ``user``) and the line.

Jinja2's sandbox rather than our own mini-language: it is well kept, its filters (``join``, ``truncate``,
``default``, ``upper``...) are what users already know, and its sandbox is the one promptfoo-style tools use.
"""

from __future__ import annotations

import functools
import re
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["CONTEXT_NAMES", "PromptTemplate", "TemplateError", "compile_template"]

_FIELD = re.compile(r"\{\{ ?fields\.([a-z_]+) ?\}\}")
_DICT_ATTRIBUTES = frozenset(dir(dict))

# The names a template may use; anything else is an error when the task loads, not when it first runs.
CONTEXT_NAMES = frozenset({"issue", "fields", "labels", "task"})


@functools.cache
def _env() -> Any:
    """The one sandboxed environment; Jinja2 loads on the first template, not with the package (~45 ms)."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    # Jinja2 copies its globals into every render's context: keeping the three a prompt may use (of six)
    # makes a render about a quarter faster (bench/bench_prompts.py)
    for name in set(env.globals) - {"range", "dict", "namespace"}:
        del env.globals[name]
    return env


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
    """One template, where it came from, and (compiled on first use) its Jinja2 template."""

    source: str
    where: Where

    def __getstate__(self) -> dict[str, Any]:
        # a compiled Jinja2 template does not unpickle (Ray ships a run's modes to its workers): it is
        # compiled again where it is used
        return {k: v for k, v in self.__dict__.items() if k != "_compiled"}

    @functools.cached_property
    def _compiled(self) -> tuple[Any, frozenset[str]]:
        """The Jinja2 template and the context names it uses; errors as in :func:`compile_template`."""
        from jinja2 import TemplateSyntaxError, meta

        try:
            ast = _env().parse(self.source, name=_name(self.where))
            names = frozenset(meta.find_undeclared_variables(ast))
            unknown = sorted(names - CONTEXT_NAMES)
            if unknown:
                raise TemplateError(
                    f"{self.where.at(None)}: unknown name {', '.join(repr(u) for u in unknown)}; a template can "
                    f"use {', '.join(sorted(CONTEXT_NAMES))} (e.g. {{{{ issue.title }}}})"
                )
            return _env().from_string(self.source), names
        except TemplateSyntaxError as exc:
            raise TemplateError(f"{self.where.at(exc.lineno)}: {_reason(exc)}") from None

    @property
    def names(self) -> frozenset[str]:
        """The context names the template uses (``issue``, ``fields``, ``labels``, ``task``)."""
        if self.constant:
            return frozenset()
        if self._substitution is not None:
            return frozenset({"fields"}) if self._substitution[1] else frozenset()
        return self._compiled[1]

    @functools.cached_property
    def constant(self) -> bool:
        """No Jinja2 markup at all (most system prompts): the text is the source, and rendering is skipped
        (a third of a prompt's build time). Without ``{{``, ``{%`` or ``{#`` Jinja2 would only turn ``\r\n``
        into ``\n``, so a source with ``\r`` always renders."""
        return not any(mark in self.source for mark in ("{{", "{%", "{#", "\r"))

    @functools.cached_property
    def _substitution(self) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """``(texts, fields)`` when the template is only text and ``{{ fields.<name> }}`` (the shipped tasks'
        user prompts), else None: such a template is joined without Jinja2, 4x faster (bench/bench_prompts.py)
        and without Jinja2's import in a process that serves only the shipped tasks. The text between two
        substitutions has no markup and ``fields`` values are strings, so the result is Jinja2's to the byte
        (tests/tasks/test_builtin_tasks.py renders both ways)."""
        parts = _FIELD.split(self.source)
        texts, names = tuple(parts[0::2]), tuple(parts[1::2])
        if any(mark in text for text in texts for mark in ("{{", "{%", "{#", "\r")):
            return None
        if any(name in _DICT_ATTRIBUTES for name in names):
            return None  # Jinja2 would find the dict's method, not the key
        return texts, names

    def render(self, context: dict[str, Any]) -> str:
        """The text for ``context``; a missing field or a failing filter is a :class:`TemplateError`."""
        if self.constant:
            return self.source
        plain = self._substitution
        fields = context.get("fields")
        if plain is not None and isinstance(fields, dict) and all(n in fields for n in plain[1]):
            texts, names = plain
            out = [texts[0]]
            for name, text in zip(names, texts[1:], strict=True):
                out += (str(fields[name]), text)
            return "".join(out)
        from jinja2 import TemplateError as JinjaTemplateError

        template = self._compiled[0]
        try:
            return template.render(context)
        except JinjaTemplateError as exc:
            raise TemplateError(f"{self.where.at(_template_line(exc))}: {_reason(exc)}") from None
        except Exception as exc:  # a filter given the wrong type, an arithmetic error in the template
            raise TemplateError(
                f"{self.where.at(_template_line(exc))}: {type(exc).__name__}: {exc}"
            ) from None


def compile_template(source: str, where: Where, *, lazy: bool = False) -> PromptTemplate:
    """The template of ``source``, compiled now (so a syntax error, an unknown filter or an unknown name is a
    :class:`TemplateError` when the task loads) unless ``lazy`` (the shipped tasks, checked by the tests:
    importing the package must not load Jinja2)."""
    template = PromptTemplate(source, where)
    if not lazy:
        template.names  # noqa: B018 - compiles, raising here
    return template


def _name(where: Where) -> str:
    return f"{where.path}#{where.variant}.{where.field}"


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc)
    return text.replace("'dict object'", "the value").splitlines()[0]


def _template_line(exc: BaseException) -> int | None:
    """The template line of a render error (Jinja2 rewrites the traceback to point into the template)."""
    from jinja2 import TemplateSyntaxError

    if isinstance(exc, TemplateSyntaxError):
        return exc.lineno
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<template>"]
    return lines[-1] if lines else None
