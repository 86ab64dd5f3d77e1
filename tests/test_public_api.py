"""The public names of the package faces, listed here so that a move cannot silently drop one.

As httpx's ``tests/test_exported_members.py`` does: each face's ``__all__`` is exactly the list below, every
name in it resolves, and (for the eager faces) every public name the face binds is in ``__all__``. A name
added on purpose is added here too; a name that disappears fails this test before it fails a user.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest

PUBLIC = {
    "orchestrator": [
        "Breaker",
        "BudgetExceeded",
        "BudgetExceededError",
        "Comment",
        "Completion",
        "Config",
        "ConfigError",
        "Gold",
        "Issue",
        "LLMClient",
        "Ledger",
        "MODES",
        "Message",
        "ModelSpec",
        "ProviderError",
        "RetryPolicy",
        "UnknownModelError",
        "Usage",
        "get_mode",
        "load_config",
        "load_issues",
        "paired_comparison",
        "results_df",
        "run_grid",
        "run_grid_sync",
        "summary_table",
        "write_issues",
    ],
    "orchestrator.workbench": [
        "Benchmark",
        "CSS",
        "MODE_ORDER",
        "RoutingProposal",
        "RunComparison",
        "SMOKE_ENV",
        "all_comparisons",
        "answers_html",
        "compare_answers",
        "compare_runs",
        "config_diff",
        "dataset_card",
        "drilldown_html",
        "ensure_runs",
        "errors_table",
        "esc",
        "estimate_benchmark",
        "explore_widget",
        "find_issues",
        "fmt_ci",
        "fmt_num",
        "fmt_pct",
        "fmt_s",
        "fmt_usd",
        "issue_card",
        "learned_routing",
        "load_bench_config",
        "load_issues",
        "paired_runs",
        "project_root",
        "prompt_flips",
        "prompt_matrix",
        "relative_label",
        "report_header",
        "reproduce_command",
        "resolve_path",
        "routing_proposal",
        "run_benchmark",
        "run_config",
        "runs_header",
        "sample_answers",
        "show_changes",
        "show_cost_quality",
        "show_errors",
        "show_fallbacks",
        "show_figure",
        "show_heatmap",
        "show_latency",
        "show_learned_routing",
        "show_pre",
        "show_prompt_flips",
        "show_prompt_matrix",
        "show_routing",
        "show_text",
        "show_text_now",
        "smoke",
        "split_list",
        "stream_answer",
        "styled_answers",
        "styled_comparisons",
        "styled_diff",
        "styled_prompt_flips",
        "styled_run_pairs",
        "styled_run_summaries",
        "styled_summary",
        "styled_tied",
        "summary_frame",
        "summary_in_words",
        "tied_groups",
        "words_html",
    ],
    "orchestrator.routing": [
        "LearnedRouting",
        "OBJECTIVES",
        "ReplayReport",
        "RoutingError",
        "Selection",
        "Selections",
        "cascade_curve",
        "format_replay",
        "learn_router",
        "parse_policy",
        "replay",
        "routing_entry",
        "select_winners",
        "write_routing",
    ],
    "orchestrator.issues": [
        "DatasetError",
        "MAX_PROBLEMS",
        "assign_splits",
        "dataset_stats",
        "hash_split",
        "import_issues",
        "issue_to_dict",
        "issue_to_json",
        "load_issues",
        "parse_pairs",
        "read_issues_lenient",
        "synthetic_id",
        "validate_issues",
        "write_issues",
    ],
}

# The notebooks call the workbench as ``wb.<name>``: each of these must stay public there.
NOTEBOOKS = ["benchmark.ipynb", "compare_runs.ipynb", "explore.ipynb"]


@pytest.mark.parametrize("face", sorted(PUBLIC))
def test_all_is_exactly_the_listed_public_names(face: str) -> None:
    module = importlib.import_module(face)
    assert sorted(module.__all__) == sorted(PUBLIC[face])
    assert len(set(module.__all__)) == len(module.__all__), "a name is listed twice"


@pytest.mark.parametrize("face", sorted(PUBLIC))
def test_every_listed_name_resolves(face: str) -> None:
    module = importlib.import_module(face)
    missing = [name for name in module.__all__ if getattr(module, name, None) is None]
    assert not missing, f"{face} lists names it cannot give: {missing}"
    assert set(module.__all__) <= set(dir(module))


@pytest.mark.parametrize("face", ["orchestrator.workbench", "orchestrator.routing", "orchestrator.issues"])
def test_every_public_name_an_eager_face_binds_is_exported(face: str) -> None:
    module = importlib.import_module(face)
    bound = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }
    assert bound - set(module.__all__) == set(), f"{face} binds public names it does not export"


def test_the_lazy_facade_resolves_each_name_in_a_fresh_interpreter() -> None:
    """``from orchestrator import X`` for every X, each in a clean process (no other import helps it)."""
    names = PUBLIC["orchestrator"]
    code = "import importlib, orchestrator\n" + "".join(
        f"assert getattr(orchestrator, {n!r}) is not None\n" for n in names
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_every_workbench_name_the_notebooks_call_is_public() -> None:
    import json
    import re
    from pathlib import Path

    used: set[str] = set()
    for name in NOTEBOOKS:
        nb = json.loads((Path(__file__).resolve().parents[1] / "notebooks" / name).read_text())
        for cell in nb["cells"]:
            used |= set(re.findall(r"\bwb\.([A-Za-z_][A-Za-z0-9_]*)", "".join(cell["source"])))
    assert used, "the notebooks no longer call the workbench as wb.<name>: update this test"
    assert used - set(PUBLIC["orchestrator.workbench"]) == set()
