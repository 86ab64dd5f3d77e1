"""The error taxonomy, decided once for every provider.

Each error knows whether it is worth retrying, which provider and model id raised it, the HTTP status,
and the provider's retry hint. Messages are scrubbed of secrets before they are stored.
"""

from __future__ import annotations

import os
import re


class OrchestratorError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(OrchestratorError):
    """orchestrator.toml (or another input file) is invalid; the message names file and key."""


class UnknownModelError(OrchestratorError, KeyError):
    """A model id that is not configured; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


_SECRET_PATTERNS = [
    re.compile(r"sk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"gh[pousr]_[A-Za-z0-9]{16,}"),
    re.compile(r"AIza[0-9A-Za-z_\-]{20,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}"),
]
_known_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value so that :func:`redact` removes it from any text."""
    if value and len(value) >= 6:
        _known_secrets.add(value)


def redact(text: str) -> str:
    """Remove every known secret and anything shaped like an API key from ``text``."""
    if not text:
        return text
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, "[REDACTED]")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[REDACTED]", text)
    return text


def redact_env_secrets() -> None:
    """Register the values of environment variables that look like keys or tokens."""
    for name, value in os.environ.items():
        if re.search(r"(API_KEY|_TOKEN|_SECRET)$", name):
            register_secret(value)


class ProviderError(OrchestratorError):
    """An error from a provider call, typed by what the caller should do about it."""

    kind = "provider_error"
    retryable = False

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
    ) -> None:
        self.provider = provider
        self.model = model
        self.status = status
        self.retry_after_s = retry_after_s
        if retryable is not None:
            self.retryable = retryable
        self.body = redact(body[:2000]) if body else None
        self.detail = redact(message)
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


class BudgetExceededError(ProviderError):
    kind = "budget_exceeded"


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
        QuotaExhaustedError,
        OverloadedError,
        ProviderTimeoutError,
        ConnectionFailedError,
        MalformedResponseError,
        BudgetExceededError,
        AllModelsFailedError,
    )
}
