"""Project paths: where the project is, how a path the user typed is found, how a path is shown.

The project root is the folder of the config in use; for the package's shipped default config it is the
working directory. Paths are recorded relative to it so a run, a report or a routing entry never carries
an absolute path (a home directory name) into a shared artifact.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Config

__all__ = ["project_root", "relative_label", "resolve_path"]


def project_root(config: Config | None = None) -> Path:
    """The project folder: where the config file lives (the working directory for the shipped default)."""
    from .config import find_config_path
    from .resources import is_default_config

    path = config.path if config is not None and config.path else find_config_path()
    if is_default_config(path):
        return Path.cwd().resolve()
    return path.parent.resolve()


def resolve_path(path: str | os.PathLike[str], root: Path | None = None) -> Path:
    """An absolute path as is; a relative one from the working directory, else from the project root."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists() or root is None:
        return p.resolve()
    return (root / p).resolve()


def relative_label(path: str | os.PathLike[str], root: Path | None = None) -> str:
    """How a path is shown and recorded: relative to the project root (or cwd), never absolute."""
    p = Path(path).resolve()
    for base in (root, Path.cwd()):
        if base is None:
            continue
        try:
            return p.relative_to(Path(base).resolve()).as_posix()
        except ValueError:
            continue
    return p.name
