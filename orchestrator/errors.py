"""The error taxonomy, decided once for every provider and every input.

    OrchestratorError
    ├── InputError                 bad input from the user; the CLI exits 2 and names file, key or flag
    │   ├── ConfigError            orchestrator.toml (or another config-shaped file)
    │   ├── UsageError             a command-line flag or argument
    │   └── UnknownModelError      a model id that is not configured
    ├── StorageError               the results database or cache cannot be read or written
    │   └── RunLockedError         another live process holds the run
    └── ProviderError              a provider call failed; typed by what the caller should do
        ├── AuthError · PermissionDeniedError · UnknownProviderModelError · BadRequestError
        ├── ContextTooLongError · ContentFilteredError · QuotaExhaustedError · BudgetExceededError
        ├── RateLimitedError · OverloadedError · ProviderTimeoutError · ConnectionFailedError   (retryable)
        ├── MalformedResponseError (retryable) └── ResponseTooLargeError (terminal)
        ├── StreamInterruptedError a streamed answer failed after its first token: never retried,
        │                          never falls back; ``partial_text`` keeps what arrived
        └── AllModelsFailedError   every model of a fallback chain failed

Each provider error knows whether it is worth retrying, which provider and model id raised it, the HTTP
status, the provider's retry hint, whether the failed request may still have been billed, and (once the
client has handled it) how many requests were sent and which models were tried. Messages are scrubbed of
secrets and capped in length before anyone stores or prints them.
"""

from __future__ import annotations

import os
import re


class OrchestratorError(Exception):
    """Base of every error this package raises on purpose."""


class InputError(OrchestratorError):
    """Bad input from the user (a file, a key, a flag): the message names where; the CLI exits 2."""

    exit_code = 2


class ConfigError(InputError):
    """orchestrator.toml (or another input file) is invalid; the message names file and key."""


class UsageError(InputError):
    """A command-line flag or argument is invalid; the message names the flag."""


class StorageError(OrchestratorError):
    """The results database, the cache or ORCHESTRATOR_HOME cannot be read or written."""


class RunLockedError(StorageError):
    """Another live process is running this run id; the message names the holder (pid, host, since)."""


class UnknownModelError(InputError, KeyError):
    """A model id that is not configured; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


SECRET_PATTERNS = [
    re.compile(r"sk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"gh[pousr]_[A-Za-z0-9]{16,}"),
    re.compile(r"AIza[0-9A-Za-z_\-]{20,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}"),
]
_known_secrets: set[str] = set()


# A secret shorter than this is not registered: redacting it would garble ordinary text.
MIN_SECRET_LEN = 6
# Headers whose configured values are credentials, whatever their shape.
SECRET_HEADER_HINTS = ("auth", "key", "token", "secret", "cookie", "password", "session", "signature")


def register_secret(value: str | None) -> None:
    """Remember a secret value so that :func:`redact` removes it from any text."""
    if value and len(value) >= MIN_SECRET_LEN:
        _known_secrets.add(value)
        bearer = value.split(None, 1)
        if len(bearer) == 2 and bearer[0].lower() in ("bearer", "basic", "token"):
            register_secret(bearer[1])


def is_secret_header(name: str) -> bool:
    """Whether a configured header carries a credential (its value is then treated as a secret)."""
    lowered = name.lower()
    return any(hint in lowered for hint in SECRET_HEADER_HINTS)


def has_secrets() -> bool:
    """Whether any secret value is registered."""
    return bool(_known_secrets)


def contains_secret(text: str) -> bool:
    """Whether ``text`` holds a registered secret value (cheap; patterns are not checked)."""
    return bool(text) and any(secret in text for secret in _known_secrets)


def redact(text: str) -> str:
    """Remove every known secret and anything shaped like an API key from ``text``."""
    if not text:
        return text
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, "[REDACTED]")
    for pattern in SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[REDACTED]", text)
    return text


def redact_env_secrets() -> None:
    """Register the values of environment variables that look like keys or tokens."""
    for name, value in os.environ.items():
        if re.search(r"(API_KEY|_TOKEN|_SECRET)$", name):
            register_secret(value)


# Provider messages can be whole HTML pages or megabytes of junk: keep the first part only.
MAX_MESSAGE_CHARS = 1000


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"... [{len(text) - limit} more characters]"


class ProviderError(OrchestratorError):
    """An error from a provider call, typed by what the caller should do about it.

    ``maybe_billed``: the request reached the provider and no error status came back (a timeout while
    reading, a garbled or oversized 200), so the provider may bill it; the budget counts its reservation.
    ``attempts`` and ``fallback_path`` are filled in by the client: requests sent for the call over the
    whole chain, and the models tried in order.
    """

    kind = "provider_error"
    retryable = False
    maybe_billed = False
    attempts: int | None = None
    tries: int | None = None  # attempts made at the last model, including connects that never opened
    fallback_path: list[str] | None = None

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        status: int | None = None,
        retry_after_s: float | None = None,
        retryable: bool | None = None,
        body: str | None = None,
        maybe_billed: bool | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.status = status
        self.retry_after_s = retry_after_s
        if retryable is not None:
            self.retryable = retryable
        if maybe_billed is not None:
            self.maybe_billed = maybe_billed
        self.body = redact(body[:2000]) if body else None
        self.detail = _cap(redact(str(message)), MAX_MESSAGE_CHARS)
        super().__init__(self._render())

    def _render(self) -> str:
        where = ", ".join(
            part
            for part in (
                f"provider={self.provider}" if self.provider else "",
                f"model={self.model}" if self.model else "",
                f"status={self.status}" if self.status is not None else "",
                "retryable" if self.retryable else "terminal",
            )
            if part
        )
        return f"{self.kind}: {self.detail} ({where})"

    def __reduce__(self):  # keep keyword fields across pickling (multiprocessing, notebooks)
        return (
            _rebuild_error,
            (
                type(self),
                self.detail,
                self.provider,
                self.model,
                self.status,
                self.retry_after_s,
                self.retryable,
            ),
            dict(vars(self)),  # attempts, fallback_path, maybe_billed, errors: restored as they were
        )


def _rebuild_error(cls, detail, provider, model, status, retry_after_s, retryable):
    return cls(
        detail,
        provider=provider,
        model=model,
        status=status,
        retry_after_s=retry_after_s,
        retryable=retryable,
    )


class AuthError(ProviderError):
    kind = "auth"


class PermissionDeniedError(ProviderError):
    kind = "permission"


class UnknownProviderModelError(ProviderError):
    kind = "unknown_model"


class BadRequestError(ProviderError):
    kind = "bad_request"


class ContextTooLongError(ProviderError):
    kind = "context_too_long"


class ContentFilteredError(ProviderError):
    kind = "content_filtered"


class RateLimitedError(ProviderError):
    kind = "rate_limited"
    retryable = True


class QuotaExhaustedError(ProviderError):
    """A rate limit that will not clear soon (daily quota, spend limit, no credits): fall back."""

    kind = "quota_exhausted"


class OverloadedError(ProviderError):
    kind = "overloaded"
    retryable = True


class ProviderTimeoutError(ProviderError):
    kind = "timeout"
    retryable = True


class ConnectionFailedError(ProviderError):
    kind = "connection"
    retryable = True


class MalformedResponseError(ProviderError):
    kind = "malformed_response"
    retryable = True


class ResponseTooLargeError(ProviderError):
    """The response body (compressed or decoded) passed the model's ``max_response_bytes``: a broken or
    hostile server. Not retried (the next answer would be as large); the chain falls back."""

    kind = "response_too_large"


class BudgetExceededError(ProviderError):
    kind = "budget_exceeded"


class StreamInterruptedError(ProviderError):
    """A streamed answer failed after its first token arrived: ``partial_text`` is what arrived (made safe),
    ``cause`` the typed error that cut it (a dropped connection, a deadline, a mid-stream error event).

    Not retried and not passed to a fallback: the user has already seen part of this answer, and a second
    model's answer would not continue it. The attempt may be billed, so the budget keeps its worst case.
    """

    kind = "stream_interrupted"
    maybe_billed = True

    def __init__(
        self, message: str, *, partial_text: str = "", cause: ProviderError | None = None, **kw
    ) -> None:
        self.partial_text = partial_text
        self.cause = cause
        super().__init__(message, **kw)


class AllModelsFailedError(ProviderError):
    """Every model in a fallback chain failed; ``errors`` holds each one."""

    kind = "all_failed"

    def __init__(self, message: str, *, errors: list[ProviderError] | None = None, **kw) -> None:
        self.errors = errors or []
        super().__init__(message, **kw)


# Aliases with the names users of other gateways expect.
BudgetExceeded = BudgetExceededError

ERROR_KINDS: dict[str, type[ProviderError]] = {
    cls.kind: cls
    for cls in (
        AuthError,
        PermissionDeniedError,
        UnknownProviderModelError,
        BadRequestError,
        ContextTooLongError,
        ContentFilteredError,
        RateLimitedError,
        StreamInterruptedError,
        QuotaExhaustedError,
        OverloadedError,
        ProviderTimeoutError,
        ConnectionFailedError,
        MalformedResponseError,
        ResponseTooLargeError,
        BudgetExceededError,
        AllModelsFailedError,
    )
}
