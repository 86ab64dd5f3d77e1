"""Packaging: the wheel (and the sdist it can be built from) ships what a wheel install needs.

The wheel is built once per module from a copy of the files the build reads (never in the work tree, where
a stale ``build/lib`` could leak old modules into it): without build isolation when setuptools and wheel are
importable here, else with it (pip fetches them from the package registry). Installing it into a fresh venv
and running ``orchestrator bench`` there is CI's ``.ci/wheel_check.sh``: too slow for the suite.
"""

from __future__ import annotations

import email
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import NoReturn

import pytest

from orchestrator import resources

ROOT = Path(__file__).resolve().parents[1]
DIST = "orchestrator-workbench"
# what the build reads (MANIFEST.in, setup.py and pyproject.toml say the rest)
BUILD_INPUTS = (
    "pyproject.toml",
    "setup.py",
    "MANIFEST.in",
    "README.md",
    "orchestrator",
    "notebooks",
    "datasets",
)
SHIPPED = {
    "orchestrator/default.toml": "orchestrator/default.toml",
    "orchestrator/py.typed": "orchestrator/py.typed",
    "orchestrator/_shipped/notebooks/benchmark.ipynb": "notebooks/benchmark.ipynb",
    "orchestrator/_shipped/datasets/sample.jsonl": "datasets/sample.jsonl",
}
BUILD_TIMEOUT = 120


def _skip(reason: str) -> NoReturn:
    print(f"test_packaging: skipped: {reason}", file=sys.stderr)
    pytest.skip(reason)


def _copy_sources(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "_shipped")
    for name in BUILD_INPUTS:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    return dest


def _can_build_without_isolation() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("setuptools", "wheel"))


def _pip_wheel(source: Path, out: Path) -> Path:
    """``pip wheel --no-deps`` of ``source`` (a folder or an sdist) into ``out``; skips when pip cannot."""
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)]
    if _can_build_without_isolation():
        cmd.insert(4, "--no-build-isolation")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT, cwd=out)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _skip(f"cannot build the wheel here: {exc}")
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        if any(s in "\n".join(tail) for s in ("No matching distribution", "Could not find a version")):
            _skip(f"cannot build the wheel here (no build backend from the registry): {' | '.join(tail)}")
        pytest.fail(f"pip wheel failed:\n{proc.stderr[-3000:]}")
    wheels = sorted(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_sources(tmp_path_factory.mktemp("pkg-src"))


@pytest.fixture(scope="module")
def wheel(build_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _pip_wheel(build_dir, tmp_path_factory.mktemp("pkg-wheel"))


def _metadata(whl: zipfile.ZipFile) -> email.message.Message:
    name = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
    return email.message_from_bytes(whl.read(name))


def test_wheel_ships_the_config_notebooks_and_sample(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        for inside, source in SHIPPED.items():
            assert inside in names, f"{inside} missing from {wheel.name}"
            assert whl.read(inside) == (ROOT / source).read_bytes(), f"{inside} differs from {source}"
        for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):  # explore and compare_runs too
            assert f"orchestrator/_shipped/notebooks/{nb.name}" in names
        # only what a wheel install needs: no top-level folders, not the big issue set
        assert not [n for n in names if n.split("/", 1)[0] in ("notebooks", "datasets", "tests", "bench")]
        assert "orchestrator/_shipped/datasets/issues.jsonl" not in names
        # every module of the package (subpackages included: each needs its __init__.py)
        modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "orchestrator").rglob("*.py")}
        assert not sorted(modules - names), "modules missing from the wheel"
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "orchestrator = orchestrator.cli:main" in whl.read(entry_points).decode()
        meta = _metadata(whl)
    assert meta["Name"] == DIST
    assert wheel.name.startswith("orchestrator_workbench-")
    requires = meta.get_all("Requires-Dist") or []
    # the dev extra names this distribution, never the unrelated "orchestrator" of the package index
    assert not [r for r in requires if r.split(";")[0].strip().split("[")[0].lower() == "orchestrator"]
    assert any(r.startswith(f"{DIST}[tokens]") for r in requires), requires


def test_sdist_builds_a_complete_wheel(build_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    if importlib.util.find_spec("setuptools") is None:
        _skip("setuptools is not importable here: cannot build the sdist")
    out = tmp_path_factory.mktemp("pkg-sdist")
    code = "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=build_dir,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sdist = out / proc.stdout.strip().splitlines()[-1]
    wheel = _pip_wheel(sdist, tmp_path_factory.mktemp("pkg-sdist-wheel"))
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
    assert not sorted(set(SHIPPED) - names), "the wheel built from the sdist lacks shipped files"


def test_resources_find_the_shipped_files_in_this_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb, sample, cfg = resources.notebook(), resources.sample_dataset(), resources.default_config()
    assert nb is not None and nb.is_file() and nb.name == "benchmark.ipynb"
    assert sample is not None and sample.is_file() and sample.name == "sample.jsonl"
    assert cfg.is_file() and resources.is_default_config(cfg)
    assert resources.notebook("explore.ipynb") == nb.with_name("explore.ipynb")
    if resources.package_dir().parent == ROOT:  # an editable install: the checkout's single copy
        assert nb == ROOT / "notebooks" / "benchmark.ipynb"
        assert sample == ROOT / "datasets" / "sample.jsonl"
    # outside a project the notebooks' default dataset is the shipped sample; other paths stay as given
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORCHESTRATOR_CONFIG", raising=False)
    assert resources.dataset_path(tmp_path / "datasets" / "sample.jsonl") == sample
    assert (
        resources.dataset_path(tmp_path / "datasets" / "other.jsonl") == tmp_path / "datasets" / "other.jsonl"
    )
    from orchestrator import report, workbench

    assert workbench.load_issues("datasets/sample.jsonl", limit=1)
    assert report.find_notebook() == nb.resolve()
