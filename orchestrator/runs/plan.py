"""What a grid will run, before anything is called: its cells (issues x models x modes x repeats, less the
pairs a model cannot answer), the models made ready for it, and how the run is named and recorded
(run id, dataset label, git commit). :mod:`.runner` runs the plan; :mod:`.estimate` prices it."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..modes import get_mode
from ..types import Issue

if TYPE_CHECKING:
    from ..config import Config

# What models that learn fit on: the issues, or a function returning them (called only when one needs them)
Training = Sequence[Issue] | Callable[[], Sequence[Issue]] | None


@dataclass(frozen=True)
class GridPlan:
    """What a grid runs: the cells (issues x models x modes x repeats) and how (concurrency, budget, cache)."""

    issues: Sequence[Issue]
    models: Sequence[str]
    modes: Sequence[str]
    repeats: int
    concurrency: int
    budget_usd: float | None
    cache: bool
    retry_errors: bool
    dataset: str | None
    split: str | None
    judge_model: str | None
    skip: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (model, mode) cells left out
    stream: bool = True  # streamed requests where the provider streams (ttft_s, output_tps)
    executor: str = "local"  # "local": this process; "ray": worker actors on a Ray cluster
    address: str | None = None  # the Ray cluster: None starts one here, "auto", "ray://HOST:PORT"
    workers: int | None = None  # Ray workers (default: the cluster's CPUs / worker_cpus)
    worker_cpus: float = 1.0  # CPUs each Ray worker reserves: how many workers a node takes


def grid_cells(
    issues: Sequence[Issue],
    models: Sequence[str],
    modes: Sequence[str],
    repeats: int,
    skip: Mapping[tuple[str, str], str] | None = None,
) -> Iterator[tuple[Issue, str, str, int]]:
    """Every (issue, model, mode, repeat) cell, in run order, without the ``skip`` pairs."""
    for repeat in range(repeats):
        for issue in issues:
            for mode in modes:
                for model in models:
                    if not skip or (model, mode) not in skip:
                        yield issue, model, mode, repeat


def cell_count(
    issues: Sequence[Issue],
    models: Sequence[str],
    modes: Sequence[str],
    repeats: int,
    skip: Mapping[tuple[str, str], str] | None = None,
) -> int:
    """How many cells :func:`grid_cells` yields."""
    return (len(models) * len(modes) - len(skip or {})) * len(issues) * repeats


def unanswerable(config: Config, models: Sequence[str], modes: Sequence[str]) -> dict[tuple[str, str], str]:
    """(model, mode) pairs a model cannot answer at all (a trained baseline answers one task shape), with
    the reason its adapter gives: a grid leaves those cells out."""
    from ..providers import get_adapter

    out = {}
    for model in models:
        spec = config.model_spec(model)
        adapter = get_adapter(spec.provider)
        for mode in modes:
            reason = adapter.cannot_answer(spec, get_mode(mode))
            if reason:
                out[(model, mode)] = reason
    return out


def prepare_models(
    config: Config,
    models: Sequence[str],
    modes: Sequence[str],
    issues: Sequence[Issue],
    training: Training = None,
    *,
    progress: bool = True,
) -> None:
    """Let each provider get its models ready for a run before the first call (``Adapter.prepare``: the
    trained baselines fit on ``training`` here; the other providers have nothing to do)."""
    from ..providers import get_adapter

    by_provider: dict[str, list] = {}
    for model in models:
        spec = config.model_spec(model)
        by_provider.setdefault(spec.provider, []).append(spec)
    mode_objs = [get_mode(m) for m in modes]
    for provider, specs in by_provider.items():
        get_adapter(provider).prepare(config, specs, mode_objs, issues, training, progress=progress)


def new_run_id() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def git_commit(folder: Path | None) -> str | None:
    """The checked-out commit of the repository holding ``folder``, read from .git (no subprocess)."""
    here = (folder or Path.cwd()).resolve()
    for root in (here, *here.parents):
        git = root / ".git"
        if git.is_dir():
            break
    else:
        return None
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head or None
        ref = head[5:]
        ref_file = git / ref
        if ref_file.is_file():
            return ref_file.read_text().strip() or None
        packed = git / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split(" ", 1)[0]
    except OSError:
        return None
    return None


def dataset_label(path: str | os.PathLike[str] | None) -> str | None:
    """How a dataset path is recorded: relative to the working directory when inside it (no absolute paths)."""
    if path is None:
        return None
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return p.name
