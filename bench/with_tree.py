"""Run a bench script against another checkout's package, for "before" figures in the same session.

    python bench/with_tree.py /tmp/before bench/bench_grid.py --only efficiency --cells 20000 --concurrency 256

``PYTHONPATH=<checkout>`` is not enough: the editable install's import finder comes before PYTHONPATH, so
``import orchestrator`` would still import this checkout. This takes that finder off the import system,
puts the checkout first on ``sys.path``, checks which package was imported, then runs the script.
A script that starts fresh interpreters finds the checkout in ``BENCH_TREE``: it starts a script child
through this file (``bench_grid.py --only memory``), or puts :func:`import_tree_code` before a ``-c``
child's code (``bench_import.py``, ``bench_bomb.py``, ``bench_prompts.py``, ``bench_scale.py``).
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path


def import_tree_code(tree: str | os.PathLike[str] | None = None) -> str:
    """Python source (one line, only ``sys``) that makes the interpreter running it import the orchestrator
    package of ``tree`` (default: ``BENCH_TREE``); empty when there is none. Put it before a child's code:
    ``[python, "-c", import_tree_code() + code]``."""
    tree = tree if tree is not None else os.environ.get("BENCH_TREE")
    if not tree:
        return ""
    return (
        "import sys; sys.meta_path[:] = [f for f in sys.meta_path "
        "if 'editable' not in getattr(f, '__module__', '')]; "
        f"sys.path.insert(0, {str(Path(tree).resolve())!r}); "
    )


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    tree = str(Path(sys.argv[1]).resolve())
    script = sys.argv[2]
    exec(import_tree_code(tree))
    import orchestrator

    if not orchestrator.__file__ or not orchestrator.__file__.startswith(tree):
        sys.exit(f"with_tree: imported {orchestrator.__file__}, not the package in {tree}")
    print(f"with_tree: orchestrator from {Path(orchestrator.__file__).parent}", file=sys.stderr)
    os.environ["BENCH_TREE"] = tree
    sys.argv = [script, *sys.argv[3:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
