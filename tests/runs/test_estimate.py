"""``orchestrator run --estimate`` and :func:`orchestrator.runs.estimate.estimate_grid`.

Numbers are computed here from the prompts themselves, independently of the estimate's code: characters
/ 4 for prompt tokens, UTF-8 bytes + template tokens for the worst case (see orchestrator.client.pricing), the
list prices of the test config. Runs that fill the cache or the results database go to a loopback
OpenAI-compatible server that counts requests.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.fault_server import FaultServer

from orchestrator.cli import main
from orchestrator.client.cache import ResponseCache
from orchestrator.config import load_config
from orchestrator.modes import get_mode
from orchestrator.runs import tokens as est
from orchestrator.runs.estimate import estimate_grid
from orchestrator.runs.tokens import APPROXIMATE
from orchestrator.types import Completion, Issue, Usage

PRICE_IN, PRICE_OUT, MAX_TOKENS = 10.0, 40.0, 50  # USD per million tokens; the stub's max_tokens


def write_config(tmp: Path, url: str) -> Path:
    cfg = tmp / "orchestrator.toml"
    cfg.write_text(
        f"""
[defaults]
model = "openai/stub"

[models."openai/stub"]
provider = "openai"
model = "stub"
base_url = "{url}"
max_tokens = {MAX_TOKENS}
price = {{ input = {PRICE_IN}, output = {PRICE_OUT}, as_of = 2026-11-27 }}

[models."openai/unpriced"]
provider = "openai"
model = "stub"
base_url = "{url}"
max_tokens = {MAX_TOKENS}

[models."openai/gpt-4.1-mini"]
provider = "openai"
model = "gpt-4.1-mini"
base_url = "{url}"
max_tokens = {MAX_TOKENS}
price = {{ input = 0.40, output = 1.60, as_of = 2026-06-21 }}

[models."baseline/rules"]
provider = "baseline"

[models."local/smollm2"]
provider = "local"
model = "SmolLM2-135M-Instruct-Q4_1"
max_tokens = 64
"""
    )
    return cfg


def make_issues(n: int) -> list[Issue]:
    # same lengths for every issue: every call of a mode has the same tokens and cost
    return [
        Issue(repo="acme/app", number=i, title=f"Crash {i} on save", body=f"Saving fails with KeyError {i}.")
        for i in range(1, n + 1)
    ]


def write_dataset(tmp: Path, issues: list[Issue]) -> Path:
    path = tmp / "issues.jsonl"
    path.write_text("".join(i.model_dump_json(exclude={"extra"}) + "\n" for i in issues))
    return path


def chars_over_4(issue: Issue, mode: str) -> int:
    m = get_mode(mode)
    chars = sum(len(x.content) for x in m.messages(issue))
    if m.schema is not None:
        chars += len(json.dumps(m.schema, separators=(",", ":")))
    return math.ceil(chars / 4)


def worst_prompt(issue: Issue, mode: str) -> int:
    """16 per request + UTF-8 bytes and 8 per message + the schema's bytes (orchestrator.client.pricing)."""
    m = get_mode(mode)
    total = 16 + sum(len(x.content.encode()) + 8 for x in m.messages(issue))
    if m.schema is not None:
        total += len(json.dumps(m.schema, separators=(",", ":")).encode())
    return total


@pytest.fixture
def server():
    with FaultServer(completion_tokens=7) as s:
        yield s


@pytest.fixture
def cfg(tmp_path, server, monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_PROGRESS", "off")
    return load_config(write_config(tmp_path, server.url))


def cli_run(cfg_path: Path, dataset: Path, *args: str) -> int:
    return main(["--config", str(cfg_path), "run", "--dataset", str(dataset), *args])


# ------------------------------------------------------------------------------------------ figures


def test_priced_model_against_hand_computed_numbers(cfg, isolated_home):
    issues = make_issues(2)
    e = estimate_grid(issues, ["openai/stub"], ["classify", "summarize"], repeats=3, config=cfg)
    (row,) = e.rows
    prompt = sum(chars_over_4(i, m) for i in issues for m in ("classify", "summarize")) * 3
    worst_in = sum(worst_prompt(i, m) for i in issues for m in ("classify", "summarize")) * 3
    assert (row.calls, row.cached) == (12, 0)
    assert row.prompt_tokens == prompt
    assert row.output_tokens == 12 * MAX_TOKENS  # nothing earlier: max_tokens
    assert row.expected_usd == pytest.approx((prompt * PRICE_IN + 12 * MAX_TOKENS * PRICE_OUT) / 1e6)
    assert row.worst_usd == pytest.approx((worst_in * PRICE_IN + 12 * MAX_TOKENS * PRICE_OUT) / 1e6)
    assert row.tokenizer.startswith(APPROXIMATE)  # "stub" is no OpenAI model name
    assert row.output_source == f"max_tokens ({MAX_TOKENS})"
    assert e.cells_total == 12 and e.cells_done == 0 and e.budget_warning is None
    text = str(e)
    assert "approximate: characters/4" in text and f"{row.worst_usd:.6f}" in text
    assert "nothing is sent" in text
    frame = e.to_frame(total=True)
    assert list(frame["model"]) == ["openai/stub", "total"]
    assert frame["calls"].tolist() == [12, 12]
    assert not list(isolated_home.iterdir()), "an estimate writes nothing under ORCHESTRATOR_HOME"


def test_unpriced_is_unknown_never_zero(cfg):
    e = estimate_grid(
        make_issues(2), ["openai/stub", "openai/unpriced"], ["classify"], config=cfg, budget_usd=1.0
    )
    rows = {r.model: r for r in e.rows}
    assert rows["openai/unpriced"].expected_usd is None and rows["openai/unpriced"].worst_usd is None
    assert rows["openai/unpriced"].prompt_tokens > 0
    assert e.total.expected_usd is None and e.total.worst_usd is None
    assert e.unpriced == ["openai/unpriced"]
    text = str(e)
    line = next(x for x in text.splitlines() if x.startswith("openai/unpriced "))
    assert line.split()[-2:] == ["unknown", "unknown"]
    assert "not counted against --budget" in text
    frame = e.to_frame()
    assert frame.set_index("model")["expected_usd"].isna().tolist() == [False, True]


def test_free_models_cost_zero(cfg):
    e = estimate_grid(make_issues(3), ["baseline/rules", "local/smollm2"], ["classify", "fix"], config=cfg)
    for row in e.rows:
        assert row.calls == 6
        assert row.expected_usd == 0.0 and row.worst_usd == 0.0
        assert row.prompt_tokens > 0
    assert e.total.expected_usd == 0.0 and e.unpriced == []


def test_budget_warning_says_how_many_calls_fit(cfg):
    issues = make_issues(4)
    per_expected = (chars_over_4(issues[0], "summarize") * PRICE_IN + MAX_TOKENS * PRICE_OUT) / 1e6
    per_worst = (worst_prompt(issues[0], "summarize") * PRICE_IN + MAX_TOKENS * PRICE_OUT) / 1e6
    # one at a time: call k goes out while (k - 1) expected costs + its worst case fit
    budget = per_worst + 1.5 * per_expected
    e = estimate_grid(issues, ["openai/stub"], ["summarize"], config=cfg, budget_usd=budget)
    assert e.rows[0].worst_usd == pytest.approx(4 * per_worst)
    assert e.calls_that_fit == 2
    warning = e.budget_warning
    assert warning is not None
    assert warning.startswith(f"worst case ${4 * per_worst:.4f} exceeds --budget ${budget:.4f}")
    assert warning.endswith("the run may stop early; about 2 of 4 calls fit")
    assert f"warning: {warning}" in str(e).splitlines()[:3]  # up front
    # with two calls in flight, the second also waits for the first one's reservation
    assert (
        estimate_grid(
            issues, ["openai/stub"], ["summarize"], config=cfg, budget_usd=budget, concurrency=2
        ).calls_that_fit
        == 1
    )
    roomy = estimate_grid(issues, ["openai/stub"], ["summarize"], config=cfg, budget_usd=4 * per_worst + 1e-9)
    assert roomy.budget_warning is None and roomy.calls_that_fit == 4


def test_output_length_from_cached_answers_capped_at_max_tokens(cfg, isolated_home):
    cache = ResponseCache(isolated_home / "cache.sqlite")
    try:
        for n, (output, reasoning, mode) in enumerate(
            [(10, 0, "summarize"), (15, 5, "summarize"), (30, 0, "summarize"), (999, 0, "classify")]
        ):
            completion = Completion(
                text="x",
                model="openai/stub",
                provider="openai",
                mode=mode,
                usage=Usage(input_uncached=5, output=output, reasoning=reasoning),
            )
            cache.put(f"other-request-{n}", completion)
    finally:
        cache.close()
    e = estimate_grid(make_issues(2), ["openai/stub"], ["summarize", "classify"], config=cfg)
    (row,) = e.rows
    # summarize: mean of (10, 15 + 5, 30) = 20; classify: 999 capped at max_tokens
    assert row.output_tokens == 2 * 20 + 2 * MAX_TOKENS
    assert "summarize: mean of 3 cached answers (20)" in row.output_source
    assert (
        f"classify: mean of 1 cached answers (999), capped at max_tokens ({MAX_TOKENS})" in row.output_source
    )
    assert row.cached == 0  # other requests' answers: these cells are not cached


@pytest.mark.filterwarnings("ignore:model 'openai/unpriced' has no price")
def test_cached_cells_resumed_runs_and_earlier_results(cfg, server, tmp_path):
    issues = make_issues(4)
    dataset = write_dataset(tmp_path, issues)
    assert (
        cli_run(cfg.path, dataset, "--models", "openai/stub", "--modes", "summarize", "--run-id", "r1") == 0
    )
    assert server.count() == 4

    # the same cells in a new run: the cache answers all of them, at no cost and no reservation
    e = estimate_grid(issues, ["openai/stub"], ["summarize"], config=cfg, budget_usd=0.0)
    (row,) = e.rows
    assert (row.calls, row.cached, row.prompt_tokens, row.expected_usd, row.worst_usd) == (4, 4, 0, 0.0, 0.0)
    assert e.budget_warning is None and e.calls_that_fit == 4
    # --no-cache: every cell is sent; output length from the 4 cached answers (7 tokens each)
    e = estimate_grid(issues, ["openai/stub"], ["summarize"], config=cfg, cache=False)
    assert (e.rows[0].cached, e.rows[0].output_tokens) == (0, 4 * 7)
    assert e.rows[0].output_source == "mean of 4 cached answers (7)"

    # resuming r1 with two repeats: the 4 done cells are left out, repeat 1 is new (its own seed and key)
    e = estimate_grid(issues, ["openai/stub"], ["summarize"], repeats=2, config=cfg, run_id="r1")
    assert (e.cells_total, e.cells_done, e.rows[0].calls, e.rows[0].cached) == (8, 4, 4, 0)
    assert "run r1: 4 cells already done are left out" in str(e)

    # results of a run that did not use the cache give the output length when the cache has none
    assert cli_run(cfg.path, dataset, "--models", "openai/unpriced", "--modes", "fix", "--no-cache") == 0
    e = estimate_grid(issues, ["openai/unpriced"], ["fix"], config=cfg)
    assert e.rows[0].output_source == "mean of 4 earlier results (7)"


def test_cli_estimate_sends_no_request(cfg, server, tmp_path, capsys, isolated_home):
    dataset = write_dataset(tmp_path, make_issues(3))
    code = cli_run(
        cfg.path,
        dataset,
        "--models",
        "openai/stub,baseline/rules",
        "--modes",
        "classify,summarize",
        "--estimate",
        "--budget",
        "0.0001",
    )
    out = capsys.readouterr().out
    assert code == 0
    assert server.count() == 0
    assert not (isolated_home / "results.sqlite").exists(), "--estimate creates no run"
    lines = out.splitlines()
    assert lines[0].startswith("estimate: 12 cells (3 issues × 2 models × 2 modes × 1 repeat)")
    assert lines[1].startswith("warning: worst case $") and "exceeds --budget $0.0001" in lines[1]
    assert any(x.startswith("openai/stub ") for x in lines) and any(x.startswith("total ") for x in lines)
    assert "openai/stub: prompt tokens approximate: characters/4" in out


def test_a_normal_run_warns_up_front_when_the_worst_case_exceeds_the_budget(cfg, server, tmp_path, capsys):
    dataset = write_dataset(tmp_path, make_issues(4))
    code = cli_run(cfg.path, dataset, "--models", "openai/stub", "--modes", "summarize", "--budget", "0.0001")
    captured = capsys.readouterr()
    assert code == 0
    assert captured.err.startswith("warning: worst case $")
    assert "the run may stop early; about 0 of 4 calls fit" in captured.err
    assert server.count() == 0  # and indeed the budget refused the first call


# ------------------------------------------------------------------------------------------ tokenizer


def test_without_an_offline_bpe_file_openai_models_fall_back_to_characters(cfg, monkeypatch, tmp_path):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(est, "BUNDLED_BPE", ())
    est._encoding.cache_clear()
    try:
        issues = make_issues(1)
        e = estimate_grid(issues, ["openai/gpt-4.1-mini"], ["classify"], config=cfg)
    finally:
        est._encoding.cache_clear()
    assert e.rows[0].tokenizer.startswith(APPROXIMATE)
    assert e.rows[0].prompt_tokens == chars_over_4(issues[0], "classify")


def test_openai_models_are_counted_with_tiktoken_when_the_bpe_file_is_offline(cfg):
    pytest.importorskip("tiktoken")
    if est.find_bpe_file("o200k_base") is None:
        pytest.skip("no o200k_base BPE file on this machine (tiktoken's cache, bpe-openai)")
    issues = make_issues(2)
    e = estimate_grid(issues, ["openai/gpt-4.1-mini"], ["classify", "summarize"], config=cfg)
    assert e.rows[0].tokenizer == "tiktoken o200k_base"
    bpe_openai = pytest.importorskip("bpe_openai")  # an independent implementation of the same encoding
    enc = bpe_openai.get_encoding("o200k_base")
    expected = 0
    for issue in issues:
        for mode in ("classify", "summarize"):
            m = get_mode(mode)
            expected += 3 + sum(
                3 + len(enc.encode(x.role)) + len(enc.encode(x.content)) for x in m.messages(issue)
            )
            if m.schema is not None:
                expected += len(enc.encode(json.dumps(m.schema, separators=(",", ":"))))
    assert e.rows[0].prompt_tokens == expected


def test_encoding_parameters_match_tiktoken(monkeypatch):
    pytest.importorskip("tiktoken")
    from tiktoken_ext import openai_public

    monkeypatch.setattr(
        openai_public, "load_tiktoken_bpe", lambda url, expected_hash: {"url": url, "hash": expected_hash}
    )
    for name, (url, sha256, pat_str, special) in est.ENCODINGS.items():
        theirs = getattr(openai_public, name)()
        assert theirs["mergeable_ranks"] == {"url": url, "hash": sha256}
        assert theirs["pat_str"] == pat_str
        assert theirs["special_tokens"] == special


def test_a_tampered_bpe_file_is_not_used(monkeypatch, tmp_path):
    import hashlib

    url = est.ENCODINGS["o200k_base"][0]
    (tmp_path / hashlib.sha1(url.encode()).hexdigest()).write_bytes(b"IQ== 0\n")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(est, "BUNDLED_BPE", ())
    assert est.find_bpe_file("o200k_base") is None


def test_importing_the_estimate_loads_neither_tiktoken_nor_pandas():
    code = "import sys, orchestrator, orchestrator.runs.estimate; print([m for m in ('tiktoken', 'pandas') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
