"""Streamed answers as the client hands them on: safe pieces, the first token's time, the partial text.

``LLMClient.stream`` (and ``stream_sync``) run an ordinary ``complete`` call whose attempts stream; the
pieces reach the caller through a queue, and the last item is the :class:`~orchestrator.types.Completion`.
Everything else (routing, the cache, the budget, rate limits, retries before the first token, fallbacks)
is the path every call takes.

A piece is made safe before anyone sees it, like a whole answer: lone surrogates are repaired, and a
configured key or a key-shaped string the model echoes is redacted even when it arrives split over several
pieces: text is handed on up to the last place no secret can straddle (never inside a run of letters,
digits, ``_`` and ``-``, never between ``Bearer`` and its token, never after the start of a configured key),
and the rest waits for the next piece. Prose and CJK text flow word by word or character by character.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import re
import string
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

from .. import errors as E
from ..safe_text import repair_text

if TYPE_CHECKING:
    from ..types import Completion
    from .llm_client import LLMClient

DeltaCallback = Callable[[str], None]
_BEARER_TAIL = re.compile(r"(?i)bearer\s*$")
# what key-shaped secrets are made of (see errors.SECRET_PATTERNS): a cut never falls inside a run of them
_KEY_CHARS = frozenset(string.ascii_letters + string.digits + "_-")


class SafeDeltas:
    """Hands on pieces of text with secrets redacted and surrogates repaired, holding back what could
    still turn out to be part of a secret."""

    def __init__(self, forward: DeltaCallback | None) -> None:
        self.forward = forward
        self.pending = ""

    def feed(self, piece: str) -> None:
        self.pending += piece
        cut = self._cut()
        if cut > 0:
            out, self.pending = self.pending[:cut], self.pending[cut:]
            self._emit(out)

    def flush(self) -> None:
        out, self.pending = self.pending, ""
        if out:
            self._emit(out)

    def _cut(self) -> int:
        """Where the pending text can be cut without splitting anything a secret could be."""
        text = self.pending
        cut = len(text)
        while cut > 0 and text[cut - 1] in _KEY_CHARS:  # a run of key characters may be a key still arriving
            cut -= 1
        bearer = _BEARER_TAIL.search(text, 0, cut)
        if bearer:  # "Bearer <key>": the word waits for what follows it
            cut = bearer.start()
        for secret in E._known_secrets:  # a configured key of any shape may have begun to arrive
            for k in range(min(len(secret) - 1, cut), 0, -1):
                if text.startswith(secret[:k], cut - k):
                    cut -= k
                    break
        return cut

    def _emit(self, text: str) -> None:
        text, _ = repair_text(text)
        text = E.redact(text)
        if self.forward is not None and text:
            self.forward(text)


class StreamProbe:
    """One streamed attempt: when its first piece arrived, the text so far, and the safe hand-on."""

    def __init__(self, forward: DeltaCallback | None) -> None:
        self.first_at: float | None = None
        self.parts: list[str] = []
        # nobody reads the pieces of a grid's streamed cell: only its first token's time and its text count
        self.safe = SafeDeltas(forward) if forward is not None else None

    @property
    def started(self) -> bool:
        return self.first_at is not None

    def on_delta(self, piece: str) -> None:
        if not piece:
            return
        if self.first_at is None:
            self.first_at = time.perf_counter()
        self.parts.append(piece)
        if self.safe is not None:
            self.safe.feed(piece)

    def flush(self) -> None:
        if self.safe is not None:
            self.safe.flush()

    def partial_text(self) -> str:
        text, _ = repair_text("".join(self.parts))
        return E.redact(text)

    def interrupted(self, error: E.ProviderError) -> E.StreamInterruptedError:
        """The typed error for a failure after the first token, keeping the text that arrived."""
        self.flush()
        text = self.partial_text()
        return E.StreamInterruptedError(
            f"the stream broke after {len(text):,} characters ({error.kind}: {error.detail}); the partial "
            "answer is kept in partial_text; not retried, since part of it was already handed on",
            partial_text=text,
            cause=error,
            provider=error.provider,
            model=error.model,
            status=error.status,
        )


_END = object()


async def stream_answer(client: LLMClient, *args: Any, **kwargs: Any) -> AsyncIterator[str | Completion]:
    """The pieces of one answer as they arrive, then its Completion (see :meth:`LLMClient.stream`)."""
    pieces: asyncio.Queue[Any] = asyncio.Queue()
    call = asyncio.ensure_future(client.complete(*args, on_delta=pieces.put_nowait, **kwargs))
    call.add_done_callback(lambda _: pieces.put_nowait(_END))
    try:
        while True:
            item = await pieces.get()
            if item is _END:
                break
            yield item
        while not pieces.empty():  # pieces handed on after the call ended (none expected)
            item = pieces.get_nowait()
            if item is not _END:
                yield item
        yield call.result()
    finally:
        if not call.done():
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, E.ProviderError):
                await call


def stream_answer_sync(client: LLMClient, *args: Any, **kwargs: Any) -> Iterator[str | Completion]:
    """:func:`stream_answer` for plain code and notebook cells: the call runs on the client's own loop,
    the pieces come through a thread-safe queue; closing the iterator cancels the call."""
    out: queue.Queue[Any] = queue.Queue()
    failed: list[BaseException] = []

    async def pump() -> None:
        try:
            async for item in stream_answer(client, *args, **kwargs):
                out.put(item)
        except BaseException as exc:  # handed to the consumer's thread
            failed.append(exc)
        finally:
            out.put(_END)

    future = client.submit(pump())
    done = threading.Event()
    try:
        while True:
            item = out.get()
            if item is _END:
                break
            yield item
        done.set()
        if failed:
            raise failed[0]
    finally:
        if not done.is_set():
            future.cancel()
