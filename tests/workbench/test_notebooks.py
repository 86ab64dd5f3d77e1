"""The notebooks and the package code behind them.

- nbval (lax) executes every notebook in notebooks/ at CI size (ORCHESTRATOR_NB_SMOKE=1: baseline/rules plus
  local/smollm2, 3 issues, 2 modes, short outputs) in a subprocess with a temporary ORCHESTRATOR_HOME.
- The benchmark notebook runs through papermill with parameters: they are in the executed notebook (the
  injected cell and papermill's metadata) and the run is in the results database, finished, complete.
- The papermill kernel is this interpreter, with text progress.
- The notebooks are committed without outputs; the workbench pieces (escaping, words, diffs, the widget)
  are checked without a kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from orchestrator import report, workbench
from orchestrator.runs.store import ResultStore, default_db_path

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


# ------------------------------------------------------------------------------------------ committed


def committed(path: Path) -> str:
    """The notebook as committed (its blob at HEAD), not the working file JupyterLab autosaves outputs into;
    the working file when this is not a git checkout (an sdist) or the notebook is not committed yet."""
    rel = path.resolve().relative_to(ROOT).as_posix()
    proc = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"HEAD:{rel}"], capture_output=True, text=True, encoding="utf-8"
    )
    if proc.returncode != 0:
        print(f"{rel}: no committed blob ({proc.stderr.strip()[:120]}); checking the working file")
        return path.read_text(encoding="utf-8")
    return proc.stdout


def baseline_project(extra_models: str = "") -> str:
    """An orchestrator.toml whose default is the rule baseline, with ``extra_models`` (TOML tables) after it."""
    return (
        '[defaults]\nmodel = "baseline/rules"\n\n[models."baseline/rules"]\nprovider = "baseline"\n\n'
        + extra_models
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_clean(path):
    nb = nbformat.reads(committed(path), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: outputs committed"
    assert {p.name for p in NOTEBOOKS} >= {"benchmark.ipynb", "explore.ipynb", "compare_runs.ipynb"}


def test_benchmark_parameters_match_the_issue():
    params = report_params()
    assert set(params) >= {
        "dataset",
        "split",
        "models",
        "modes",
        "repeats",
        "concurrency",
        "budget_usd",
        "judge_model",
        "run_id",
        "update_routing",
        "objective",
        "config",
        "limit",
    }
    assert params["dataset"] == '"datasets/sample.jsonl"'


def report_params() -> dict:
    from orchestrator.cli.bench import notebook_parameters

    return notebook_parameters(ROOT / "notebooks" / "benchmark.ipynb")


# ------------------------------------------------------------------------------------------ nbval


def _project_with_a_user_task(tmp_path: Path) -> Path:
    """A copy of this project (config, notebooks, sample issues) with the tasks issue's example task file
    beside the config, so the notebooks run with a user task registered."""
    import shutil

    project = tmp_path / "project"
    shutil.copytree(ROOT / "notebooks", project / "notebooks")
    (project / "datasets").mkdir()
    shutil.copy(ROOT / "datasets" / "sample.jsonl", project / "datasets" / "sample.jsonl")
    shutil.copy(ROOT / "orchestrator.toml", project / "orchestrator.toml")
    example = (ROOT / "tests" / "tasks" / "test_task_files.py").read_text()
    (project / "tasks").mkdir()
    (project / "tasks" / "priority.toml").write_text(
        example.split('PRIORITY = r"""', 1)[1].split('"""', 1)[0]
    )
    return project


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_every_notebook_executes_under_nbval(tmp_path):
    """The three notebooks, in a copy of the project that has a user task file (tasks/priority.toml)."""
    project = _project_with_a_user_task(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "ORCHESTRATOR_CONFIG"}
    env.update(
        ORCHESTRATOR_NB_SMOKE="1", ORCHESTRATOR_HOME=str(tmp_path / "home"), ORCHESTRATOR_PROGRESS="off"
    )
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "--nbval-lax",
        "notebooks/",
        "-p",
        "no:cacheprovider",
        "-q",
        "-o",
        "addopts=",
        "--timeout=900",
    ]
    # a run before the benchmark notebook's own, so compare_runs compares two real runs (it never invents one)
    earlier = [sys.executable, "-m", "orchestrator.cli", "run", "--dataset", "datasets/sample.jsonl"]
    earlier += ["--models", "baseline/rules", "--modes", "classify,summarize", "--limit", "4"]
    subprocess.run(earlier, cwd=project, env=env, capture_output=True, text=True, timeout=300, check=True)
    proc = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=1400)
    print(proc.stdout[-6000:])
    print(proc.stderr[-3000:], file=sys.stderr)
    assert proc.returncode == 0, "nbval failed (output above)"
    assert " passed" in proc.stdout
    from orchestrator.config import load_config

    assert "priority" in load_config(project / "orchestrator.toml").tasks  # the config the notebooks loaded
    # each notebook made its runs in the temporary home, not in the project's database
    store = ResultStore(default_db_path(tmp_path / "home"))
    try:
        assert len(store.runs()) == 2  # the earlier run and the benchmark's: compare_runs made none
    finally:
        store.close()


# ------------------------------------------------------------------------------------------ papermill


@pytest.mark.slow
def test_benchmark_through_papermill_records_parameters_and_run(tmp_path, isolated_home):
    run_id = "test-papermill-" + os.urandom(3).hex()
    params = {
        "models": "baseline/rules,local/smollm2",
        "modes": "classify,summarize",
        "limit": 2,
        "max_tokens": 32,
        "dataset": "datasets/sample.jsonl",
        "concurrency": 2,
    }
    result = report.bench(
        parameters=params, run_id=run_id, config=ROOT / "orchestrator.toml", output_dir=tmp_path / "reports"
    )
    assert result.notebook == tmp_path / "reports" / f"{run_id}.ipynb"
    assert result.html.is_file()

    nb = nbformat.read(str(result.notebook), as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    source = injected[0].source
    assert 'models = "baseline/rules,local/smollm2"' in source
    assert "limit = 2" in source and "max_tokens = 32" in source and f'run_id = "{run_id}"' in source
    pm_meta = nb.metadata["papermill"]
    assert pm_meta["parameters"]["run_id"] == run_id
    assert pm_meta["parameters"]["models"] == params["models"]
    assert pm_meta["parameters"]["config"] == "orchestrator.toml"  # relative to the project root
    assert pm_meta["input_path"] == "notebooks/benchmark.ipynb"
    assert not any(
        c.get("outputs") and any(o.get("output_type") == "error" for o in c.outputs) for c in nb.cells
    )
    shown = json.dumps(
        [o.get("data", {}).get("text/html", "") for c in nb.cells for o in c.get("outputs", [])]
    )
    assert "PROVISIONAL, not written" in shown  # a small run still shows the routing loop, flagged

    store = ResultStore(default_db_path(isolated_home))
    try:
        run = store.run(run_id)
        assert run is not None and run["status"] == "finished"
        assert run["params"]["n_issues"] == 2 and run["dataset"] == "datasets/sample.jsonl"
        assert run["config_snapshot"]["models"]["local/smollm2"]["max_tokens"] == 32
        df = store.results_df(run_id)
    finally:
        store.close()
    assert len(df) == 2 * 2 * 2  # issues × models × modes
    assert set(df["model"]) == {"baseline/rules", "local/smollm2"}


@pytest.mark.slow
def test_papermill_kernel_is_this_python_with_text_progress(tmp_path):
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    nb.cells = [
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import os, sys\nprint(sys.executable)\nprint(os.environ.get('ORCHESTRATOR_PROGRESS'))"
            "\nprint(x)\nimport orchestrator"
        ),
    ]
    src = tmp_path / "probe.ipynb"
    nbformat.write(nb, str(src))
    out = report.execute_notebook(src, tmp_path / "out.ipynb", {"x": 41}, cwd=tmp_path)
    text = "".join(o.get("text", "") for o in out.cells[-1].outputs)
    assert text.split() == [sys.executable, "text", "41"]


# ------------------------------------------------------------------------------------------ bench CLI


def _bench_args(argv: list[str]) -> argparse.Namespace:
    from orchestrator.cli import bench as bench_cli

    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    bench_cli.register(parser.add_subparsers())
    return parser.parse_args(["bench", *argv])


def test_bench_cli_parameters():
    from orchestrator.cli.bench import build_parameters
    from orchestrator.errors import OrchestratorError

    args = _bench_args(
        [
            "--models",
            "a,b",
            "--budget",
            "0.5",
            "-p",
            "limit",
            "3",
            "-p",
            "split",
            "None",
            "-p",
            "update_routing",
            "True",
            "-p",
            "objective",
            "quality",
            "--modes",
            "classify",
        ]
    )
    params = build_parameters(args, report_params())
    assert params == {
        "models": "a,b",
        "budget_usd": 0.5,
        "limit": 3,
        "split": None,
        "update_routing": True,
        "objective": "quality",
        "modes": "classify",
    }
    assert args.output_dir == Path("reports") and not args.with_code
    from orchestrator.cli.bench import DEFAULT_MAX_TOKENS, with_default_cap

    assert with_default_cap({}) == {"max_tokens": DEFAULT_MAX_TOKENS}  # the embedded default, on CPU
    assert with_default_cap({"max_tokens": None}) == {"max_tokens": None}
    assert with_default_cap({"models": "x"}) == {"models": "x"}
    with pytest.raises(OrchestratorError, match="unknown notebook parameter"):
        build_parameters(_bench_args(["-p", "limt", "3"]), report_params())


def test_find_notebook_resolves_from_the_project_and_says_when_missing(tmp_path, monkeypatch):
    assert report.find_notebook(root=ROOT) == ROOT / "notebooks" / "benchmark.ipynb"
    monkeypatch.chdir(tmp_path)  # elsewhere: the source checkout still has it
    assert report.find_notebook() == ROOT / "notebooks" / "benchmark.ipynb"
    with pytest.raises(report.ReportError, match="not found"):
        report.find_notebook("notebooks/nope.ipynb", root=tmp_path)


# ------------------------------------------------------------------------------------------ escaping


def test_report_sanitizer_keeps_tables_and_escapes_the_rest():
    clean = report.clean_report_html(
        "<style>td{color:red}</style><style>td{background:url(http://x/y.png)}</style>"
        '<table class="orc-table"><thead><tr><th colspan="2">h</th></tr></thead><tbody><tr><td>1</td></tr>'
        '</tbody></table><script>alert(1)</script><img src=x onerror="alert(2)"><h2 id="a">t</h2>'
        '<a href="javascript:alert(3)">x</a>'
    )
    assert "<style>td{color:red}</style>" in clean and "url(" not in clean
    assert '<th colspan="2">' in clean and "<tbody>" in clean and '<h2 id="a">' in clean
    assert "<script>" not in clean and "&lt;script&gt;" in clean
    assert "<img" not in clean and "javascript:" not in clean


def test_styled_tables_escape_untrusted_text():
    df = pd.DataFrame(
        {
            "run_id": "r",
            "issue_id": ["o/r#1", "o/r#1"],
            "model": ["m<b>1</b>", "m2"],
            "mode": "classify",
            "repeat": 0,
            "split": "dev",
            "text": ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>"],
            "score": [1.0, 0.0],
            "error_type": "",
            "error_message": "",
        }
    )
    from orchestrator.types import Issue

    issues = {"o/r#1": Issue(id="o/r#1", title="<b onmouseover=alert(1)>t</b>", body="")}
    html = workbench.styled_answers(workbench.sample_answers(df, issues)).to_html()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and "<b onmouseover" not in html and "m&lt;b&gt;1" in html


# ------------------------------------------------------------------------------------------ words


def _summary(rows):
    cols = [
        "model",
        "mode",
        "n_issues",
        "n_cells",
        "mean",
        "ci_low",
        "ci_high",
        "cost_per_issue",
        "error_rate",
    ]
    return pd.DataFrame(rows, columns=cols)


def test_summary_in_words_names_winner_cost_and_certainty():
    summary = _summary(
        [
            ("big", "classify", 40, 40, 0.9, 0.8, 0.97, 0.002, 0.0),
            ("small", "classify", 40, 40, 0.85, 0.74, 0.93, 0.0001, 0.0),
            ("floor", "classify", 40, 40, 0.3, 0.2, 0.4, 0.0, 0.05),
            ("big", "summarize", 40, 40, 0.6, 0.5, 0.7, 0.004, 0.0),
            ("floor", "summarize", 40, 40, 0.2, 0.1, 0.3, 0.0, 0.0),
        ]
    )
    comparisons = pd.DataFrame(
        [
            ("classify", "big", "small", 40, False),
            ("classify", "big", "floor", 40, True),
            ("classify", "small", "floor", 40, True),
            ("summarize", "big", "floor", 40, True),
        ],
        columns=["mode", "model_a", "model_b", "n", "significant"],
    )
    words = workbench.summary_in_words(summary, comparisons, ["classify", "summarize"])
    lines = words.splitlines()
    assert lines[0].startswith("- classify: big scores best, 0.90 (95% CI 0.80–0.97, 40 issues)")
    assert "statistically tied with small (0.85)" in lines[0]
    assert (
        "small is tied and cheaper ($0.000100 per issue)" in lines[0] and "clearly ahead of floor" in lines[0]
    )
    assert lines[1].startswith("- summarize: big scores best") and "ahead of every other model" in lines[1]
    assert "Caution" not in words
    assert "2 cells failed" in words and "floor, classify" in words


def test_summary_in_words_small_and_empty():
    summary = _summary([("only", "fix", 3, 3, 0.5, 0.0, 1.0, float("nan"), 0.0)])
    words = workbench.summary_in_words(summary, None)
    assert "only model scored" in words and "Caution: fewer than 10 issues" in words
    assert "Cost unknown" in words and "unknown per issue" in words
    assert workbench.summary_in_words(_summary([]), None).startswith("No results")


# ------------------------------------------------------------------------------------------ config diff


def test_config_diff_lists_changed_added_removed_keys():
    a = {
        "models": {"m": {"temperature": 0.0, "max_tokens": 256}},
        "mode_versions": {"classify": "aaa"},
        "default_model": "m",
    }
    b = {
        "models": {"m": {"temperature": 0.7, "max_tokens": 256}, "n": {"temperature": 0.1}},
        "mode_versions": {"classify": "bbb"},
        "default_model": "m",
    }
    diff = workbench.config_diff(a, b)
    rows = {r["key"]: (r["run A"], r["run B"], r["change"]) for r in diff.to_dict("records")}
    assert rows == {
        "models.m.temperature": ("0.0", "0.7", "changed"),
        "models": ("—", "n", "only in run B"),  # a model one run never used: one row, not one per setting
        "mode_versions.classify": ("aaa", "bbb", "changed"),
    }
    assert workbench.config_diff(a, a).empty


def test_paired_runs_compares_same_model_across_runs():
    def frame(run, scores):
        return pd.DataFrame(
            {
                "run_id": run,
                "issue_id": [f"i{k}" for k in range(len(scores))],
                "model": "m",
                "mode": "classify",
                "repeat": 0,
                "score": scores,
                "error_type": "",
            }
        )

    paired = workbench.paired_runs(frame("a", [1.0] * 12), frame("b", [0.0] * 12))
    row = paired.iloc[0]
    assert (row["mode"], row["model"], row["n"]) == ("classify", "m", 12)
    assert row["diff"] == pytest.approx(1.0) and row["significant"]  # A − B; shown as B − A = −1


# ------------------------------------------------------------------------------------------ explore


def test_find_issues_by_text_and_label():
    from orchestrator.types import Gold, Issue

    issues = [
        Issue(id="a#1", title="Crash on start", body="segfault", labels=["bug"]),
        Issue(id="a#2", title="Add dark mode", body="", labels=["enhancement"], gold=Gold(type="feature")),
    ]
    assert [i.id for i in workbench.find_issues(issues, "crash")] == ["a#1"]
    assert [i.id for i in workbench.find_issues(issues, "label:feature")] == ["a#2"]
    assert [i.id for i in workbench.find_issues(issues, "")] == ["a#1", "a#2"]


def test_explore_widget_and_compare_answers_use_the_cache(isolated_home):
    from orchestrator.client import LLMClient

    client = LLMClient(workbench.load_bench_config(ROOT / "orchestrator.toml"))
    try:
        issues = workbench.load_issues("datasets/sample.jsonl", limit=3, config=client.config)
        box = workbench.explore_widget(issues, client, models="baseline/rules", mode="classify")
        c = box.controls
        assert c.models.value == ("baseline/rules",) and len(c.picker.options) == 3
        c.search.value = "label:docs"
        assert len(c.picker.options) == 0  # none of the first three is docs
        c.search.value = ""
        first = box.run()
        assert list(first["model"]) == ["baseline/rules"] and first["error"].iloc[0] == ""
        again = workbench.compare_answers(client, issues[c.picker.value], ["baseline/rules"], "classify")
        assert bool(again["cached"].iloc[0]) and again["answer"].iloc[0] == first["answer"].iloc[0]
        html = workbench.answers_html(again, issues[0], "classify").data
        assert "baseline/rules" in html and "cached" in html
    finally:
        client.close()


def test_report_scrub_replaces_paths_and_keys():
    reps = report._replacements({".": Path("/srv/proj"), "~": Path("/home/u")})
    text = report.scrub_text("/srv/proj/datasets/a.jsonl /home/u/.cache/x /srv/project sk-" + "a" * 30, reps)
    assert text.startswith("datasets/a.jsonl ~/.cache/x /srv/project ") and "aaaa" not in text
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("p = '/srv/proj/x'")]
    nb.cells[0].outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={
                "application/vnd.jupyter.widget-view+json": {"model_id": "1"},
                "text/plain": "bar /srv/proj",
            },
        ),
        nbformat.v4.new_output("display_data", data={"image/png": "iVBOR/srv/proj"}),
    ]
    nb.metadata["papermill"] = {"input_path": "/srv/proj/notebooks/benchmark.ipynb"}
    report.scrub_notebook(nb, reps, labels={"input_path": "notebooks/benchmark.ipynb"})
    assert nb.cells[0].source == "p = 'x'"
    assert nb.cells[0].outputs[0]["data"] == {"text/plain": "bar ."}
    assert nb.cells[0].outputs[1]["data"]["image/png"] == "iVBOR/srv/proj"  # images untouched
    assert nb.metadata["papermill"]["input_path"] == "notebooks/benchmark.ipynb"
    assert json.dumps(nb).count("/srv/proj") == 1


def test_the_report_shows_the_prompts_by_models_matrix_for_a_user_task(tmp_path, isolated_home):
    """A scratch project with the tasks issue's example task: the benchmark notebook runs it and the
    rendered report carries the prompts × models matrix, both prompts as rows."""
    import json as _json

    from orchestrator.types import Gold, Issue

    example = (ROOT / "tests" / "tasks" / "test_task_files.py").read_text()
    task = example.split('PRIORITY = r"""', 1)[1].split('"""', 1)[0]
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "priority.toml").write_text(task)
    (tmp_path / "orchestrator.toml").write_text('[models."baseline/rules"]\nprovider = "baseline"\n')
    issues = [
        Issue(
            id=f"a/b#{i}", repo="a/b", number=i, title=f"t{i}", gold=Gold(priority=f"p{i % 3}"), split="dev"
        )
        for i in range(1, 13)
    ]
    (tmp_path / "issues.jsonl").write_text(
        "".join(_json.dumps(i.model_dump(mode="json")) + "\n" for i in issues)
    )
    params = {"models": "baseline/rules", "modes": "priority", "dataset": "issues.jsonl", "concurrency": 2}
    result = report.bench(
        parameters=params, run_id="prompts-matrix", config=tmp_path / "orchestrator.toml", output_dir=tmp_path
    )
    html = result.html.read_text()
    assert "Prompts × models" in html and "★ best of the task" in html  # the matrix, not the note
    assert "single prompt" not in html
    assert "issues whose score changed from prompt default to terse" in html  # the flips, with the test
    nb = nbformat.read(str(result.notebook), as_version=4)
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))


def test_prompt_flips_lists_the_changed_issues_with_the_paired_test():
    import pandas as pd

    rows = []
    for i in range(8):
        base = dict(run_id="r", issue_id=f"i{i}", model="m", task="t", repeat=0, error_type="", split="dev")
        rows.append({**base, "mode": "t", "prompt": "default", "score": float(i % 2)})
        rows.append({**base, "mode": "t:terse", "prompt": "terse", "score": 1.0})
    df = pd.DataFrame(rows)
    flipped, paired = workbench.prompt_flips(df, "t", "default", "terse", "m", n_boot=200)
    assert list(flipped["issue_id"]) == ["i0", "i2", "i4", "i6"]
    assert paired.loc[0, "test"] == "mcnemar" and paired.loc[0, "diff"] == -0.5
    assert paired.loc[0, "p_value"] == pytest.approx(0.125)  # exact McNemar, 4 discordant pairs
    matrix = workbench.prompt_matrix(df, n_boot=200)
    assert list(matrix["prompt"]) == ["default", "terse"] and matrix.loc[1, "m"].endswith("★")


def test_explore_widget_binds_dataset_label_tasks_and_names_what_it_leaves_out(isolated_home, tmp_path):
    """A task with labels = "dataset" is offered bound to the widget's issues (the baseline answers its
    floor label); a variant that needs a gold field these issues lack is left out, with the reason shown."""
    from orchestrator.client import LLMClient
    from orchestrator.tasks import load_task, register_task
    from orchestrator.types import Gold, Issue

    task = tmp_path / "sev.toml"
    task.write_text(
        'name = "sev"\ngold = "sev"\nlabels = "dataset"\n\n[prompts.default]\n'
        'system = "One of {{ labels | join(\', \') }}."\nuser = "{{ issue.title }}"\n\n'
        '[prompts.owner]\nuser = "{{ issue.title }} for {{ issue.gold.owner }}"\n',
        encoding="utf-8",
    )
    register_task(load_task(task))
    issues = [
        Issue(id=f"a#{i}", title=f"t{i}", gold=Gold(sev=s), split="dev")
        for i, s in enumerate(["s1", "s2", "s2"])
    ]
    client = LLMClient(workbench.load_bench_config(ROOT / "orchestrator.toml"))
    try:
        box = workbench.explore_widget(issues, client, models="baseline/rules", mode="sev")
        c = box.controls
        assert "sev" in c.mode.options and "sev:owner" not in c.mode.options
        assert "sev:owner left out" in c.status.value and "owner" in c.status.value
        frame = box.run()
        assert frame["error"].iloc[0] == "" and json.loads(frame["answer"].iloc[0]) == {"label": "s2"}
        assert "$" in c.status.value and 'class="mathjax_ignore' in c.status.value  # "spent $0": not math
    finally:
        client.close()


def test_the_git_filter_strips_outputs_as_a_notebook_is_staged(tmp_path):
    """The shipped guard: with .gitattributes and the nbstripout filter configured (what `nbstripout
    --install` does), a notebook saved with outputs is committed without them; the working file keeps them."""
    import shutil

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / ".gitattributes", repo / ".gitattributes")
    nb = nbformat.read(str(NOTEBOOKS[0]), as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.execution_count = 3
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="spent $0.01\n")]
    nbformat.write(nb, str(repo / "notebooks" / "x.ipynb"))

    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
        return out.stdout

    git("init", "-q")
    git("config", "filter.nbstripout.clean", f'"{sys.executable}" -m nbstripout --keep-id')
    git("config", "filter.nbstripout.smudge", "cat")
    git("config", "filter.nbstripout.required", "true")
    git("add", ".")
    staged = nbformat.reads(git("show", ":notebooks/x.ipynb"), as_version=4)
    assert all(c.outputs == [] and c.execution_count is None for c in staged.cells if c.cell_type == "code")
    assert [c.source for c in staged.cells] == [c.source for c in nb.cells]  # nothing else lost
    assert [c.id for c in staged.cells] == [c.id for c in nb.cells]  # nor the named cell ids
    assert "parameters" in str([c.metadata for c in staged.cells])  # papermill's tag survives
    assert "spent $0.01" in (repo / "notebooks" / "x.ipynb").read_text()


def test_explore_says_who_answered_when_a_fallback_did_and_why(isolated_home, tmp_path, monkeypatch):
    """A model with no key falls back: the picker says so before the run, the card is titled with the model
    that answered and says why, the status counts it; a model with no fallback shows one clean error line;
    a mode change clears the stale cards."""
    from orchestrator.client import LLMClient
    from orchestrator.config import load_config
    from orchestrator.types import Gold, Issue

    monkeypatch.delenv("EXPLORE_TEST_KEY", raising=False)
    cfg = tmp_path / "orchestrator.toml"
    cfg.write_text(
        baseline_project(
            '[models."openai/keyless"]\nprovider = "openai"\nmodel = "gpt-x"\napi_key_env = "EXPLORE_TEST_KEY"\n'
            'fallbacks = ["baseline/rules"]\n\n'
            '[models."openai/alone"]\nprovider = "openai"\nmodel = "gpt-y"\napi_key_env = "EXPLORE_TEST_KEY"\n',
        ),
        encoding="utf-8",
    )
    issues = [Issue(id="a#1", title="Crash in loader", body="Traceback", gold=Gold(type="bug"))]
    client = LLMClient(load_config(cfg), cache=False)
    try:
        box = workbench.explore_widget(issues, client, models="openai/keyless,openai/alone", mode="classify")
        c = box.controls
        labels = dict((v, k) for k, v in c.models.options)
        assert "no key: set EXPLORE_TEST_KEY (a call falls back)" in labels["openai/keyless"]
        assert labels["baseline/rules"].endswith("free")
        frame = box.run()
        row = frame.set_index("model").loc["openai/keyless"]
        assert row["answered by"] == "baseline/rules" and "EXPLORE_TEST_KEY is not set" in row["fallback"]
        alone = frame.set_index("model").loc["openai/alone", "error"]
        assert alone.count("auth") == 1 and "EXPLORE_TEST_KEY is not set" in alone  # one clean line
        html = workbench.answers_html(frame, issues[0], "classify").data
        assert "baseline/rules <span class='orc-err'>(fallback: openai/keyless did not answer)</span>" in html
        assert "why: openai/keyless: auth" in html and "type score" in html
        assert "1 failed" in c.status.value and "1 by a fallback" in c.status.value
        assert len(c.answers_out.outputs) == 1  # the cards
        c.mode.value = "summarize"
        assert c.answers_out.outputs == () and c.status.value == ""  # cleared on a mode change
    finally:
        client.close()


def test_search_matches_whole_words_and_keeps_label_filters():
    from orchestrator.types import Gold, Issue

    issues = [
        Issue(id="a#1", title="Async client hangs", body="", gold=Gold(type="bug")),
        Issue(id="a#2", title="Sync the docs", body="", labels=["docs"]),
    ]
    assert [i.id for i in workbench.find_issues(issues, "sync")] == ["a#2"]  # not "Async"
    assert [i.id for i in workbench.find_issues(issues, "async client")] == ["a#1"]
    assert [i.id for i in workbench.find_issues(issues, "label:bug")] == ["a#1"]
    assert [i.id for i in workbench.find_issues(issues, "a#2")] == ["a#2"]
    assert workbench.find_issues(issues, "label:docs hangs") == []


def test_compare_runs_with_one_run_lists_it_and_diffs_only_shared_models(isolated_home, tmp_path):
    from orchestrator.runs.store import open_store

    cfg = workbench.load_bench_config(ROOT / "orchestrator.toml")
    first = workbench.run_benchmark(
        "datasets/sample.jsonl",
        models="baseline/rules",
        modes="classify",
        limit=2,
        config=cfg,
        progress=False,
    )
    with pytest.raises(ValueError) as info:
        workbench.compare_runs(config=cfg)
    message = str(info.value)
    assert "needs two runs; the results database has 1: " + first.run_id in message
    assert "compare_runs(run_a=..., run_b=...)" in message
    with open_store(config=cfg) as store:
        assert len(store.runs()) == 1  # nothing was invented
    a = {
        "models": {"m1": {"temperature": 0.1}, "m2": {"temperature": 0.2}},
        "mode_versions": {"classify": "x"},
    }
    b = {"models": {"m1": {"temperature": 0.5}, **{f"n{i}": {"t": i, "p": 1} for i in range(30)}}}
    b["mode_versions"] = {"classify": "x", "explain": "y"}
    diff = workbench.config_diff(a, b)
    assert diff[diff["key"].str.startswith("models.")]["key"].tolist() == ["models.m1.temperature"]
    only = diff[diff["change"].str.startswith("only")][["key", "run A", "run B", "change"]].values.tolist()
    names = ", ".join(sorted(f"n{i}" for i in range(30)))
    assert only == [
        ["models", "m2", "—", "only in run A"],
        ["models", "—", names, "only in run B"],
        ["mode_versions", "—", "explain", "only in run B"],
    ]
    assert len(diff) == 4  # not a row per setting of the 30 models run A never used


def test_a_small_run_shows_provisional_routing_picks_and_writes_none(isolated_home, tmp_path):
    """The default bench's dev split (6 issues) is below min_n: the proposal still shows what the loop would
    route, marked provisional with its n, and the diff to the config stays empty."""
    cfg_path = tmp_path / "orchestrator.toml"
    cfg_path.write_text(
        baseline_project(
            '[models."baseline/again"]\nprovider = "baseline"\n',
        ),
        encoding="utf-8",
    )
    cfg = workbench.load_bench_config(cfg_path)
    bench = workbench.run_benchmark(
        str(ROOT / "datasets" / "sample.jsonl"),
        models="baseline/rules,baseline/again",
        modes="classify,summarize",
        config=cfg,
        progress=False,
    )
    proposal = workbench.routing_proposal(bench, min_n=10)
    assert not proposal.selections and set(proposal.provisional) == {"classify", "summarize"}
    rows = proposal.table.set_index("mode")
    assert rows.loc["classify", "reason"].startswith("PROVISIONAL, not written: 6 issues < min_n 10")
    assert rows.loc["classify", "model"] in {"baseline/rules", "baseline/again"}
    assert proposal.diff == "" and not proposal.written
    assert "[routing" not in cfg_path.read_text()
    strict = workbench.routing_proposal(bench, min_n=5)
    assert set(strict.selections) == {"classify", "summarize"} and not strict.provisional


def test_exploring_a_run_asks_with_its_settings_so_its_answers_come_from_the_cache(isolated_home):
    """`orchestrator bench` caps output tokens; explore on the run's recorded settings reuses its cached
    answers (and so its scores), while the config's own settings would ask again."""
    from orchestrator.client import LLMClient

    cfg = workbench.load_bench_config(ROOT / "orchestrator.toml")
    spec = cfg.model_spec("baseline/rules")
    bench = workbench.run_benchmark(
        "datasets/sample.jsonl",
        models="baseline/rules",
        modes="classify",
        limit=2,
        config=cfg,
        max_tokens=37,
        progress=False,
    )
    explored, note = workbench.run_config(ROOT / "orchestrator.toml", run="latest")
    assert explored.model_spec("baseline/rules").max_tokens == 37 != spec.max_tokens
    assert bench.run_id in note and "baseline/rules" in note
    issue = workbench.load_issues("datasets/sample.jsonl", config=cfg)[0]
    for config, cached in ((explored, True), (cfg, False)):
        client = LLMClient(config)
        try:
            frame = workbench.compare_answers(client, issue, ["baseline/rules"], "classify")
            assert bool(frame["cached"].iloc[0]) is cached
        finally:
            client.close()
    same, _ = workbench.run_config(ROOT / "orchestrator.toml", run=None)
    assert same.model_spec("baseline/rules").max_tokens == spec.max_tokens
    with pytest.raises(ValueError, match="no run 'nope'"):
        workbench.run_config(ROOT / "orchestrator.toml", run="nope")


def test_resuming_a_run_asks_with_the_settings_it_recorded(isolated_home):
    """The benchmark notebook run again from the UI with a run id (or `bench --run-id`) resumes with the
    request settings the run recorded, not the config's own."""
    cfg = workbench.load_bench_config(ROOT / "orchestrator.toml")
    first = workbench.run_benchmark(
        "datasets/sample.jsonl",
        models="baseline/rules",
        modes="classify",
        limit=2,
        config=cfg,
        max_tokens=37,
        progress=False,
    )
    again = workbench.run_benchmark(
        "datasets/sample.jsonl",
        models="baseline/rules",
        modes="classify",
        limit=3,
        config=cfg,
        run_id=first.run_id,
        progress=False,
    )
    assert again.config.model_spec("baseline/rules").max_tokens == 37
    assert len(again.df) == 3
    fresh = workbench.run_benchmark(
        "datasets/sample.jsonl",
        models="baseline/rules",
        modes="classify",
        limit=1,
        config=cfg,
        progress=False,
    )
    assert fresh.config.model_spec("baseline/rules").max_tokens == cfg.model_spec("baseline/rules").max_tokens


def test_the_report_header_gives_the_command_that_reproduces_the_run_and_a_dataset_card(isolated_home):
    import shlex

    cfg = workbench.load_bench_config(ROOT / "orchestrator.toml")
    bench = workbench.run_benchmark(
        "datasets/sample.jsonl",
        models="baseline/rules",
        modes="classify,summarize",
        limit=2,
        config=cfg,
        max_tokens=37,
        progress=False,
    )
    line = workbench.reproduce_command(bench)
    assert shlex.split(line) == [
        "orchestrator",
        "bench",
        "--dataset",
        "datasets/sample.jsonl",
        "--models",
        "baseline/rules",
        "--modes",
        "classify,summarize",
        "-p",
        "limit",
        "2",
        "-p",
        "max_tokens",
        "37",
    ]
    assert (
        "Reproduce" in workbench.report_header(bench).data
        and "-p limit 2" in workbench.report_header(bench).data
    )
    card = workbench.dataset_card(bench).data
    assert "<th>Issues</th><td>2</td>" in card and "By gold type" in card and "By repository" in card
    assert "This directory holds the benchmark data" in card and "datasets/README.md" in card


def test_the_rendered_report_gets_a_table_of_contents():
    page = (
        '<html><body><main><h2 id="In-words">In words<a class="anchor-link" href="#In-words">¶</a></h2>'
        '<h2 id="Prompts-×-models">Prompts &times; models<a class="anchor-link" href="#x">¶</a></h2>'
        "</main></body></html>"
    )
    out = report.with_contents(page)
    assert out.count('<nav class="orc-toc"') == 1 and out.index("<nav") == out.index("<main>") + len("<main>")
    assert (
        '<a href="#In-words">In words</a>' in out
        and '<a href="#Prompts-×-models">Prompts × models</a>' in out
    )
    assert report.with_contents("<main><h2 id='a'>only</h2></main>") == "<main><h2 id='a'>only</h2></main>"


def test_fallback_answers_are_stored_with_their_reason_and_shown_in_the_report(
    isolated_home, tmp_path, monkeypatch
):
    """A model with no key falls back: its rows record who answered and why, and the report's fallbacks
    table says so plainly; a run without fallbacks says every answer is the asked model's."""
    from orchestrator.runs.store import open_store

    monkeypatch.delenv("FALLBACK_TEST_KEY", raising=False)
    cfg_path = tmp_path / "orchestrator.toml"
    cfg_path.write_text(
        baseline_project(
            '[models."openai/keyless"]\nprovider = "openai"\nmodel = "x"\napi_key_env = "FALLBACK_TEST_KEY"\n'
            'fallbacks = ["baseline/rules"]\n',
        ),
        encoding="utf-8",
    )
    cfg = workbench.load_bench_config(cfg_path)
    bench = workbench.run_benchmark(
        str(ROOT / "datasets" / "sample.jsonl"),
        models="baseline/rules,openai/keyless",
        modes="classify",
        limit=2,
        config=cfg,
        progress=False,
    )
    with open_store(config=cfg, readonly=True) as store:
        stored = store.results_df(bench.run_id)
    keyless = stored[stored["model"] == "openai/keyless"]
    assert len(keyless) == 2 and all(
        "FALLBACK_TEST_KEY is not set" in str(r) for r in keyless["fallback_reasons"]
    )
    from orchestrator.workbench.tables import fallbacks_table

    table = fallbacks_table(stored)
    assert table[["model", "answered by", "cells"]].values.tolist() == [
        ["openai/keyless", "baseline/rules", 2]
    ]
    assert "FALLBACK_TEST_KEY is not set" in table["why"].iloc[0]
    shown = workbench.show_fallbacks(stored).to_html()
    assert "2 of 4 cells were answered by a fallback" in shown
    alone = stored[stored["model"] == "baseline/rules"]
    assert "Every answer came from the model asked (2 cells)." in workbench.show_fallbacks(alone).data
    from orchestrator.analysis import summary_table

    summary = workbench.styled_summary(summary_table(stored, n_boot=50), ["classify"], stored).data
    answered = dict(zip(summary["model"], summary["answered by"], strict=True))
    assert answered == {"openai/keyless": "baseline/rules: 2 of 2", "baseline/rules": "itself"}
    sample = workbench.sample_answers(stored, bench.issues, modes=["classify"])
    assert set(sample["model"]) == {"baseline/rules", "openai/keyless (answered by baseline/rules)"}
