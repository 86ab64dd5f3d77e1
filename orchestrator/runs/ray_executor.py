"""A grid's cells on a Ray cluster: worker actors call the models, the driver stores every row once.

::

    driver (run_grid, executor="ray")                      the cluster
      the run: store, lease, the cells still to do          CellWorker x N: its own LLMClient (cache,
      feeds each worker <= 2 batches of c cells  -------->     local engine), c calls in flight, scores
      writes each row as it streams back (one writer) <----    each answer, streams rows back as they finish
      a dead worker's unfinished cells go back in line      LimitsActor: the cluster's RPM/TPM/pause log
                                                            BudgetActor: the budget, leased out worst case first

Guarantees, the same as in one process:

- Rate limits: every worker's limiter shares one :class:`~orchestrator.client.shared_limits.SharedLog`
  held by the :class:`LimitsActor` (the log the processes of one machine share through a file), so a
  model's RPM and TPM hold over the cluster; a model's ``max_concurrency`` is split between the workers.
- Budget: a worker reserves each call's worst case against its lease of the budget and asks the
  :class:`BudgetActor` (created and owned by the driver) for more when a call does not fit; leases never
  sum past the cap, so the cap is never crossed. What is leased and not handed back counts as spent.
- Exactly once: the driver writes a cell's row once (the results table's key is the cell); a row that
  arrives twice is dropped.
- A worker that dies (its process killed, its node lost): the cells it held and had not streamed back go
  back in line and run on whichever worker is free (Ray restarts the dead one). Only its cells in flight
  may reach the server twice. A driver that dies: resume with the same run id, as in one process.

API keys do not travel through Ray: the config names the environment variable (``api_key_env``) and each
worker reads the key from its own environment (on a local cluster, the driver's). A credential header
written into the config itself travels with the config, as it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import errors as E
from ..types import Issue
from .ray_workers import BudgetActor, Cell, CellWorker, LimitsActor, WorkerReport, WorkerSettings

if TYPE_CHECKING:
    from ..client.llm_client import LLMClient
    from .plan import GridPlan
    from .rows import ResultRow

log = logging.getLogger("orchestrator")

INSTALL_HINT = (
    "--executor ray needs Ray, an optional extra: pip install 'orchestrator-workbench[ray]' "
    "(or pip install 'ray[client]>=2.40')"
)
CLIENT_BATCH_SPLIT = 4  # through Ray Client a batch comes back whole: smaller ones, sooner stored
BATCHES_PER_WORKER = 2  # batches a worker holds: one running while the next waits, so it never idles
WORKER_START_S = 300.0  # how long workers may take to start (a node an autoscaler adds, a big import)
LEASES_PER_WORKER = 4  # a lease is this fraction of the budget left over the workers: few round trips


def require_ray() -> Any:
    """Ray, or a :class:`~orchestrator.errors.UsageError` that says how to install it."""
    try:
        import ray
    except ImportError:
        raise E.UsageError(INSTALL_HINT) from None
    return ray


# ---------------------------------------------------------------------------------------------- driver


@dataclass
class RayTotals:
    """What the workers spent and saved, for the run's summary."""

    spent_usd: float = 0.0
    saved_usd: float = 0.0
    worker_deaths: int = 0
    workers: int = 0
    not_run: int = 0  # cells left when the budget stopped the run
    start_s: float = 0.0  # how long the workers took to start


def split_concurrency(config: Any, models: Sequence[str], workers: int) -> dict[str, int]:
    """Each model's ``max_concurrency`` shared out between the workers (its per-worker limit).

    Raises a UsageError naming the model when its limit is below the number of workers: the limit could
    not hold over the cluster."""
    out = {}
    for model in models:
        limit = config.model_spec(model).limits.max_concurrency
        if limit is None:
            continue
        if limit < workers:
            raise E.UsageError(
                f"model {model!r}: max_concurrency = {limit} cannot be split over {workers} Ray workers; "
                f"use --workers {limit} or fewer, or raise its limit"
            )
        out[model] = limit // workers
    return out


def _fitted_for(models: Sequence[str], ray: Any) -> list[Any] | None:
    """The trained baselines the driver fitted for this run (``Adapter.prepare``), in the object store
    once: a worker has no training data, and on another node not even the driver's home."""
    from ..trained.fitting import FITTED

    fits = {key: fit for key, fit in FITTED.items() if key[0] in models}
    return [ray.put(fits)] if fits else None


def connect(address: str | None, *, num_cpus: int | None = None) -> bool:
    """Connect to the cluster at ``address`` (``auto``, ``ray://HOST:PORT``), or start one on this machine
    when it is None; returns whether this call started Ray (and so should shut it down)."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        kwargs.update(include_dashboard=False, num_cpus=num_cpus)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise E.UsageError(
            f"--address {address}: could not reach a Ray cluster: {exc}{_token_hint(address)}"
        ) from None
    if address and address.startswith("ray://") and not _through_client():  # pragma: no cover
        raise E.UsageError(f"--address {address}: could not reach a Ray cluster through Ray Client")
    return True


def _token_hint(address: str | None) -> str:
    """What to try when Ray Client cannot connect: a cluster with token authentication (the default for
    clusters Ray 2.5x starts once ~/.ray/auth_token exists) refuses a client that sends no token, and
    Ray Client only reports a timeout."""
    if not (address or "").startswith("ray://") or os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return ""
    return (
        "; if the cluster uses token authentication, run with RAY_AUTH_MODE=token and the cluster's token "
        "in RAY_AUTH_TOKEN (or in ~/.ray/auth_token)"
    )


async def run_on_ray(
    client: LLMClient,
    plan: GridPlan,
    run_id: str,
    todo: Sequence[tuple[Issue, str, str, int]],
    record: Callable[[list[ResultRow], float], None],
    stopped: Callable[[], None],
    spent_before: float,
    totals: RayTotals,
) -> None:
    """Run ``todo`` on Ray workers; ``record(rows, run_spent)`` stores rows as they arrive, ``stopped()``
    is called once when the budget stops the run. ``totals`` says, as the run goes and however it ends,
    what the workers spent."""
    ray = require_ray()
    from ..modes import MODES

    budget = limits = None
    actors: list[Any] = []
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n = plan.workers or max(1, int(cpus // plan.worker_cpus))
        totals.workers = n
        per_worker = max(1, plan.concurrency // n)
        through_client = _through_client()
        batch_size = max(1, per_worker // CLIENT_BATCH_SPLIT) if through_client else per_worker
        called = list(dict.fromkeys([*plan.models, *([plan.judge_model] if plan.judge_model else [])]))
        split = split_concurrency(client.config, called, n)
        limited = any(
            client.config.model_spec(m).limits.rpm
            or client.config.model_spec(m).limits.tpm
            or isinstance(client.config.model_spec(m).options.get("account_limits"), dict)
            for m in called
        )
        budget = None
        lease = None
        if plan.budget_usd is not None:
            remaining = max(0.0, plan.budget_usd - spent_before)
            budget = ray.remote(BudgetActor).options(num_cpus=0).remote(remaining)
            lease = remaining / (LEASES_PER_WORKER * n)
        settings = WorkerSettings(run_id, plan.cache, plan.stream, plan.judge_model, per_worker, lease)
        modes = ray.put(dict(MODES))
        fitted = _fitted_for(plan.models, ray)
        start = time.perf_counter()
        actors, limits = _workers(client.config, n, plan.worker_cpus, split, limited)
        await _ready(actors, n, plan.worker_cpus, WORKER_START_S)
        totals.start_s = time.perf_counter() - start
        line: deque[Cell] = deque(todo)
        stored: set[tuple[str, str, str, int]] = set()
        spent: dict[int, tuple[float, float]] = {}  # worker pid -> its (spent, saved), the dead ones' kept
        state: dict[str, Any] = {"stop": False, "batches": 0}

        async def run_spent() -> float:
            if budget is not None:
                return spent_before + await budget.outstanding.remote()
            return spent_before + sum(s for s, _ in spent.values())

        def key(cell: Cell) -> tuple[str, str, str, int]:
            return (cell[0].id, cell[1], cell[2], cell[3])

        async def feed(actor: Any) -> None:
            while not state["stop"]:
                if not line:
                    if not state["batches"]:
                        return
                    await asyncio.sleep(0.05)  # a batch in flight may come back to the line
                    continue
                batch = [line.popleft() for _ in range(min(batch_size, len(line)))]
                state["batches"] += 1
                try:
                    ran = await run_batch(actor, batch)
                finally:
                    state["batches"] -= 1
                if not ran and not await _alive(actor):  # died for good: the other workers go on
                    return

        async def reports(actor: Any, batch: list[Cell]) -> AsyncIterator[WorkerReport]:
            if through_client:  # whole batches: Ray Client does not stream actor results
                for report in await actor.run_batch.remote(batch, settings, modes, budget, fitted):
                    yield report
                return
            call = actor.run_cells.options(num_returns="streaming")
            async for ref in call.remote(batch, settings, modes, budget, fitted):
                yield await ref

        async def run_batch(actor: Any, batch: list[Cell]) -> bool:
            """Run one batch on ``actor``, storing its rows as they stream back; False if the actor died."""
            left = {key(c): c for c in batch}
            try:
                async for report in reports(actor, batch):
                    spent[report.pid] = (report.spent_usd, report.saved_usd)
                    totals.spent_usd = sum(s for s, _ in spent.values())
                    totals.saved_usd = sum(s for _, s in spent.values())
                    rows = []
                    for row in report.rows:
                        cell_key = (row.issue_id, row.model, row.mode, row.repeat)
                        left.pop(cell_key, None)
                        if cell_key not in stored:  # a row that arrives twice is stored once
                            stored.add(cell_key)
                            rows.append(row)
                    for cell in report.budget_skipped:
                        left.pop(key(cell), None)
                        if not state["stop"]:
                            state["stop"] = True
                            stopped()
                    if report.budget_skipped:
                        line.extendleft(report.budget_skipped)  # counted as not run below
                    if rows:
                        record(rows, await run_spent())
            except _actor_errors(ray) as exc:
                totals.worker_deaths += 1
                line.extendleft(left.values())  # not streamed back: run again, here or elsewhere
                log.warning(
                    "run %s: a Ray worker died (%s); %d of its cells go back in line",
                    run_id,
                    type(exc).__name__,
                    len(left),
                )
                return False
            return True

        await asyncio.gather(*(feed(a) for a in actors for _ in range(BATCHES_PER_WORKER)))
        if line and not state["stop"]:
            raise E.OrchestratorError(f"every Ray worker died; {len(line)} cells were not run")
        totals.not_run = len(line)
    finally:
        if budget is not None:  # a lease never handed back (a dead worker's, a cancelled call's) may be spent
            with contextlib.suppress(Exception):
                outstanding = await asyncio.wait_for(_awaitable(budget.outstanding.remote()), 10)
                totals.spent_usd = max(totals.spent_usd, outstanding)
        if budget is not None:
            with contextlib.suppress(Exception):
                ray.kill(budget)
        for actor in [*actors, *([limits] if limits is not None else [])]:
            with contextlib.suppress(Exception):
                ray.kill(actor)


def _workers(config: Any, n: int, cpus: float, split: dict[str, int], limited: bool) -> tuple[list[Any], Any]:
    """``n`` worker actors for ``config``, and the limits actor when a model is rate limited."""
    import ray

    free = ray.available_resources().get("CPU", 0.0)
    if free < n * cpus:
        log.warning(
            "the Ray cluster has %g CPUs free; %d workers x %g CPUs wait until it has %g (an autoscaler may "
            "add nodes; else lower --workers or --worker-cpus)",
            free,
            n,
            cpus,
            n * cpus,
        )
    limits = ray.remote(LimitsActor).options(num_cpus=0).remote() if limited else None
    worker_cls = ray.remote(CellWorker).options(
        num_cpus=cpus, max_restarts=3, max_task_retries=0, max_concurrency=BATCHES_PER_WORKER + 1
    )
    return [worker_cls.remote(config, split, limits) for _ in range(n)], limits


async def _ready(actors: list[Any], n: int, cpus: float, timeout_s: float) -> None:
    """Wait for every worker to start; a UsageError naming the CPUs asked for if they do not in time."""
    import ray

    refs = [asyncio.wrap_future(a.pid.remote().future()) for a in actors]
    try:
        await asyncio.wait_for(asyncio.gather(*refs), timeout_s)
    except TimeoutError:
        total = ray.cluster_resources().get("CPU", 0.0)
        raise E.UsageError(
            f"the Ray workers did not start within {timeout_s:g} s: {n} workers x {cpus:g} CPUs asked for, "
            f"the cluster has {total:g} CPUs and {ray.available_resources().get('CPU', 0.0):g} free; "
            "lower --workers or --worker-cpus, or add nodes"
        ) from None


def _awaitable(ref: Any) -> Any:
    return asyncio.wrap_future(ref.future())


def _through_client() -> bool:
    """Whether this driver reached its cluster through Ray Client (``ray://``)."""
    try:
        from ray.util.client import ray as client_ray
    except ImportError:  # pragma: no cover
        return False
    return bool(client_ray.is_connected())


def _actor_errors(ray: Any) -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [ray.exceptions.RayActorError]
    unavailable = getattr(ray.exceptions, "ActorUnavailableError", None)
    if unavailable is not None:
        found.append(unavailable)
    return tuple(found)


async def _alive(actor: Any, timeout_s: float = 120.0) -> bool:
    """Whether the actor answers (Ray restarts a dead one, and loading a local model takes a while);
    False once Ray says it is gone for good or it has not answered within ``timeout_s``."""
    import ray

    until = time.monotonic() + timeout_s
    while time.monotonic() < until:
        try:
            await asyncio.wait_for(asyncio.wrap_future(actor.pid.remote().future()), until - time.monotonic())
            return True
        except ray.exceptions.ActorDiedError:
            return False
        except Exception:  # unavailable while it restarts
            await asyncio.sleep(0.2)
    return False
