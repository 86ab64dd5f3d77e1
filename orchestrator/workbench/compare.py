"""Compare two stored runs: what changed in their configs, and paired differences per model and mode."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .benchmark import load_bench_config, run_benchmark
from .html import CSS, MODE_ORDER, _html, _ordered_modes, esc
from .tables import _base_style, _style_paired, column_formats, paired_frame

if TYPE_CHECKING:
    import pandas as pd
    from pandas.io.formats.style import Styler

    from ..config import Config


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, Mapping) and v:
                out.update(_flatten(v, key))
            else:
                out[key] = v
        return out
    return {prefix: value}


def config_diff(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> pd.DataFrame:
    """What differs between two config snapshots (runs table ``config_snapshot``, mode versions included):
    one row per changed key (dotted path) with both values and whether it was added, removed or changed.

    Models and modes only one run used are one row each (``models``: "only in run B"), not a row per
    setting: the comparison is about what the two runs share."""
    import pandas as pd

    a, b, rows = _shared_only(dict(a or {}), dict(b or {}))
    fa, fb = _flatten(a), _flatten(b)
    for key in sorted(set(fa) | set(fb)):
        va, vb = fa.get(key, _MISSING), fb.get(key, _MISSING)
        if va == vb:
            continue
        change = "added" if va is _MISSING else "removed" if vb is _MISSING else "changed"
        rows.append({"key": key, "run A": _show(va), "run B": _show(vb), "change": change})
    return pd.DataFrame(rows, columns=["key", "run A", "run B", "change"])


def _shared_only(
    a: dict[str, Any], b: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, str]]]:
    """``a`` and ``b`` with their ``models`` and ``mode_versions`` cut to the entries both have, and one row
    per section naming what only one of them has."""
    rows = []
    for section in ("models", "mode_versions"):
        sa, sb = a.get(section), b.get(section)
        if not isinstance(sa, Mapping) or not isinstance(sb, Mapping):
            continue
        only_a, only_b = sorted(set(sa) - set(sb)), sorted(set(sb) - set(sa))
        for names, label in ((only_a, "only in run A"), (only_b, "only in run B")):
            if names:
                shown = ", ".join(names)
                rows.append(
                    {
                        "key": section,
                        "run A": shown if label.endswith("A") else "—",
                        "run B": shown if label.endswith("B") else "—",
                        "change": label,
                    }
                )
        shared = set(sa) & set(sb)
        a[section] = {k: v for k, v in sa.items() if k in shared}
        b[section] = {k: v for k, v in sb.items() if k in shared}
    return a, b, rows


class _Missing:
    def __repr__(self) -> str:
        return "—"


_MISSING = _Missing()


def _show(value: Any) -> str:
    if value is _MISSING:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)


@dataclass
class RunComparison:
    run_a: dict[str, Any]
    run_b: dict[str, Any]
    paired: pd.DataFrame
    summary: pd.DataFrame
    config_changes: pd.DataFrame
    param_changes: pd.DataFrame
    created: list[str] = field(default_factory=list)


def ensure_runs(
    config: Config | None = None,
    *,
    needed: int = 2,
    dataset: str = "datasets/sample.jsonl",
    n_issues: int = 3,
) -> list[str]:
    """Create tiny baseline runs until the store holds ``needed`` runs (so the notebook runs standalone)."""
    from ..runs.store import open_store

    cfg = config or load_bench_config()
    with open_store(config=cfg) as store:
        have = len(store.runs())
    created = []
    for _ in range(max(0, needed - have)):
        bench = run_benchmark(
            dataset,
            models="baseline/rules",
            modes="classify,summarize",
            limit=n_issues,
            config=cfg,
            concurrency=2,
            progress=False,
        )
        created.append(bench.run_id)
    return created


def paired_runs(
    df_a: pd.DataFrame, df_b: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
) -> pd.DataFrame:
    """Per model and mode present in both runs: run B against run A on the same issue ids.

    Each pair is :func:`orchestrator.analysis.paired_comparison` on a frame whose ``model`` column is the
    run label; ``diff`` is mean A − mean B as there, and ``p_holm`` is re-corrected over the whole table."""
    import pandas as pd

    from ..analysis import PAIRED_COLUMNS, holm, paired_comparison

    rows = []
    common_modes = _ordered_modes(set(df_a["mode"].dropna()) & set(df_b["mode"].dropna()))
    for mode in common_modes:
        models = sorted(
            set(df_a.loc[df_a["mode"] == mode, "model"].dropna())
            & set(df_b.loc[df_b["mode"] == mode, "model"].dropna())
        )
        for model in models:
            a = df_a[(df_a["mode"] == mode) & (df_a["model"] == model)].assign(model="A")
            b = df_b[(df_b["mode"] == mode) & (df_b["model"] == model)].assign(model="B")
            both = pd.concat([a, b], ignore_index=True)
            table = paired_comparison(both, mode, n_boot=n_boot, seed=seed, alpha=alpha, reference="A")
            for r in table.to_dict("records"):
                rows.append({**r, "mode": mode, "model": model, "model_a": "A", "model_b": "B"})
    cols = ["mode", "model", *PAIRED_COLUMNS[2:], "model_a", "model_b"]
    out = pd.DataFrame(rows, columns=cols)
    if len(out):
        out["p_holm"] = holm(out["p_value"].fillna(1.0).to_numpy())
        out["significant"] = (out["p_holm"] < alpha) & out["p_value"].notna()
    return out


def styled_run_pairs(paired: pd.DataFrame) -> Styler:
    lead = {"mode": paired["mode"].astype(str), "model": paired["model"].astype(str)}
    frame = paired_frame(paired, lead, ("run A", "run B", "B − A"), flip=True)
    return _style_paired(
        frame,
        ("run A", "run B", "B − A"),
        "same model, same issue ids, both runs; B − A with a paired bootstrap CI; McNemar / "
        "sign-flip test; Holm over every row",
    )


def compare_runs(
    run_a: str | None = None,
    run_b: str | None = None,
    *,
    config: Config | str | os.PathLike[str] | None = None,
    create_if_missing: bool = True,
    n_boot: int = 2000,
) -> RunComparison:
    """Compare two runs (default: the two most recent; B is the newer). With no run at all in the store and
    ``create_if_missing``, two demo baseline runs are made first (the header says so); with one, the error
    lists it and says how to get a second."""
    import pandas as pd

    from ..analysis import summary_table
    from ..runs.store import open_store

    cfg = load_bench_config(config)
    created: list[str] = []
    if (run_a is None or run_b is None) and create_if_missing:
        with open_store(config=cfg) as store:
            empty = not store.runs()
        if empty:  # a fresh database (the notebook run on its own): two demo runs, and the header says so
            created = ensure_runs(cfg)
    with open_store(config=cfg) as store:
        runs = store.runs()
        if run_b is None or run_a is None:
            ids = [r["id"] for r in runs if r["id"] not in {run_a, run_b}]
            if run_b is None:
                run_b = ids.pop(0) if ids else None
            if run_a is None:
                run_a = ids.pop(0) if ids else None
        if not run_a or not run_b:
            raise ValueError(_two_runs_needed(runs))
        info_a, info_b = store.run(run_a), store.run(run_b)
        for rid, info in ((run_a, info_a), (run_b, info_b)):
            if info is None:
                raise ValueError(f"no run {rid!r} in the results database; `orchestrator runs` lists them")
        df_a, df_b = store.results_df(run_a), store.results_df(run_b)
    paired = paired_runs(df_a, df_b, n_boot=n_boot)
    summaries = []
    for label, frame in (("A", df_a), ("B", df_b)):
        if len(frame):
            summaries.append(summary_table(frame, n_boot=n_boot).assign(run=label))
    summary = pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame()
    params_a = {k: v for k, v in (info_a.get("params") or {}).items()}
    params_b = {k: v for k, v in (info_b.get("params") or {}).items()}
    for p in (params_a, params_b):
        p.setdefault("dataset", None)
    param_changes = config_diff(
        {**params_a, "git_commit": info_a.get("git_commit")},
        {**params_b, "git_commit": info_b.get("git_commit")},
    )
    return RunComparison(
        run_a=info_a,
        run_b=info_b,
        paired=paired,
        summary=summary,
        config_changes=config_diff(info_a.get("config_snapshot"), info_b.get("config_snapshot")),
        param_changes=param_changes,
        created=created,
    )


def _two_runs_needed(runs: list[dict[str, Any]]) -> str:
    stored = "; ".join(
        f"{r['id']} ({str(r.get('created', ''))[:16]}, {r.get('cells', 0)} cells, {r.get('dataset') or '?'})"
        for r in runs[:5]
    )
    return (
        f"compare_runs needs two runs; the results database has {len(runs)}"
        + (f": {stored}" if stored else "")
        + ". Run another benchmark (orchestrator bench), or name both: compare_runs(run_a=..., run_b=...)"
    )


def runs_header(cmp: RunComparison) -> Any:
    rows = []
    for label, info in (("A", cmp.run_a), ("B", cmp.run_b)):
        params = info.get("params") or {}
        rows.append(
            f"<tr><th>run {label}</th><td>{esc(info['id'])}</td><td>{esc(str(info.get('created', ''))[:19])}</td>"
            f"<td>{esc(info.get('status'))}</td><td>{esc(info.get('dataset') or '—')}</td>"
            f"<td>{esc(', '.join(params.get('models') or []))}</td><td>{esc(', '.join(params.get('modes') or []))}</td></tr>"
        )
    note = ""
    if cmp.created:
        note = (
            f'<div class="orc-note">The results database had no run, so {len(cmp.created)} demo runs of the '
            f"rule baseline on 3 sample issues were made to show this notebook: {esc(', '.join(cmp.created))}. "
            "Run benchmarks of your own, then compare them.</div>"
        )
    return _html(
        f"<style>{CSS}</style><div class='orc-header'><h1>Run comparison</h1></div>{note}"
        "<table class='orc-table'><thead><tr><th></th><th>run id</th><th>created</th><th>status</th>"
        f"<th>dataset</th><th>models</th><th>modes</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def styled_run_summaries(summary: pd.DataFrame) -> Styler:
    import pandas as pd

    if summary.empty:
        return _base_style(pd.DataFrame().style)
    wide = summary.pivot_table(
        index=["mode", "model"],
        columns="run",
        values=["mean", "cost_per_issue", "latency_p50"],
        aggfunc="first",
    )

    def column(metric: str, run: str) -> Any:
        return wide[(metric, run)].to_numpy() if (metric, run) in wide else float("nan")

    shown = {"score": "mean", "$ / issue": "cost_per_issue", "p50": "latency_p50"}
    frame = pd.DataFrame(
        {
            "mode": [i[0] for i in wide.index],
            "model": [i[1] for i in wide.index],
            **{f"{label} {run}": column(metric, run) for label, metric in shown.items() for run in "AB"},
        }
    )
    frame = frame.assign(_r=frame["mode"].map(lambda m: MODE_ORDER.index(m) if m in MODE_ORDER else 9))
    frame = frame.sort_values(["_r", "model"]).drop(columns="_r")
    sty = frame.style.format(column_formats(frame.columns), escape="html", na_rep="—")
    return _base_style(sty, "each run on its own issues; the paired table above compares them issue by issue")
