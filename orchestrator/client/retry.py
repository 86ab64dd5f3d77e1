"""What happens when an attempt fails: which errors are retried or fall back, the backoff, the breaker.

The one place where foreign exceptions (httpx's, the wire's, the OS's) become typed provider errors that
escaped an adapter is :func:`transport_error`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from .. import errors as E
from .limits import BucketPaused

if TYPE_CHECKING:
    from ..config import ModelSpec

log = logging.getLogger("orchestrator")

# Errors after which the next model in the chain is tried: outages and exhausted retries, a context
# window too small, a content filter, a model this key cannot use. A bad request is the caller's to fix
# and a budget stop is deliberate: neither falls back.
FALLBACK_ON: tuple[type[E.ProviderError], ...] = (
    E.OverloadedError,
    E.ProviderTimeoutError,
    E.ConnectionFailedError,
    E.MalformedResponseError,
    E.ResponseTooLargeError,
    E.RateLimitedError,
    E.QuotaExhaustedError,
    E.ContextTooLongError,
    E.ContentFilteredError,
    E.AuthError,
    E.PermissionDeniedError,
    E.UnknownProviderModelError,
)
# Errors that say the model (not the request) is failing: they count towards its circuit breaker
# (trips_breaker says which failed calls do).
BREAKER_ON: tuple[type[E.ProviderError], ...] = (
    E.OverloadedError,
    E.ProviderTimeoutError,
    E.ConnectionFailedError,
    E.MalformedResponseError,
    E.ResponseTooLargeError,
    E.RateLimitedError,
    E.QuotaExhaustedError,
    E.AuthError,
    E.PermissionDeniedError,
    E.UnknownProviderModelError,
)


def trips_breaker(exc: E.ProviderError) -> bool:
    """Whether a failed call counts towards its model's circuit breaker: a :data:`BREAKER_ON` error, a
    stream cut after its first token by what cut it (a dropped connection, a mid-stream error event),
    never this client's own rate-limit pause (the model did not fail)."""
    cause = exc.cause if isinstance(exc, E.StreamInterruptedError) and exc.cause else exc
    return isinstance(cause, BREAKER_ON) and not isinstance(cause, BucketPaused)


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter; each wait from the latest error; capped per wait and in total.

    ``max_attempts`` counts attempts at one model (the first one included; an attempt whose connection
    never opened counts here, though it is not a request sent, see ``Completion.attempts``). A server hint
    (Retry-After, retry-after-ms, Gemini retryDelay) replaces the computed backoff; a hint above
    ``max_wait_s``, or one that would take the total above ``max_total_wait_s``, is not slept: the call
    moves on to the fallback. Own loop rather than tenacity: the wait depends on the latest error's hint
    and on a cap that hands over to the fallback chain.
    """

    max_attempts: int = 4
    base_delay_s: float = 0.5
    max_wait_s: float = 30.0
    max_total_wait_s: float = 90.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max_wait_s, base_delay_s * 2**(attempt-1))]."""
        return rng.uniform(0, min(self.max_wait_s, self.base_delay_s * 2 ** (attempt - 1)))


@dataclass
class Breaker:
    """Per model: after ``threshold`` consecutive failed calls, skip the model for ``cooldown_s``.

    After the cooldown one call is let through (half open): a success closes the circuit, a failure
    opens it again at once. The last model of a chain is always tried (there is nothing to fall back to).
    """

    threshold: int = 3
    cooldown_s: float = 30.0

    def __post_init__(self) -> None:
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def is_open(self, model: str) -> bool:
        return self._open_until.get(model, 0.0) > time.monotonic()

    def failure(self, model: str) -> None:
        with self._lock:
            n = self._failures.get(model, 0) + 1
            self._failures[model] = n
            opened = n >= self.threshold and not self.is_open(model)
            if n >= self.threshold:
                self._open_until[model] = time.monotonic() + self.cooldown_s
        if opened:
            log.warning("model %s failed %d times in a row: skipped for %.0f s", model, n, self.cooldown_s)

    def success(self, model: str) -> None:
        if model in self._failures or model in self._open_until:
            with self._lock:
                self._failures.pop(model, None)
                self._open_until.pop(model, None)


def reached_server(error: E.ProviderError) -> bool:
    """Whether a failed attempt's request reached a server: it has an HTTP status, or it failed after
    the connection was made (then the provider may bill it). A refused or timed-out connect did not."""
    return error.status is not None or error.maybe_billed


_TRANSPORT_ERRORS: tuple[type[BaseException], ...] | None = None
_TIMEOUT_ERRORS: tuple[type[BaseException], ...] = (httpx.TimeoutException, TimeoutError)


def transport_errors() -> tuple[type[BaseException], ...]:
    """Network-level exceptions an adapter may let through (a transport's own types included)."""
    global _TRANSPORT_ERRORS
    if _TRANSPORT_ERRORS is None:
        from ..providers.wire import WireError

        _TRANSPORT_ERRORS = (WireError, httpx.HTTPError, httpx.StreamError, OSError, EOFError)
    return _TRANSPORT_ERRORS


def transport_error(exc: BaseException, spec: ModelSpec) -> E.ProviderError:
    """A transport's own exception as the typed error; only a refused connect proves nothing was sent."""
    from ..providers.wire import ConnectTimedOut, ReadTimedOut, WireError

    cls: type[E.ProviderError] = E.ConnectionFailedError
    if isinstance(exc, (*_TIMEOUT_ERRORS, ConnectTimedOut, ReadTimedOut)):
        cls = E.ProviderTimeoutError
    never_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, ConnectionRefusedError)) or (
        isinstance(exc, WireError) and not exc.sent
    )
    return cls(
        f"{type(exc).__name__}: {exc}", provider=spec.provider, model=spec.id, maybe_billed=not never_sent
    )


def annotate(exc: E.ProviderError, tried: list[str], sent: int, charged: float) -> E.ProviderError:
    """Declare on a call's error what the call did: the models tried, the requests sent, what was charged."""
    exc.fallback_path = list(tried)
    exc.attempts = sent
    exc.charged_usd = charged  # type: ignore[attr-defined]
    return exc


def all_failed(
    failures: list[E.ProviderError], tried: list[str], model: str, sent: int, charged: float
) -> E.ProviderError:
    """The error of a chain whose every model failed, holding each model's own error."""
    summary = "; ".join(f"{f.model}: {f.kind}" for f in failures)
    err = E.AllModelsFailedError(f"every model in the chain failed ({summary})", errors=failures, model=model)
    return annotate(err, tried, sent, charged)


def failure_reasons(failures: list[E.ProviderError]) -> list[str]:
    """One line per model that did not answer: ``model: kind: detail`` (the detail is already redacted)."""
    return [f"{f.model or '?'}: {f.kind}: {f.detail}" for f in failures]
