"""Where the files shipped with the package live: the default config, the notebooks, the sample issues.

In a wheel they are package data: ``orchestrator/default.toml`` and, copied at build time from the
top-level folders (``setup.py``), ``orchestrator/_shipped/notebooks/*.ipynb`` and
``orchestrator/_shipped/datasets/sample.jsonl``. In a source checkout (an editable install) there is no
``_shipped`` folder: the checkout's own ``notebooks/`` and ``datasets/`` are used, the single copy in git.
Everything is found through :mod:`importlib.resources`, so it works wherever the package is installed
(as files, as pip always installs a wheel; a zipped package is not supported).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .types import Issue

PACKAGE = "orchestrator"
SHIPPED = "_shipped"  # the folder inside the package that setup.py fills; keep the two in step
DEFAULT_CONFIG = "default.toml"
NOTEBOOK = Path("notebooks") / "benchmark.ipynb"
SAMPLE_DATASET = Path("datasets") / "sample.jsonl"


def package_dir() -> Path:
    """The installed ``orchestrator`` package folder."""
    return Path(str(resources.files(PACKAGE)))


def default_config() -> Path:
    """The config shipped in the package (the fallback when no orchestrator.toml is found)."""
    return package_dir() / DEFAULT_CONFIG


def is_default_config(path: str | os.PathLike[str] | None) -> bool:
    """Whether ``path`` is the shipped default config (then the project root is the working directory)."""
    if not path:
        return False
    try:
        return Path(path).resolve() == default_config().resolve()
    except OSError:
        return False


def shipped_root() -> Path | None:
    """The folder that holds the shipped ``notebooks/`` and ``datasets/``: ``_shipped`` inside an installed
    wheel, else the source checkout the package is imported from; None when neither has the notebook."""
    pkg = package_dir()
    for base in (pkg / SHIPPED, pkg.parent):
        if (base / NOTEBOOK).is_file():
            return base
    return None


def shipped_file(rel: str | os.PathLike[str]) -> Path | None:
    """A shipped file by its project-relative path (``notebooks/explore.ipynb``), or None."""
    root = shipped_root()
    if root is None or Path(rel).is_absolute():
        return None
    candidate = root / rel
    return candidate if candidate.is_file() else None


def notebook(name: str | os.PathLike[str] = NOTEBOOK) -> Path | None:
    """The shipped notebook ``name`` (``notebooks/benchmark.ipynb`` or just ``benchmark.ipynb``), or None."""
    rel = Path(name)
    return shipped_file(rel if rel.parent != Path() else Path("notebooks") / rel)


def sample_dataset() -> Path | None:
    """The shipped ``datasets/sample.jsonl``, or None."""
    return shipped_file(SAMPLE_DATASET)


def dataset_path(path: str | os.PathLike[str]) -> Path:
    """``path`` itself, unless it is a missing ``.../datasets/sample.jsonl`` (the notebooks' default, e.g.
    outside a checkout): then the shipped sample."""
    p = Path(path)
    if not p.exists() and p.parts[-2:] == SAMPLE_DATASET.parts:
        shipped = sample_dataset()
        if shipped is not None:
            return shipped
    return p


def load_issues(path: str | os.PathLike[str], split: str | None = None, **kwargs: Any) -> list[Issue]:
    """:func:`orchestrator.issues.files.load_issues` of :func:`dataset_path` (the shipped sample when the default
    ``datasets/sample.jsonl`` is not in the project)."""
    from .issues.files import load_issues as _load

    return _load(dataset_path(path), split, **kwargs)
