"""What every adapter shares: the request it gets, the response it gives, HTTP plumbing, error mapping.

An HTTP adapter is pure: ``build_request`` turns a :class:`ChatRequest` into an :class:`HttpCall`,
``parse_response`` turns the JSON body into a :class:`ProviderResponse`, ``map_error`` turns an
error response into a typed :class:`~orchestrator.errors.ProviderError`. ``HttpAdapter.send`` is the
only place that touches the network; retries, limits, caching and cost live in the client.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, ClassVar

from .. import errors as E
from ..types import Message, Usage

if TYPE_CHECKING:
    import httpx

    from ..config import ModelSpec
    from ..http import HttpPool


@dataclass
class ChatRequest:
    """One call as the client hands it to an adapter."""

    spec: ModelSpec
    messages: list[Message]
    params: dict[str, Any]
    schema: dict[str, Any] | None = None
    schema_name: str = "answer"
    mode: str | None = None

    @property
    def system(self) -> str:
        return "\n\n".join(m.content for m in self.messages if m.role == "system")

    @property
    def chat(self) -> list[Message]:
        return [m for m in self.messages if m.role != "system"]


@dataclass
class HttpCall:
    url: str
    headers: dict[str, str]
    json: dict[str, Any]


@dataclass
class ProviderResponse:
    """What an adapter returns; the client turns it into a Completion."""

    text: str
    usage: Usage = field(default_factory=Usage)
    served_model: str | None = None
    finish_reason: str | None = None
    request_id: str | None = None
    provider_cost_usd: float | None = None
    raw: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Adapter:
    """Base of every provider adapter."""

    name: ClassVar[str] = ""
    needs_key: ClassVar[bool] = False
    default_base_url: ClassVar[str | None] = None

    def supports_schema(self, spec: ModelSpec) -> bool:
        return False

    async def send(self, req: ChatRequest, pool: HttpPool) -> ProviderResponse:  # pragma: no cover
        raise NotImplementedError

    def err(self, cls: type[E.ProviderError], message: str, req: ChatRequest, **kw: Any) -> E.ProviderError:
        return cls(message, provider=self.name, model=req.spec.id, **kw)


def api_key(spec: ModelSpec, provider: str, required: bool = True) -> str | None:
    """The key from the environment variable the config names; never logged, registered for redaction."""
    if not spec.api_key_env:
        if required:
            raise E.AuthError(
                "no api_key_env configured for this model in the config", provider=provider, model=spec.id
            )
        return None
    value = os.environ.get(spec.api_key_env)
    if not value:
        if required:
            raise E.AuthError(
                f"environment variable {spec.api_key_env} is not set", provider=provider, model=spec.id
            )
        return None
    E.register_secret(value)
    return value


def retry_after_seconds(headers: Any, now: float | None = None) -> float | None:
    """The server's retry hint: ``retry-after-ms``, then ``retry-after`` in seconds or as an HTTP date."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def should_retry_header(headers: Any) -> bool | None:
    """``x-should-retry: true|false`` overrides the status-based decision when present."""
    value = (headers.get("x-should-retry") if headers is not None else None) or ""
    if value.lower() == "true":
        return True
    if value.lower() == "false":
        return False
    return None


_CONTEXT_HINTS = (
    "context length",
    "context_length",
    "maximum context",
    "too many tokens",
    "prompt is too long",
    "context window",
    "exceeds the context",
)
_QUOTA_HINTS = ("insufficient_quota", "exceeded your current quota", "billing", "credit balance")


def error_for_status(
    status: int, message: str, *, provider: str, model: str, headers: Any = None, body: str | None = None
) -> E.ProviderError:
    """The typed error for an HTTP status, shared by adapters whose APIs follow common conventions."""
    hint = retry_after_seconds(headers)
    lowered = message.lower()
    cls: type[E.ProviderError]
    if status == 400 and any(h in lowered for h in _CONTEXT_HINTS):
        cls = E.ContextTooLongError
    elif status in (400, 422):
        cls = E.BadRequestError
    elif status == 402 or (status == 429 and any(h in lowered for h in _QUOTA_HINTS)):
        cls = E.QuotaExhaustedError  # no credits / quota used up: retrying will not help, fall back
    elif status == 401:
        cls = E.AuthError
    elif status == 403:
        cls = E.PermissionDeniedError
    elif status == 404:
        cls = E.UnknownProviderModelError
    elif status == 413:
        cls = E.ContextTooLongError
    elif status == 429:
        cls = E.RateLimitedError
    elif status in (408, 504):
        cls = E.ProviderTimeoutError
    elif status == 409 or status >= 500:
        cls = E.OverloadedError
    else:
        cls = E.BadRequestError
    kw: dict[str, Any] = {
        "provider": provider,
        "model": model,
        "status": status,
        "retry_after_s": hint,
        "body": body,
    }
    override = should_retry_header(headers)
    if override is not None:
        kw["retryable"] = override
    return cls(message or f"HTTP {status}", **kw)


class HttpAdapter(Adapter):
    """An adapter that speaks JSON over HTTP."""

    def build_request(self, req: ChatRequest) -> HttpCall:  # pragma: no cover
        raise NotImplementedError

    def parse_response(self, req: ChatRequest, body: dict[str, Any], headers: Any) -> ProviderResponse:
        raise NotImplementedError  # pragma: no cover

    def error_message(self, body: Any) -> str:
        """The human message inside an error body (OpenAI-style ``{"error": {"message"}}`` by default)."""
        if body is None:
            return ""
        if isinstance(body, dict):
            err = body.get("error", body)
            if isinstance(err, dict):
                return " ".join(
                    str(x) for x in (err.get("code") or err.get("type"), err.get("message")) if x
                ) or str(err)
            return str(err)
        return str(body)[:500]

    def map_error(self, req: ChatRequest, status: int, headers: Any, body: Any, text: str) -> E.ProviderError:
        return error_for_status(
            status,
            self.error_message(body),
            provider=self.name,
            model=req.spec.id,
            headers=headers,
            body=text,
        )

    def base_url(self, spec: ModelSpec) -> str:
        url = spec.base_url or self.default_base_url
        if not url:
            raise E.BadRequestError(
                "no base_url configured for this model", provider=self.name, model=spec.id
            )
        return url.rstrip("/")

    def transport_error(self, exc: Exception, req: ChatRequest) -> E.ProviderError:
        """Type a transport failure by its root cause.

        httpx-aiohttp maps every aiohttp connection error (refused, reset, server disconnected) to
        ``httpx.ConnectTimeout``; the aiohttp exception it chains tells what really happened.
        """
        import httpx

        cause = exc.__cause__
        timed_out = isinstance(cause, (TimeoutError, asyncio.TimeoutError)) or type(cause).__name__ in (
            "ServerTimeoutError",
            "SocketTimeoutError",
            "ConnectionTimeoutError",
        )
        if cause is None:
            timed_out = isinstance(exc, httpx.TimeoutException)
        if timed_out:
            return self.err(E.ProviderTimeoutError, f"timed out ({type(cause or exc).__name__})", req)
        detail = f"{type(cause or exc).__name__}: {cause or exc}"
        return self.err(E.ConnectionFailedError, f"connection failed: {detail}", req)

    async def send(self, req: ChatRequest, pool: HttpPool) -> ProviderResponse:
        import httpx

        call = self.build_request(req)
        timeout = httpx.Timeout(req.spec.timeout, connect=req.spec.connect_timeout)
        try:
            response = await pool.post(
                call.url,
                base_url=self.base_url(req.spec),
                headers=call.headers,
                json_body=call.json,
                timeout=timeout,
            )
            content = await response.aread()
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise self.transport_error(exc, req) from None
        text = content.decode("utf-8", errors="replace")
        try:
            body: Any = json.loads(text) if text.strip() else None
        except json.JSONDecodeError:
            body = None
            if response.status_code < 400:
                raise self.err(
                    E.MalformedResponseError,
                    "response body is not valid JSON (truncated or garbled)",
                    req,
                    status=response.status_code,
                    body=text,
                ) from None
        if response.status_code >= 400:
            raise self.map_error(req, response.status_code, response.headers, body, text)
        if not isinstance(body, dict):
            raise self.err(
                E.MalformedResponseError,
                "response body is not a JSON object",
                req,
                status=response.status_code,
                body=text,
            )
        try:
            parsed = self.parse_response(req, body, response.headers)
        except E.ProviderError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise self.err(
                E.MalformedResponseError,
                f"unexpected response shape: {type(exc).__name__}: {exc}",
                req,
                status=response.status_code,
                body=text,
            ) from None
        parsed.raw = body
        return parsed


def as_int(value: Any) -> int:
    """Token counts arrive as ints, null or missing; treat the last two as 0."""
    return int(value) if isinstance(value, (int, float)) else 0


def request_header_id(headers: Any) -> str | None:
    for name in ("x-request-id", "request-id", "x-amzn-requestid"):
        value = headers.get(name) if headers is not None else None
        if value:
            return value
    return None


def httpx_headers(headers: httpx.Headers) -> dict[str, str]:  # pragma: no cover - tiny helper
    return dict(headers.items())
