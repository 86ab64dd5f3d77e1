"""Build step (all metadata is in pyproject.toml): ship the top-level files a wheel install needs.

``notebooks/*.ipynb`` (what ``orchestrator bench`` executes) and ``datasets/sample.jsonl`` (the notebooks'
default dataset) stay where they are in git, once; at build time they are copied into the wheel as
``orchestrator/_shipped/notebooks/...`` and ``orchestrator/_shipped/datasets/...``, where
``orchestrator.resources`` finds them. MANIFEST.in puts them in the sdist, so a wheel built from it has
them too. An editable install copies nothing: ``orchestrator.resources`` reads the checkout.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = Path("orchestrator") / "_shipped"  # orchestrator/resources.py: PACKAGE / SHIPPED
PATTERNS = ("notebooks/*.ipynb", "datasets/sample.jsonl")
REQUIRED = ("notebooks/benchmark.ipynb", "datasets/sample.jsonl")


def shipped_files() -> list[str]:
    """The project-relative files to ship; fails the build when a required one is missing."""
    missing = [rel for rel in REQUIRED if not (HERE / rel).is_file()]
    if missing:
        raise SystemExit(
            f"setup.py: {', '.join(missing)} missing: the wheel would not run `orchestrator bench`"
        )
    return sorted({p.relative_to(HERE).as_posix() for pattern in PATTERNS for p in HERE.glob(pattern)})


class BuildPyShipped(build_py):
    """build_py, then the shipped files into ``<build_lib>/orchestrator/_shipped/``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout itself
            return
        for rel in shipped_files():
            target = Path(self.build_lib) / SHIPPED / rel
            self.mkpath(str(target.parent))
            self.copy_file(str(HERE / rel), str(target), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        return [*outputs, *(str(Path(self.build_lib) / SHIPPED / rel) for rel in shipped_files())]


setup(cmdclass={"build_py": BuildPyShipped})
