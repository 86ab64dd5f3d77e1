"""Rate limits shared by every concurrent task in the process: requests/minute, tokens/minute, concurrency.

Scopes: one bucket per model config (its ``limits``) and, where a model declares ``account_limits``, one
per provider and key. Buckets live in one process-wide :class:`Limiter` so that every client, every task
and every event loop (a notebook's and the client's background loop) draws from the same budget.

- **RPM**: requests are spaced evenly, one every ``60/rpm`` seconds, rather than drawn from a bucket of a
  whole minute's quota: aiolimiter's leaky bucket lets a full minute's requests out at once, which exceeds
  the RPM over a sliding window. With spacing, any window of ``w`` seconds holds at most ``w*rpm/60 + 1``.
- **TPM**: a token bucket of one minute's capacity refilled continuously (how OpenAI and Anthropic enforce
  it). Each request reserves an estimate (prompt characters / 4 + max_tokens) before it is sent; the
  reservation is corrected with the usage the provider reported afterwards.
- **Concurrency**: a counting gate usable from any event loop and thread.
- **429**: pauses the bucket for the server's hint. Requests that had a slot inside the pause give it up
  and take a new one after it, so the pause does not end in a burst. A pause longer than the caller's
  ``max_pause`` is not waited for: :class:`BucketPaused` is raised so the call can fall back.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import RateLimitedError


class BucketPaused(RateLimitedError):
    """A bucket is paused (after a 429) for longer than the caller is willing to wait."""

    retryable = False


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


class Bucket:
    """One limit scope: a model config, or a provider and key. Mutated only under the limiter's lock."""

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        max_concurrency: int | None = None,
        *,
        now: float = 0.0,
    ) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.max_concurrency = max_concurrency
        self.gate = Gate(max_concurrency) if max_concurrency else None
        self.next_slot = 0.0  # earliest time the next request may go (RPM spacing)
        self.tokens_debt = 0.0  # tokens reserved and not yet refilled (TPM)
        self.debt_at = now
        self.paused_until = 0.0
        self.last_sent = float("-inf")  # when the last request was actually released

    def _refill(self, now: float) -> None:
        if self.tpm and now > self.debt_at:
            self.tokens_debt = max(0.0, self.tokens_debt - (now - self.debt_at) * self.tpm / 60.0)
        self.debt_at = max(self.debt_at, now)

    def earliest(self, tokens: int, now: float, honoured: float = 0.0) -> float:
        """The earliest time a request of ``tokens`` may be sent (no state is reserved)."""
        t = now
        if self.paused_until > honoured:
            t = max(t, self.paused_until)
        if self.rpm:
            t = max(t, self.next_slot)
        if self.tpm:
            self._refill(now)
            debt = self.tokens_debt
            if debt > 0 and debt + tokens > self.tpm:
                # wait until the refill makes room; a request larger than a minute's budget goes alone
                over = min(debt, debt + tokens - self.tpm)
                t = max(t, now + over / (self.tpm / 60.0))
        return t

    def commit(self, tokens: int, at: float) -> None:
        """Take the slot at time ``at`` and reserve ``tokens``."""
        if self.rpm:
            self.next_slot = max(self.next_slot, at + 60.0 / self.rpm)
        if self.tpm:
            self.tokens_debt += tokens

    def sent(self, now: float) -> None:
        """A request was released at ``now``."""
        self.last_sent = now
        if self.rpm:
            self.next_slot = max(self.next_slot, now + 60.0 / self.rpm)

    def refund(self, tokens: float, now: float) -> None:
        if self.tpm:
            self._refill(now)
            self.tokens_debt = max(0.0, self.tokens_debt - tokens)

    def reconcile(self, estimated: int, actual: int, now: float) -> None:
        """Correct a token reservation with the usage the provider reported."""
        if self.tpm:
            self._refill(now)
            self.tokens_debt = max(0.0, self.tokens_debt + actual - estimated)

    def pause(self, seconds: float, now: float) -> float:
        """Stop sending from this bucket for ``seconds`` (after a 429); returns the end of the pause."""
        self.paused_until = max(self.paused_until, now + max(0.0, seconds))
        return self.paused_until

    # convenience for callers holding one bucket (unit tests, notebooks)
    def reserve(self, tokens: int, now: float) -> float:
        """Reserve the next slot for ``tokens``; return how long to wait before sending."""
        at = self.earliest(tokens, now)
        self.commit(tokens, at)
        return at - now


class Limiter:
    """Every bucket of the process, by scope key. Thread-safe and usable from any event loop."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self._buckets: dict[tuple[Any, ...], Bucket] = {}
        self._lock = threading.Lock()

    def bucket(
        self, key: str, rpm: float | None = None, tpm: float | None = None, max_concurrency: int | None = None
    ) -> Bucket:
        """The bucket for scope ``key`` with these limits (a scope whose limits change gets a new bucket)."""
        full = (key, rpm, tpm, max_concurrency)
        with self._lock:
            b = self._buckets.get(full)
            if b is None:
                b = self._buckets[full] = Bucket(rpm, tpm, max_concurrency, now=self.clock())
            return b

    async def acquire(
        self, buckets: list[Bucket], tokens: int, *, max_pause: float | None = None, honoured: float = 0.0
    ) -> None:
        """Wait for a slot in every bucket (the caller takes the buckets' concurrency gates first).

        ``honoured``: the end of a pause the caller has already slept through (its own 429's hint).
        Raises :class:`BucketPaused` when a pause lasts longer than ``max_pause``.
        """
        while True:
            with self._lock:
                now = self.clock()
                paused = max((b.paused_until for b in buckets if b.paused_until > honoured), default=0.0)
                if max_pause is not None and paused - now > max_pause:
                    raise BucketPaused(
                        f"rate limited: paused for another {paused - now:.1f} s (above the cap)",
                        retry_after_s=paused - now,
                    )
                at = max((b.earliest(tokens, now, honoured) for b in buckets), default=now)
                for b in buckets:
                    b.commit(tokens, at)
            if at > now:
                await self.sleep(at - now)
            spacing = min((60.0 / b.rpm for b in buckets if b.rpm), default=0.0)
            late_ok = min(0.001, spacing / 10)  # wake-up jitter tolerated without shifting the grid
            due = at
            while True:
                with self._lock:
                    now = self.clock()
                    if any(b.paused_until > max(now, honoured) for b in buckets):
                        # a 429 paused a bucket while we waited: give the slot up, take one after the pause
                        for b in buckets:
                            b.refund(tokens, now)
                        break
                    # Slots are planned, and releases are checked too: after the loop stalled (a blocking
                    # call, a GC pause) two planned slots may wake together. Keep them spaced.
                    due = max([due, *(b.last_sent + 60.0 / b.rpm for b in buckets if b.rpm)])
                    if now >= due - 1e-9:
                        stamp = due if now - due <= late_ok else now
                        for b in buckets:
                            b.sent(stamp)
                        return
                await self.sleep(due - now)

    def pause(self, bucket: Bucket, seconds: float) -> float:
        with self._lock:
            return bucket.pause(seconds, self.clock())

    def reconcile(self, buckets: list[Bucket], estimated: int, actual: int) -> None:
        with self._lock:
            now = self.clock()
            for b in buckets:
                b.reconcile(estimated, actual, now)


#: The process-wide limiter every LLMClient uses unless given another.
LIMITER = Limiter()
