"""Identical requests in flight at the same time are sent once; the others wait for that answer.

A grid often asks the same thing twice at once: two model configs over the same weights whose settings
agree for a task (``local/smollm2`` and ``local/smollm2-creative`` at temperature 0 on ``fix``), or a
repeated issue. Both miss the response cache, because neither has finished. The first request is sent;
the later identical ones, same cache key, wait for its answer and receive it as a cache hit would (free,
``from_cache``, noted ``coalesced``). If the first fails or is cancelled, each waiter sends its own request.
This only happens when the call reads the cache (``cache="use"``), and only within one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..types import Completion


class InFlight:
    """The answers being fetched right now, by cache key (and event loop)."""

    def __init__(self) -> None:
        self._calls: dict[tuple[int, str], asyncio.Future[Completion | None]] = {}

    async def wait(self, key: str) -> Completion | None:
        """The answer of the identical request in flight, once it arrives; None when there is none, or it
        failed (then the caller sends its own)."""
        future = self._calls.get((id(asyncio.get_running_loop()), key))
        if future is None:
            return None
        return await asyncio.shield(future)

    @contextlib.contextmanager
    def lead(self, key: str, enabled: bool = True) -> Iterator[asyncio.Future[Completion | None] | None]:
        """Register this call as the one sending ``key``: ``set_result(completion)`` on the yielded future
        hands its answer to the waiters; leaving without it tells them to send their own."""
        if not enabled:
            yield None
            return
        slot = (id(asyncio.get_running_loop()), key)
        future: asyncio.Future[Completion | None] = asyncio.get_running_loop().create_future()
        self._calls[slot] = future
        try:
            yield future
        finally:
            if not future.done():
                future.set_result(None)
            if self._calls.get(slot) is future:
                del self._calls[slot]
