"""Routing: winner selection on dev, tomlkit write-back, replay on test, cascades, and the client honouring
a written routing against real loopback servers."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import shutil
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.client import LLMClient, RetryPolicy
from orchestrator.client.cascade import complete_cascade, self_check
from orchestrator.config import load_config
from orchestrator.errors import ConfigError
from orchestrator.routing import (
    RoutingError,
    Selection,
    cascade_curve,
    parse_policy,
    replay,
    select_winners,
    write_routing,
)
from orchestrator.types import Issue

ROOT = Path(__file__).resolve().parents[2]
GOOD_LABEL = json.dumps({"type": "bug", "component": "core", "severity": "high"})
BAD_LABEL = "I think this is probably a bug in the core."
PROV = {
    "run_id": "20261127-101500-ab12",
    "dataset": "datasets/issues.jsonl",
    "split": "dev",
    "date": dt.date(2026, 11, 27),
}


# ------------------------------------------------------------------------------------------ self-check


def test_self_check_rules():
    assert self_check("classify", GOOD_LABEL, None, None) == 1.0
    assert self_check("classify", GOOD_LABEL, None, "missing field 'severity'") == 0.0
    assert self_check("classify", BAD_LABEL, None, None) == 0.0
    assert self_check("classify", "", '{"type": "bug"}', "") == 1.0  # parsed as stored (JSON text)
    assert self_check("classify", None, float("nan"), float("nan")) == 0.0  # a failed cell
    assert self_check("fix", "Change src/app/config.py to read the port.", None, None) == 0.5
    assert self_check("fix", "```python\nport = cfg.get('port', 80)\n```", None, None) == 0.5
    assert self_check("fix", "In src/app.py:\n```python\nport = 80\n```", None, None) == 1.0
    assert self_check("fix", "No idea.", None, None) == 0.0
    assert self_check("summarize", "", None, None) == 0.0
    assert self_check("summarize", "Too short.", None, None) == 0.3
    assert self_check("summarize", " ".join(["word"] * 50), None, None) == 1.0
    assert self_check("explain", " ".join(["word"] * 29), None, None) == 0.3
    assert self_check("explain", " ".join(["word"] * 30), None, None) == 1.0
    assert self_check("explain", " ".join(["word"] * 301), None, None) == 0.3
    with pytest.raises(ValueError):
        self_check("poetry", "x", None, None)


# ----------------------------------------------------------------------------------- synthetic results

COSTS = {"A": 0.01, "B": 0.001, "C": 0.0, "D": 0.0}


def _row(
    issue: str,
    model: str,
    score: float,
    split: str,
    mode: str = "classify",
    cost=None,
    repeat=0,
    text: str | None = "",
    latency: float = 1.0,
) -> dict:
    return {
        "run_id": "r1",
        "issue_id": issue,
        "model": model,
        "mode": mode,
        "repeat": repeat,
        "repo": "o/r",
        "split": split,
        "text": text,
        "parsed": None,
        "parse_error": None,
        "score": score,
        "cost_usd": COSTS.get(model, 0.0) if cost is None else cost,
        "latency_s": latency,
        "error_type": "",
        "from_cache": False,
    }


def synthetic(with_misleading_test_rows: bool = True) -> pd.DataFrame:
    """50 dev issues: A 0.90 (expensive), B 0.88 (cheap, differs from A on one issue: tied), C 0.50 (free,
    clearly worse), D 1.00 on only 5 issues (below min_n). On test, the order is turned upside down."""
    rows = []
    for i in range(50):
        iid = f"o/r#{i}"
        rows.append(_row(iid, "A", 1.0 if i < 45 else 0.0, "dev", latency=2.0))
        rows.append(_row(iid, "B", 1.0 if i < 44 else 0.0, "dev", latency=1.0))
        rows.append(_row(iid, "C", 1.0 if i < 25 else 0.0, "dev", latency=0.5))
        if i < 5:
            rows.append(_row(iid, "D", 1.0, "dev"))
    if with_misleading_test_rows:
        for i in range(50, 120):
            iid = f"o/r#{i}"
            rows += [
                _row(iid, "A", 0.0, "test"),
                _row(iid, "B", 0.0, "test"),
                _row(iid, "C", 1.0, "test"),
                _row(iid, "D", 1.0, "test"),
            ]
    return pd.DataFrame(rows)


def test_selection_picks_known_best_and_cheapest_tied():
    df = synthetic()
    quality = select_winners(df, "quality", n_boot=500)["classify"]
    assert quality.model == "A"
    assert quality.fallbacks == ["B", "C"]
    assert quality.n == 50 and quality.score == pytest.approx(0.90)
    assert quality.ci[0] < 0.90 < quality.ci[1]
    assert quality.cost_per_issue == pytest.approx(0.01)
    assert "D (n=5 < 10)" in quality.reason  # min_n excluded D (mean 1.0) and the reason says so

    tied = select_winners(df, "cheapest-tied", n_boot=500)["classify"]
    assert tied.model == "B"
    assert tied.fallbacks == ["A", "C"]
    assert tied.reason.startswith(
        "classify: B — cheapest of 2 models statistically tied with the best (A 0.90"
    )
    assert "0.88 [" in tied.reason and "$0.0010/issue" in tied.reason and "n=50" in tied.reason
    assert "\n" not in tied.reason

    capped = select_winners(df, "quality-under-cost", max_cost_per_issue=0.005, n_boot=500)["classify"]
    assert capped.model == "B"
    assert "A" not in capped.fallbacks  # over the cap: not a fallback either
    assert "over the $0.0050/issue cap" in capped.reason

    per_dollar = select_winners(df, "quality-per-dollar", n_boot=500)["classify"]
    assert per_dollar.model == "B"  # C is free but far below A's CI: priced like the cheapest paid model

    # min_n really is the gate: with min_n=5, D (mean 1.0 on 5 issues) wins on quality
    assert select_winners(df, "quality", min_n=5, n_boot=500)["classify"].model == "D"


def test_selection_uses_dev_rows_only():
    with_test = select_winners(synthetic(True), "cheapest-tied", n_boot=500)
    without_test = select_winners(synthetic(False), "cheapest-tied", n_boot=500)
    assert with_test["classify"] == without_test["classify"]
    # the test rows alone would crown C: they were ignored
    test_only = synthetic(True)
    test_only = test_only[test_only["split"] == "test"].assign(split="dev")
    assert select_winners(test_only, "quality", n_boot=200)["classify"].model in ("C", "D")


def test_selection_refuses_without_split_labels():
    df = synthetic(False).drop(columns=["split"])
    with pytest.raises(RoutingError, match="no split labels"):
        select_winners(df)
    assert select_winners(df, "quality", allow_any_split=True, n_boot=200)["classify"].model == "A"
    only_test = synthetic(True)
    with pytest.raises(RoutingError, match="no 'dev' rows"):
        select_winners(only_test[only_test["split"] == "test"])


def test_selection_argument_errors_and_skipped_modes():
    df = synthetic(False)
    with pytest.raises(RoutingError, match="max_cost_per_issue"):
        select_winners(df, "quality-under-cost")
    with pytest.raises(RoutingError, match="unknown objective"):
        select_winners(df, "fastest")
    sels = select_winners(df, "quality-under-cost", max_cost_per_issue=0.0001, n_boot=200)
    assert sels["classify"].model == "C"  # the only model under a tiny cap (free)
    sels = select_winners(df, "quality", min_n=1000, n_boot=200)
    assert "classify" not in sels and "no model has >= 1000" in sels.skipped["classify"]


def test_ties_broken_by_cost_then_latency_and_unknown_cost_last():
    rows = []
    for i in range(20):
        score = 1.0 if i % 2 else 0.0
        rows.append(_row(f"i{i}", "unknown-cost", score, "dev", cost=float("nan"), latency=0.1))
        rows.append(_row(f"i{i}", "slow", score, "dev", cost=0.002, latency=3.0))
        rows.append(_row(f"i{i}", "fast", score, "dev", cost=0.002, latency=1.0))
        rows.append(_row(f"i{i}", "pricey", score, "dev", cost=0.005, latency=0.1))
    sel = select_winners(pd.DataFrame(rows), "quality", n_fallbacks=3, n_boot=200)["classify"]
    assert [sel.model, *sel.fallbacks] == ["fast", "slow", "pricey", "unknown-cost"]


# ------------------------------------------------------------------------------------------ write-back


def _selections() -> dict[str, Selection]:
    return {
        "classify": Selection(
            "classify",
            "openai/gpt-4.1-mini",
            ["anthropic/claude-haiku-4-5", "local/smollm2"],
            "cheapest-tied",
            "classify: openai/gpt-4.1-mini — cheapest tied",
            0.81,
            (0.74, 0.87),
            0.00012,
            1.1,
            64,
        ),
        "fix": Selection(
            "fix",
            "local/smollm2",
            [],
            "quality",
            "fix: local/smollm2 — best",
            0.5,
            (0.4, 0.6),
            None,
            None,
            30,
        ),
    }


def _routing_span(lines: list[str]) -> tuple[int, int]:
    """[start, end) of the lines from the first [routing...] header to the next other header."""
    head = re.compile(r"^\s*\[\[?\s*([^\].]+)")
    start = end = None
    for i, line in enumerate(lines):
        m = head.match(line)
        if not m:
            continue
        key = m.group(1).strip().strip('"')
        if key == "routing" and start is None:
            start = i
        elif key != "routing" and start is not None and end is None:
            end = i
    assert start is not None
    return start, end if end is not None else len(lines)


def test_tomlkit_round_trip_keeps_everything_outside_routing(tmp_path):
    cfg = tmp_path / "orchestrator.toml"
    shutil.copy(ROOT / "orchestrator.toml", cfg)
    original = cfg.read_bytes()
    diff = write_routing(cfg, _selections(), PROV, write=True)
    assert diff.startswith("--- a/orchestrator.toml\n+++ b/orchestrator.toml\n")
    assert '+primary = "openai/gpt-4.1-mini"' in diff
    new = cfg.read_bytes()
    old_lines, new_lines = original.splitlines(keepends=True), new.splitlines(keepends=True)
    start, _ = _routing_span(original.decode().splitlines(keepends=True))
    # the routing table is last in the shipped file: every line before it is byte-identical
    assert new_lines[: start + 1] == old_lines[: start + 1]
    assert [ln for ln in old_lines if ln.lstrip().startswith(b"#")] == [
        ln for ln in new_lines[: start + 1] if ln.lstrip().startswith(b"#")
    ]
    data = tomllib.loads(new.decode())
    entry = data["routing"]["classify"]
    assert entry == {
        "primary": "openai/gpt-4.1-mini",
        "fallbacks": ["anthropic/claude-haiku-4-5", "local/smollm2"],
        "objective": "cheapest-tied",
        "reason": "classify: openai/gpt-4.1-mini — cheapest tied",
        "run_id": "20261127-101500-ab12",
        "dataset": "datasets/issues.jsonl",
        "split": "dev",
        "score": 0.81,
        "ci": [0.74, 0.87],
        "cost_per_issue": 0.00012,
        "n": 64,
        "date": dt.date(2026, 11, 27),
    }
    assert "cost_per_issue" not in data["routing"]["fix"]  # unknown cost: left out, never 0
    # idempotent: the same selection again changes nothing
    assert write_routing(cfg, _selections(), PROV, write=True) == ""
    assert cfg.read_bytes() == new
    # the client honours it
    config = load_config(cfg)
    assert LLMClient(config, cache=False).route(None, "classify") == [
        "openai/gpt-4.1-mini",
        "anthropic/claude-haiku-4-5",
        "local/smollm2",
    ]
    assert LLMClient(config, cache=False).route(None, "fix") == ["local/smollm2"]


MIDDLE = """\
# my config: this comment must survive
[defaults]
model = "local/smollm2"   # trailing comment

[models."local/smollm2"]
provider = "local"
price = { input = 0.0, output = 0.0, as_of = 2026-11-27 }

[routing]
# routing notes kept by hand
[routing.classify]
primary = "local/smollm2"   # old choice
fallbacks = []
note = "a key routing does not own"
cascade = { models = ["baseline/rules", "local/smollm2"], threshold = 0.5 }

# --- models below the routing -----------------------------------------------------------------
[models."baseline/rules"]
provider = "baseline"   # stays
"""


def test_write_routing_in_the_middle_of_a_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(MIDDLE, encoding="utf-8")
    sel = Selection(
        "classify",
        "baseline/rules",
        ["local/smollm2"],
        "quality",
        "classify: rules",
        0.7,
        (0.6, 0.8),
        0.0,
        0.01,
        40,
    )
    diff = write_routing(cfg, {"classify": sel}, PROV, write=False)
    assert cfg.read_text(encoding="utf-8") == MIDDLE  # dry run: nothing written
    assert '-primary = "local/smollm2"   # old choice' in diff
    write_routing(cfg, {"classify": sel}, PROV, write=True)
    new = cfg.read_text(encoding="utf-8")
    old_lines, new_lines = MIDDLE.splitlines(keepends=True), new.splitlines(keepends=True)
    o_start, o_end = _routing_span(old_lines)
    n_start, n_end = _routing_span(new_lines)
    assert new_lines[:n_start] == old_lines[:o_start]  # before [routing]: byte-identical
    assert new_lines[n_end:] == old_lines[o_end:]  # after it: byte-identical (incl. the inline date)
    assert "# routing notes kept by hand\n" in new_lines[n_start:n_end]
    data = tomllib.loads(new)["routing"]["classify"]
    assert data["primary"] == "baseline/rules" and data["note"] == "a key routing does not own"
    assert data["cascade"] == {"models": ["baseline/rules", "local/smollm2"], "threshold": 0.5}
    assert write_routing(cfg, {"classify": sel}, PROV, write=True) == ""


def test_write_routing_refuses_unknown_models(tmp_path):
    cfg = tmp_path / "orchestrator.toml"
    shutil.copy(ROOT / "orchestrator.toml", cfg)
    before = cfg.read_bytes()
    bad = {
        "classify": Selection("classify", "nope/model", [], "quality", "x", 0.5, (0.4, 0.6), None, None, 10)
    }
    with pytest.raises((RoutingError, ConfigError), match="nope/model"):
        write_routing(cfg, bad, PROV, write=True)
    assert cfg.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))


# ---------------------------------------------------------------------------------------------- replay


def hand_table() -> pd.DataFrame:
    """4 test issues x 2 models (cheap c, strong s), plus dev rows that must not count."""
    rows = []
    cheap = [(1.0, GOOD_LABEL), (0.0, BAD_LABEL), (1.0, GOOD_LABEL), (0.0, BAD_LABEL)]
    strong = [1.0, 1.0, 1.0, 0.0]
    for i in range(4):
        rows.append(_row(f"t{i}", "c", cheap[i][0], "test", cost=0.001, text=cheap[i][1]))
        rows.append(_row(f"t{i}", "s", strong[i], "test", cost=0.010, text=GOOD_LABEL))
        rows.append(_row(f"d{i}", "c", 0.0, "dev", cost=5.0, text=BAD_LABEL))
        rows.append(_row(f"d{i}", "s", 0.0, "dev", cost=5.0, text=BAD_LABEL))
    return pd.DataFrame(rows)


def test_replay_matches_hand_computation():
    df = hand_table()
    fixed = replay(df, {"classify": "c"}, n_boot=500).table.iloc[0]
    assert fixed["mean"] == pytest.approx((1 + 0 + 1 + 0) / 4)
    assert fixed["cost_per_issue"] == pytest.approx(0.001)
    assert fixed["best_model"] == "s" and fixed["best_mean"] == pytest.approx(0.75)
    assert fixed["quality_kept"] == pytest.approx(0.5 / 0.75)
    assert fixed["cost_share"] == pytest.approx(0.001 / 0.010)
    assert fixed["ci_low"] <= fixed["mean"] <= fixed["ci_high"]
    assert fixed["n_issues"] == 4 and fixed["n_excluded"] == 0

    # cascade c > s at 0.5: t0 and t2 pass (valid JSON) -> c's score and cost; t1 and t3 escalate -> s's
    # score at c + s cost.
    report = replay(df, {"classify": {"cascade": {"models": ["c", "s"], "threshold": 0.5}}}, n_boot=500)
    row = report.table.iloc[0]
    assert row["mean"] == pytest.approx((1.0 + 1.0 + 1.0 + 0.0) / 4)
    assert row["cost_per_issue"] == pytest.approx((0.001 + 0.011 + 0.001 + 0.011) / 4)
    assert row["escalation_rate"] == pytest.approx(0.5)
    assert row["quality_kept"] == pytest.approx(0.75 / 0.75)
    assert row["cost_share"] == pytest.approx(0.006 / 0.010)
    assert report.missing == [] and report.split == "test"
    assert list(report.per_issue["score"]) == [1.0, 1.0, 1.0, 0.0]

    # a routing entry (as in the toml) replays as its primary when nothing failed
    entry = {"primary": "s", "fallbacks": ["c"]}
    assert replay(df, {"classify": entry}, n_boot=0).table.iloc[0]["mean"] == pytest.approx(0.75)


def test_replay_averages_repeats_within_an_issue_and_falls_back_on_failures():
    df = hand_table()
    extra = _row("t0", "c", 0.0, "test", cost=0.003, text=GOOD_LABEL, repeat=1)
    df = pd.concat([df, pd.DataFrame([extra])], ignore_index=True)
    row = replay(df, {"classify": "c"}, n_boot=0).table.iloc[0]
    # t0 = mean(1, 0) = 0.5 at mean(0.001, 0.003) = 0.002; the rest as before
    assert row["mean"] == pytest.approx((0.5 + 0 + 1 + 0) / 4)
    assert row["cost_per_issue"] == pytest.approx((0.002 + 0.001 + 0.001 + 0.001) / 4)

    failed = hand_table()
    mask = (failed["issue_id"] == "t3") & (failed["model"] == "s")
    failed.loc[mask, ["score", "cost_usd", "text"]] = [float("nan"), float("nan"), None]
    failed.loc[mask, "error_type"] = "overloaded"
    chain = replay(failed, {"classify": {"primary": "s", "fallbacks": ["c"]}}, n_boot=0).table.iloc[0]
    # t3: s failed (not billed) -> c answers: 0.0 at 0.001
    assert chain["mean"] == pytest.approx((1 + 1 + 1 + 0) / 4)
    assert chain["cost_per_issue"] == pytest.approx((0.01 * 3 + 0.001) / 4)
    assert chain["escalation_rate"] == pytest.approx(0.25)


def test_missing_cells_are_reported_not_imputed():
    df = hand_table()
    # drop s on t1 (needed: c fails the check there) and on t0 (not needed: c passes there)
    df = df[~((df["model"] == "s") & df["issue_id"].isin(["t0", "t1"]))]
    report = replay(df, {"classify": {"cascade": {"models": ["c", "s"], "threshold": 0.5}}}, n_boot=0)
    row = report.table.iloc[0]
    assert report.missing == [("t1", "s", "classify")]
    assert report.missing_per_mode == {"classify": 1}
    assert row["n_excluded"] == 1 and row["n_issues"] == 3
    assert row["mean"] == pytest.approx((1.0 + 1.0 + 0.0) / 3)  # t0, t2, t3; t1 left out
    assert "t1  s  classify" in str(report)

    fixed = replay(df, {"classify": "s"}, n_boot=0)
    assert sorted(fixed.missing) == [("t0", "s", "classify"), ("t1", "s", "classify")]
    assert fixed.table.iloc[0]["mean"] == pytest.approx((1.0 + 0.0) / 2)

    unknown_mode = replay(hand_table(), {"fix": "c"}, n_boot=0).table.iloc[0]
    assert unknown_mode["n_issues"] == 0 and math.isnan(unknown_mode["mean"])


def test_cascade_curve_over_thresholds():
    curve = cascade_curve(hand_table(), "classify", "c", "s", [0.0, 0.5, 1.01])
    assert list(curve.columns[:6]) == [
        "threshold",
        "escalation_rate",
        "mean",
        "cost_per_issue",
        "quality_kept",
        "cost_share",
    ]
    never, half, always = curve.to_dict("records")
    assert never["escalation_rate"] == 0 and never["mean"] == pytest.approx(0.5)
    assert never["cost_per_issue"] == pytest.approx(0.001)
    assert half["escalation_rate"] == 0.5 and half["mean"] == pytest.approx(0.75)
    assert always["escalation_rate"] == 1 and always["mean"] == pytest.approx(0.75)
    assert always["cost_per_issue"] == pytest.approx(0.011)
    assert always["cost_share"] == pytest.approx(1.1)


def test_replay_counts_cache_hits_at_list_price_and_ignores_unlabelled_rows():
    df = hand_table()
    df["cost_saved_usd"] = float("nan")
    hit = (df["issue_id"] == "t0") & (df["model"] == "c")
    df.loc[hit, ["cost_usd", "cost_saved_usd", "from_cache"]] = [0.0, 0.001, True]
    stray = pd.DataFrame([_row("x9", "c", 1.0, "test", cost=9.0)]).assign(split=None)
    df = pd.concat([df, stray], ignore_index=True)
    df["split"] = df["split"].astype("string")  # as the store returns it, <NA> for unlabelled issues
    row = replay(df, {"classify": "c"}, n_boot=0).table.iloc[0]
    assert row["n_issues"] == 4 and row["cost_per_issue"] == pytest.approx(0.001)


def test_replay_refuses_unlabelled_results():
    with pytest.raises(RoutingError, match="no split labels"):
        replay(hand_table().drop(columns=["split"]), {"classify": "c"})


def test_parse_policy():
    assert parse_policy("fixed:classify=openai/gpt-4.1,fix=local/smollm2") == {
        "classify": "openai/gpt-4.1",
        "fix": "local/smollm2",
    }
    assert parse_policy("cascade:classify=local/smollm2>openai/gpt-4.1@0.5") == {
        "classify": {"cascade": {"models": ["local/smollm2", "openai/gpt-4.1"], "threshold": 0.5}}
    }
    with pytest.raises(RoutingError):
        parse_policy("random:classify=x")
    with pytest.raises(RoutingError):
        parse_policy("cascade:classify=onlyone@0.5")


# ------------------------------------------------------------------------------- real loopback servers


class ChatServer:
    """An OpenAI-compatible chat server on 127.0.0.1 whose answers name it in their ``model`` field."""

    def __init__(self, name: str, content: str = GOOD_LABEL) -> None:
        self.name, self.content, self.calls = name, content, 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length") or 0))
                server.calls += 1
                body = json.dumps(
                    {
                        "id": f"chatcmpl-{server.calls}",
                        "object": "chat.completion",
                        "created": 0,
                        "model": server.name,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": server.content},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()
        self.stopped = False

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=5)


@pytest.fixture
def servers():
    made: list[ChatServer] = []

    def make(name: str, content: str = GOOD_LABEL) -> ChatServer:
        made.append(ChatServer(name, content))
        return made[-1]

    yield make
    for s in made:
        s.stop()


def _two_model_config(path: Path, a: ChatServer, b: ChatServer, names=("winner", "backup")) -> Path:
    path.write_text(
        "# two loopback servers; this comment must survive the routing write\n"
        "[defaults]\n"
        f'model = "openai/{names[1]}"\n\n'
        f'[models."openai/{names[0]}"]\n'
        f'base_url = "{a.url}"\nmax_tokens = 64\nprice = {{ input = 1.0, output = 2.0 }}\n\n'
        f'[models."openai/{names[1]}"]\n'
        f'base_url = "{b.url}"\nmax_tokens = 64\nprice = {{ input = 1.0, output = 2.0 }}\n',
        encoding="utf-8",
    )
    return path


ISSUE = Issue(
    repo="o/r", number=7, title="Crash on startup", body="Traceback in app/main.py: KeyError 'port'"
)


def test_client_honours_written_routing_end_to_end(tmp_path, servers):
    a, b = servers("winner-server"), servers("fallback-server")
    cfg_path = _two_model_config(tmp_path / "orchestrator.toml", a, b)
    before = cfg_path.read_text(encoding="utf-8")
    sel = Selection(
        "classify",
        "openai/winner",
        ["openai/backup"],
        "quality",
        "classify: openai/winner — best",
        0.9,
        (0.8, 0.95),
        0.0002,
        0.1,
        20,
    )
    write_routing(cfg_path, {"classify": sel}, PROV, write=True)
    after = cfg_path.read_text(encoding="utf-8")
    assert after.startswith(before)  # no [routing] before: appended, the rest untouched

    cfg = load_config(cfg_path)
    client = LLMClient(cfg, cache=False, retry=RetryPolicy(max_attempts=1, base_delay_s=0.01))
    try:
        first = client.complete_sync(ISSUE, mode="classify")
        assert first.served_model == "winner-server"
        assert first.model == "openai/winner"
        assert first.fallback_path == ["openai/winner"]
        assert first.parsed == json.loads(GOOD_LABEL)

        a.stop()
        second = client.complete_sync(ISSUE, mode="classify")
        assert second.served_model == "fallback-server"
        assert second.fallback_path == ["openai/winner", "openai/backup"]
        assert b.calls == 1
    finally:
        client.close()


def test_complete_cascade_escalates_when_the_cheap_answer_fails_its_check(tmp_path, servers):
    cheap, strong = servers("cheap-server", BAD_LABEL), servers("strong-server", GOOD_LABEL)
    cfg = load_config(_two_model_config(tmp_path / "c.toml", cheap, strong, names=("cheap", "strong")))
    client = LLMClient(cfg, cache=False, retry=RetryPolicy(max_attempts=1))
    cascade = {"models": ["openai/cheap", "openai/strong"], "threshold": 0.5}
    try:
        out = client.run_sync(complete_cascade(client, ISSUE, "classify", cascade))
        assert out.served_model == "strong-server"
        assert out.fallback_path == ["openai/cheap", "openai/strong"]
        one_call = (100 * 1.0 + 20 * 2.0) / 1e6
        assert out.cost_usd == pytest.approx(2 * one_call)
        assert cheap.calls == 1 and strong.calls == 1

        cheap.content = GOOD_LABEL  # now the cheap answer passes: the strong model is not called
        out = client.run_sync(complete_cascade(client, ISSUE, "classify", cascade))
        assert out.served_model == "cheap-server" and out.fallback_path == ["openai/cheap"]
        assert out.cost_usd == pytest.approx(one_call)
        assert strong.calls == 1
    finally:
        client.close()


# ------------------------------------------------------------------------------------------------- CLI


def _cli(argv: list[str]) -> int:
    from orchestrator.cli.route import register

    parser = argparse.ArgumentParser(prog="orchestrator")
    parser.add_argument("--config")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_route_and_replay(tmp_path, capsys):
    from orchestrator.runs.store import open_store

    cfg_path = tmp_path / "orchestrator.toml"
    shutil.copy(ROOT / "orchestrator.toml", cfg_path)
    cfg = load_config(cfg_path)
    names = {"A": "openai/gpt-4.1", "B": "openai/gpt-4.1-mini", "C": "local/smollm2", "D": "baseline/rules"}
    store = open_store(config=cfg)
    try:
        store.create_or_resume_run(
            "run-1", params={}, config_snapshot={}, dataset="datasets/x.jsonl", split=None, git_commit=None
        )
        for r in synthetic(True).to_dict("records"):
            store.write_result({**r, "run_id": "run-1", "model": names[r["model"]]})
    finally:
        store.close()

    assert _cli(["--config", str(cfg_path), "route", "run-1", "--objective", "cheapest-tied"]) == 0
    out = capsys.readouterr().out
    assert "classify: openai/gpt-4.1-mini — cheapest of 2 models statistically tied" in out
    assert '+primary = "openai/gpt-4.1-mini"' in out and "dry run" in out
    assert "[routing.classify]" not in cfg_path.read_text(encoding="utf-8")

    assert _cli(["route", "run-1", "--write", "--config", str(cfg_path)]) == 0
    assert f"written to {cfg_path}" in capsys.readouterr().out
    routing = load_config(cfg_path).routing["classify"]
    assert routing["primary"] == "openai/gpt-4.1-mini" and routing["run_id"] == "run-1"
    assert routing["dataset"] == "datasets/x.jsonl" and routing["split"] == "dev"

    assert _cli(["--config", str(cfg_path), "replay", "run-1", "--policy", "config", "--n-boot", "200"]) == 0
    out = capsys.readouterr().out
    assert "replay on the test split" in out and "openai/gpt-4.1-mini" in out
    assert (
        _cli(
            [
                "--config",
                str(cfg_path),
                "replay",
                "run-1",
                "--policy",
                "fixed:classify=local/smollm2",
                "--n-boot",
                "200",
            ]
        )
        == 0
    )
    assert "local/smollm2" in capsys.readouterr().out
