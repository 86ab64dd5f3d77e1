"""The explore notebook in a real JupyterLab, driven by Playwright in Debian's Chromium (no browser download).

A scratch project runs `orchestrator bench` first (baseline/rules, and a model with no key that falls back
to it, output capped at 64 tokens). Then JupyterLab starts on loopback, the explore notebook runs all its
cells, and the test picks the mode and presses Run in the widget, as a user would:

- the answers come from the benchmark's cache (explore asks with the settings the run recorded);
- the card of the model with no key is titled with the model that answered, and says why;
- the status line's dollar amount is text, not MathJax;
- a mode change clears the cards.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers.browser import find_chromium

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CONFIG = """[defaults]
model = "baseline/rules"

[models."baseline/rules"]
provider = "baseline"
max_tokens = 256

[models."openai/keyless"]
provider = "openai"
model = "gpt-x"
api_key_env = "JLAB_TEST_KEY"
fallbacks = ["baseline/rules"]
price = { input = 1.0, output = 2.0, as_of = 2026-12-01 }
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    import nbformat

    project = tmp_path / "project"
    shutil.copytree(ROOT / "notebooks", project / "notebooks")
    (project / "datasets").mkdir()
    shutil.copy(ROOT / "datasets" / "sample.jsonl", project / "datasets" / "sample.jsonl")
    (project / "orchestrator.toml").write_text(CONFIG, encoding="utf-8")
    explore = project / "notebooks" / "explore.ipynb"
    nb = nbformat.read(str(explore), as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source = params.source.replace(
        'models = "baseline/rules,local/smollm2"', 'models = "baseline/rules,openai/keyless"'
    ).replace('stream_model = "local/smollm2"', 'stream_model = "baseline/rules"')
    assert "openai/keyless" in params.source and 'stream_model = "baseline/rules"' in params.source
    nbformat.write(nb, str(explore))
    env = {k: v for k, v in os.environ.items() if k not in ("JLAB_TEST_KEY", "PYTEST_CURRENT_TEST")}
    env.update(
        ORCHESTRATOR_HOME=str(tmp_path / "home"),
        ORCHESTRATOR_CONFIG=str(project / "orchestrator.toml"),
        ORCHESTRATOR_PROGRESS="off",
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
    )
    return project, env


def _bench(project: Path, env: dict[str, str]) -> None:
    code = "import sys; from orchestrator.cli import main; sys.exit(main())"
    args = [
        "bench",
        "--models",
        "baseline/rules,openai/keyless",
        "--modes",
        "classify",
        "-p",
        "max_tokens",
        "64",
    ]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=project, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _start_lab(project: Path, env: dict[str, str], port: int, token: str) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",  # CI containers run as root
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={project}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=",
        "--LabApp.collaborative=False",
    ]
    log = open(project.parent / "jupyterlab.log", "w")  # noqa: SIM115 - the server owns it until the end
    proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError((project.parent / "jupyterlab.log").read_text()[-3000:])
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise AssertionError(
        "JupyterLab did not start: " + (project.parent / "jupyterlab.log").read_text()[-3000:]
    )


def test_explore_in_jupyterlab_reuses_the_bench_cache_and_shows_who_answered(tmp_path):
    chromium = find_chromium()
    if chromium is None:
        reason = "chromium not installed (apt-get install chromium); the JupyterLab test is skipped"
        print(reason)
        pytest.skip(reason)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[dev]'); the JupyterLab test is skipped"
        print(reason)
        pytest.skip(reason)

    project, env = _project(tmp_path)
    _bench(project, env)
    port, token = _free_port(), secrets.token_hex(16)
    lab = _start_lab(project, env, port, token)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"http://127.0.0.1:{port}/lab/tree/notebooks/explore.ipynb?token={token}")
            page.wait_for_function(
                "window.jupyterapp && document.querySelector('.jp-Notebook')", timeout=120_000
            )
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator, .jp-Toolbar", timeout=60_000)
            page.wait_for_function(
                "(() => { const w = window.jupyterapp.shell.currentWidget;"
                " return w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel"
                " && w.sessionContext.session.kernel.status === 'idle'; })()",
                timeout=180_000,
            )
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            run = page.locator(".widget-button", has_text="Run").first
            run.wait_for(timeout=180_000)
            page.locator(".widget-toggle-button", has_text="classify").first.click()
            run.click()
            cards = page.locator(".jp-OutputArea-output .orc-cards .orc-card")
            cards.nth(1).wait_for(timeout=120_000)
            page.wait_for_function(
                "[...document.querySelectorAll('.widget-html')].some(e => e.innerText.includes('done:'))",
                timeout=120_000,
            )
            titles = [cards.nth(i).locator("h4").inner_text() for i in range(cards.count())]
            texts = [cards.nth(i).inner_text() for i in range(cards.count())]
            status = next(
                e for e in page.locator(".widget-html").all_inner_texts() if e.strip().startswith("done:")
            )
            math = page.locator(".widget-html mjx-container, .orc-cards mjx-container").count()
            page.locator(".widget-toggle-button", has_text="summarize").first.click()
            page.wait_for_function(
                "document.querySelectorAll('.widget-output .orc-cards').length === 0", timeout=30_000
            )
            settings = page.locator(".orc-ok", has_text="settings: as run").first.inner_text()
            browser.close()
    finally:
        lab.terminate()
        try:
            lab.wait(timeout=30)
        except subprocess.TimeoutExpired:
            lab.kill()

    assert "settings: as run" in settings and "baseline/rules" in settings
    assert titles[0] == "baseline/rules"
    assert titles[1].startswith("baseline/rules") and "(fallback: openai/keyless did not answer)" in titles[1]
    assert "JLAB_TEST_KEY is not set" in texts[1]
    assert all("cached (free)" in t for t in texts), texts  # the benchmark's answers, not new calls
    assert "2 cached" in status and "1 by a fallback" in status and "$0" in status
    assert math == 0  # no dollar amount was typeset as a formula
    assert errors == [], json.dumps(errors)[:2000]
