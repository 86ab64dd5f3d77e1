"""``orchestrator ask --stream`` prints the first token before the rest of the answer exists.

The loopback server holds the second piece until the test has read the first from the CLI's stdout (a real
subprocess, a real pipe); only then is the rest released. A buffered CLI would print nothing until the end,
and the gate would time out. A stream that breaks after its first token prints what arrived, then one
error line, no traceback.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers.stream_events import openai_events
from helpers.stream_server import StreamServer

PIECES = ["Guard ", "the ", "first ", "read ", "of ", "the ", "parser."]


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "orchestrator.toml"
    path.write_text(
        f'[models."srv/m"]\nprovider = "openai"\nmodel = "m"\nbase_url = "{url}/v1"\nmax_tokens = 32\n'
        "price = { input = 1.0, output = 2.0, as_of = 2026-12-01 }\n"
    )
    return path


def _start(tmp_path: Path, config: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ORCHESTRATOR_CONFIG": str(config), "ORCHESTRATOR_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "orchestrator.cli", "ask", "--stream", "--no-cache", "--model", "srv/m"]
    return subprocess.Popen(
        [*cmd, "why does the parser crash?"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


def _read_until(proc: subprocess.Popen[bytes], wanted: bytes, timeout: float) -> bytes:
    """What the CLI printed, read as it arrives, until ``wanted`` appears (or the time is up)."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    out = b""
    until = time.monotonic() + timeout
    while wanted not in out and time.monotonic() < until:
        if sel.select(timeout=0.1):
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            out += chunk
    return out


def test_ask_stream_prints_the_first_token_before_the_second_is_sent(tmp_path) -> None:
    gate = threading.Event()
    with StreamServer() as server:
        events = openai_events(PIECES, model="m", prompt_tokens=12, completion_tokens=7)
        server.stream(events, gates={2: gate})  # event 0 is the role chunk, 1 the first piece
        proc = _start(tmp_path, _config(tmp_path, server.url))
        try:
            early = _read_until(proc, b"Guard", timeout=30)
            assert b"Guard" in early, f"the first token was not printed while the rest was held: {early!r}"
            sent = server.sent[0]  # counted once its send returned: wait for that, then it stays at 2
            assert b"parser." not in early and sent.wait(2, 5.0) and sent.count == 2  # the rest is held
            gate.set()
            out, err = proc.communicate(timeout=30)
        finally:
            gate.set()
            proc.kill()
    text = (early + out).decode()
    assert proc.returncode == 0, err.decode()
    assert text.startswith("Guard the first read of the parser.\n")
    assert "first token" in text and "tok/s" in text and "tokens in 12 out 7" in text


def test_ask_stream_that_breaks_prints_the_partial_answer_and_one_error_line(tmp_path) -> None:
    with StreamServer() as server:
        events = openai_events(PIECES, model="m", prompt_tokens=12, completion_tokens=7)
        server.stream(events, cut_after=4)
        proc = _start(tmp_path, _config(tmp_path, server.url))
        out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert out.decode().startswith("Guard the ")
    message = err.decode()
    assert "stream_interrupted" in message and "srv/m" in message
    assert "Traceback" not in message
    assert server.count == 1  # not retried after the first token
