"""The bench's "before" figures measure the checkout they name: a fresh interpreter started with
``bench/with_tree.py``'s prefix imports that checkout's package, not the editable install's.

Before it, bench_import's and bench_prompts' children, and bench_bomb's without ``--src``, imported this
checkout even under ``bench/with_tree.py``, so their "before" figures were this tree's own.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _with_tree():
    spec = importlib.util.spec_from_file_location("with_tree", BENCH / "with_tree.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_checkout(root: Path) -> Path:
    package = root / "orchestrator"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("MARK = 'the other checkout'\n")
    return root


def test_a_child_started_with_the_prefix_imports_the_named_checkout(tmp_path: Path) -> None:
    tree = _fake_checkout(tmp_path / "before")
    code = _with_tree().import_tree_code(tree) + "import orchestrator; print(orchestrator.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.strip() == str(tree / "orchestrator" / "__init__.py")


def test_without_a_tree_the_prefix_is_empty_and_the_child_imports_this_checkout(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("BENCH_TREE", raising=False)
    with_tree = _with_tree()
    assert with_tree.import_tree_code() == ""
    monkeypatch.setenv("BENCH_TREE", str(_fake_checkout(tmp_path / "from-env")))
    assert "from-env" in with_tree.import_tree_code()
