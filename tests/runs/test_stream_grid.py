"""A grid streams by default: each row carries its time to first token and output speed; ``--no-stream``
sends whole requests; a cell whose stream breaks is stored as an error with the partial text, and
``--retry-errors`` asks it again on resume. The whole path: the CLI in a subprocess, a loopback server
replaying OpenAI's event stream, the results database.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers.stream_events import openai_events
from helpers.stream_server import StreamServer

from orchestrator.runs.store import ResultStore, default_db_path

ROOT = Path(__file__).resolve().parents[2]
PIECES = ["The sync ", "merges ", "offline ", "edits twice."]


def _setup(tmp_path: Path, url: str) -> dict[str, str]:
    (tmp_path / "orchestrator.toml").write_text(
        f'[models."srv/m"]\nprovider = "openai"\nmodel = "m"\nbase_url = "{url}/v1"\nmax_tokens = 32\n'
        "price = { input = 1.0, output = 2.0, as_of = 2026-12-01 }\n"
    )
    lines = (ROOT / "datasets" / "sample.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    (tmp_path / "three.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {
        **os.environ,
        "ORCHESTRATOR_CONFIG": str(tmp_path / "orchestrator.toml"),
        "ORCHESTRATOR_HOME": str(tmp_path / "home"),
        "ORCHESTRATOR_PROGRESS": "off",
    }


def _run(tmp_path: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "orchestrator.cli", "run", "--dataset", str(tmp_path / "three.jsonl")]
    cmd += ["--models", "srv/m", "--modes", "summarize", "--concurrency", "1", "--no-cache", *extra]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def _rows(tmp_path: Path, run_id: str):
    store = ResultStore(default_db_path(tmp_path / "home"), readonly=True)
    try:
        return store.results_df(run_id).sort_values("issue_id").reset_index(drop=True)
    finally:
        store.close()


def test_a_streamed_grid_records_ttft_and_a_broken_stream_is_kept_then_retried(tmp_path) -> None:
    events = openai_events(PIECES, model="m", prompt_tokens=40, completion_tokens=4)
    with StreamServer() as server:
        env = _setup(tmp_path, server.url)
        server.stream(events, delays={2: 0.2})
        server.stream(events, cut_after=3)  # the second cell's stream breaks after two pieces
        server.stream(events, delays={2: 0.2})
        proc = _run(tmp_path, env, "--run-id", "streamed")
        assert proc.returncode == 0 and "1 errors" in proc.stdout, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
        assert all(r.json.get("stream") is True for r in server.requests)
        rows = _rows(tmp_path, "streamed")
        ok = rows[rows["error_type"] == ""]
        broken = rows[rows["error_type"] == "stream_interrupted"]
        assert len(ok) == 2 and len(broken) == 1
        assert (ok["ttft_s"] < ok["latency_s"]).all() and (ok["latency_s"] - ok["ttft_s"] >= 0.15).all()
        assert ok["output_tps"].notna().all() and ok["score"].notna().all()
        assert broken["text"].iloc[0] == "".join(PIECES[:2])  # what arrived is stored with the error
        assert "ttft" in proc.stdout and "tok/s" in proc.stdout  # the summary table's columns
        assert server.count == 3  # no retry after the first token

        server.stream(events)
        proc = _run(tmp_path, env, "--run-id", "streamed", "--retry-errors")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert server.count == 4  # only the broken cell was asked again
        rows = _rows(tmp_path, "streamed")
        assert (rows["error_type"] == "").all() and (rows["text"] == "".join(PIECES)).all()


def test_no_stream_sends_whole_requests_and_rows_have_no_ttft(tmp_path) -> None:
    body = {
        "id": "c1",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(PIECES)},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 40, "completion_tokens": 4},
    }
    with StreamServer() as server:
        env = _setup(tmp_path, server.url)
        for _ in range(3):
            server.reply(200, body)
        proc = _run(tmp_path, env, "--run-id", "whole", "--no-stream")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert all("stream" not in r.json for r in server.requests)
    rows = _rows(tmp_path, "whole")
    assert len(rows) == 3 and rows["ttft_s"].isna().all() and rows["output_tps"].isna().all()
    assert (rows["text"] == "".join(PIECES)).all()
