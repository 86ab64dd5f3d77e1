"""A private event loop in a background thread, so that sync calls work anywhere, Jupyter included.

Jupyter already runs a loop in the main thread, where ``asyncio.run`` refuses to start another: sync
wrappers submit their coroutine to this loop instead and wait for the result.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundLoop:
    """One event loop, started on first use in a daemon thread."""

    def __init__(self, name: str = "orchestrator-loop") -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result; Ctrl-C cancels it."""
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure())
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` on the loop and return at once; ``future.cancel()`` cancels it there."""
        return asyncio.run_coroutine_threadsafe(coro, self._ensure())

    def close(self, before: Callable[[], Awaitable[Any]] | None = None) -> None:
        """Stop the loop (after awaiting ``before()`` on it, e.g. closing its HTTP clients)."""
        loop = self._loop
        if loop is None:
            return
        if before is not None:
            asyncio.run_coroutine_threadsafe(before(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        if self._thread:
            self._thread.join(timeout=5)
        if not loop.is_running():
            loop.close()
        self._loop = None

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self.name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop
