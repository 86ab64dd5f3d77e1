"""The shipped tasks (classify, explain, fix, summarize): task files like a user's, in this folder.

Their prompts are, byte for byte, the ones the workbench sent when the four modes were Python code, and
their default variants keep the versions that results, caches and routing files recorded then: :data:`PINS`
maps each one's content version (the hash every task file's variant gets) to its recorded version.
``tests/tasks/test_builtin_tasks.py`` renders the old and the new prompts over sample issues and recomputes
the old versions from the old definitions. Editing a shipped file changes its content version, so its pin
no longer applies and the edited prompt gets a version of its own.

A project extends a shipped task with a file of the same name that adds ``[prompts.<name>]`` tables (see
:func:`orchestrator.tasks.loader.load_task`): that is how a user compares their prompt with the shipped one.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..loader import Task

__all__ = ["PINS", "SHIPPED", "SHIPPED_DIR", "load_shipped"]

SHIPPED_DIR = Path(__file__).resolve().parent

# content version of the default variant -> the version recorded before tasks were files
PINS: dict[str, str] = {
    "d44329be9066": "5a336f08f9f3",  # classify
    "776fdeedc169": "e24a74c285b2",  # explain
    "a213d5295441": "8dc6c64b6562",  # fix
    "8271f1283b58": "f27f559aeaca",  # summarize
}

SHIPPED: dict[str, Task] = {}  # filled by load_shipped(), when orchestrator.modes loads


def load_shipped() -> dict[str, Task]:
    """Read the shipped task files (parsed with tomllib: ours, so no user-facing error path; their templates
    compile on first use, so importing the package does not load Jinja2)."""
    from ..loader import task_from_data

    for path in sorted(SHIPPED_DIR.glob("*.toml")):
        text = path.read_text(encoding="utf-8")
        task = task_from_data(path, tomllib.loads(text), text, shipped=True, pins=PINS)
        SHIPPED[task.name] = task
    return SHIPPED
