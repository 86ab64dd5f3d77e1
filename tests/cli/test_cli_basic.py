"""The ``orchestrator`` command: models, ask, and how it reports bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "datasets" / "sample.jsonl"
FAKE_KEY = "sk-fake-openai-VALUE-0123456789abcd"
KEY_ENVS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY", "COHERE_API_KEY", "GEMINI_API_KEY")

COMPLETION_FIELDS = {
    "text",
    "model",
    "served_model",
    "provider",
    "usage",
    "cost_usd",
    "latency_s",
    "finish_reason",
    "attempts",
    "from_cache",
    "request_id",
    "parsed",
    "parse_error",
}
USAGE_FIELDS = {
    "input_uncached",
    "cache_read",
    "cache_write",
    "output",
    "reasoning",
    "input_total",
    "output_total",
}

ISSUE = {
    "repo": "acme/widgets",
    "number": 9,
    "title": "Saving crashes with KeyError on empty projects",
    "body": "Saving an empty project fails. Traceback: KeyError: 'files' in widgets/storage.py.",
    "labels": ["bug"],
}
OTHER = {
    "repo": "acme/widgets",
    "number": 10,
    "title": "Please add dark mode to the settings page",
    "body": "It would be nice to have an option for a dark theme in the settings.",
}


@pytest.fixture
def keys(monkeypatch) -> None:
    for name in KEY_ENVS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)


@pytest.fixture
def cli(capsys, tmp_path, monkeypatch, project_config):
    """Run ``orchestrator --config orchestrator.toml ARGS`` in-process; returns (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str, config: Path | None = project_config) -> tuple[int, str, str]:
        argv = (["--config", str(config)] if config else []) + list(args)
        code = main(argv)
        out, err = capsys.readouterr()
        return code, out, err

    return run


# --------------------------------------------------------------------------- models


def test_models_lists_every_model_with_provider_price_and_key_state(cli, keys, project_config) -> None:
    code, out, err = cli("models")
    assert code == 0
    cfg = load_config(project_config)
    lines = out.splitlines()
    for model_id, spec in cfg.models.items():
        (line,) = [ln for ln in lines if ln.split() and ln.split()[0] == model_id]
        assert spec.provider in line
        if spec.provider in ("local", "baseline", "trained"):
            assert "free" in line
        elif spec.price is not None:
            assert f"{spec.price.input:g}/{spec.price.output:g}" in line
        else:
            assert "unknown" in line
        if spec.api_key_env:
            state = "set" if spec.api_key_env == "OPENAI_API_KEY" else "NOT SET"
            assert re.search(rf"{spec.api_key_env} {state}\b", line), line
    assert FAKE_KEY not in out and FAKE_KEY not in err
    assert str(project_config) in out


def test_models_json(cli, keys, project_config) -> None:
    code, out, err = cli("models", "--json")
    assert code == 0
    rows = json.loads(out)
    cfg = load_config(project_config)
    assert [r["id"] for r in rows] == list(cfg.models)
    by_id = {r["id"]: r for r in rows}
    assert by_id["openai/gpt-4.1-mini"]["key_set"] is True
    assert by_id["anthropic/claude-haiku-4-5"]["key_set"] is False
    assert by_id["local/smollm2"]["key_set"] is None
    assert by_id["baseline/rules"]["provider"] == "baseline"
    assert by_id[cfg.default_model]["default"] is True
    assert by_id["openai/gpt-4.1-mini"]["price"]["input"] == pytest.approx(0.4)
    assert FAKE_KEY not in out and FAKE_KEY not in err


def test_models_via_the_module_entry_point(keys, project_config, tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "--config", str(project_config), "models"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr
    assert "baseline/rules" in proc.stdout and "local/smollm2" in proc.stdout
    assert FAKE_KEY not in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- ask


def test_ask_baseline_classify_prints_answer_and_usage(cli) -> None:
    code, out, err = cli(
        "ask",
        "--model",
        "baseline/rules",
        "--mode",
        "classify",
        "The app crashes with an exception when I save a file",
    )
    assert code == 0, err
    answer = json.loads(out.strip().splitlines()[0])
    assert answer["type"] == "bug"
    usage = out.strip().splitlines()[-1]
    assert "model baseline/rules" in usage
    assert re.search(r"tokens in \d+ out \d+", usage), usage
    assert re.search(r"\$0\.0+\b", usage), usage
    assert re.search(r"\d+\.\d\d s", usage), usage


def test_ask_json_has_documented_fields_and_no_raw(cli) -> None:
    code, out, err = cli(
        "ask", "--json", "--model", "baseline/rules", "--mode", "classify", "How do I configure the proxy?"
    )
    assert code == 0, err
    data = json.loads(out)
    assert set(data) >= COMPLETION_FIELDS, COMPLETION_FIELDS - set(data)
    assert set(data["usage"]) >= USAGE_FIELDS
    assert "raw" not in data
    assert data["model"] == "baseline/rules" and data["provider"] == "baseline"
    assert data["usage"]["input_total"] > 0 and data["usage"]["output_total"] > 0
    assert data["cost_usd"] == 0.0
    assert data["parse_error"] is None and data["parsed"]["type"] in {"bug", "feature", "question", "docs"}
    assert data["attempts"] == 1 and data["from_cache"] is False


def test_ask_issue_file_json(cli, tmp_path) -> None:
    path = tmp_path / "issue.json"
    path.write_text(json.dumps(ISSUE), encoding="utf-8")
    code, out, err = cli(
        "ask", "--json", "--model", "baseline/rules", "--mode", "summarize", "--issue-file", str(path)
    )
    assert code == 0, err
    assert ISSUE["title"] in json.loads(out)["text"]


def test_ask_issue_file_jsonl_with_index(cli, tmp_path) -> None:
    path = tmp_path / "issues.jsonl"
    path.write_text(json.dumps(ISSUE) + "\n\n" + json.dumps(OTHER) + "\n", encoding="utf-8")
    code, out, err = cli(
        "ask",
        "--json",
        "--model",
        "baseline/rules",
        "--mode",
        "summarize",
        "--issue-file",
        str(path),
        "--index",
        "1",
    )
    assert code == 0, err
    assert OTHER["title"] in json.loads(out)["text"]
    code, out, err = cli("ask", "--model", "baseline/rules", "--issue-file", str(path), "--index", "5")
    assert code == 2 and "out of range" in err and str(path) in err


# --------------------------------------------------------------------------- bad input


def test_unknown_model_lists_known_ones(cli, project_config) -> None:
    code, out, err = cli("ask", "--model", "openai/gpt-99", "hello")
    assert code == 2  # bad input: exit 2, like argparse
    assert "openai/gpt-99" in err
    for model_id in load_config(project_config).models:
        assert model_id in err
    assert "Traceback" not in err


def test_malformed_jsonl_names_file_and_line(cli, tmp_path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(ISSUE) + "\n" + '{"title": "half an object",\n', encoding="utf-8")
    code, out, err = cli("ask", "--model", "baseline/rules", "--issue-file", str(path), "--index", "1")
    assert code == 2
    assert f"{path}:2" in err and "invalid JSON" in err
    assert "Traceback" not in err


def test_malformed_json_file_names_file_and_line(cli, tmp_path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "title": "x",\n  "body": "y"\n  "labels": []\n}\n', encoding="utf-8")
    code, out, err = cli("ask", "--model", "baseline/rules", "--issue-file", str(path))
    assert code == 2
    assert str(path) in err
    assert re.search(r"line 4\b|:4\b", err), err


def test_malformed_json_file_is_a_clean_error(cli, tmp_path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "title": "x",\n  "body": "y"\n  "labels": []\n}\n', encoding="utf-8")
    code, out, err = cli("ask", "--model", "baseline/rules", "--issue-file", str(path))
    assert code == 2
    assert str(path) in err and "invalid JSON" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_issue_file_missing_title_names_the_field(cli, tmp_path, suffix) -> None:
    path = tmp_path / f"untitled{suffix}"
    path.write_text(json.dumps({"body": "no title here"}) + "\n", encoding="utf-8")
    code, out, err = cli("ask", "--model", "baseline/rules", "--issue-file", str(path))
    assert code == 2
    assert str(path) in err and "'title'" in err
    assert "Traceback" not in err


def test_missing_issue_file_and_no_text(cli, tmp_path) -> None:
    code, out, err = cli("ask", "--model", "baseline/rules", "--issue-file", str(tmp_path / "nope.json"))
    assert code == 2 and "nope.json" in err
    code, out, err = cli("ask", "--model", "baseline/rules")
    assert code == 2 and "--issue-file" in err


def test_bad_config_is_a_clean_error(cli, tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[models."x/y"]\nprovider = "nope"\n', encoding="utf-8")
    code, out, err = cli("models", config=bad)
    assert code == 2 and str(bad) in err and "provider" in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- the embedded default


@pytest.mark.slow
def test_ask_embedded_default_on_a_sample_issue(gguf_path, tmp_path) -> None:
    """No config anywhere: the shipped default answers with local/smollm2, in a process of its own."""
    if SAMPLE.is_file():
        issue_file, index = SAMPLE, "0"
    else:
        issue_file, index = tmp_path / "issue.json", "0"
        issue_file.write_text(json.dumps(ISSUE), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "ORCHESTRATOR_CONFIG"}
    work = tmp_path / "empty"
    work.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "ask",
            "--json",
            "--no-cache",
            "--mode",
            "classify",
            "--issue-file",
            str(issue_file),
            "--index",
            index,
        ],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert data["model"] == "local/smollm2" and data["provider"] == "local"
    assert data["served_model"] == gguf_path.name
    assert data["text"].strip()
    assert data["cost_usd"] == 0.0
    assert data["usage"]["input_total"] > 0 and data["usage"]["output_total"] > 0
    assert data["parse_error"] is None, data["text"]
