"""What every adapter shares: the request it gets, the response it gives, HTTP plumbing, error mapping.

An HTTP adapter is pure: ``build_request`` turns a :class:`ChatRequest` into an :class:`HttpCall`,
``parse_response`` turns the JSON body into a :class:`ProviderResponse`, ``map_error`` turns an
error response into a typed :class:`~orchestrator.errors.ProviderError`. ``HttpAdapter.send`` is the
only place that touches the network; retries, limits, caching and cost live in the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, ClassVar

from .. import errors as E
from .. import fast_json
from ..safe_text import repair_value
from ..types import Issue, Message, Usage

if TYPE_CHECKING:
    import httpx

    from ..config import Config, ModelSpec
    from .http import HttpPool


@dataclass
class ChatRequest:
    """One call as the client hands it to an adapter."""

    spec: ModelSpec
    messages: list[Message]
    params: dict[str, Any]
    schema: dict[str, Any] | None = None
    schema_name: str = "answer"
    mode: str | None = None
    issue: Issue | None = None  # the issue the messages were built from, when there is one
    config: Config | None = None  # for an adapter that keeps files (the trained provider's fits, in its home)

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
    usage: Usage | None = field(default_factory=Usage)  # None: the provider reported no usage at all
    served_model: str | None = None
    finish_reason: str | None = None
    request_id: str | None = None
    provider_cost_usd: float | None = None
    raw: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def renamed_params(params: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """The sampling parameters that are set, under the API's names (``names`` maps ours to theirs)."""
    return {theirs: params[ours] for ours, theirs in names.items() if params.get(ours) is not None}


class Adapter:
    """Base of every provider adapter."""

    name: ClassVar[str] = ""
    default_base_url: ClassVar[str | None] = None
    # Whether the API takes an output JSON schema; a model's ``structured_output = false`` option turns it off.
    structured_output: ClassVar[bool] = False
    # Whether answers can be streamed (``send_stream``); a model's ``stream = false`` option turns it off.
    streams: ClassVar[bool] = False

    def can_stream(self, spec: ModelSpec) -> bool:
        return self.streams and bool(spec.options.get("stream", True))

    def supports_schema(self, spec: ModelSpec) -> bool:
        return self.structured_output and bool(spec.options.get("structured_output", True))

    async def send(self, req: ChatRequest, pool: HttpPool) -> ProviderResponse:  # pragma: no cover
        raise NotImplementedError

    async def send_stream(
        self, req: ChatRequest, pool: HttpPool, on_delta: Callable[[str], None]
    ) -> ProviderResponse:  # pragma: no cover
        """Send ``req`` and hand each piece of the answer's text to ``on_delta`` as it arrives."""
        raise NotImplementedError

    def cannot_answer(self, spec: ModelSpec, mode: Any) -> str | None:
        """Why ``spec`` cannot answer ``mode`` at all (a grid skips those cells); None: it can."""
        return None

    def prepare(
        self,
        config: Config,
        specs: list[ModelSpec],
        modes: list[Any],
        issues: list[Issue] | Any,
        training: Any,
        *,
        progress: bool = True,
    ) -> None:
        """Get this provider's ``specs`` ready to answer ``modes`` over ``issues`` before a run's first call;
        ``training`` is what a model that learns may fit on (issues, or a function returning them). Most
        providers have nothing to do; the trained baselines fit here."""

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
    """An adapter that speaks JSON over HTTP; one that streams also sets ``streams``, ``stream_format``,
    ``build_stream_request`` and ``stream_parser`` (see :mod:`orchestrator.providers.streaming`)."""

    stream_format: ClassVar[str] = "sse"  # or "ndjson"

    def build_request(self, req: ChatRequest) -> HttpCall:  # pragma: no cover
        raise NotImplementedError

    def build_stream_request(self, req: ChatRequest) -> HttpCall:
        """The request with ``stream: true`` in its body (most APIs); a provider whose API asks otherwise
        (OpenAI's ``stream_options``, Gemini's URL) overrides it."""
        call = self.build_request(req)
        call.json["stream"] = True
        call.headers["accept"] = "text/event-stream"
        return call

    def stream_parser(self, req: ChatRequest) -> Any:  # pragma: no cover
        raise NotImplementedError

    async def send_stream(
        self, req: ChatRequest, pool: HttpPool, on_delta: Callable[[str], None]
    ) -> ProviderResponse:
        from .streaming import send_stream

        return await send_stream(self, req, pool, on_delta)

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
            self.error_message(body) or body_snippet(text),
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

        The default pool raises :class:`~orchestrator.providers.wire.WireError`, which says whether the
        request was sent. Through an injected httpx transport, httpx-aiohttp maps every aiohttp connection
        error (refused, reset, server disconnected) to ``httpx.ConnectTimeout`` and chains the aiohttp
        exception, which tells what really happened. Only a failure to connect proves the request never
        reached the server; anything later may be billed.
        """
        import httpx

        from .wire import ConnectTimedOut, InvalidRequest, ReadTimedOut, WireError

        if isinstance(exc, InvalidRequest):
            return self.err(E.BadRequestError, f"the request cannot be sent: {exc}", req, maybe_billed=False)
        root: BaseException = exc
        if isinstance(exc, httpx.HTTPError) and exc.__cause__ is not None:
            root = exc.__cause__
        name = type(root).__name__
        timed_out = isinstance(root, (TimeoutError, httpx.TimeoutException, ConnectTimedOut, ReadTimedOut))
        never_sent = isinstance(root, httpx.ConnectError) or (isinstance(root, WireError) and not root.sent)
        billed = not never_sent
        if timed_out:
            why = f": {root}" if isinstance(root, WireError) else ""
            return self.err(E.ProviderTimeoutError, f"timed out ({name}){why}", req, maybe_billed=billed)
        detail = f"{name}: {root}"
        return self.err(E.ConnectionFailedError, f"connection failed: {detail}", req, maybe_billed=billed)

    async def send(self, req: ChatRequest, pool: HttpPool) -> ProviderResponse:
        """Send one request and parse its answer; the only place an adapter touches the network.

        The whole attempt (connect, send, every read) must finish within ``spec.attempt_deadline``:
        a server that drips one byte a second never trips the per-read timeout, but trips this. The body
        is read within ``spec.max_response_bytes`` (compressed and decoded, see :mod:`orchestrator.providers.http`).
        """
        from .http import RequestTimeout

        spec = req.spec
        call = self.build_request(req)
        timeout = RequestTimeout(read=spec.timeout, connect=spec.connect_timeout)
        deadline = asyncio.timeout(spec.attempt_deadline)
        with self.reading(req, deadline, "response"):
            async with deadline:
                response = await pool.post(
                    call.url,
                    base_url=self.base_url(spec),
                    headers=call.headers,
                    json_body=call.json,
                    timeout=timeout,
                    max_bytes=spec.max_response_bytes,
                )
        return self.read_response(req, response.status_code, response.headers, response.content)

    @contextlib.contextmanager
    def reading(self, req: ChatRequest, deadline: asyncio.Timeout, what: str) -> Iterator[None]:
        """The one place where what goes wrong while an answer is read (a whole ``response`` or a
        ``stream``) becomes a typed error: the attempt's deadline, the size cap, an encoding we did not
        ask for, and the transport's own exceptions. Each may have been billed."""
        import httpx

        from .http import BadEncoding, BodyTooLarge
        from .wire import WireError

        spec = req.spec
        try:
            yield
        except TimeoutError:
            if not deadline.expired():
                raise
            raise self.err(
                E.ProviderTimeoutError,
                f"no complete {what} within the {spec.attempt_deadline:g} s deadline for one attempt "
                "(the model's `deadline`, by default connect_timeout + timeout)",
                req,
                maybe_billed=True,
            ) from None
        except BodyTooLarge as exc:
            raise self.err(
                E.ResponseTooLargeError,
                f"{exc}: stopped reading the {what} (the model's max_response_bytes is "
                f"{spec.max_response_bytes:,})",
                req,
                maybe_billed=True,
            ) from None
        except BadEncoding as exc:
            raise self.err(E.MalformedResponseError, str(exc), req, maybe_billed=True) from None
        except (WireError, httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise self.transport_error(exc, req) from None

    def read_response(self, req: ChatRequest, status: int, headers: Any, content: bytes) -> ProviderResponse:
        """Turn a status, headers and body into a ProviderResponse or a typed error (pure).

        A configured secret the server echoed is redacted from the body before it is parsed, and lone
        surrogates are repaired after; ``extra`` says so (``secret_redacted``, ``text_repaired``).
        """
        text = content.decode("utf-8", errors="replace")
        echoed = E.contains_secret(text)
        if echoed:
            text = E.redact(text)
        if 300 <= status < 400:
            raise self._redirect_error(req, status, headers, text)
        try:
            body: Any = fast_json.loads(text) if text.strip() else None
        except (ValueError, RecursionError):  # JSONDecodeError, a huge integer, nesting too deep
            body = None
            if status < 400:
                raise self.err(
                    E.MalformedResponseError,
                    "response body is not valid JSON (truncated or garbled)",
                    req,
                    status=status,
                    body=text,
                    maybe_billed=True,
                ) from None
        if status >= 400:
            raise self.map_error(req, status, headers, body, text)
        repaired = 0
        if "\\ud" in text or "\\uD" in text:  # only a \uD800-\uDFFF escape can decode to a lone surrogate
            body, repaired = repair_value(body)
        if not isinstance(body, dict):
            raise self.err(
                E.MalformedResponseError,
                f"response body is not a JSON object (got {type(body).__name__})",
                req,
                status=status,
                body=text,
                maybe_billed=True,
            )
        try:
            parsed = self.parse_response(req, body, headers)
        except E.ProviderError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise self.err(
                E.MalformedResponseError,
                f"unexpected response shape: {type(exc).__name__}: {exc}",
                req,
                status=status,
                body=text,
                maybe_billed=True,
            ) from None
        if not isinstance(parsed.text, str):
            raise self.err(
                E.MalformedResponseError,
                f"the answer's text is a {type(parsed.text).__name__}, not a string",
                req,
                status=status,
                body=text,
                maybe_billed=True,
            )
        parsed.raw = body
        if repaired:
            parsed.extra["text_repaired"] = repaired
        if echoed:
            parsed.extra["secret_redacted"] = True
        return parsed

    def _redirect_error(self, req: ChatRequest, status: int, headers: Any, text: str) -> E.ProviderError:
        from urllib.parse import urlsplit

        location = (headers.get("location") if headers is not None else None) or ""
        here = urlsplit(self.base_url(req.spec)).netloc
        there = urlsplit(location).netloc
        if there and there != here:
            what = f"redirects to another host ({there}, from {here})"
        else:
            what = f"redirects to {location or 'an unnamed location'}"
        return self.err(
            E.BadRequestError,
            f"HTTP {status}: the server {what}; redirects are not followed, so that a key is never sent "
            "to a host you did not configure: set base_url to the final address",
            req,
            status=status,
            body=text,
        )


def body_snippet(text: str, limit: int = 300) -> str:
    """The start of a non-JSON error body (an HTML error page, a proxy's text), on one line."""
    return " ".join(text.split())[:limit]


# A usage count above this is garbage, not tokens (the largest context windows are ~10^7).
MAX_TOKEN_COUNT = 10**10


def as_int(value: Any, name: str = "usage count") -> int:
    """A token count: a non-negative integer (an integral float such as 12.0 is accepted); null or
    missing is 0. Anything else (negative, fractional, a string, a bool, NaN) raises ValueError naming
    ``name``: the response is malformed, and a negative count must never become a negative cost."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} is {value!r}, not a non-negative integer")
    if isinstance(value, float) and not value.is_integer():  # NaN and inf included
        raise ValueError(f"{name} is {value!r}, not a non-negative integer")
    count = int(value)
    if count < 0 or count > MAX_TOKEN_COUNT:
        raise ValueError(f"{name} is {value!r}, not a plausible non-negative token count")
    return count


def request_header_id(headers: Any) -> str | None:
    for name in ("x-request-id", "request-id", "x-amzn-requestid"):
        value = headers.get(name) if headers is not None else None
        if value:
            return value
    return None


def httpx_headers(headers: httpx.Headers) -> dict[str, str]:  # pragma: no cover - tiny helper
    return dict(headers.items())
