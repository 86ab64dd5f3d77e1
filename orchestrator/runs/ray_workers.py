"""The worker side of a grid on Ray: the actors the driver (:mod:`.ray_executor`) starts, and what
passes between them.

- :class:`CellWorker`: one per worker process, its own ``LLMClient``; runs a batch of cells and streams
  their rows back as they finish.
- :class:`LimitsActor` and :class:`ClusterLog`: the cluster's one rate-limit log, and the
  :class:`~orchestrator.client.shared_limits.SharedLog` face each worker's limiter sees over it.
- :class:`BudgetActor`: the run's budget, leased to the workers.

The classes are plain Python: the driver makes them actors (``ray.remote(CellWorker)``), so this module
imports without Ray.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..types import Issue

if TYPE_CHECKING:
    from .rows import ResultRow

Cell = tuple[Issue, str, str, int]  # (issue, model, mode, repeat): a batch carries its own issues


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker needs to run its cells as the driver would."""

    run_id: str
    cache: bool
    stream: bool
    judge_model: str | None
    concurrency: int  # calls in flight on this worker
    lease_usd: float | None  # the budget a worker asks for at a time; None without a budget


@dataclass
class WorkerReport:
    """What a worker streams back: finished rows, cells not run for the budget, its spend so far."""

    pid: int
    rows: list[ResultRow]
    budget_skipped: list[Cell]
    spent_usd: float
    saved_usd: float


# ---------------------------------------------------------------------------------------------- actors


class LimitsActor:
    """The cluster's rate-limit log, which every worker's limiter asks: a SharedLog in this actor's memory
    (one process holds it, so it needs no file, and none is left behind when the run kills the actor)."""

    def __init__(self) -> None:
        from ..client.limits import SPAN_S
        from ..client.shared_limits import SharedLog

        self.log = SharedLog(Path(":memory:"), span_s=SPAN_S)

    def release(self, claims: list[Any], honoured: float) -> Any:
        return self.log.release(claims, honoured)

    def pause(self, scope: str, seconds: float) -> None:
        self.log.pause(scope, seconds)

    def set_tokens(self, row: int, tokens: float) -> None:
        self.log.set_tokens(row, tokens)

    def forget(self, rows: list[int | None]) -> None:
        self.log.forget(rows)

    def paused_until(self, scope: str) -> float:
        return self.log.paused_until(scope)


class ClusterLog:
    """A worker's view of the :class:`LimitsActor`, with SharedLog's methods (what the limiter calls).

    Releases wait for the actor's verdict (a request goes out only once it is granted): the limiter awaits
    :meth:`release_async`, so the worker's event loop goes on serving its other calls meanwhile (a round
    trip to the actor took 2.5 - 4 ms on a 2-core machine; blocking on it stalled every stream of the
    worker that long, once per rate-limited request). Pauses and usage corrections are sent without
    waiting (Ray runs one caller's calls to an actor in order). Times are
    wall clock: the nodes of a cluster keep their clocks within milliseconds (NTP), far inside the 0.1 s
    slack of every window (:data:`orchestrator.client.limits.SLACK_S`).
    """

    ok = True

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.wall = time.time
        self._pauses: dict[str, tuple[float, float, Any]] = {}  # scope -> (read at, until, a read on the way)

    def release(self, claims: Sequence[Any], honoured: float = 0.0) -> Any:
        import ray

        return ray.get(self.actor.release.remote(list(claims), honoured))

    async def release_async(self, claims: Sequence[Any], honoured: float = 0.0) -> tuple[Any, float]:
        """:meth:`release`, awaited on the running loop instead of blocking it: the verdict, and the wall
        time it arrived (stamped on Ray's thread, before the loop takes it up)."""
        future = self.actor.release.remote(list(claims), honoured).future()
        arrived: list[float] = []
        future.add_done_callback(lambda _: arrived.append(self.wall()))  # runs before wrap_future's
        verdict = await asyncio.wrap_future(future)
        return verdict, arrived[0]

    def pause(self, scope: str, seconds: float) -> None:
        self.actor.pause.remote(scope, seconds)
        self._pauses.pop(scope, None)

    def set_tokens(self, row: int, tokens: float) -> None:
        self.actor.set_tokens.remote(row, tokens)

    def forget(self, rows: Sequence[int | None]) -> None:
        self.actor.forget.remote(list(rows))

    def paused_until(self, scope: str) -> float:
        """The scope's pause as last read from the actor; a stale read is refreshed in the background
        (never waited for: a windowed scope's pause also comes back with every release's verdict)."""
        from ..client.shared_limits import PAUSE_REFRESH_S

        now = self.wall()
        read_at, until, pending = self._pauses.get(scope, (float("-inf"), 0.0, None))
        if pending is not None and pending.done():
            if pending.exception() is None:
                until = pending.result()
            read_at, pending = now, None
        if pending is None and now - read_at >= PAUSE_REFRESH_S:
            pending = self.actor.paused_until.remote(scope).future()
        self._pauses[scope] = (read_at, until, pending)
        return until


class BudgetActor:
    """What is left of a run's budget, leased to the workers; what is leased out counts as spent."""

    def __init__(self, remaining_usd: float) -> None:
        self.remaining = remaining_usd
        self.granted = 0.0
        self.returned = 0.0

    def lease(self, amount: float, minimum: float = 0.0, returning: float = 0.0) -> float:
        """Up to ``amount``, and nothing when less than ``minimum`` is left: a lease too small for the call
        that asked would strand budget that another worker's call could use. ``returning`` comes back first
        (the asker's unreserved lease, handed in when its call did not fit)."""
        self.give_back(returning)
        give = min(max(0.0, amount), self.remaining)
        if give <= 1e-12 or give + 1e-12 < minimum:
            return 0.0
        self.remaining -= give
        self.granted += give
        return give

    def give_back(self, amount: float) -> None:
        amount = max(0.0, amount)
        self.remaining += amount
        self.returned += amount

    def outstanding(self) -> float:
        """Leased and not handed back: an upper bound on what the workers have spent."""
        return self.granted - self.returned


class CellWorker:
    """One worker: its own LLMClient, ``concurrency`` calls in flight, each answer scored where it ran.

    What belongs to the run (its settings, the modes bound to its issues, the budget) comes with every
    batch, so a worker that Ray restarted needs nothing but its constructor's arguments."""

    def __init__(self, config: Any, split_limits: dict[str, int], limits: Any = None) -> None:
        from ..client.limits import Limiter
        from ..client.llm_client import LLMClient

        for model, limit in split_limits.items():  # this worker's share of the model's concurrency
            spec = config.models[model]
            config.models[model] = spec.model_copy(
                update={"limits": spec.limits.model_copy(update={"max_concurrency": limit})}
            )
        limiter = Limiter(cluster=ClusterLog(limits)) if limits is not None else Limiter()
        self.client = LLMClient(config, limiter=limiter)
        self._lock = threading.Lock()
        self._run_id: str | None = None

    def pid(self) -> int:
        return os.getpid()

    def _begin(self, settings: WorkerSettings, modes: dict[str, Any], budget: Any, fitted: Any) -> None:
        """Take up a new run: its modes, the trained baselines the driver fitted for it, a ledger of its
        own, a fresh gate (under the lock: the batches of a run arrive on several threads at once)."""
        from ..client.ledger import Ledger
        from ..modes import register_mode

        with self._lock:
            if self._run_id == settings.run_id:
                return
            for mode in modes.values():  # the driver's modes, bound to the run's issues (labels, floor label)
                register_mode(mode)
            if fitted:  # [a reference]: fetched here once a run, not resolved again with every batch
                import ray

                from ..trained.fitting import FITTED

                FITTED.update(ray.get(fitted[0]))
            self.settings = settings
            self.budget = budget
            self.ledger = Ledger(budget_usd=0.0 if settings.lease_usd is not None else None)
            self._gate: asyncio.Semaphore | None = None
            self._leasing: asyncio.Lock | None = None
            self._out_of_budget = False
            self._run_id = settings.run_id

    def run_cells(
        self,
        cells: list[Cell],
        settings: WorkerSettings,
        modes: dict[str, Any],
        budget: Any = None,
        fitted: list[Any] | None = None,
    ) -> Iterator[WorkerReport]:
        """Run ``cells``; Ray streams each report to the driver as soon as it is yielded."""
        self._begin(settings, modes, budget, fitted)
        out: queue.SimpleQueue = queue.SimpleQueue()
        future = self.client.submit(self._run(cells, out))
        left = len(cells)
        while left:
            items = [out.get()]
            while True:  # hand over every cell finished meanwhile in one report
                try:
                    items.append(out.get_nowait())
                except queue.Empty:
                    break
            left -= len(items)
            yield self._report(items)
        future.result()
        if self.budget is not None:  # what this batch did not need goes back to the others
            unused = self.ledger.shrink_to_committed()
            if unused:
                self.budget.give_back.remote(unused)

    def run_batch(self, *args: Any) -> list[WorkerReport]:
        """``run_cells`` (same arguments) returned whole, for a driver on Ray Client (which cannot stream
        from an actor)."""
        return list(self.run_cells(*args))

    def _report(self, items: list[tuple[str, Any]]) -> WorkerReport:
        rows = [value for kind, value in items if kind == "row"]
        skipped = [value for kind, value in items if kind == "budget"]
        return WorkerReport(os.getpid(), rows, skipped, self.ledger.spent_usd, self.ledger.saved_usd)

    async def _run(self, cells: list[Cell], out: queue.SimpleQueue) -> None:
        if self._gate is None:  # made on the client's loop, where the calls run
            self._gate = asyncio.Semaphore(self.settings.concurrency)
            self._leasing = asyncio.Lock()
        gate = self._gate

        async def one(cell: Cell) -> None:
            async with gate:
                out.put(await self._cell(cell))

        await asyncio.gather(*(one(cell) for cell in cells))

    async def _cell(self, cell: Cell) -> tuple[str, Any]:
        from .cells import call_cell
        from .scoring import score_row, score_safely
        from .store import now_iso

        issue, model, mode, repeat = cell
        s = self.settings
        while True:
            if self._out_of_budget:
                return "budget", cell
            outcome = await call_cell(
                self.client, issue, model, mode, repeat, s.cache, self.ledger, s.run_id, s.stream
            )
            if outcome is not None:
                break
            if not await self._lease_more():  # the call did not fit this worker's lease
                self._out_of_budget = True
        row, completion = outcome
        if completion is not None:
            from ..modes import get_mode

            if s.judge_model is not None or get_mode(mode).scorer == "judge":
                scores = await score_row(
                    self.client,
                    issue,
                    mode,
                    completion.text,
                    completion.parsed,
                    completion.parse_error,
                    s.judge_model,
                    self.ledger,
                )
            else:
                scores = score_safely(issue, mode, completion)
            row.update(scores)
        row.finished_at = now_iso()
        return "row", row

    async def _lease_more(self) -> bool:
        """Ask the budget for enough to cover the call that did not fit; False when it cannot be had.

        First for the call's shortfall (at least a lease); if the budget has less than that left, this
        worker hands back what it holds unreserved and asks for the call's whole worst case, so that
        leases split between the workers never refuse a call the budget still allows.
        """
        if self.budget is None or self.settings.lease_usd is None:
            return False
        assert self._leasing is not None
        async with self._leasing:
            if self._out_of_budget:
                return False
            ledger, lease = self.ledger, self.settings.lease_usd
            need = ledger.refused_usd
            shortfall = max(0.0, need - (ledger.remaining_usd or 0.0))
            if shortfall <= 1e-12:
                return True  # a lease arrived (or a call ended) since the refusal: try again
            granted = await self._lease(max(lease, shortfall), shortfall, 0.0)
            if granted <= 0:
                unused = ledger.shrink_to_committed()
                granted = await self._lease(max(lease, need), need, unused)
            if granted <= 0:
                return False
            ledger.extend(granted)
            return True

    async def _lease(self, amount: float, minimum: float, returning: float) -> float:
        return await asyncio.wrap_future(self.budget.lease.remote(amount, minimum, returning).future())
