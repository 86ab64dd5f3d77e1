"""Rate limits shared by every concurrent task: requests/minute, tokens/minute, concurrency, 429 pauses.

Scopes: one bucket per model config (its ``limits``) and, where a model declares ``account_limits``, one
per provider and key. Buckets live in one process-wide :class:`Limiter` so that every client, every task
and every event loop (a notebook's and the client's background loop) draws from the same budget.

- **RPM**: requests are spaced evenly, one every ``60/rpm`` seconds, so that the minute's quota never
  leaves in a burst (providers punish bursts too). Spacing alone bounds a window of ``w`` seconds to
  ``w*rpm/60 + 1`` requests, one too many for a whole minute; so a log of the releases also holds every
  request back until the one ``rpm`` places before it is :data:`SPAN_S` old.
- **TPM**: each request reserves an estimate (prompt characters / 4 + max_tokens) when it is released,
  corrected with the usage the provider reported afterwards (:meth:`Limiter.reconcile`). A request is
  released only if the tokens released in the last :data:`SPAN_S` and its own fit in ``tpm``; a request
  larger than a whole minute's ``tpm`` goes alone, into an otherwise empty window.
- **Window**: a provider's minute is a sliding 60 s window. A release counts against it for
  ``SPAN_S = 60 s + SLACK_S`` (0.1 s): the slack absorbs the jitter between our release and the server's
  arrival, so that network delays cannot put ``rpm + 1`` requests (or ``tpm`` + 1 tokens) into the
  server's window. The window check is made at release time against the requests actually released;
  planning uses the same log plus the slots already planned, so that waiting tasks wake up in order.
- **Concurrency**: a counting gate usable from any event loop and thread. Always per process.
- **429**: pauses the bucket for the server's hint. Requests that had a slot inside the pause give it up
  and take a new one after it, so the pause does not end in a burst. A pause longer than the caller's
  ``max_pause`` is not waited for: :class:`BucketPaused` is raised so the call can fall back.

What holds where:

- **Within a process**: all of the above, over every client, task, thread and event loop.
- **Across processes on one machine**: a bucket given ``shared=<file>`` (the client passes
  ``$ORCHESTRATOR_HOME/limits.sqlite``) keeps its release log, spacing slot and 429 pause in that SQLite
  file (:mod:`orchestrator.client.shared_limits`); each release is one short write transaction, so RPM, TPM,
  spacing and pauses hold over all processes sharing the file together. Concurrency does not: each
  process has its own gate. A bucket without RPM or TPM shares only its pauses, read at most every
  0.25 s (no transaction per request). The shared times are ``time.time()`` (one machine, one
  clock; monotonic clocks are not comparable across containers), and no shared wait is planned more
  than a window ahead, so a clock step costs at most one minute's accuracy. If the file cannot be
  used (a read-only home, a lock held for seconds), one warning is logged and the process enforces
  its limits alone; a call never fails for it. A transaction runs under the limiter's lock and waits
  at most 50 ms for the file's lock (then the request retries 10 ms later, without blocking its loop).
- **Across machines**: on a Ray cluster, every worker's buckets share one log held by an actor
  (``Limiter(cluster=...)``, :class:`orchestrator.runs.ray_workers.ClusterLog`). Its releases are awaited
  off the limiter's lock, so a worker's loop serves its other calls during the round trip; a grant that
  waited more than :data:`STALE_GRANT_S` for a busy loop to take it up is given back and asked again.
  Otherwise nothing: two machines on one key may together send twice the rate, so give each machine
  its share of the limits in its config.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..errors import RateLimitedError
from .buckets import SLACK_S, SPAN_S, WINDOW_S, Bucket, Gate, Slot
from .shared_limits import BUSY_RETRY_S, Claim, SharedLog, Verdict

__all__ = [
    "LIMITER",
    "SLACK_S",
    "SPAN_S",
    "WINDOW_S",
    "Bucket",
    "BucketPaused",
    "Gate",
    "Limiter",
    "Slot",
    "buckets_for",
]

PAUSE_TOL_S = 0.01  # a pause read back from the shared file this close to ours is ours
# A cluster's grant that waited longer than this for the busy event loop to take it up (after it arrived)
# is given back and asked again: a request must leave within the slack of when the cluster logged it.
STALE_GRANT_S = SLACK_S / 2


class BucketPaused(RateLimitedError):
    """A bucket is paused (after a 429) for longer than the caller is willing to wait."""

    retryable = False


#: The slots the current task's last acquire released, so that its reconcile corrects exactly those.
_RELEASED: contextvars.ContextVar[tuple[list[tuple[Bucket, Slot]], int] | None] = contextvars.ContextVar(
    "orchestrator_limits_released", default=None
)


_PAUSED = object()


class Limiter:
    """Every bucket of the process, by scope key. Thread-safe and usable from any event loop.

    ``clock``/``sleep``: the in-process limits' time (tests inject fake ones); ``wall``: the shared
    file's time, comparable across processes (``time.time``).
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        *,
        wall: Callable[[], float] = time.time,
        cluster: Any = None,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self.wall = wall
        # a log with SharedLog's methods that every bucket shares unless given a file: the limits of a
        # cluster (orchestrator.runs.ray_workers.ClusterLog, over an actor that holds the log)
        self.cluster = cluster
        self._buckets: dict[tuple[Any, ...], Bucket] = {}
        self._shared: dict[str, SharedLog] = {}
        self._lock = threading.Lock()

    def bucket(
        self,
        key: str,
        rpm: float | None = None,
        tpm: float | None = None,
        max_concurrency: int | None = None,
        *,
        shared: Path | None = None,
    ) -> Bucket:
        """The bucket for scope ``key`` with these limits (a scope whose limits change gets a new bucket).

        ``shared``: a SQLite file through which processes of this machine share the scope's RPM, TPM and
        pauses (concurrency stays per process); the scope is ``key`` in it, whatever the limits (each
        process enforces its own against the common log). The first file given for a bucket is kept.
        """
        full = (key, rpm, tpm, max_concurrency)
        with self._lock:
            b = self._buckets.get(full)
            if b is None:
                b = self._buckets[full] = Bucket(rpm, tpm, max_concurrency, now=self.clock(), key=key)
            if shared is not None and b.shared is None:
                path = os.path.abspath(shared)
                log = self._shared.get(path)
                if log is None:
                    log = self._shared[path] = SharedLog(Path(path), span_s=SPAN_S, wall=self.wall)
                b.shared = log
            elif b.shared is None and self.cluster is not None:
                b.shared = self.cluster
            return b

    async def acquire(
        self, buckets: list[Bucket], tokens: int, *, max_pause: float | None = None, honoured: float = 0.0
    ) -> None:
        """Wait for a slot in every bucket (the caller takes the buckets' concurrency gates first).

        ``honoured``: the end of a pause the caller has already slept through (its own 429's hint).
        Raises :class:`BucketPaused` when a pause lasts longer than ``max_pause``.
        """
        spacing = min((b.spacing for b in buckets if b.rpm), default=0.0)
        late_ok = min(0.001, spacing / 10)  # wake-up jitter tolerated without shifting the grid
        shared = claims = False  # any bucket shared (its pauses); any shared with RPM/TPM (its window)
        for b in buckets:
            if b.shared is not None:
                shared = True
                claims = claims or b.windowed
        slots: list[Slot | None] = []
        # the cluster's answers in hand, not yet settled: log -> (verdict, when it arrived on the log's clock)
        asked: dict[Any, tuple[Verdict, float]] | None = None
        try:
            while True:
                with self._lock:
                    now = self.clock()
                    if shared:
                        self._pull_pauses(buckets, now)
                    paused = max((b.paused_until for b in buckets if b.paused_until > honoured), default=0.0)
                    if max_pause is not None and paused - now > max_pause:
                        raise BucketPaused(
                            f"rate limited: paused for another {paused - now:.1f} s (above the cap)",
                            retry_after_s=paused - now,
                        )
                    at = now
                    for b in buckets:
                        t = b.earliest(tokens, now, honoured)
                        if t > at:
                            at = t
                    slots = [b.commit(tokens, at) for b in buckets]
                if at > now:
                    await self.sleep(at - now)
                due = at
                while True:
                    ask: list[tuple[Any, list[Claim], float]] = []
                    with self._lock:
                        now = self.clock()
                        if any(b.paused_until > max(now, honoured) for b in buckets):
                            # a 429 paused a bucket while we waited: give the slot up, take one after the pause
                            self._refund(buckets, slots)
                            self._forget_asked(asked)
                            asked = None
                            break
                        if asked is not None and any(
                            log.wall() - arrived > STALE_GRANT_S for log, (_, arrived) in asked.items()
                        ):
                            self._forget_asked(asked)  # and ask again
                            asked = None
                        # Slots are planned, and releases are checked too: after the loop stalled (a blocking
                        # call, a GC pause) two planned slots may wake together. Keep them spaced, and keep
                        # the window: the check counts what was actually released. An answer in hand is the
                        # cluster's own check of the same (and more): it is settled as it is.
                        if asked is None:
                            for b in buckets:
                                t = b.ready_at(tokens, now)
                                if t > due:
                                    due = t
                        # only a cluster's log answers over the network (a file's is asked under the lock)
                        if now >= due - 1e-9 and claims and asked is None and self.cluster is not None:
                            ask = self._cluster_claims(buckets, tokens, honoured, now)
                        if now >= due - 1e-9 and not ask:
                            rows = (
                                self._claim_shared(buckets, tokens, honoured, now, asked) if claims else None
                            )
                            asked = None
                            if rows is _PAUSED:
                                self._refund(buckets, slots)
                                break
                            if isinstance(rows, float):  # another process holds the slot: wait for it
                                due = rows
                            else:
                                if rows is not None:
                                    # the transaction took time (and let other threads run): the request
                                    # leaves now, so space the next one from now, not from before it
                                    now = max(now, self.clock())
                                stamp = due if now - due <= late_ok else now
                                released = []
                                for i, b in enumerate(buckets):
                                    slot = b.sent(stamp, slots[i], now)
                                    if slot is not None:
                                        if rows is not None:
                                            slot.row = rows[i]
                                        released.append((b, slot))
                                slots = []
                                if released:  # (a call without windowed buckets has nothing to reconcile)
                                    _RELEASED.set((released, tokens))
                                return
                    if ask:  # the cluster answers over the network: wait for it off the lock, the loop free
                        asked = {log: await log.release_async(c, h) for log, c, h in ask}
                        continue
                    await self.sleep(due - now)
        except BaseException:
            if slots:  # cancelled (or failed) holding a planned slot: give it up
                with self._lock:
                    self._refund(buckets, slots)
            self._forget_asked(asked)
            raise

    @staticmethod
    def _refund(buckets: list[Bucket], slots: list[Slot | None]) -> None:
        for b, slot in zip(buckets, slots, strict=False):
            b.refund(slot)

    def _pull_pauses(self, buckets: list[Bucket], now: float) -> None:
        """Adopt the pauses other processes set on shared scopes (a cached read, no transaction)."""
        for b in buckets:
            if b.shares:
                assert b.shared is not None
                until = b.shared.paused_until(b.key)
                if until:
                    self._adopt_pause(b, until - (b.shared.wall() - now))

    @staticmethod
    def _adopt_pause(b: Bucket, until: float) -> None:
        if until > b.paused_until + PAUSE_TOL_S:  # within the tolerance it is our own pause, read back
            b.paused_until = until

    @staticmethod
    def _shared_groups(buckets: list[Bucket]) -> dict[SharedLog, list[int]]:
        """The buckets whose window a shared log keeps, by log (the indexes into ``buckets``)."""
        groups: dict[SharedLog, list[int]] = {}
        for i, b in enumerate(buckets):
            if b.windowed and b.shares:
                assert b.shared is not None
                groups.setdefault(b.shared, []).append(i)
        return groups

    def _cluster_claims(
        self, buckets: list[Bucket], tokens: int, honoured: float, now: float
    ) -> list[tuple[Any, list[Claim], float]]:
        """What to ask the logs that answer over the network (a cluster's, with ``release_async``, which
        gives the verdict and when it arrived): the caller awaits them without the lock, then settles them
        in :meth:`_claim_shared`."""
        ask = []
        for log, idx in self._shared_groups(buckets).items():
            if hasattr(log, "release_async"):
                offset = log.wall() - now
                ask.append(
                    (log, [buckets[i].claim(tokens) for i in idx], honoured + offset if honoured else 0.0)
                )
        return ask

    @staticmethod
    def _forget_asked(asked: dict[Any, tuple[Verdict, float]] | None) -> None:
        """Take back what the cluster granted a request that will not go (paused, cancelled or stale)."""
        for log, (verdict, _) in (asked or {}).items():
            if verdict.kind == "go":
                log.forget(verdict.rows)

    def _claim_shared(
        self,
        buckets: list[Bucket],
        tokens: int,
        honoured: float,
        now: float,
        asked: dict[Any, tuple[Verdict, float]] | None = None,
    ) -> Any:
        """Release in the shared logs too: the rows (one per bucket, None where not shared), the local
        time to try again at, or ``_PAUSED`` (a pause was adopted into the buckets). ``asked``: the
        verdicts of the logs already asked (:meth:`_cluster_claims`), settled here like the others."""
        rows: list[int | None] = [None] * len(buckets)
        granted: list[tuple[SharedLog, list[int | None]]] = []
        for log, idx in self._shared_groups(buckets).items():
            offset = log.wall() - now
            if asked is not None and log in asked:
                verdict = asked[log][0]
            else:
                verdict = log.release(
                    [buckets[i].claim(tokens) for i in idx], honoured + offset if honoured else 0.0
                )
            if verdict.kind == "go":
                for i, row in zip(idx, verdict.rows, strict=True):
                    rows[i] = row
                granted.append((log, verdict.rows))
                continue
            if verdict.kind == "off":  # fell back: this process's own limits apply
                continue
            for other, its_rows in granted:  # not now: take back what the other files granted
                other.forget(its_rows)
            if verdict.kind == "paused":
                until = verdict.until - offset
                for i in idx:
                    self._adopt_pause(buckets[i], until)
                if any(buckets[i].paused_until > max(now, honoured) for i in idx):
                    return _PAUSED
                return until + 2e-4  # our own pause, read back a hair before its end: wait that out
            if verdict.kind == "wait":
                return verdict.until - offset + 2e-4  # past the other clock's conversion jitter
            return now + BUSY_RETRY_S
        return rows

    def pause(self, bucket: Bucket, seconds: float) -> float:
        with self._lock:
            until = bucket.pause(seconds, self.clock())
            if bucket.shares:
                assert bucket.shared is not None
                bucket.shared.pause(bucket.key, seconds)
            return until

    def reconcile(self, buckets: list[Bucket], estimated: int, actual: int) -> None:
        """Correct the reservation of the current task's last request with the usage reported."""
        for b in buckets:
            if b.tpm:
                break
        else:
            return  # only TPM counts tokens
        released = _RELEASED.get()
        if released is not None:
            _RELEASED.set(None)
            if released[1] != estimated:
                released = None
        with self._lock:
            now = self.clock()
            for b in buckets:
                if not b.tpm:
                    continue
                mine = next((s for rb, s in released[0] if rb is b), None) if released else None
                slot = b.reconcile(estimated, actual, now, mine)
                if slot is not None and slot.row is not None and b.shares:
                    assert b.shared is not None
                    b.shared.set_tokens(slot.row, actual)


#: The process-wide limiter every LLMClient uses unless given another.
LIMITER = Limiter()


def buckets_for(limiter: Limiter, spec: Any, shared: Path | None) -> list[Bucket]:
    """The buckets a model's requests draw from: its own ``limits``, and where it declares
    ``options.account_limits``, the provider account's (models sharing a key share those)."""
    lim = spec.limits
    scope = f"model:{spec.id}|{spec.provider}|{spec.base_url}|{spec.model}|{spec.api_key_env}"
    buckets = [limiter.bucket(scope, lim.rpm, lim.tpm, lim.max_concurrency, shared=shared)]
    account = spec.options.get("account_limits")
    if isinstance(account, dict):
        scope = f"account:{spec.provider}|{spec.api_key_env}|{spec.base_url}"
        buckets.append(
            limiter.bucket(
                scope, account.get("rpm"), account.get("tpm"), account.get("max_concurrency"), shared=shared
            )
        )
    return buckets
