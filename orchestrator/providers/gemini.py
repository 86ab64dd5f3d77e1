"""Gemini generateContent (v1beta): ``POST {base}/models/{model}:generateContent``.

Wire facts: the key goes in the ``x-goog-api-key`` header, never in the URL; the model is in the
path, not the body (the description wrongly marks body ``model`` required); roles are ``user`` and
``model``; the system prompt is ``systemInstruction``; a JSON schema goes in
``generationConfig.responseJsonSchema`` with ``responseMimeType: application/json``. Usage:
``promptTokenCount`` includes ``cachedContentTokenCount``; ``thoughtsTokenCount`` is outside
``candidatesTokenCount``. A 429 carries ``RetryInfo.retryDelay`` ("17s"); a ``QuotaFailure`` whose
quota id is per day means the model is done for today (fall back).
"""

from __future__ import annotations

import re
from typing import Any

from .. import errors as E
from ..types import Usage
from .base import (
    ChatRequest,
    HttpAdapter,
    HttpCall,
    ProviderResponse,
    api_key,
    as_int,
    error_for_status,
    renamed_params,
    request_header_id,
)
from .streaming import StreamParser

BLOCKED = {"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_SAFETY"}
FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length", **{r: "content_filter" for r in BLOCKED}}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def gemini_usage(raw: dict[str, Any] | None) -> Usage | None:
    """``usageMetadata`` onto the axes: cached tokens come out of the prompt count, thoughts are apart.
    None when there is none."""
    if not isinstance(raw, dict) or not raw:
        return None
    prompt = as_int(raw.get("promptTokenCount"), "usageMetadata.promptTokenCount")
    cached = as_int(raw.get("cachedContentTokenCount"), "usageMetadata.cachedContentTokenCount")
    return Usage(
        input_uncached=max(0, prompt - cached),
        cache_read=cached,
        output=as_int(raw.get("candidatesTokenCount"), "usageMetadata.candidatesTokenCount"),
        reasoning=as_int(raw.get("thoughtsTokenCount"), "usageMetadata.thoughtsTokenCount"),
        raw=raw,
    )


def retry_delay_seconds(details: list[Any]) -> float | None:
    """``RetryInfo.retryDelay`` (a protobuf Duration such as "17s" or "1.5s") in seconds."""
    for d in details:
        if isinstance(d, dict) and str(d.get("@type", "")).endswith("RetryInfo"):
            match = _DURATION.match(str(d.get("retryDelay") or ""))
            if match:
                return float(match.group(1))
    return None


def quota_ids(details: list[Any]) -> list[str]:
    return [
        str(v.get("quotaId") or "")
        for d in details
        if isinstance(d, dict) and str(d.get("@type", "")).endswith("QuotaFailure")
        for v in d.get("violations") or []
        if isinstance(v, dict)
    ]


def error_reasons(details: list[Any]) -> list[str]:
    return [str(d.get("reason")) for d in details if isinstance(d, dict) and d.get("reason")]


class GeminiStream(StreamParser):
    """``streamGenerateContent?alt=sse``: each event is a whole ``GenerateContentResponse`` holding the next
    piece of text; ``usageMetadata`` counts so far (the last event's are final); the event with a
    ``finishReason`` is the last (no end marker follows)."""

    def __init__(self, adapter: Any, req: ChatRequest) -> None:
        super().__init__(adapter, req)
        self.usage: dict[str, Any] | None = None
        self.finish_raw: str | None = None
        self.model: str | None = None
        self.request_id: str | None = None

    def feed(self, data: dict[str, Any], event: str | None = None) -> str:
        if "error" in data:
            err = data["error"] if isinstance(data["error"], dict) else {"message": data["error"]}
            raise self.adapter.err(
                E.OverloadedError,
                f"generation failed mid-stream: {err.get('message')}",
                self.req,
                status=200,
                maybe_billed=True,
            )
        blocked = (data.get("promptFeedback") or {}).get("blockReason")
        if blocked and blocked != "BLOCK_REASON_UNSPECIFIED":
            raise self.adapter.err(
                E.ContentFilteredError, f"the prompt was blocked (blockReason: {blocked})", self.req
            )
        self.usage = data.get("usageMetadata") or self.usage
        self.model = data.get("modelVersion") or self.model
        self.request_id = data.get("responseId") or self.request_id
        piece = ""
        for cand in (data.get("candidates") or [])[:1]:
            parts = (cand.get("content") or {}).get("parts") or []
            piece = "".join(part.get("text") or "" for part in parts if not part.get("thought"))
            if cand.get("finishReason"):
                self.finish_raw = cand["finishReason"]
                self.done = True
        return self.add(piece)

    def finish(self) -> ProviderResponse:
        finish = self.finish_raw
        if finish in BLOCKED and not self.text:
            raise self.adapter.err(
                E.ContentFilteredError, f"the answer was blocked (finishReason: {finish})", self.req
            )
        return ProviderResponse(
            text=self.text,
            usage=gemini_usage(self.usage),
            served_model=self.model,
            finish_reason=FINISH_REASONS.get(finish, finish) if finish else None,
            request_id=self.request_id,
            raw={"usageMetadata": self.usage} if self.usage is not None else None,
        )


class GeminiAdapter(HttpAdapter):
    name = "gemini"
    default_base_url = "https://generativelanguage.googleapis.com/v1beta"
    structured_output = True
    streams = True

    def model_name(self, req: ChatRequest) -> str:
        model = req.spec.model or req.spec.id.split("/", 1)[-1]
        return model.removeprefix("models/")

    def body(self, req: ChatRequest) -> dict[str, Any]:
        p = req.params
        body: dict[str, Any] = {
            "contents": [
                {"role": "model" if m.role == "assistant" else "user", "parts": [{"text": m.content}]}
                for m in req.chat
            ],
        }
        if req.system:
            body["systemInstruction"] = {"parts": [{"text": req.system}]}
        names = {
            "temperature": "temperature",
            "top_p": "topP",
            "max_tokens": "maxOutputTokens",
            "seed": "seed",
        }
        config = renamed_params(p, names)
        if req.schema is not None and self.supports_schema(req.spec):
            config["responseMimeType"] = "application/json"
            config["responseJsonSchema"] = req.schema
        extra = req.spec.options.get("generation_config")  # e.g. {"thinkingConfig": {"thinkingBudget": 0}}
        if isinstance(extra, dict):
            config.update(extra)
        if config:
            body["generationConfig"] = config
        return body

    def build_request(self, req: ChatRequest) -> HttpCall:
        headers = dict(req.spec.headers)
        headers["x-goog-api-key"] = api_key(req.spec, self.name) or ""
        url = f"{self.base_url(req.spec)}/models/{self.model_name(req)}:generateContent"
        return HttpCall(url=url, headers=headers, json=self.body(req))

    def build_stream_request(self, req: ChatRequest) -> HttpCall:
        call = self.build_request(req)
        call.url = call.url.replace(":generateContent", ":streamGenerateContent?alt=sse")
        call.headers["accept"] = "text/event-stream"
        return call

    def stream_parser(self, req: ChatRequest) -> GeminiStream:
        return GeminiStream(self, req)

    def parse_response(self, req: ChatRequest, body: dict[str, Any], headers: Any) -> ProviderResponse:
        blocked = (body.get("promptFeedback") or {}).get("blockReason")
        if blocked and blocked != "BLOCK_REASON_UNSPECIFIED":  # the spec's "default value. Unused."
            raise self.err(E.ContentFilteredError, f"the prompt was blocked (blockReason: {blocked})", req)
        candidates = body.get("candidates") or []
        if not candidates:
            raise self.err(E.MalformedResponseError, "the response has no candidates", req, status=200)
        cand = candidates[0]
        parts = (cand.get("content") or {}).get("parts") or []
        text = "".join(part.get("text") or "" for part in parts if not part.get("thought"))
        finish = cand.get("finishReason")
        if finish in BLOCKED and not text:
            raise self.err(E.ContentFilteredError, f"the answer was blocked (finishReason: {finish})", req)
        return ProviderResponse(
            text=text,
            usage=gemini_usage(body.get("usageMetadata")),
            served_model=body.get("modelVersion"),
            finish_reason=FINISH_REASONS.get(finish, finish) if finish else None,
            request_id=body.get("responseId") or request_header_id(headers),
        )

    def map_error(self, req: ChatRequest, status: int, headers: Any, body: Any, text: str) -> E.ProviderError:
        err = body.get("error") if isinstance(body, dict) else None
        err = err if isinstance(err, dict) else {}
        details = err.get("details") if isinstance(err.get("details"), list) else []
        message = str(err.get("message") or self.error_message(body) or f"HTTP {status}")
        delay = retry_delay_seconds(details)
        kw: dict[str, Any] = {"status": status, "body": text}
        if status == 429 or err.get("status") == "RESOURCE_EXHAUSTED":
            daily = [q for q in quota_ids(details) if "perday" in q.lower()]
            if daily:
                return self.err(
                    E.QuotaExhaustedError,
                    f"daily quota {daily[0]} exhausted: {message}",
                    req,
                    retry_after_s=delay,
                    **kw,
                )
            # Per-minute quotas say "exceeded your current quota" too: a wait, not a stop.
            return self.err(E.RateLimitedError, message, req, retry_after_s=delay, **kw)
        if "API_KEY_INVALID" in error_reasons(details):
            return self.err(E.AuthError, message, req, **kw)
        if status == 400 and "input token count" in message.lower():
            return self.err(E.ContextTooLongError, message, req, **kw)
        if err.get("status") == "FAILED_PRECONDITION":  # e.g. the free tier is not offered in this region
            return self.err(E.PermissionDeniedError, message, req, **kw)
        exc = error_for_status(
            status, message, provider=self.name, model=req.spec.id, headers=headers, body=text
        )
        if delay is not None:
            exc.retry_after_s = delay
        return exc


ADAPTER = GeminiAdapter()
