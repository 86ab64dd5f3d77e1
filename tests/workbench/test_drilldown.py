"""The report's drill-down: every cell of a real run expandable, the prompt per row, failures and
disagreements as anchored views, untrusted text escaped."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from orchestrator import workbench
from orchestrator.modes import get_mode
from orchestrator.types import Gold, Issue

PAYLOAD = "<script>window.__pwned=1</script>"


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.count: dict[str, int] = {}
        self.ids: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.count[tag] = self.count.get(tag, 0) + 1
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "a":
            self.hrefs.append(attrs.get("href", ""))


def run(tmp_path: Path):
    cfg_path = tmp_path / "orchestrator.toml"
    cfg_path.write_text(
        '[defaults]\nmodel = "baseline/rules"\n\n[models."baseline/rules"]\nprovider = "baseline"\n\n'
        '[models."openai/keyless"]\nprovider = "openai"\nmodel = "x"\napi_key_env = "DRILL_TEST_KEY"\n',
        encoding="utf-8",
    )
    issues = [
        Issue(
            id="a#1",
            title=f"Crash {PAYLOAD}",
            body="Traceback in loader.py",
            gold=Gold(type="bug", summary="s"),
        ),
        Issue(
            id="a#2",
            title="Add dark mode",
            body="Please add a dark theme",
            gold=Gold(type="feature", summary="s"),
        ),
        Issue(
            id="a#3",
            title="How do I set the proxy?",
            body="How can I?",
            gold=Gold(type="question", summary="s"),
        ),
    ]
    data = tmp_path / "issues.jsonl"
    data.write_text("".join(i.model_dump_json() + "\n" for i in issues), encoding="utf-8")
    cfg = workbench.load_bench_config(cfg_path)
    return workbench.run_benchmark(
        str(data),
        models="baseline/rules,openai/keyless",
        modes="classify,summarize",
        config=cfg,
        progress=False,
    )


def test_every_cell_is_expandable_with_its_prompt_answer_and_details(isolated_home, tmp_path, monkeypatch):
    monkeypatch.delenv("DRILL_TEST_KEY", raising=False)
    bench = run(tmp_path)
    df = bench.df
    assert len(df) == 12 and (df["error_type"] != "").sum() == 6  # the keyless model fails every cell
    html = workbench.drilldown_html(df, bench.issues).data
    tags = Tags()
    tags.feed(html)
    assert {"drill-classify", "drill-summarize", "drill-failures", "drill-disagreements"} <= set(tags.ids)
    assert {"#drill-classify", "#drill-failures", "#drill-disagreements"} <= set(tags.hrefs)
    matrices = html.split("id='drill-failures'")[0]
    cells = len(re.findall(r"<details class='[^']*'><summary>", matrices))
    assert cells == 12  # every (issue, model, mode) cell of the two matrices
    assert matrices.count("<summary>prompt: default</summary>") == 6  # one prompt per issue and task
    system = get_mode("classify").messages(bench.issues["a#2"])[0].content
    assert system.replace('"', "&quot;") in html  # the prompt the variant sent, escaped
    assert "DRILL_TEST_KEY is not set" in html and "auth" in html  # a failed cell says why
    failures = html.split("id='drill-failures'")[1].split("id='drill-disagreements'")[0]
    assert failures.count("<details class=") >= 6
    assert "The models agree on every issue." in html  # only one model answered: nothing to disagree on
    assert PAYLOAD not in html and "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert tags.count.get("script", 0) == 0


def test_a_cell_shows_the_fallback_and_cuts_a_long_answer(isolated_home, tmp_path, monkeypatch):
    monkeypatch.delenv("DRILL_TEST_KEY", raising=False)
    bench = run(tmp_path)
    df = bench.df.copy()
    ok = df.index[df["error_type"] == ""][0]
    df.loc[ok, "text"] = "x" * 9000
    df.loc[ok, "fallback_path"] = '["openai/keyless", "baseline/rules"]'
    html = workbench.drilldown_html(df, bench.issues, answer_chars=100).data
    assert "cut at 100 of 9,000 characters" in html
    assert "(fallback: openai/keyless → baseline/rules)" in html


def test_disagreements_list_the_issues_where_models_differ(isolated_home, tmp_path, monkeypatch):
    import pandas as pd

    monkeypatch.delenv("DRILL_TEST_KEY", raising=False)
    bench = run(tmp_path)
    ok = bench.df[bench.df["error_type"] == ""]
    twin = ok.assign(model="baseline/twin")
    flip = (twin["issue_id"] == "a#2") & (twin["mode"] == "classify")
    twin.loc[flip, "score"] = 1.0 - twin.loc[flip, "score"]
    twin.loc[flip, "pred_type"] = "docs"
    html = workbench.drilldown_html(pd.concat([ok, twin]), bench.issues).data
    section = html.split("id='drill-disagreements'")[1]
    assert section.startswith(">Disagreements: 1 (issue, mode) pairs")
    assert "a#2" in section and "(docs)" in section and "a#1" not in section
