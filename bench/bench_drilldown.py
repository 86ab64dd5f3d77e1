"""Size and build time of the report's drill-down (workbench.drilldown_html) for a run of N cells.

The run is synthetic but shaped like the default bench: the sample issues (repeated under new ids to reach
N), the four shipped tasks, three models, answers of ~600 characters with scorer details. The prompt is
rebuilt once per (issue, task) row, the answer once per cell.

    python bench/bench_drilldown.py --cells 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from _report import Report, Target  # noqa: E402

TARGET_KB_PER_CELL = Target("<", 10.0, "KB")  # 1,000 cells: a report under 10 MB


def frame(cells: int):
    import pandas as pd

    from orchestrator.types import Issue

    lines = (ROOT / "datasets" / "sample.jsonl").read_text(encoding="utf-8").splitlines()
    base = [Issue.model_validate_json(line) for line in lines if line.strip()]
    models, modes = (
        ["local/smollm2", "local/smollm2-creative", "baseline/rules"],
        ["classify", "summarize", "fix", "explain"],
    )
    n_issues = max(1, cells // (len(models) * len(modes)))
    issues = {
        f"{b.id}-{k}": b.model_copy(update={"id": f"{b.id}-{k}"})
        for k in range(n_issues // len(base) + 1)
        for b in base
    }
    ids = list(issues)[:n_issues]
    rows = []
    for i, issue_id in enumerate(ids):
        for model in models:
            for mode in modes:
                rows.append(
                    {
                        "issue_id": issue_id,
                        "model": model,
                        "mode": mode,
                        "task": mode,
                        "prompt": "default",
                        "repeat": 0,
                        "text": ("An answer sentence. " * 30),
                        "score": float((i + len(model)) % 2),
                        "scores": json.dumps({"type_correct": True, "predicted_type": "bug"}),
                        "error_type": "",
                        "error_message": "",
                        "input_uncached": 900,
                        "cache_read": 0,
                        "output": 120,
                        "cost_usd": 0.0,
                        "latency_s": 1.2,
                        "served_model": model,
                        "fallback_path": json.dumps([model]),
                        "from_cache": False,
                        "pred_type": "bug",
                        "prompt_version": None,
                    }
                )
    return pd.DataFrame(rows), issues


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from orchestrator.workbench import drilldown_html

    df, issues = frame(args.cells)
    sizes, times = [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        html = drilldown_html(df, issues).data
        times.append(time.perf_counter() - t0)
        sizes.append(len(html.encode()) / 1000)
    report = Report(f"python bench/bench_drilldown.py --cells {args.cells} --rounds {args.rounds}")
    report.section(f"drill-down of {len(df)} cells ({df['issue_id'].nunique()} issues x 3 models x 4 tasks)")
    report.add("HTML size", sizes, unit="KB")
    report.add("HTML size per cell", [s / len(df) for s in sizes], unit="KB", target=TARGET_KB_PER_CELL)
    report.add("build time", times, unit="s")
    report.print()


if __name__ == "__main__":
    main()
