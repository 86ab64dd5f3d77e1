"""Cohere v2 Chat: ``POST {base}/v2/chat``.

Wire facts: Bearer key; ``system`` is an ordinary message role; nucleus sampling is ``p`` and must lie
in [0.01, 0.99] (a ``top_p`` of 1.0, "no truncation" elsewhere, is sent as 0.99); structured output is
``response_format: {type: "json_object", json_schema}``. The answer carries no model name. Usage:
``billed_units`` is what is billed (the axes); ``tokens`` can be larger and is not billed (kept in raw).
Errors are ``{"message"}`` by status; 498 means a deny-listed token in the request or answer.
"""

from __future__ import annotations

from typing import Any

from .. import errors as E
from ..types import Usage
from .base import ChatRequest, HttpAdapter, HttpCall, ProviderResponse, api_key, as_int, request_header_id
from .streaming import StreamParser

FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
    "ERROR_TOXIC": "content_filter",
    "ERROR_LIMIT": "length",
    "ERROR": "error",
    "TIMEOUT": "timeout",
}


def cohere_usage(raw: dict[str, Any] | None) -> Usage | None:
    """Billed units onto the axes; ``Usage.raw`` keeps the whole object (``tokens``, ``cached_tokens``).
    None when nothing billed is reported (``tokens`` alone is not what is billed)."""
    billed = (raw or {}).get("billed_units") if isinstance(raw, dict) else None
    if not isinstance(billed, dict) or not billed:
        return None
    prompt = as_int(billed.get("input_tokens"), "usage.billed_units.input_tokens")
    answer = as_int(billed.get("output_tokens"), "usage.billed_units.output_tokens")
    return Usage(input_uncached=prompt, output=answer, raw=raw)


def finished(adapter: Any, req: ChatRequest, text: str, finish: str | None, detail: str = "") -> None:
    """An answer that ended toxic or in error with no text is an error, streamed or not."""
    if not text and finish == "content_filter":
        raise adapter.err(E.ContentFilteredError, "the answer was blocked as toxic (ERROR_TOXIC)", req)
    if finish == "error" and (not text or detail):
        raise adapter.err(
            E.OverloadedError,
            f"generation failed on the provider (finish_reason ERROR){': ' + detail if detail else ''}",
            req,
            status=200,
            maybe_billed=True,
        )


class CohereStream(StreamParser):
    """``StreamedChatResponseV2`` events, told apart by ``type``: ``content-delta`` carries
    ``delta.message.content.text``; ``message-end`` carries ``delta.finish_reason``, ``delta.usage`` and,
    when generation failed, ``delta.error``."""

    def __init__(self, adapter: Any, req: ChatRequest) -> None:
        super().__init__(adapter, req)
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.request_id: str | None = None

    def feed(self, data: dict[str, Any], event: str | None = None) -> str:
        kind = data.get("type") or event
        if kind == "message-start":
            self.request_id = data.get("id")
        elif kind == "content-delta":
            content = ((data.get("delta") or {}).get("message") or {}).get("content") or {}
            return self.add(content.get("text"))
        elif kind == "message-end":
            delta = data.get("delta") or {}
            raw = delta.get("finish_reason")
            self.finish_reason = FINISH_REASONS.get(raw, raw)
            self.usage = delta.get("usage")
            self.done = True
            finished(self.adapter, self.req, self.text, self.finish_reason, str(delta.get("error") or ""))
        return ""

    def finish(self) -> ProviderResponse:
        finished(self.adapter, self.req, self.text, self.finish_reason)
        return ProviderResponse(
            text=self.text,
            usage=cohere_usage(self.usage),
            served_model=self.req.spec.model or None,
            finish_reason=self.finish_reason,
            request_id=self.request_id,
            raw={"usage": self.usage} if self.usage is not None else None,
        )


class CohereAdapter(HttpAdapter):
    name = "cohere"
    default_base_url = "https://api.cohere.com"
    structured_output = True
    streams = True

    def body(self, req: ChatRequest) -> dict[str, Any]:
        p = req.params
        body: dict[str, Any] = {
            "model": req.spec.model or req.spec.id.split("/", 1)[-1],
            "messages": [{"role": m.role, "content": m.content} for m in req.messages],
        }
        if p.get("max_tokens") is not None:
            body["max_tokens"] = int(p["max_tokens"])
        if p.get("temperature") is not None:
            body["temperature"] = p["temperature"]
        if p.get("top_p") is not None:
            body["p"] = min(0.99, max(0.01, float(p["top_p"])))
        if p.get("seed") is not None:
            body["seed"] = int(p["seed"])
        if req.schema is not None and self.supports_schema(req.spec):
            body["response_format"] = {"type": "json_object", "json_schema": req.schema}
        extra = req.spec.options.get("extra_body")
        if isinstance(extra, dict):
            body.update(extra)
        return body

    def build_request(self, req: ChatRequest) -> HttpCall:
        headers = dict(req.spec.headers)
        headers["authorization"] = f"Bearer {api_key(req.spec, self.name)}"
        return HttpCall(url=f"{self.base_url(req.spec)}/v2/chat", headers=headers, json=self.body(req))

    def stream_parser(self, req: ChatRequest) -> CohereStream:
        return CohereStream(self, req)

    def parse_response(self, req: ChatRequest, body: dict[str, Any], headers: Any) -> ProviderResponse:
        content = (body.get("message") or {}).get("content") or []
        if isinstance(content, str):
            text = content
        else:
            text = "".join(
                b.get("text") or "" for b in content if isinstance(b, dict) and b.get("type") == "text"
            )
        raw_finish = body.get("finish_reason")
        finish = FINISH_REASONS.get(raw_finish, raw_finish)
        finished(self, req, text, finish)
        return ProviderResponse(
            text=text,
            usage=cohere_usage(body.get("usage")),
            served_model=req.spec.model or None,
            finish_reason=finish,
            request_id=body.get("id") or request_header_id(headers),
        )

    def error_message(self, body: Any) -> str:
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return body["message"]
        return super().error_message(body)

    def map_error(self, req: ChatRequest, status: int, headers: Any, body: Any, text: str) -> E.ProviderError:
        message = self.error_message(body) or f"HTTP {status}"
        lowered = message.lower()
        cls: type[E.ProviderError] | None = None
        if status == 498:
            cls = E.ContentFilteredError
        elif status == 402 or (status == 429 and "trial key" in lowered and "month" in lowered):
            cls = E.QuotaExhaustedError
        if cls is not None:
            return self.err(cls, message, req, status=status, body=text)
        return super().map_error(req, status, headers, body, text)


ADAPTER = CohereAdapter()
