"""OpenAI Chat Completions, for OpenAI and any OpenAI-compatible server (vLLM, llama.cpp, LM Studio, Ollama /v1).

Request shaped per ``CreateChatCompletionRequest``; usage mapped onto disjoint axes:
``prompt_tokens`` includes ``prompt_tokens_details.cached_tokens`` and ``completion_tokens``
includes ``completion_tokens_details.reasoning_tokens``.
"""

from __future__ import annotations

from typing import Any

from .. import errors as E
from ..types import Usage
from .base import ChatRequest, HttpAdapter, HttpCall, ProviderResponse, api_key, as_int, request_header_id
from .streaming import StreamParser


def openai_usage(raw: dict[str, Any] | None) -> Usage | None:
    """Map an OpenAI-shaped ``usage`` object onto the disjoint axes; None when there is none."""
    if not isinstance(raw, dict) or not raw:
        return None
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    prompt = as_int(raw.get("prompt_tokens"), "usage.prompt_tokens")
    completion = as_int(raw.get("completion_tokens"), "usage.completion_tokens")
    cached = as_int(prompt_details.get("cached_tokens"), "usage.prompt_tokens_details.cached_tokens")
    cache_write = as_int(
        prompt_details.get("cache_write_tokens"), "usage.prompt_tokens_details.cache_write_tokens"
    )
    reasoning = as_int(
        completion_details.get("reasoning_tokens"), "usage.completion_tokens_details.reasoning_tokens"
    )
    return Usage(
        input_uncached=max(0, prompt - cached - cache_write),
        cache_read=cached,
        cache_write=cache_write,
        output=max(0, completion - reasoning),
        reasoning=reasoning,
        raw=raw,
    )


def check_finish(adapter: Any, req: ChatRequest, text: str, finish: str | None, refusal: str | None) -> None:
    """A refusal or a content filter that left no answer is an error, streamed or not."""
    if refusal and not text:
        raise adapter.err(E.ContentFilteredError, f"the model refused: {refusal[:200]}", req)
    if finish == "content_filter" and not text:
        raise adapter.err(
            E.ContentFilteredError, "the answer was blocked by the provider's content filter", req
        )


class OpenAIStream(StreamParser):
    """``chat.completion.chunk`` events (``CreateChatCompletionStreamResponse``): text in
    ``choices[0].delta.content``; with ``stream_options.include_usage`` a last chunk with no choices
    carries ``usage``; the stream ends with ``data: [DONE]``. OpenRouter's mid-stream failure is a chunk
    with ``finish_reason: "error"`` (and an ``error`` object): the answer so far is kept by the client."""

    def __init__(self, adapter: Any, req: ChatRequest) -> None:
        super().__init__(adapter, req)
        self.usage_raw: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.model: str | None = None
        self.request_id: str | None = None
        self.refusal: list[str] = []

    def feed(self, data: dict[str, Any], event: str | None = None) -> str:
        failed = data.get("error")
        choices = data.get("choices") or []
        choice = choices[0] if choices else {}
        if failed or choice.get("finish_reason") == "error":
            detail = self.adapter.error_message({"error": failed or choice.get("error") or "no detail"})
            raise self.adapter.err(
                E.OverloadedError,
                f"generation failed mid-stream: {detail}",
                self.req,
                status=200,
                maybe_billed=True,
            )
        self.model = data.get("model") or self.model
        self.request_id = self.request_id or data.get("id")
        if isinstance(data.get("usage"), dict):
            self.usage_raw = data["usage"]
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        delta = choice.get("delta") or {}
        if delta.get("refusal"):
            self.refusal.append(str(delta["refusal"]))
        if self.finish_reason and self.usage_raw is not None and data.get("timings") is not None:
            self.done = True  # llama.cpp in-process: its usage chunk is the last one, no [DONE] follows
        return self.add(delta.get("content"))

    def finish(self) -> ProviderResponse:
        check_finish(self.adapter, self.req, self.text, self.finish_reason, "".join(self.refusal))
        return ProviderResponse(
            text=self.text,
            usage=openai_usage(self.usage_raw),
            served_model=self.model,
            finish_reason=self.finish_reason,
            request_id=self.request_id,
            raw={"usage": self.usage_raw} if self.usage_raw is not None else None,
        )


class OpenAIAdapter(HttpAdapter):
    name = "openai"
    default_base_url = "https://api.openai.com/v1"
    structured_output = True
    streams = True

    def key_required(self, spec: Any) -> bool:
        # A local OpenAI-compatible server usually takes no key; api.openai.com always does.
        return bool(spec.api_key_env) or spec.base_url is None

    def headers(self, req: ChatRequest) -> dict[str, str]:
        headers = dict(req.spec.headers)
        key = api_key(req.spec, self.name, required=self.key_required(req.spec))
        if key:
            headers["authorization"] = f"Bearer {key}"
        return headers

    def max_tokens_field(self, req: ChatRequest) -> str:
        field = req.spec.options.get("max_tokens_field")
        if field:
            return str(field)
        return "max_completion_tokens" if "api.openai.com" in self.base_url(req.spec) else "max_tokens"

    def body(self, req: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": req.spec.model or req.spec.id.split("/", 1)[-1],
            "messages": [{"role": m.role, "content": m.content} for m in req.messages],
        }
        p = req.params
        if p.get("temperature") is not None:
            body["temperature"] = p["temperature"]
        if p.get("top_p") is not None:
            body["top_p"] = p["top_p"]
        if p.get("seed") is not None:
            body["seed"] = p["seed"]
        if p.get("max_tokens") is not None:
            body[self.max_tokens_field(req)] = p["max_tokens"]
        if req.schema is not None and self.supports_schema(req.spec):
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": req.schema_name, "schema": req.schema, "strict": True},
            }
        extra = req.spec.options.get("extra_body")
        if isinstance(extra, dict):
            body.update(extra)
        return body

    def build_request(self, req: ChatRequest) -> HttpCall:
        return HttpCall(
            url=f"{self.base_url(req.spec)}/chat/completions", headers=self.headers(req), json=self.body(req)
        )

    def build_stream_request(self, req: ChatRequest) -> HttpCall:
        call = self.build_request(req)
        call.json["stream"] = True
        call.json["stream_options"] = {"include_usage": True}
        call.headers["accept"] = "text/event-stream"
        return call

    def stream_parser(self, req: ChatRequest) -> StreamParser:
        return OpenAIStream(self, req)

    def parse_response(self, req: ChatRequest, body: dict[str, Any], headers: Any) -> ProviderResponse:
        if "error" in body and not body.get("choices"):
            raise self.err(
                E.OverloadedError, f"error body with status 200: {self.error_message(body)}", req, status=200
            )
        choice = body["choices"][0]
        message = choice.get("message") or {}
        text = message.get("content") or ""
        finish = choice.get("finish_reason")
        check_finish(self, req, text, finish, message.get("refusal"))
        return ProviderResponse(
            text=text,
            usage=openai_usage(body.get("usage")),
            served_model=body.get("model"),
            finish_reason=finish,
            request_id=body.get("id") or request_header_id(headers),
        )


ADAPTER = OpenAIAdapter()
