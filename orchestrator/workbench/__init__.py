"""What the notebooks call: run a benchmark, show its tables, say it in words, compare runs, explore.

The notebooks in ``notebooks/`` stay thin: every computation and every piece of HTML lives in this package,
one module per job, and this face re-exports what they call (``from orchestrator import workbench as wb``):

- :mod:`.html`: the stylesheet, escaping, number formats, showing text and figures;
- :mod:`.benchmark`: the config and issues of a benchmark, its estimate, the run, its header;
- :mod:`.tables`: summary, paired comparisons, ties, sample answers, errors (escaped Stylers);
- :mod:`.words`: the summary in words;
- :mod:`.prompts`: the prompts × models matrix of a task, and the issues that flipped between two prompts;
- :mod:`.proposal`: the routing proposal and the config diff it would write;
- :mod:`.compare`: two runs side by side;
- :mod:`.explore`: one issue at a time: search, the issue card, every model's answer side by side;
- :mod:`.widget`: the explore widget (runs in the background, with progress and Cancel);
- :mod:`.drilldown`: every cell of a run, expandable, for the report;
- :mod:`.plots`: the matplotlib figures (imported only when a figure is drawn).

Untrusted text (issue titles and bodies, model answers, error messages) only ever reaches HTML escaped:
tables go through ``Styler.format(escape="html")`` / ``format_index(escape="html")``, free text through
:func:`html.escape`, and nothing untrusted is displayed as Markdown. Figures are shown as PNG images.
"""

from __future__ import annotations

from ..paths import project_root, relative_label, resolve_path
from .benchmark import (
    Benchmark,
    dataset_card,
    estimate_benchmark,
    load_bench_config,
    load_issues,
    report_header,
    reproduce_command,
    run_benchmark,
    run_config,
)
from .compare import (
    RunComparison,
    compare_runs,
    config_diff,
    ensure_runs,
    paired_runs,
    runs_header,
    styled_run_pairs,
    styled_run_summaries,
)
from .drilldown import drilldown_html
from .explore import answers_html, compare_answers, find_issues, issue_card, stream_answer
from .html import (
    CSS,
    MODE_ORDER,
    SMOKE_ENV,
    esc,
    fmt_ci,
    fmt_num,
    fmt_pct,
    fmt_s,
    fmt_usd,
    show_cost_quality,
    show_figure,
    show_heatmap,
    show_latency,
    show_pre,
    show_text,
    show_text_now,
    smoke,
    split_list,
)
from .learned import learned_routing, show_learned_routing
from .prompts import prompt_flips, prompt_matrix, show_prompt_flips, show_prompt_matrix, styled_prompt_flips
from .proposal import RoutingProposal, routing_proposal, show_routing
from .tables import (
    all_comparisons,
    errors_table,
    sample_answers,
    show_changes,
    show_errors,
    show_fallbacks,
    styled_answers,
    styled_comparisons,
    styled_diff,
    styled_summary,
    styled_tied,
    summary_frame,
    tied_groups,
)
from .widget import explore_widget
from .words import summary_in_words, words_html

__all__ = [
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
    "learned_routing",
    "show_learned_routing",
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
    "styled_prompt_flips",
    "styled_diff",
    "styled_run_pairs",
    "styled_run_summaries",
    "styled_summary",
    "styled_tied",
    "summary_frame",
    "summary_in_words",
    "tied_groups",
    "words_html",
]
