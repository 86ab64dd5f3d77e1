"""A server that echoes the key into its answers: no configured secret may reach any artifact.

The key is not shaped like ``sk-...`` (pattern redaction cannot find it), and a credential header is
configured too. A grid through the CLI, ``ask``, ``results`` and a ``bench`` report run against the echoing
server; then every byte they wrote is scanned: the results database and its WAL, the response cache, the
run snapshot, the printed output, the rendered notebook and HTML report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.fault_server import Action, FaultServer, Request, completion_body

ROOT = Path(__file__).resolve().parents[1]
KEY = "plainword7Q-credential-value"  # no sk- prefix, no pattern: only the configured value can find it
HEADER = "team-hdr-secret-4242"


def echo(req: Request) -> Action:
    leaked = (
        f"I was called with {req.headers.get('authorization')} and token {req.headers.get('x-team-token')}"
    )
    body = completion_body(req, text=json.dumps({"type": "bug", "summary": leaked}))
    return Action(body=body)


def write_setup(tmp: Path, url: str) -> tuple[Path, Path]:
    cfg = tmp / "orchestrator.toml"
    cfg.write_text(
        f"""
[defaults]
model = "echo/m"

[models."echo/m"]
provider = "openai"
model = "m"
base_url = "{url}"
api_key_env = "ODD_CREDENTIAL"
headers = {{ "x-team-token" = "{HEADER}" }}
max_tokens = 64
price = {{ input = 1.0, output = 2.0 }}
"""
    )
    data = tmp / "issues.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {"id": f"a#{i}", "title": f"Crash {i} [call:c{i}]", "body": "Traceback", "split": "dev"}
            )
            + "\n"
            for i in range(3)
        )
    )
    return cfg, data


def run(cfg: Path, home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(ORCHESTRATOR_HOME=str(home), ORCHESTRATOR_PROGRESS="off", ODD_CREDENTIAL=KEY)
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(cfg.parent),
        timeout=timeout,
    )


def scan(paths: list[Path], texts: list[str]) -> list[str]:
    """Where a secret appears: file names (every file under each folder) and indexes of texts."""
    found = []
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for f in files:
            data = f.read_bytes()
            for secret in (KEY, HEADER):
                if secret.encode() in data:
                    found.append(f"{f}: {secret}")
    for i, text in enumerate(texts):
        for secret in (KEY, HEADER):
            if secret in text:
                found.append(f"text {i}: {secret}")
    return found


def test_an_echoing_server_leaks_nothing_into_grid_ask_and_exports(tmp_path) -> None:
    home = tmp_path / "home"
    with FaultServer(script=echo) as server:
        cfg, data = write_setup(tmp_path, server.url)
        ran = run(
            cfg, home, "run", "--dataset", str(data), "--modes", "classify,summarize", "--run-id", "echo"
        )
        assert ran.returncode == 0, ran.stderr
        asked = run(cfg, home, "ask", "--json", "--no-cache", "--mode", "summarize", "Crash [call:ask]")
        assert asked.returncode == 0, asked.stderr
        exported = run(cfg, home, "results", "echo", "--format", "json")
        assert exported.returncode == 0, exported.stderr
        # the server really did echo the credentials: the test would catch a leak
        assert server.requests and server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    rows = json.loads(exported.stdout)
    assert len(rows) == 6 and all("[REDACTED]" in r["text"] for r in rows)
    assert all("secret_redacted" in (r["notes"] or "") for r in rows)
    assert "[REDACTED]" in json.loads(asked.stdout)["text"]
    texts = [ran.stdout, ran.stderr, asked.stdout, asked.stderr, exported.stdout]
    assert scan([home], texts) == []
    snapshot = json.loads(
        __import__("sqlite3")
        .connect(home / "results.sqlite")
        .execute("SELECT config_snapshot FROM runs WHERE id = 'echo'")
        .fetchone()[0]
    )
    assert snapshot["models"]["echo/m"]["headers"] == {"x-team-token": "[set]"}


@pytest.mark.slow
def test_an_echoing_server_leaks_nothing_into_a_bench_report(tmp_path) -> None:
    home = tmp_path / "home"
    reports = tmp_path / "reports"
    with FaultServer(script=echo) as server:
        cfg, data = write_setup(tmp_path, server.url)
        proc = run(
            cfg,
            home,
            "bench",
            "--models",
            "echo/m",
            "--modes",
            "classify,summarize",
            "--dataset",
            str(data),
            "--run-id",
            "echo-bench",
            "--output-dir",
            str(reports),
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert server.count() >= 6
    assert (reports / "echo-bench.html").is_file() and (reports / "echo-bench.ipynb").is_file()
    assert scan([home, reports], [proc.stdout, proc.stderr]) == []
