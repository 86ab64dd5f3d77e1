"""Reusable ``type=`` validators for command-line flags.

Each raises :class:`argparse.ArgumentTypeError` on a bad value, so argparse prints
``argument --flag: <why>, got '<value>'`` and exits 2 (no traceback). :func:`check_run_id` is the same
check for code that is not argparse (it raises :class:`~orchestrator.errors.UsageError`).
"""

from __future__ import annotations

import argparse
import math
import re

from ..errors import UsageError

# A run id names files (reports/<run_id>.html) and database rows: no path separators, no "..".
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def positive_int(value: str) -> int:
    """An integer >= 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (1 or more), got {value!r}")
    return number


def non_negative_float(value: str) -> float:
    """A finite number >= 0 (no nan, no inf)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {value!r}")
    return number


def positive_float(value: str) -> float:
    """A finite number > 0 (no nan, no inf)."""
    number = non_negative_float(value)
    if number == 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {value!r}")
    return number


def is_safe_run_id(value: str) -> bool:
    """Whether ``value`` is a safe run id: letters, digits, '.', '_', '-', at most 128, no '..'."""
    return bool(RUN_ID_PATTERN.fullmatch(value)) and ".." not in value


def safe_run_id(value: str) -> str:
    """A run id that is safe as a file name and a database key (see :func:`is_safe_run_id`)."""
    if not is_safe_run_id(value):
        raise argparse.ArgumentTypeError(
            "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit, "
            f"without '..', got {value!r}"
        )
    return value


def check_run_id(value: str, flag: str = "--run-id") -> str:
    """:func:`safe_run_id` outside argparse: raises UsageError naming ``flag``."""
    try:
        return safe_run_id(value)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def comma_list(value: str) -> list[str]:
    """Comma-separated names, stripped, empty items and duplicates dropped; at least one."""
    items = list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    if not items:
        raise argparse.ArgumentTypeError(f"needs at least one comma-separated name, got {value!r}")
    return items
