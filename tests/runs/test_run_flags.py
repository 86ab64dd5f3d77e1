"""``orchestrator run`` rejects bad flags with exit 2 and a message naming the flag and the value.

Each case runs the real command in a subprocess (``python -m orchestrator.cli run ...``): no traceback,
no run created.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli.args import (
    check_run_id,
    comma_list,
    is_safe_run_id,
    non_negative_float,
    positive_int,
    safe_run_id,
)
from orchestrator.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "datasets" / "sample.jsonl"
CONFIG = ROOT / "orchestrator.toml"


def run_cli(*args: str, dataset: Path = SAMPLE) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORCHESTRATOR_PROGRESS": "off"}
    env.pop("ORCHESTRATOR_DEBUG", None)
    cmd = [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "--config",
        str(CONFIG),
        "run",
        "--dataset",
        str(dataset),
    ]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


BAD_FLAGS = [
    (["--repeats", "0"], "--repeats", "'0'"),
    (["--repeats", "two"], "--repeats", "'two'"),
    (["--concurrency", "0"], "--concurrency", "'0'"),
    (["--limit", "-1"], "--limit", "'-1'"),
    (["--limit", "0"], "--limit", "'0'"),  # 0 is not "all issues": omit --limit for that
    (["--budget", "-1"], "--budget", "'-1'"),
    (["--budget", "nan"], "--budget", "'nan'"),
    (["--budget", "inf"], "--budget", "'inf'"),
    (["--modes", "bogus"], "--modes", "'bogus'"),
    (["--modes", ","], "--modes", "','"),
    (["--models", ","], "--models", "','"),
    (["--models", ""], "--models", "''"),
    (["--models", "baseline/rules,unknown/x"], "--models", "'unknown/x'"),
    (["--judge", "unknown/judge"], "--judge", "'unknown/judge'"),
    (["--run-id", "../../x"], "--run-id", "'../../x'"),
    (["--run-id", "a/b"], "--run-id", "'a/b'"),
    (["--run-id", "a..b"], "--run-id", "'a..b'"),
    (["--run-id=-x"], "--run-id", "'-x'"),
    (["--run-id", "x" * 129], "--run-id", "'" + "x" * 129 + "'"),
]


@pytest.mark.parametrize(
    ("args", "flag", "shown"), BAD_FLAGS, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_bad_flag_exits_2_naming_flag_and_value(args, flag, shown, isolated_home):
    proc = run_cli("--models", "baseline/rules", *args) if "--models" not in args else run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert flag in proc.stderr and shown in proc.stderr, proc.stderr
    assert proc.stdout == ""
    assert not (isolated_home / "results.sqlite").exists(), "nothing ran"


def test_unknown_mode_lists_the_known_ones(isolated_home):
    err = run_cli("--modes", "classify,bogus").stderr
    assert "known modes: classify, explain, fix, summarize" in err


def test_unknown_model_lists_the_known_ones(isolated_home):
    err = run_cli("--models", "unknown/x").stderr
    assert "known models:" in err and "baseline/rules" in err and "local/smollm2" in err


def test_good_flags_still_run(isolated_home):
    proc = run_cli("--models", "baseline/rules", "--limit", "2", "--run-id", "ok-run_1.2", "--budget", "0")
    assert proc.returncode == 0, proc.stderr
    assert "run id: ok-run_1.2" in proc.stdout
    assert "run ok-run_1.2: finished; 2 cells run now" in proc.stdout  # free models fit a $0 budget


def test_repaired_lone_surrogates_are_warned_on_stderr(tmp_path, isolated_home):
    dataset = tmp_path / "issues.jsonl"
    issue = {"repo": "acme/app", "number": 1, "title": "Broken emoji", "body": "text \\ud83d here"}
    dataset.write_text(json.dumps(issue).replace("\\\\ud83d", "\\ud83d") + "\n")
    assert "\\ud83d" in dataset.read_text()
    proc = run_cli("--models", "baseline/rules", "--estimate", dataset=dataset)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings and "surrogate" in warnings[0] and f"{dataset}:1" in warnings[0]


# ------------------------------------------------------------------------------------------ validators


@pytest.mark.parametrize(
    "value", ["20261201-101157-dc57", "a", "A.b_c-1", "x" * 128, "test-papermill-0a1b2c"]
)
def test_safe_run_ids(value):
    assert is_safe_run_id(value) and safe_run_id(value) == value and check_run_id(value) == value


@pytest.mark.parametrize(
    "value", ["", ".", "..", "a..b", "-a", "_a", ".a", "a/b", "a\\b", "a b", "é", "x" * 129, "a\n"]
)
def test_unsafe_run_ids(value):
    assert not is_safe_run_id(value)
    with pytest.raises(argparse.ArgumentTypeError):
        safe_run_id(value)
    with pytest.raises(UsageError, match="--bench-id"):
        check_run_id(value, "--bench-id")


def test_number_and_list_validators():
    assert positive_int("3") == 3
    assert non_negative_float("0") == 0.0 and non_negative_float("2.5") == 2.5
    assert comma_list(" a, b ,,a ") == ["a", "b"]
    for bad in ("0", "-2", "1.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)
    for bad in ("-0.01", "nan", "-inf", "inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            non_negative_float(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        comma_list(" , ")


@pytest.mark.parametrize(
    ("args", "flag", "shown"),
    [
        (["--run-id", "../../x"], "--run-id", "'../../x'"),
        (["--run-id", "a/b"], "--run-id", "'a/b'"),
        (["--budget", "nan"], "--budget", "'nan'"),
    ],
)
def test_bench_bad_flags_exit_2_and_write_nothing(args, flag, shown, tmp_path, isolated_home):
    """`bench --run-id ../../x` would have written the report outside --output-dir."""
    out_dir = tmp_path / "reports" / "deep"
    env = {**os.environ, "ORCHESTRATOR_PROGRESS": "off"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "--config",
            str(CONFIG),
            "bench",
            "--output-dir",
            str(out_dir),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert flag in proc.stderr and shown in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "reports").exists() and not list(tmp_path.glob("*.html"))


def test_report_bench_refuses_an_unsafe_run_id_from_python(tmp_path):
    from orchestrator import report

    with pytest.raises(UsageError, match="--run-id"):
        report.bench(run_id="../../escape", output_dir=tmp_path / "reports", config=CONFIG)
    assert not (tmp_path / "reports").exists()
