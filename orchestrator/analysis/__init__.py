"""Statistics over a results DataFrame: means with clustered bootstrap CIs, paired tests, F1, Pareto.

The frame has one row per cell (columns: run_id, issue_id, repo, split, model, mode, repeat, score,
error_type, cost_usd, latency_s, ttft_s, output_tps, input_uncached, cache_read, cache_write, output,
reasoning, pred_type, gold_type, from_cache; missing optional columns are treated as unknown). Rows of the same
(model, mode, issue) are repeats: they are averaged within the issue first, and every bootstrap resamples
issues, never cells, because repeats of one issue are not independent. Each group and each pair draws from
its own generator seeded by ``seed`` and its labels, so adding a model never changes another's interval.

- :mod:`.columns`: columns as arrays, unknown as NaN;
- :mod:`.bootstrap`: exact multinomial bootstrap of means (how, and why it is exact);
- :mod:`.summary`: the summary table per model and mode, and the Pareto frontier;
- :mod:`.paired`: paired tests (sign-flip, McNemar), Holm, ties with the best;
- :mod:`.labels`: macro-F1 per repository and the per-label report.
"""

from __future__ import annotations

from .bootstrap import bootstrap_means
from .labels import INVALID_LABEL, classification_report_df, f1_per_repo, macro_f1
from .paired import (
    PAIRED_COLUMNS,
    holm,
    issue_means,
    mcnemar_exact,
    model_means,
    paired_comparison,
    sign_flip_p,
    tied_with_best,
)
from .summary import pareto_frontier, summary_table

__all__ = [
    "PAIRED_COLUMNS",
    "INVALID_LABEL",
    "bootstrap_means",
    "classification_report_df",
    "f1_per_repo",
    "holm",
    "issue_means",
    "macro_f1",
    "mcnemar_exact",
    "model_means",
    "paired_comparison",
    "pareto_frontier",
    "sign_flip_p",
    "summary_table",
    "tied_with_best",
]
