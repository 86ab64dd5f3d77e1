"""The learned per-issue router: it recovers the oracle on a marker-word run, is replayed against every
comparator, is written and then followed by the client per issue (real loopback server), and a stored
router is plain data: a tampered file is refused without running anything."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.fault_server import Action, FaultServer

from orchestrator.cli import main
from orchestrator.routing.learned import learn_router
from orchestrator.routing.router import Candidate, Router, load_router
from orchestrator.trained.store import PlainDataError
from orchestrator.types import Gold, Issue

MARKER = "frobnicate"
RIGHT = {"type": "bug", "component": "core", "severity": "low"}
WRONG = {"type": "feature", "component": "core", "severity": "low"}


def marker_issues(n: int = 160, seed: int = 1) -> list[Issue]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(300)]
    out = []
    for k in range(n):
        body = " ".join(rng.choice(words) for _ in range(40))
        if rng.random() < 0.3:
            body += f" {MARKER}"
        out.append(
            Issue(
                id=f"acme/app#{k}",
                repo="acme/app",
                number=k,
                title=f"issue {k}",
                body=body,
                split="dev" if k % 2 else "test",
                gold=Gold(type="bug"),
            )
        )
    return out


def marker_rows(issues: list[Issue]) -> pd.DataFrame:
    """Model A ('m/strong', $1) is right exactly on issues with the marker word, B ('m/cheap', $0.1) on the rest."""
    rows = []
    for issue in issues:
        marked = MARKER in issue.body
        for model, right, cost in (("m/strong", marked, 1.0), ("m/cheap", not marked, 0.1)):
            rows.append(
                {
                    "issue_id": issue.id,
                    "model": model,
                    "mode": "classify",
                    "task": "classify",
                    "prompt": "default",
                    "repeat": 0,
                    "split": issue.split,
                    "score": 1.0 if right else 0.0,
                    "cost_usd": cost,
                    "latency_s": 0.01,
                    "error_type": "",
                    "text": json.dumps(RIGHT),
                    "parsed": None,
                    "parse_error": None,
                }
            )
    return pd.DataFrame(rows)


def test_the_router_recovers_the_oracle_at_the_lower_cost_on_a_marker_run():
    issues = marker_issues()
    result = learn_router(marker_rows(issues), issues, "classify", n_boot=300)
    table = result.comparators.set_index(
        result.comparators["policy"].str.split(":").str[0].str.split(" \\(").str[0]
    )
    router, oracle = table.loc["learned router"], table.loc["oracle"]
    test = [i for i in issues if i.split == "test"]
    marked = sum(MARKER in i.body for i in test) / len(test)
    assert oracle["mean"] == 1.0 and router["mean"] == 1.0
    assert math.isclose(router["cost_per_issue"], oracle["cost_per_issue"])
    assert math.isclose(router["cost_per_issue"], marked * 1.0 + (1 - marked) * 0.1)
    # beside what it must beat: each single model scores only its own share, random mixing in between
    assert table.loc["best single of dev", "mean"] < 0.8
    assert table.loc["random at the router's cost", "mean"] < router["mean"]
    assert abs(table.loc["random at the router's cost", "cost_per_issue"] - router["cost_per_issue"]) < 1e-9
    assert set(table.index) >= {
        "learned router",
        "best single of dev",
        "cascade",
        "random at the router's cost",
        "oracle",
        "strongest on test",
    }
    for _, row in result.comparators.iterrows():
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    # the dev curve: tau 0 follows the predictions, a large tau always picks the cheapest
    curve = result.dev_curve.set_index("tau")
    assert curve.loc[0.0, "mean"] == 1.0 and curve.loc[2.0, "cost_per_issue"] == pytest.approx(0.1)
    assert result.router.choose(Issue(title="t", body=f"w1 w2 {MARKER}")).model == "m/strong"
    assert result.router.choose(Issue(title="t", body="w1 w2 w3")).model == "m/cheap"


def test_a_router_without_signal_routes_every_issue_to_the_best_candidate():
    """Scores that do not depend on the issue: the features predict no candidate better than its mean, so
    each is predicted by its mean and the router sends every issue to the best of dev; before, a ridge over
    chance correlations split the issues and scored below the best single model."""
    issues = marker_issues()
    rng = random.Random(4)
    df = marker_rows(issues)
    df["score"] = [float(rng.random() < (0.7 if m == "m/strong" else 0.4)) for m in df["model"]]
    result = learn_router(df, issues, "classify", objective="quality", n_boot=300)
    assert "predicts 0 of 2 candidates' scores better than their mean" in result.reason
    test = [i for i in issues if i.split == "test"]
    assert {result.router.choose(i).model for i in test} == {"m/strong"}
    router, best = result.comparators.iloc[0], result.comparators.iloc[1]
    assert best["policy"] == "best single of dev: m/strong" and router["mean"] == best["mean"]


# ---------------------------------------------------------------------------- plain data, tampering


def _small_router(tmp_path: Path) -> Path:
    issues = marker_issues(40)
    router = Router.fit(
        "classify",
        [Candidate("m/strong", "classify", "default", 1.0), Candidate("m/cheap", "classify", "default", 0.1)],
        issues,
        np.array([[float(MARKER in i.body), float(MARKER not in i.body)] for i in issues]),
        tau=0.05,
    )
    return router.save(tmp_path / "routers" / "classify-r.npz")


def test_a_stored_router_round_trips(tmp_path):
    path = _small_router(tmp_path)
    loaded = load_router(tmp_path, "classify-r")
    assert loaded.tau == 0.05 and [c.model for c in loaded.candidates] == ["m/strong", "m/cheap"]
    again = Router.load(path)
    issue = Issue(title="x", body=f"w3 {MARKER}")
    np.testing.assert_array_equal(loaded.predict(issue), again.predict(issue))


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_tampered_router_is_refused_and_its_payload_never_runs(tmp_path):
    path = _small_router(tmp_path)
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    payload = _Payload()
    payload.marker = tmp_path / "ran"
    evil = np.empty(1, dtype=object)
    evil[0] = payload
    np.savez(path, **{**arrays, "coef": evil})
    with pytest.raises(PlainDataError, match="pickled"):
        Router.load(path)
    assert not (tmp_path / "ran").exists()
    np.savez(path, **{**arrays, "coef": arrays["coef"][:, :3]})
    with pytest.raises(PlainDataError, match="do not match"):
        Router.load(path)
    with pytest.raises(PlainDataError, match="letters, digits"):
        load_router(tmp_path, "../../etc/x")


# ------------------------------------------------------ end to end: run, route --write, per-issue calls


def _answer_by_model(req) -> Action:
    body = req.json or {}
    user = body["messages"][-1]["content"]
    marked = MARKER in user
    right = marked if body["model"] == "strong" else not marked
    return Action(content=json.dumps(RIGHT if right else WRONG))


def _project(tmp_path: Path, url: str, issues: list[Issue]) -> Path:
    (tmp_path / "issues.jsonl").write_text(
        "".join(i.model_dump_json() + "\n" for i in issues), encoding="utf-8"
    )
    cfg = tmp_path / "orchestrator.toml"
    models = "".join(
        f'[models."m/{name}"]\nprovider = "openai"\nmodel = "{name}"\nbase_url = "{url}"\nmax_tokens = 40\n'
        f"price = {{ input = {price}, output = {price}, as_of = 2026-12-01 }}\n\n"
        for name, price in (("strong", 10.0), ("cheap", 1.0))
    )
    cfg.write_text(f'[defaults]\nmodel = "m/cheap"\n\n{models}[routing]\n', encoding="utf-8")
    return cfg


def _run_args(cfg: Path) -> list[str]:
    """Both models over the project's issues, classify only, as run 'mk'."""
    models = ["--models", "m/strong,m/cheap", "--tasks", "classify", "--run-id", "mk"]
    return ["--config", str(cfg), "run", "--dataset", "issues.jsonl", *models]


def test_route_learned_writes_a_router_that_the_client_follows_per_issue(
    tmp_path, capsys, monkeypatch, isolated_home
):
    from orchestrator.client.llm_client import LLMClient
    from orchestrator.config import load_config

    monkeypatch.chdir(tmp_path)
    issues = marker_issues(120)
    with FaultServer(script=_answer_by_model) as srv:
        cfg = _project(tmp_path, srv.url, issues)
        assert main(_run_args(cfg)) == 0
        capsys.readouterr()
        assert main(["--config", str(cfg), "route", "mk", "--router", "learned", "--n-boot", "200"]) == 0
        dry = capsys.readouterr().out
        assert "dev curve" in dry and "oracle (upper bound)" in dry and "(dry run" in dry
        assert not (isolated_home / "routers").exists()
        assert (
            main(["--config", str(cfg), "route", "mk", "--router", "learned", "--n-boot", "200", "--write"])
            == 0
        )
        out = capsys.readouterr().out
        assert (isolated_home / "routers" / "classify-mk.npz").is_file() and "written to" in out
        text = cfg.read_text()
        assert 'router = "classify-mk"' in text and "router_tau" in text and 'run_id = "mk"' in text
        replayed = main(["--config", str(cfg), "replay", "mk", "--policy", "config", "--n-boot", "100"])
        line = capsys.readouterr().out
        assert replayed == 0 and "classify: stored router classify-mk" in line and "mean 1.000" in line
        config = load_config(cfg)
        n_before = len(srv.requests)
        fresh = [
            Issue(id=f"new#{k}", title="new", body=f"w5 w9 {MARKER}" if k % 2 else "w5 w9 w11")
            for k in range(6)
        ]
        with LLMClient(config, cache=False) as client:
            answers = [client.complete_sync(i, mode="classify") for i in fresh]
        sent = [r.json["model"] for r in srv.requests[n_before:]]
        assert sent == ["cheap", "strong"] * 3
        assert [a.model for a in answers] == ["m/cheap", "m/strong"] * 3
        # free text has no issue to route: the entry's primary answers
        with LLMClient(config, cache=False) as client:
            client.complete_sync("just some text", mode="classify")
        assert srv.requests[-1].json["model"] == config.routing["classify"]["primary"].split("/")[1]


def test_a_tampered_written_router_is_a_clear_error_at_call_time(
    tmp_path, capsys, monkeypatch, isolated_home
):
    monkeypatch.chdir(tmp_path)
    issues = marker_issues(60)
    with FaultServer(script=_answer_by_model) as srv:
        cfg = _project(tmp_path, srv.url, issues)
        assert main(_run_args(cfg)) == 0
        assert (
            main(["--config", str(cfg), "route", "mk", "--router", "learned", "--n-boot", "50", "--write"])
            == 0
        )
        path = isolated_home / "routers" / "classify-mk.npz"
        path.write_bytes(b"PK\x03\x04 truncated")
        capsys.readouterr()
        n_before = len(srv.requests)
        (tmp_path / "i.json").write_text(issues[0].model_dump_json())
        code = main(["--config", str(cfg), "ask", "--task", "classify", "--issue", str(tmp_path / "i.json")])
        err = capsys.readouterr().err
        assert code != 0 and str(path) in err and "not a usable router" in err and "Traceback" not in err
        assert len(srv.requests) == n_before


@pytest.mark.parametrize(
    "line, message",
    [
        ("router = 3", "key 'router': must be the name of a stored router"),
        ('router = "../x"', "key 'router': must be the name of a stored router"),
        ('router = "classify-r"\nrouter_tau = "high"', "key 'router_tau': must be a number"),
    ],
)
def test_a_bad_router_entry_is_a_config_error_naming_the_key(tmp_path, line, message):
    from orchestrator.config import load_config
    from orchestrator.errors import ConfigError

    cfg = tmp_path / "orchestrator.toml"
    cfg.write_text(
        '[defaults]\nmodel = "baseline/rules"\n[models."baseline/rules"]\nprovider = "baseline"\n'
        f'[routing.classify]\nprimary = "baseline/rules"\n{line}\n'
    )
    with pytest.raises(ConfigError, match=message):
        load_config(cfg)


def test_the_router_plot_draws_the_curve_and_every_comparator():
    from orchestrator.workbench.plots import router_curve

    issues = marker_issues()
    result = learn_router(marker_rows(issues), issues, "classify", n_boot=100)
    fig = router_curve(result)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "learned router, tau swept"
    assert len(labels) == 1 + len(result.comparators)
    assert any(lab.startswith("oracle") for lab in labels) and ax.get_xlabel() == "cost per issue (USD)"


def test_the_estimate_leaves_out_the_cells_a_trained_model_cannot_answer(tmp_path):
    from orchestrator.config import load_config
    from orchestrator.runs.estimate import estimate_grid

    cfg = tmp_path / "orchestrator.toml"
    cfg.write_text(
        '[defaults]\nmodel = "baseline/rules"\n[models."baseline/rules"]\nprovider = "baseline"\n'
        '[models."trained/knn-files"]\nprovider = "trained"\nmodel = "knn-files"\n'
    )
    issues = marker_issues(10)
    est = estimate_grid(
        issues, ["baseline/rules", "trained/knn-files"], ["classify", "fix"], config=load_config(cfg)
    )
    assert est.cells_total == 10 * 3  # rules: both tasks; knn-files: fix only


@pytest.mark.parametrize("n_issues, warned", [(20, True), (160, False)])
def test_the_notebook_section_shows_the_replay_the_plot_and_warns_on_a_small_dev_split(
    monkeypatch, n_issues, warned
):
    import types

    import IPython.display

    from orchestrator.workbench.learned import show_learned_routing

    shown: list = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    issues = marker_issues(n_issues)
    bench = types.SimpleNamespace(df=marker_rows(issues), issues={i.id: i for i in issues})
    show_learned_routing(bench, n_boot=100)
    html = "\n".join(
        o._repr_html_() if hasattr(o, "_repr_html_") else o.to_html()
        for o in shown
        if not isinstance(o, IPython.display.Image)
    )
    assert "learned router over 2 candidates" in html and "oracle (upper bound)" in html
    assert "cost / issue ($)" in html
    assert ("a router learned from so few" in html) is warned
    assert sum(isinstance(o, IPython.display.Image) for o in shown) == 1
