"""The explore widget runs in the background: the call returns at once, progress counts the answers, Cancel
stops the slow model and puts the buttons back, and a new selection cancels a running comparison."""

from __future__ import annotations

import time

import pytest
from helpers.fault_server import Action, FaultServer

from orchestrator import workbench
from orchestrator.client import LLMClient
from orchestrator.config import load_config
from orchestrator.types import Gold, Issue

ISSUES = [Issue(id="a#1", title="Crash in loader", body="Traceback", gold=Gold(type="bug"))]


def slow(req) -> Action:
    return Action("slow", delay_s=30.0, content='{"type": "bug", "component": "x", "severity": "low"}')


@pytest.fixture
def panel(tmp_path, isolated_home):
    with FaultServer(script=slow) as server:
        cfg = tmp_path / "orchestrator.toml"
        cfg.write_text(
            '[defaults]\nmodel = "baseline/rules"\n\n[models."baseline/rules"]\nprovider = "baseline"\n\n'
            f'[models."test/slow"]\nprovider = "openai"\nmodel = "slow"\nbase_url = "{server.url}"\n'
            "price = { input = 1.0, output = 1.0, as_of = 2026-12-01 }\n",
            encoding="utf-8",
        )
        client = LLMClient(load_config(cfg), cache=False)
        box = workbench.explore_widget(ISSUES, client, models="baseline/rules,test/slow", mode="classify")
        try:
            yield box, server
        finally:
            client.close()


def wait_for(predicate, what: str, status=None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        shown = f"; status: {status.value!r}" if status is not None else ""
        assert time.monotonic() < deadline, f"timed out waiting for {what}{shown}"
        time.sleep(0.05)


def test_a_run_returns_at_once_shows_progress_and_cancel_stops_it(panel):
    box, server = panel
    c = box.controls
    started = time.monotonic()
    assert box.run(wait=False) is None
    assert time.monotonic() - started < 2.0  # the kernel is not blocked by the 30 s model
    assert c.run.disabled and c.cancel.layout.display == ""
    wait_for(lambda: "1 of 2 answered, last: baseline/rules" in c.status.value, "the baseline", c.status)
    wait_for(lambda: server.count() >= 1, "the slow model's request", c.status)
    c.cancel.click()
    wait_for(lambda: "cancelled: 1 of 2 answered" in c.status.value, "the cancel", c.status)
    assert not c.run.disabled and c.cancel.layout.display == "none"
    assert c.answers_out.outputs == ()  # no half comparison shown as if complete


def test_changing_the_mode_cancels_a_running_comparison(panel):
    box, _ = panel
    c = box.controls
    box.run(wait=False)
    wait_for(lambda: "1 of 2 answered" in c.status.value, "the baseline", c.status)
    c.mode.value = "summarize"
    wait_for(lambda: not c.run.disabled, "the run to stop", c.status)
    assert c.status.value == "" and c.answers_out.outputs == ()


def test_the_picker_says_whether_a_local_server_answers_and_never_probes_a_remote_one(tmp_path, monkeypatch):
    import socket

    from orchestrator.workbench import widget

    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    up = listening.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    down = closed.getsockname()[1]
    closed.close()
    cfg = tmp_path / "orchestrator.toml"
    cfg.write_text(
        '[defaults]\nmodel = "baseline/rules"\n\n[models."baseline/rules"]\nprovider = "baseline"\n\n'
        f'[models."ollama/up"]\nprovider = "ollama"\nmodel = "m"\nbase_url = "http://127.0.0.1:{up}"\n\n'
        f'[models."ollama/down"]\nprovider = "ollama"\nmodel = "m"\nbase_url = "http://localhost:{down}"\n\n'
        '[models."openai/far"]\nprovider = "openai"\nmodel = "m"\nbase_url = "https://api.example.invalid/v1"\n'
        'api_key_env = "PICKER_TEST_KEY"\n',
        encoding="utf-8",
    )
    config = load_config(cfg)
    probed = []
    real = widget._reachable
    monkeypatch.setattr(widget, "_reachable", lambda host, port: probed.append(host) or real(host, port))
    monkeypatch.delenv("PICKER_TEST_KEY", raising=False)
    try:
        assert widget.model_status(config, "ollama/up") == f"server up at 127.0.0.1:{up}"
        assert widget.model_status(config, "ollama/down") == f"server not reachable at localhost:{down}"
        assert widget.model_status(config, "openai/far") == "no key: set PICKER_TEST_KEY"
        assert widget.model_status(config, "baseline/rules") == "free"
    finally:
        listening.close()
    assert probed == ["127.0.0.1", "localhost"]  # the remote API was never probed
