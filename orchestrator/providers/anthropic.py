"""Anthropic Messages API: ``POST {base}/v1/messages``.

Wire facts: auth is ``x-api-key`` plus ``anthropic-version`` (the description declares neither);
``system`` is a top-level field; ``max_tokens`` is required; there is no ``seed``, and the non-beta
``CreateMessageParams`` (``additionalProperties: false``) has no structured-output field, so a schema
is left to the prompt. ``usage.input_tokens`` counts uncached input only; ``cache_creation_input_tokens``
and ``cache_read_input_tokens`` are the other input axes; ``output_tokens`` includes any thinking.
Errors are ``{"type": "error", "error": {"type", "message"}, "request_id"}``; 529 ``overloaded_error``
is load (retry), a spend or credit limit is terminal (fall back).
"""

from __future__ import annotations

from typing import Any

from .. import errors as E
from ..types import Usage
from .base import (
    _CONTEXT_HINTS,
    ChatRequest,
    HttpAdapter,
    HttpCall,
    ProviderResponse,
    api_key,
    as_int,
    error_for_status,
    request_header_id,
    retry_after_seconds,
    should_retry_header,
)
from .streaming import StreamParser

DEFAULT_VERSION = "2023-06-01"

STOP_REASONS = {
    "end_turn": "stop",
    "max_tokens": "length",
    "stop_sequence": "stop",
    "refusal": "content_filter",
}

ERROR_TYPES: dict[str, type[E.ProviderError]] = {
    "invalid_request_error": E.BadRequestError,
    "authentication_error": E.AuthError,
    "permission_error": E.PermissionDeniedError,
    "not_found_error": E.UnknownProviderModelError,
    "request_too_large": E.ContextTooLongError,
    "rate_limit_error": E.RateLimitedError,
    "overloaded_error": E.OverloadedError,
    "api_error": E.OverloadedError,
    "timeout_error": E.ProviderTimeoutError,
    "billing_error": E.QuotaExhaustedError,
}

# A limit that will not clear by waiting: the org's spend limit, an empty credit balance.
SPEND_HINTS = (
    "spend_limit",
    "spend limit",
    "spending limit",
    "api usage limits",
    "credit balance",
    "credit limit",
    "purchase credits",
)


def anthropic_usage(raw: dict[str, Any] | None) -> Usage | None:
    """Map Anthropic ``usage`` onto the axes (its three input counts are already disjoint); None when
    there is none."""
    if not isinstance(raw, dict) or not raw:
        return None
    return Usage(
        input_uncached=as_int(raw.get("input_tokens"), "usage.input_tokens"),
        cache_write=as_int(raw.get("cache_creation_input_tokens"), "usage.cache_creation_input_tokens"),
        cache_read=as_int(raw.get("cache_read_input_tokens"), "usage.cache_read_input_tokens"),
        output=as_int(raw.get("output_tokens"), "usage.output_tokens"),
        raw=raw,
    )


def error_class(status: int, etype: str | None, message: str) -> type[E.ProviderError] | None:
    """The error class for an Anthropic error type; None to fall back to the HTTP status."""
    lowered = f"{etype or ''} {message}".lower()
    if any(h in lowered for h in SPEND_HINTS):
        return E.QuotaExhaustedError
    if etype == "invalid_request_error" and any(h in lowered for h in _CONTEXT_HINTS):
        return E.ContextTooLongError
    if status == 529:
        return E.OverloadedError
    return ERROR_TYPES.get(etype or "")


class AnthropicStream(StreamParser):
    """``MessageStreamEvent``s: ``message_start`` (the message, with input usage), ``content_block_delta``
    (``text_delta`` pieces), ``message_delta`` (``stop_reason`` and the cumulative ``usage``),
    ``message_stop`` (the end); ``ping`` is ignored; an ``error`` event is typed like an error body."""

    def __init__(self, adapter: Any, req: ChatRequest) -> None:
        super().__init__(adapter, req)
        self.usage: dict[str, Any] = {}
        self.model: str | None = None
        self.request_id: str | None = None
        self.stop: str | None = None

    def feed(self, data: dict[str, Any], event: str | None = None) -> str:
        kind = data.get("type") or event
        if kind == "message_start":
            message = data.get("message") or {}
            self.model, self.request_id = message.get("model"), message.get("id")
            self.usage.update(message.get("usage") or {})
        elif kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return self.add(delta.get("text"))
        elif kind == "message_delta":
            self.stop = (data.get("delta") or {}).get("stop_reason") or self.stop
            self.usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            err = data.get("error") or {}
            etype, message = err.get("type"), str(err.get("message") or "")
            cls = error_class(200, etype, message) or E.OverloadedError
            raise self.adapter.err(
                cls, f"{etype}: {message} (mid-stream)", self.req, status=200, maybe_billed=True
            )
        return ""

    def finish(self) -> ProviderResponse:
        if self.stop == "refusal" and not self.text:
            raise self.adapter.err(
                E.ContentFilteredError, "the model refused to answer (stop_reason: refusal)", self.req
            )
        return ProviderResponse(
            text=self.text,
            usage=anthropic_usage(self.usage),
            served_model=self.model,
            finish_reason=STOP_REASONS.get(self.stop, self.stop) if self.stop else None,
            request_id=self.request_id,
            raw={"usage": self.usage},
        )


class AnthropicAdapter(HttpAdapter):
    name = "anthropic"
    default_base_url = "https://api.anthropic.com"
    structured_output = False  # no output-schema field on the GA endpoint (output_format is beta-only)
    streams = True

    def body(self, req: ChatRequest) -> dict[str, Any]:
        p = req.params
        body: dict[str, Any] = {
            "model": req.spec.model or req.spec.id.split("/", 1)[-1],
            "max_tokens": int(p.get("max_tokens") or req.spec.max_tokens),
            "messages": [{"role": m.role, "content": m.content} for m in req.chat],
        }
        if req.system:
            body["system"] = req.system
        for name in ("temperature", "top_p"):
            if p.get(name) is not None:
                body[name] = p[name]
        extra = req.spec.options.get("extra_body")
        if isinstance(extra, dict):
            body.update(extra)
        return body

    def build_request(self, req: ChatRequest) -> HttpCall:
        version = str(req.spec.options.get("anthropic_version") or DEFAULT_VERSION)
        headers = {"anthropic-version": version, **req.spec.headers}
        headers["x-api-key"] = api_key(req.spec, self.name) or ""
        return HttpCall(url=f"{self.base_url(req.spec)}/v1/messages", headers=headers, json=self.body(req))

    def stream_parser(self, req: ChatRequest) -> AnthropicStream:
        return AnthropicStream(self, req)

    def parse_response(self, req: ChatRequest, body: dict[str, Any], headers: Any) -> ProviderResponse:
        blocks = body["content"]
        text = "".join(b.get("text") or "" for b in blocks if isinstance(b, dict) and b.get("type") == "text")
        stop = body.get("stop_reason")
        if stop == "refusal" and not text:
            raise self.err(E.ContentFilteredError, "the model refused to answer (stop_reason: refusal)", req)
        answer = ProviderResponse(
            text=text, usage=anthropic_usage(body.get("usage")), served_model=body.get("model")
        )
        answer.finish_reason = STOP_REASONS.get(stop, stop) if stop else None
        answer.request_id = body.get("id") or request_header_id(headers)
        return answer

    def map_error(self, req: ChatRequest, status: int, headers: Any, body: Any, text: str) -> E.ProviderError:
        err = body.get("error") if isinstance(body, dict) else None
        etype = err.get("type") if isinstance(err, dict) else None
        message = str(err.get("message") or "") if isinstance(err, dict) else ""
        cls = error_class(status, etype, message)
        if cls is None:
            return error_for_status(
                status,
                message or self.error_message(body),
                provider=self.name,
                model=req.spec.id,
                headers=headers,
                body=text,
            )
        kw: dict[str, Any] = {"status": status, "retry_after_s": retry_after_seconds(headers), "body": text}
        override = should_retry_header(headers)
        if override is not None and cls is not E.QuotaExhaustedError:
            kw["retryable"] = override
        return self.err(cls, f"{etype}: {message}" if etype else message or f"HTTP {status}", req, **kw)


ADAPTER = AnthropicAdapter()
