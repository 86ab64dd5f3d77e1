"""An interrupted `orchestrator bench` (Ctrl-C: SIGINT to the whole process group, as a terminal sends it)
says what it kept and the exact line that resumes it, with no traceback; that line finishes the run
without asking the model again for a cell already stored."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.fault_server import Action, FaultServer

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


ANSWER = json.dumps({"type": "bug", "component": "core", "severity": "low"})
STATE = {"answered": 0, "stall": True}


def two_then_stall(req) -> Action:
    """Two quick answers, then (until told otherwise) answers slow enough to interrupt the run."""
    STATE["answered"] += 1
    slow = STATE["stall"] and STATE["answered"] > 2
    return Action("slow", delay_s=30.0, content=ANSWER) if slow else Action(content=ANSWER)


def project(folder: Path, url: str) -> Path:
    cfg = folder / "orchestrator.toml"
    cfg.write_text(
        '[defaults]\nmodel = "test/slow"\n\n[models."test/slow"]\nprovider = "openai"\nmodel = "slow"\n'
        f'base_url = "{url}"\nmax_tokens = 32\nprice = {{ input = 1.0, output = 2.0, as_of = 2026-12-01 }}\n',
        encoding="utf-8",
    )
    lines = (ROOT / "datasets" / "sample.jsonl").read_text(encoding="utf-8").splitlines()
    (folder / "datasets").mkdir()
    (folder / "datasets" / "six.jsonl").write_text("\n".join(lines[:6]) + "\n", encoding="utf-8")
    return cfg


def stored(folder: Path, run_id: str) -> int:
    """Cells of ``run_id`` in the results database so far (0 before it exists)."""
    import sqlite3

    from orchestrator.runs.store import default_db_path

    path = default_db_path(folder / ".home")
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM results WHERE run_id = ?", (run_id,)).fetchone()[0]
    except sqlite3.Error:
        return 0


def orchestrator(folder: Path, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "ORCHESTRATOR_HOME": str(folder / ".home"), "OPENAI_API_KEY": "sk-test-x"}
    env.pop("ORCHESTRATOR_CONFIG", None)
    code = "import sys; from orchestrator.cli import main; sys.exit(main())"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_an_interrupted_bench_says_what_it_kept_and_how_to_resume(tmp_path):
    STATE.update(answered=0, stall=True)
    with FaultServer(script=two_then_stall) as server:
        project(tmp_path, server.url)
        args = [
            "bench",
            "--dataset",
            "datasets/six.jsonl",
            "--models",
            "test/slow",
            "--modes",
            "classify",
            "-p",
            "concurrency",
            "1",
        ]
        proc = orchestrator(tmp_path, *args, "--run-id", "intr", start_new_session=True)
        deadline = time.monotonic() + 240
        while stored(tmp_path, "intr") < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)  # until the two quick answers are stored; the others hang for 30 s
        time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert "Traceback" not in err and "ZMQError" not in err, err
        lines = [line for line in err.splitlines() if line.startswith(("bench: interrupted", "resume with:"))]
        assert len(lines) == 2, err
        kept = int(lines[0].split("keeps its ")[1].split(" ")[0])
        assert kept == 2, err
        resume = lines[1].removeprefix("resume with: ")
        assert shlex.split(resume)[:2] == ["orchestrator", "bench"] and "--run-id intr" in resume
        STATE["stall"] = False
        asked = server.count()
        again = orchestrator(tmp_path, *shlex.split(resume)[1:])
        out, err = again.communicate(timeout=300)
        assert again.returncode == 0, err
        assert "status: finished; 6 cells" in out
        assert server.count() - asked <= 6 - kept  # the stored cells were not asked again
    logs = list((tmp_path / "reports").glob("*.kernel.log"))
    assert all(log.stat().st_size > 0 for log in logs), (
        logs
    )  # the kernel's own log is kept only when non-empty
