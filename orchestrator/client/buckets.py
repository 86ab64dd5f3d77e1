"""One limit scope's state: its release log over the sliding window, RPM spacing, planned slots, 429
pause and concurrency gate. The rules these hold, and how the limiter acquires across buckets and shares
them with other processes and a cluster, are in :mod:`orchestrator.client.limits`.
"""

from __future__ import annotations

import asyncio
import bisect
import operator
import threading
from collections import deque
from collections.abc import Sequence
from itertools import chain

from .shared_limits import Claim, SharedLog

WINDOW_S = 60.0  # the providers' minute
SLACK_S = 0.1  # network jitter between our release and the server's arrival (see orchestrator.client.limits)
SPAN_S = WINDOW_S + SLACK_S  # how long a release counts against the window
_NEVER = float("-inf")


class Gate:
    """A counting semaphore that works across event loops and threads (asyncio.Semaphore binds to one loop)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()
        self._lock = threading.Lock()

    async def acquire(self) -> None:
        with self._lock:
            if self.in_use < self.limit and not self._waiters:
                self.in_use += 1
                return
            loop = asyncio.get_running_loop()
            waiter = (loop, loop.create_future())
            self._waiters.append(waiter)
        fut = waiter[1]
        try:
            await fut
        except asyncio.CancelledError:
            with self._lock:
                if waiter in self._waiters:  # never granted
                    self._waiters.remove(waiter)
                    raise
            # Granted: a grant still pending on the loop passes the permit on; one already delivered is ours.
            if fut.done() and not fut.cancelled():
                self.release()
            raise

    def release(self) -> None:
        """Free a permit, handing it straight to the oldest waiter if there is one."""
        while True:
            with self._lock:
                if not self._waiters:
                    self.in_use = max(0, self.in_use - 1)
                    return
                loop, fut = self._waiters.popleft()
            try:
                loop.call_soon_threadsafe(self._grant, fut)
                return
            except RuntimeError:  # that waiter's loop is closed: try the next one
                continue

    def _grant(self, fut: asyncio.Future[None]) -> None:
        if fut.done():  # the waiter was cancelled meanwhile: pass the permit on
            self.release()
        else:
            fut.set_result(None)


class Slot:
    """One request in a bucket's window: planned (``t`` = its slot), then released (``t`` = release time)."""

    __slots__ = ("est", "open", "row", "t", "tokens")

    def __init__(self, t: float, tokens: float) -> None:
        self.t = t
        self.tokens = tokens  # the reservation; the reported usage once reconciled
        self.est = tokens
        self.open = True  # not yet reconciled, and still in the window
        self.row: int | None = None  # its row in the shared log, if any


_slot_t = operator.attrgetter("t")  # the sort key of pending slots


class Bucket:
    """One limit scope: a model config, or a provider and key. Mutated only under the limiter's lock."""

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        max_concurrency: int | None = None,
        *,
        now: float = 0.0,
        key: str = "",
        shared: SharedLog | None = None,
    ) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.max_concurrency = max_concurrency
        self.key = key
        self.shared = shared
        self.gate = Gate(max_concurrency) if max_concurrency else None
        self.spacing = 60.0 / rpm if rpm else 0.0
        self.allow = max(1, int(rpm)) if rpm else 0  # requests one window may hold
        self.windowed = bool(rpm or tpm)
        self.next_slot = 0.0  # earliest time the next request may go (RPM spacing)
        self.paused_until = 0.0
        self.last_sent = float("-inf")  # when the last request was actually released (on the spacing grid)
        self.log: deque[Slot] = deque()  # released in the last SPAN_S, oldest first
        self.log_tokens = 0.0
        self.pending: list[Slot] = []  # planned and not yet released, by slot time
        self.pending_tokens = 0.0

    @property
    def shares(self) -> bool:
        """Whether this bucket consults the shared file (it is set and usable)."""
        return self.shared is not None and self.shared.ok

    def _prune(self, now: float) -> None:
        log, limit = self.log, now - SPAN_S
        if not log or log[0].t > limit:
            return
        while log and log[0].t <= limit:
            slot = log.popleft()
            slot.open = False
            self.log_tokens -= slot.tokens
        if not log:
            self.log_tokens = 0.0  # no drift from float sums

    def _window(self, tokens: float, t: float, planned: bool) -> float:
        """The earliest time from ``t`` that the window has room for one more request of ``tokens``.

        ``planned``: count the slots already planned too (planning); else only releases (the release check).
        """
        log = self.log
        pending: Sequence[Slot] = self.pending if planned else ()
        n_log = len(log)
        n = n_log + len(pending)
        if self.allow and n >= self.allow:
            i = n - self.allow
            t = max(t, (log[i] if i < n_log else pending[i - n_log]).t + SPAN_S)
        if self.tpm:
            rest = self.log_tokens + (self.pending_tokens if planned else 0.0)
            if rest > 0 and rest + tokens > self.tpm:
                for slot in chain(log, pending):  # the oldest leave first
                    if rest <= 0 or rest + tokens <= self.tpm:
                        break
                    t = max(t, slot.t + SPAN_S)
                    rest -= slot.tokens
        return t

    def earliest(self, tokens: int, now: float, honoured: float = 0.0) -> float:
        """The earliest time a request of ``tokens`` may be sent (no state is reserved)."""
        t = now
        if self.paused_until > honoured and self.paused_until > t:
            t = self.paused_until
        if self.rpm and self.next_slot > t:
            t = self.next_slot
        if self.windowed:
            self._prune(now)
            t = self._window(tokens, t, planned=True)
        return t

    def ready_at(self, tokens: int, now: float) -> float:
        """When a request planned for now may be released: spacing and window, against actual releases."""
        if not self.windowed:
            return _NEVER
        self._prune(now)
        t = self.last_sent + self.spacing if self.rpm else _NEVER
        return self._window(tokens, t, planned=False)

    def commit(self, tokens: int, at: float) -> Slot | None:
        """Take the slot at time ``at`` for a request of ``tokens`` (released later by :meth:`sent`)."""
        if self.rpm:
            self.next_slot = max(self.next_slot, at + self.spacing)
        if not self.windowed:
            return None
        slot = Slot(at, tokens)
        pending = self.pending
        if not pending or pending[-1].t <= at:
            pending.append(slot)  # the usual case: slots are planned in order
        else:
            bisect.insort(pending, slot, key=_slot_t)
        self.pending_tokens += tokens
        return slot

    def refund(self, slot: Slot | None) -> None:
        """Give a planned slot up (it was not released)."""
        if slot is not None and slot.open:
            slot.open = False
            self.pending.remove(slot)
            self.pending_tokens -= slot.tokens
            if not self.pending:
                self.pending_tokens = 0.0

    def sent(self, now: float, slot: Slot | None = None, actual: float | None = None) -> Slot | None:
        """A request was released at ``now`` (on the spacing grid); ``actual``: the clock's reading."""
        self.last_sent = now
        if self.rpm:
            self.next_slot = max(self.next_slot, now + self.spacing)
        if not self.windowed:
            return None
        if slot is None:  # released without a plan
            slot = Slot(now, 0)
        else:
            self.pending.remove(slot)
            self.pending_tokens -= slot.tokens
            if not self.pending:
                self.pending_tokens = 0.0
        # the log holds the clock's reading, not the grid's: a late release stays in the window longer
        t = actual if actual is not None and actual > now else now
        log = self.log
        if log and log[-1].t > t:  # keep the log in time order (reserve() plans ahead)
            t = log[-1].t
        slot.t = t
        log.append(slot)
        self.log_tokens += slot.tokens
        return slot

    def reconcile(self, estimated: int, actual: int, now: float, slot: Slot | None = None) -> Slot | None:
        """Correct a token reservation with the usage the provider reported; returns the slot corrected.

        ``slot``: the released slot of that request; if unknown, the newest open one of that estimate.
        """
        if not self.tpm:
            return None
        self._prune(now)
        if slot is None:
            slot = next((s for s in reversed(self.log) if s.open and s.est == estimated), None)
        if slot is None or not slot.open:  # already corrected, or out of the window: nothing to do
            return None
        slot.open = False
        self.log_tokens = max(0.0, self.log_tokens + actual - slot.tokens)
        slot.tokens = actual
        return slot

    def pause(self, seconds: float, now: float) -> float:
        """Stop sending from this bucket for ``seconds`` (after a 429); returns the end of the pause."""
        self.paused_until = max(self.paused_until, now + max(0.0, seconds))
        return self.paused_until

    def claim(self, tokens: int) -> Claim:
        return Claim(self.key, self.allow, self.spacing, self.tpm, tokens)

    # convenience for callers holding one bucket (unit tests, notebooks)
    def reserve(self, tokens: int, now: float) -> float:
        """Reserve the next slot for ``tokens``; return how long to wait before sending."""
        at = self.earliest(tokens, now)
        slot = self.commit(tokens, at)
        if slot is not None:
            self.sent(at, slot)  # the caller sends at ``at``
        return at - now
