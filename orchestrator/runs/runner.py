"""The benchmark grid: issues × models × modes × repeats, run concurrently, written cell by cell.

- Each finished cell is committed to the results database at once: Ctrl-C or kill -9 loses nothing.
- The same ``run_id`` resumes: finished cells are skipped, failed ones retried only with ``retry_errors``.
- A budget stop issues no further calls and keeps every result; resume with a higher budget. The budget
  of a resumed run counts what its earlier sessions spent (recorded with each group commit).
- One process per run: a lease (:mod:`orchestrator.runs.lock`) refuses a second process on a live run.
- If the writer fails (a full disk, a database that cannot be written), the workers stop at once, the
  run ends ``failed`` with the cause in its message, every cell committed before is kept, and answers
  received but not stored are in the response cache, so a resume does not pay for them again.
- Each repeat is a fresh sample: the repeat index is part of the cache key, and repeats > 0 get their
  own seed (``model seed + repeat``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import errors as E
from ..modes import MODES, get_mode
from ..types import Issue
from .cells import call_cell
from .collector import collector_held_back
from .lock import RunLock
from .plan import (
    GridPlan,
    Training,
    cell_count,
    git_commit,
    grid_cells,
    new_run_id,
    prepare_models,
    unanswerable,
)
from .rows import ResultRow
from .scoring import score_row, score_safely
from .store import ResultStore, default_db_path, now_iso

log = logging.getLogger("orchestrator")

if TYPE_CHECKING:
    from ..client.llm_client import LLMClient


@dataclass
class RunSummary:
    """What a run did; ``status`` is finished, budget_exhausted, interrupted or failed."""

    run_id: str
    status: str
    cells_total: int
    cells_done_before: int
    cells_run: int = 0
    errors: int = 0
    spent_usd: float = 0.0
    saved_usd: float = 0.0
    skipped_for_budget: int = 0
    wall_s: float = 0.0
    db_path: Path | None = None
    error_kinds: dict[str, int] = field(default_factory=dict)
    message: str = ""  # why the run ended, when it did not finish
    unknown_cost_calls: int = 0  # answers without usage: charged their worst case
    spent_before_usd: float = 0.0  # what earlier sessions of this run spent
    worker_start_s: float | None = None  # executor="ray": how long the workers took to start

    def __str__(self) -> str:
        text = (
            f"run {self.run_id}: {self.status}; {self.cells_run} cells run now, {self.cells_done_before} "
            f"already done, {self.errors} errors, ${self.spent_usd:.4f} spent, ${self.saved_usd:.4f} saved "
            f"by the cache, {self.wall_s:.1f} s"
        )
        if self.unknown_cost_calls:
            text += (
                f"; {self.unknown_cost_calls} answers came without usage: their cost is unknown and "
                "their worst case is counted as spent"
            )
        if self.message:
            text += f"\n{self.message}"
        return text


# How long a finished cell may wait to be committed with the next ones. An answer is in the response cache
# before it reaches the writer, so even a kill -9 in this window does not bill a resumed cell twice.
WRITE_COALESCE_S = 0.05
# After the writer fails, how long calls already in flight may take to finish (and be cached).
HALT_GRACE_S = 30.0


async def run_grid(
    issues: Sequence[Issue],
    models: Sequence[str],
    modes: Sequence[str],
    *,
    repeats: int = 1,
    concurrency: int = 8,
    budget_usd: float | None = None,
    run_id: str | None = None,
    cache: bool = True,
    retry_errors: bool = False,
    client: LLMClient | None = None,
    config: Any = None,
    dataset: str | None = None,
    split: str | None = None,
    judge_model: str | None = None,
    progress: bool = True,
    store: ResultStore | None = None,
    training: Training = None,
    stream: bool = True,
    executor: str = "local",
    address: str | None = None,
    workers: int | None = None,
    worker_cpus: float = 1.0,
) -> RunSummary:
    """Run every (issue, model, mode, repeat) cell and store each result as it finishes.

    ``stream`` (default on): cells of models whose provider streams are sent as streamed requests, so each
    row carries its time to first token (``ttft_s``) and output tokens per second (``output_tps``); the
    answer and its scores are the same either way.

    ``executor="ray"``: the cells run on worker actors of a Ray cluster (:mod:`.ray_executor`): the one at
    ``address`` (``"auto"``, ``"ray://HOST:PORT"``; default: one started on this machine), ``workers`` of
    them (default: its CPUs / ``worker_cpus``), ``concurrency`` calls in flight over all of them. Rows,
    limits, the budget and resuming are the same as in this process.

    ``training``: the issues (or a function returning them, called only when a model needs them) that
    models which learn fit on, such as the trained baselines (their dev split; default: the dev issues among
    ``issues``). Cells a model cannot answer at all (:func:`~.plan.unanswerable`) are left out."""
    from ..client.llm_client import LLMClient

    if not issues:
        raise ValueError("run_grid: no issues to run")
    if repeats < 1 or concurrency < 1:
        raise ValueError("run_grid: repeats and concurrency must be >= 1")
    if executor not in ("local", "ray"):
        raise ValueError(f"run_grid: executor {executor!r}: 'local' or 'ray'")
    if workers is not None and workers < 1:
        raise ValueError("run_grid: workers must be >= 1")
    if not worker_cpus > 0:
        raise ValueError("run_grid: worker_cpus must be > 0")
    if executor == "ray":
        from .ray_executor import require_ray

        require_ray()
    for mode in modes:
        get_mode(mode)
    from ..tasks.modes import bind_to_issues

    bind_to_issues(modes, issues)  # a task's dataset labels and floor label come from the issues run
    own_client = client is None
    client = client or LLMClient(config)
    for model in models:
        client.config.model_spec(model)
    if judge_model:
        client.config.model_spec(judge_model)
    skip = unanswerable(client.config, models, modes)
    for reason in dict.fromkeys(skip.values()):
        log.warning("%s: its cells are left out", reason)
    prepare_models(client.config, models, modes, issues, training, progress=progress)
    for mode in modes:  # a task judged by its own rubric may name its judge model
        rubric_judge = get_mode(mode).scorer_params.get("model") if get_mode(mode).scorer == "judge" else None
        if rubric_judge:
            client.config.model_spec(rubric_judge)
    ids = [i.id for i in issues]
    if len(set(ids)) != len(ids):
        raise ValueError("run_grid: duplicate issue ids in the issue set")
    plan = GridPlan(
        issues,
        models,
        modes,
        repeats,
        concurrency,
        budget_usd,
        cache,
        retry_errors,
        dataset,
        split,
        judge_model,
        skip,
        stream,
        executor,
        address,
        workers,
        worker_cpus,
    )
    started_ray = False
    if executor == "ray":  # reach the cluster before the run is recorded: a wrong address is a usage error
        from .ray_executor import connect

        try:
            cpus = None if workers is None else math.ceil(workers * worker_cpus)  # a cluster started here
            started_ray = await asyncio.to_thread(connect, address, num_cpus=cpus)
        except BaseException:
            if own_client:
                await client.aclose()
            raise
    own_store = store is None
    store = store or ResultStore(default_db_path(client.config.home))
    run_id = run_id or new_run_id()
    lock = RunLock(store.path, run_id)
    try:
        lock.acquire()
    except BaseException:
        if own_store:
            store.close()
        if own_client:
            await client.aclose()
        _disconnect(started_ray)
        raise
    try:
        with collector_held_back():
            return await _run_locked(store, lock, client, plan, run_id=run_id, progress=progress)
    finally:
        lock.release()
        if own_store:
            store.close()
        if own_client:
            await client.aclose()
        _disconnect(started_ray)


def _disconnect(started_ray: bool) -> None:
    """Shut down the Ray cluster this run started (one it only connected to is left running)."""
    if started_ray:
        import ray

        ray.shutdown()


async def _run_locked(
    store: ResultStore, lock: RunLock, client: LLMClient, plan: GridPlan, *, run_id: str, progress: bool
) -> RunSummary:
    """The run itself, once its lease is held: plan the cells, call, score, store."""
    from ..client.ledger import Ledger

    issues, models, modes, repeats = plan.issues, plan.models, plan.modes, plan.repeats
    concurrency, budget_usd, cache, retry_errors = (
        plan.concurrency,
        plan.budget_usd,
        plan.cache,
        plan.retry_errors,
    )
    dataset, split, judge_model, stream = plan.dataset, plan.split, plan.judge_model, plan.stream

    params = {
        "models": list(models),
        "modes": list(modes),
        "repeats": repeats,
        "concurrency": concurrency,
        "budget_usd": budget_usd,
        "cache": cache,
        "retry_errors": retry_errors,
        "stream": stream,
        "judge_model": judge_model,
        "n_issues": len(issues),
        "dataset": dataset,
        "split": split,
    }
    snapshot = {
        "models": {
            m: client.config.model_spec(m).public_dict()
            for m in {*models, *([judge_model] if judge_model else [])}
        },
        "mode_versions": {m: MODES[m].version for m in modes},
        "default_model": client.config.default_model,
        "config_path": client.config.path.name if client.config.path else None,
    }
    store.create_or_resume_run(
        run_id,
        params=params,
        config_snapshot=snapshot,
        dataset=dataset,
        split=split,
        git_commit=git_commit(client.config.path.parent if client.config.path else None),
    )
    done = store.done_cells(run_id)
    todo = [
        cell
        for cell in grid_cells(issues, models, modes, repeats, plan.skip)
        if (key := (cell[0].id, cell[1], cell[2], cell[3])) not in done or (retry_errors and done[key] != "")
    ]
    total = cell_count(issues, models, modes, repeats, plan.skip)
    spent_before = store.run_spent(run_id)
    summary = RunSummary(
        run_id=run_id,
        status="running",
        cells_total=total,
        cells_done_before=total - len(todo),
        db_path=store.path,
        spent_before_usd=spent_before,
    )
    ledger = Ledger(budget_usd=None if budget_usd is None else max(0.0, budget_usd - spent_before))
    stop = asyncio.Event()  # the budget: no further calls, the run ends budget_exhausted
    halt = asyncio.Event()  # nothing can be stored: no further calls, the run ends failed
    bar = _progress(total, summary.cells_done_before, progress, run_id)
    started = time.perf_counter()
    queue: Iterator[tuple] = iter(todo)

    def run_spent() -> float:
        # what this run has spent over all its sessions, with what is in flight (a kill -9 may lose it)
        return spent_before + ledger.spent_usd + ledger.reserved_usd

    # Workers only call models; one writer scores and stores finished cells in group commits, so the next
    # call goes out as soon as an answer arrives (scoring and SQLite stay off the critical path).
    finished: asyncio.Queue = asyncio.Queue(maxsize=max(64, 4 * concurrency))
    flush_now = asyncio.Event()  # set when the run ends or the queue is half full: no coalescing wait
    # judge calls are slow network calls: keep them parallel, in the workers
    score_in_worker = judge_model is not None or any(get_mode(m).scorer == "judge" for m in modes)

    async def worker() -> None:
        for issue, model, mode, repeat in queue:
            if halt.is_set():
                return
            if stop.is_set():
                summary.skipped_for_budget += 1
                continue
            outcome = await call_cell(client, issue, model, mode, repeat, cache, ledger, run_id, stream)
            if halt.is_set():  # nothing can be stored now; the answer is in the response cache
                return
            if outcome is None:  # budget: the call was not sent
                stop.set()
                summary.skipped_for_budget += 1
                continue
            row, completion = outcome
            if score_in_worker and completion is not None:
                row.update(
                    await score_row(
                        client,
                        issue,
                        mode,
                        completion.text,
                        completion.parsed,
                        completion.parse_error,
                        judge_model,
                        ledger,
                    )
                )
                completion = None
            await finished.put((issue, row, completion))
            if finished.qsize() >= finished.maxsize // 2:
                flush_now.set()

    def record(rows: list[ResultRow], spent: float | None = None) -> None:
        store.write_results(rows, run_id=run_id, run_spent_usd=run_spent() if spent is None else spent)
        for row in rows:
            summary.cells_run += 1
            if row.error_type:
                summary.errors += 1
                summary.error_kinds[row.error_type] = summary.error_kinds.get(row.error_type, 0) + 1
            if "usage_missing" in (row.notes or ()) and row.cost_usd is None:
                summary.unknown_cost_calls += 1
        if bar is not None:
            bar.update(len(rows))
            bar.set_postfix(errors=summary.errors, spent=f"${ledger.spent_usd:.4f}", refresh=False)
        if lock.lost:
            raise E.RunLockedError(f"run {run_id}: another process took over the run lock; stopping")

    async def writer() -> None:
        while True:
            items = [await finished.get()]
            if items[0] is not None and not flush_now.is_set():
                # Coalesce a burst of answers into one commit, and score while the network is busy
                # rather than between an answer and the next request.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(flush_now.wait(), WRITE_COALESCE_S)
            if not closing:
                flush_now.clear()
            while not finished.empty():
                items.append(finished.get_nowait())
            rows = []
            for item in items:
                if item is None:
                    record(rows)
                    return
                issue, row, completion = item
                if completion is not None:
                    row.update(score_safely(issue, row.mode, completion))
                row.finished_at = now_iso()
                rows.append(row)
            record(rows)

    closing: list[bool] = []

    async def work() -> None:
        writing = asyncio.create_task(writer())
        saving = asyncio.create_task(asyncio.to_thread(store.save_issues, run_id, issues))
        n_workers = min(concurrency, max(1, len(todo)))
        workers = asyncio.ensure_future(asyncio.gather(*(worker() for _ in range(n_workers))))
        try:
            pending = {writing, workers, saving}
            while not workers.done():
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                failed = [t for t in done if t is not workers and (t is writing or t.exception())]
                if failed:  # the writer died, or the issues could not be saved: stop calling at once
                    await _halt_workers(workers, halt, finished, grace_s=HALT_GRACE_S if cache else 0.0)
                    await failed[0]  # raises its error
            await workers
        finally:
            closing.append(True)
            flush_now.set()
            if not workers.done():
                workers.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await workers
            await saving
            if not writing.done():
                # Everything already answered is stored, even when the run is being cancelled.
                while True:
                    try:
                        finished.put_nowait(None)
                        break
                    except asyncio.QueueFull:
                        if writing.done():
                            break
                        await asyncio.sleep(0)
            await asyncio.shield(writing)

    remote = None  # executor="ray": what the workers spent and saved, as the run goes

    async def work_on_ray() -> None:
        nonlocal remote
        from .ray_executor import RayTotals, run_on_ray

        remote = RayTotals()
        saving = asyncio.create_task(asyncio.to_thread(store.save_issues, run_id, issues))
        try:
            await run_on_ray(client, plan, run_id, todo, record, stop.set, spent_before, remote)
            summary.skipped_for_budget += remote.not_run
        finally:
            summary.worker_start_s = remote.start_s
            await saving

    status = "failed"
    try:
        await (work_on_ray() if plan.executor == "ray" else work())
        status = "budget_exhausted" if stop.is_set() else "finished"
    except (asyncio.CancelledError, KeyboardInterrupt):
        status = "interrupted"
        raise
    except E.OrchestratorError as exc:
        summary.message = _failure_message(exc, summary, run_id, cache)
    finally:
        summary.status = status
        summary.spent_usd = ledger.spent_usd + (remote.spent_usd if remote else 0.0)
        summary.saved_usd = ledger.saved_usd + (remote.saved_usd if remote else 0.0)
        summary.wall_s = time.perf_counter() - started
        try:
            store.set_status(run_id, status, summary.message, spent_before + summary.spent_usd)
        except E.StorageError as exc:
            log.error("run %s: could not record its status %r: %s", run_id, status, exc)
        if bar is not None:
            bar.close()
    return summary


async def _halt_workers(
    workers: asyncio.Future, halt: asyncio.Event, finished: asyncio.Queue, grace_s: float
) -> None:
    """No new call goes out; calls in flight may finish for ``grace_s`` so that their answers (paid for)
    land in the response cache and a resume does not pay again; then the rest are cancelled."""
    halt.set()
    until = time.monotonic() + grace_s
    while not workers.done() and time.monotonic() < until:
        while not finished.empty():  # nobody stores these now: unblock workers waiting to hand over
            finished.get_nowait()
        await asyncio.wait({workers}, timeout=0.05)
    if not workers.done():
        workers.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await workers


def _failure_message(exc: Exception, summary: RunSummary, run_id: str, cache: bool) -> str:
    kept = summary.cells_done_before + summary.cells_run
    text = f"run {run_id} failed: {exc}. {kept} of {summary.cells_total} cells are stored and kept"
    if cache:
        text += "; answers received but not stored are in the response cache, so resuming does not pay again"
    return text + f". Fix the cause, then resume with --run-id {run_id}."


def run_grid_sync(*args: Any, **kwargs: Any) -> RunSummary:
    """``run_grid`` for scripts and notebook cells (works inside Jupyter's running loop)."""
    from ..client.llm_client import LLMClient

    client = kwargs.pop("client", None) or LLMClient(kwargs.pop("config", None))
    return client.run_sync(run_grid(*args, client=client, **kwargs))


def _progress(total: int, done: int, enabled: bool, run_id: str):
    if not enabled or os.environ.get("ORCHESTRATOR_PROGRESS") == "off":
        return None
    if os.environ.get("ORCHESTRATOR_PROGRESS") == "text":  # papermill reports: no widget views
        from tqdm import tqdm
    else:
        from tqdm.auto import tqdm  # a widget in JupyterLab, text in a terminal

    return tqdm(
        total=total,
        initial=done,
        desc=f"run {run_id}",
        unit="cell",
        dynamic_ncols=True,
        disable=os.environ.get("ORCHESTRATOR_NO_PROGRESS") == "1",
        mininterval=1.0,
    )
