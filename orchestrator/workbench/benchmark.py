"""Run a benchmark from a notebook: the config and issues it uses, its cost estimate, the run, its header."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..paths import project_root, relative_label, resolve_path
from .html import CSS, _html, _ordered_modes, esc, split_list

if TYPE_CHECKING:
    import pandas as pd

    from ..config import Config
    from ..runs.estimate import GridEstimate
    from ..runs.runner import RunSummary
    from ..types import Issue


def load_bench_config(
    config: Config | str | os.PathLike[str] | None = None,
    *,
    max_tokens: int | None = None,
    root: Path | None = None,
) -> Config:
    """Load the config; ``max_tokens`` caps every model's output length for this session only (the file is
    unchanged, and the run's config snapshot records the cap)."""
    from ..config import Config, load_config

    if isinstance(config, Config):
        cfg = config
    else:
        cfg = load_config(resolve_path(config, root or Path.cwd()) if config else None)
    if not max_tokens:
        return cfg
    models = {}
    for model_id, spec in cfg.models.items():
        modes = {
            name: o.model_copy(update={"max_tokens": min(o.max_tokens, max_tokens)}) if o.max_tokens else o
            for name, o in spec.modes.items()
        }
        models[model_id] = spec.model_copy(
            update={"max_tokens": min(spec.max_tokens, int(max_tokens)), "modes": modes}
        )
    return cfg.model_copy(update={"models": models})


def _stored(cfg: Config, run_id: str) -> bool:
    from ..runs.store import open_store

    try:
        with open_store(config=cfg, readonly=True) as store:
            return store.run(run_id) is not None
    except Exception:  # no database yet
        return False


# What shapes a request, and so its cache key: a session exploring a run takes these from the run's snapshot.
RUN_SETTINGS = ("temperature", "max_tokens", "top_p", "seed", "modes")


def run_config(
    config: Config | str | os.PathLike[str] | None = None, *, run: str | None = "latest"
) -> tuple[Config, str]:
    """The config with each model's request settings (``RUN_SETTINGS``) as the run ``run`` recorded them
    (``"latest"``: the newest run; None: the config as it is), and one line saying which settings apply.

    So exploring a benchmark asks what the benchmark asked: its answers come from the cache, and its scores
    are the report's (`orchestrator bench` caps output at 160 tokens, the config says 256 or more)."""
    from ..runs.store import open_store

    cfg = load_bench_config(config)
    if run is None:
        return cfg, "settings: the config's own (no run given)"
    with open_store(config=cfg, readonly=True) as store:
        runs = store.runs()
        run_id = runs[0]["id"] if run == "latest" and runs else run
        info = store.run(run_id) if run_id and run_id != "latest" else None
    if info is None:
        if run == "latest":
            return cfg, "settings: the config's own (no run stored yet)"
        known = ", ".join(r["id"] for r in runs[:5]) or "none"
        raise ValueError(f"no run {run!r} in the results database (the newest: {known})")
    recorded = (info.get("config_snapshot") or {}).get("models") or {}
    models = dict(cfg.models)
    for model_id, snap in recorded.items():
        if model_id in models:
            data = models[model_id].model_dump()
            data.update({k: snap[k] for k in RUN_SETTINGS if k in snap})
            models[model_id] = type(models[model_id]).model_validate(data)
    shared = sorted(set(recorded) & set(cfg.models))
    return (
        cfg.model_copy(update={"models": models}),
        f"settings: as run {run_id} recorded them for {', '.join(shared) or 'no model of this config'} "
        "(its cached answers are reused)",
    )


def load_issues(
    dataset: str | os.PathLike[str],
    *,
    split: str | None = None,
    limit: int | None = None,
    config: Config | None = None,
) -> list[Issue]:
    """Issues of ``dataset`` (relative paths resolve from the project root too), optionally the first N."""
    from ..resources import load_issues as _load  # datasets.load_issues; the shipped sample if it is missing

    issues = _load(resolve_path(dataset, project_root(config)), split=split)
    return issues[: int(limit)] if limit else issues


@dataclass
class Benchmark:
    """A finished (or stopped) benchmark run with everything the notebook shows."""

    run_id: str
    summary: RunSummary
    df: pd.DataFrame
    issues: dict[str, Issue]
    run: dict[str, Any]
    config: Config
    root: Path
    dataset: str
    split: str | None
    models: list[str]
    modes: list[str]

    @property
    def has_dev_rows(self) -> bool:
        return bool((self.df["split"] == "dev").fillna(False).any()) if len(self.df) else False


def _task_modes(modes: str | Sequence[str]) -> list[str]:
    """Mode names for ``modes``: built-in modes, a task file's task (every prompt) or ``task:prompt``."""
    from ..tasks.modes import expand

    return expand(split_list(modes))


def estimate_benchmark(
    dataset: str | os.PathLike[str] = "datasets/sample.jsonl",
    *,
    split: str | None = None,
    models: str | Sequence[str] = "baseline/rules",
    modes: str | Sequence[str] = "classify",
    repeats: int = 1,
    concurrency: int = 2,
    budget_usd: float | None = None,
    run_id: str | None = None,
    config: Config | str | os.PathLike[str] | None = None,
    limit: int | None = None,
    max_tokens: int | None = None,
) -> GridEstimate:
    """What :func:`run_benchmark` with the same arguments would call and cost; nothing is sent."""
    from ..runs.estimate import estimate_grid

    cfg = load_bench_config(config, max_tokens=max_tokens)
    return estimate_grid(
        load_issues(dataset, split=split, limit=limit, config=cfg),
        split_list(models),
        _task_modes(modes),
        repeats=int(repeats),
        config=cfg,
        budget_usd=budget_usd,
        run_id=run_id,
        concurrency=int(concurrency),
    )


def run_benchmark(
    dataset: str | os.PathLike[str] = "datasets/sample.jsonl",
    *,
    split: str | None = None,
    models: str | Sequence[str] = "baseline/rules",
    modes: str | Sequence[str] = "classify",
    repeats: int = 1,
    concurrency: int = 2,
    budget_usd: float | None = None,
    judge_model: str | None = None,
    run_id: str | None = None,
    config: Config | str | os.PathLike[str] | None = None,
    limit: int | None = None,
    max_tokens: int | None = None,
    progress: bool = True,
) -> Benchmark:
    """Run the grid (with a progress bar) and load its results: the notebook's one call."""
    from ..client.llm_client import LLMClient
    from ..runs.plan import new_run_id
    from ..runs.runner import run_grid
    from ..runs.store import open_store

    cfg = load_bench_config(config, max_tokens=max_tokens)
    if run_id and max_tokens is None and _stored(cfg, run_id):
        # resuming (the notebook run again from the UI, or `bench --run-id`): ask what the run asked, so the
        # cells still to do match the stored ones and the cache answers the rest
        cfg, _ = run_config(cfg, run=run_id)
    root = project_root(cfg)
    issues = load_issues(dataset, split=split, limit=limit, config=cfg)
    if not issues:
        raise ValueError(
            f"{relative_label(resolve_path(dataset, root), root)}: no issues"
            + (f" in split {split!r}" if split else "")
        )
    model_ids, mode_names = split_list(models), _task_modes(modes)
    label = relative_label(resolve_path(dataset, root), root)

    # models that learn (the trained baselines) fit on the dataset's whole dev split, whatever split and
    # limit keep; read only if one of them needs it
    def training() -> list:
        return load_issues(dataset, split="dev", config=cfg)

    run_id = run_id or new_run_id()
    client = LLMClient(cfg)
    try:
        summary = client.run_sync(
            run_grid(
                issues,
                model_ids,
                mode_names,
                repeats=int(repeats),
                concurrency=int(concurrency),
                budget_usd=budget_usd,
                run_id=run_id,
                client=client,
                dataset=label,
                split=split,
                judge_model=judge_model or None,
                progress=progress,
                training=training,
            )
        )
    finally:
        client.close()
    with open_store(config=cfg) as store:
        df = store.results_df(run_id)
        run = store.run(run_id) or {}
        run_issues = store.issues(run_id)
    return Benchmark(
        run_id=run_id,
        summary=summary,
        df=df,
        issues=run_issues,
        run=run,
        config=cfg,
        root=root,
        dataset=label,
        split=split,
        models=model_ids,
        modes=_ordered_modes(mode_names),
    )


def report_header(bench: Benchmark, title: str = "Benchmark report") -> Any:
    """Title, run id, dataset, date and the run's vital numbers, as escaped HTML."""
    s = bench.summary
    created = bench.run.get("created") or datetime.now(UTC).isoformat()
    try:
        when = datetime.fromisoformat(str(created).replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        when = str(created)
    commit = (bench.run.get("git_commit") or "")[:10] or "—"
    cfg_name = bench.config.path.name if bench.config.path else "—"
    rows = [
        ("Run", bench.run_id),
        ("Date", when),
        ("Dataset", bench.dataset + (f" (split {bench.split})" if bench.split else "")),
        ("Issues", f"{len(bench.issues)}"),
        ("Models", ", ".join(bench.models)),
        ("Modes", ", ".join(bench.modes)),
        (
            "Cells",
            f"{s.cells_total} ({s.cells_run} run now, {s.cells_done_before} already done, {s.errors} errors)",
        ),
        ("Status", s.status),
        ("Spent", f"${s.spent_usd:.4f} (cache saved ${s.saved_usd:.4f})"),
        ("Wall time", f"{s.wall_s:.1f} s"),
        ("Config", cfg_name + (f" (git {commit})" if commit != "—" else "")),
        ("Reproduce", reproduce_command(bench)),
    ]
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    n_m, n_d, n_i = len(bench.models), len(bench.modes), len(bench.issues)
    sub = (
        f"{n_m} model{'s' if n_m != 1 else ''} × {n_d} mode{'s' if n_d != 1 else ''} × {n_i} "
        f"issue{'s' if n_i != 1 else ''} of {bench.dataset}"
        + (
            f" (repeats: {s.cells_total // max(1, n_m * n_d * n_i)})"
            if s.cells_total > n_m * n_d * n_i
            else ""
        )
    )
    return _html(
        f"<style>{CSS}</style>"
        f'<div class="orc-header"><h1>{esc(title)}</h1>'
        f'<p class="orc-sub">{esc(sub)}</p>'
        f'<table class="orc-meta">{body}</table></div>'
    )


def reproduce_command(bench: Benchmark) -> str:
    """The `orchestrator bench` line that runs this benchmark again (a new run id: the cache answers what it
    can): the dataset, split, models, modes and repeats of the run, its issue limit and its output cap."""
    import shlex

    params = bench.run.get("params") or {}
    args = ["orchestrator", "bench", "--dataset", bench.dataset, "--models", ",".join(bench.models)]
    args += ["--modes", ",".join(bench.modes)]
    if bench.split:
        args += ["--split", bench.split]
    if int(params.get("repeats") or 1) > 1:
        args += ["-p", "repeats", str(params["repeats"])]
    total = _issue_count(resolve_path(bench.dataset, bench.root))
    if total is not None and len(bench.issues) < total and not bench.split:
        args += ["-p", "limit", str(len(bench.issues))]
    caps = {
        spec.get("max_tokens")
        for spec in ((bench.run.get("config_snapshot") or {}).get("models") or {}).values()
    }
    if len(caps) == 1 and None not in caps:
        cap = caps.pop()
        own = load_bench_config(bench.config.path) if bench.config.path else bench.config  # the file's
        if any(own.model_spec(m).max_tokens != cap for m in bench.models if m in own.models):
            args += ["-p", "max_tokens", str(cap)]
    return shlex.join(args)


def _issue_count(path: Path) -> int | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError:
        return None


def dataset_card(bench: Benchmark) -> Any:
    """What the issues of the run are: counts by split, gold type and repository, and the first paragraph
    of the datasheet (``README.md`` beside the dataset), escaped."""
    from ..issues.checks import dataset_stats

    stats = dataset_stats(list(bench.issues.values()))

    def counts(section: dict[str, int], limit: int = 8) -> str:
        items = list(section.items())
        shown = ", ".join(f"{k}: {v}" for k, v in items[:limit])
        return shown + (f", … ({len(items) - limit} more)" if len(items) > limit else "")

    rows = [
        ("Issues", str(stats["total"])),
        ("By split", counts(stats["by_split"])),
        ("By gold type", counts(stats["by_type"])),
        ("By repository", counts(stats["by_repo"])),
    ]
    sheet = resolve_path(bench.dataset, bench.root).parent / "README.md"
    summary = _first_paragraph(sheet)
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    note = (
        f"<p>{esc(summary)} <small>({esc(relative_label(sheet, bench.root))})</small></p>" if summary else ""
    )
    return _html(f"<style>{CSS}</style>{note}<table class='orc-meta'>{body}</table>")


def _first_paragraph(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    for block in text.split("\n\n"):
        block = block.strip()
        if block and not block.startswith(("#", "|", "```", "-", "*")):
            return " ".join(block.split())[:600]
    return ""
