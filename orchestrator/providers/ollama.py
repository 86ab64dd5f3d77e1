"""Ollama native chat: ``POST {base}/api/chat`` (``stream: false``, or ``true`` for NDJSON lines).

Wire facts: sampling goes in ``options`` (``temperature``, ``top_p``, ``seed``, ``num_predict``,
``num_ctx``: Ollama silently truncates a prompt longer than ``num_ctx``); a JSON schema is sent as
``format``; no key (a Bearer key is sent only if one is configured, e.g. behind a proxy). Usage is
``prompt_eval_count`` / ``eval_count``; ``*_duration`` fields are nanoseconds, and ``load_duration``
separates a cold start from generation. Errors are ``{"error": "..."}``; an unknown model is 404.
"""

from __future__ import annotations

from typing import Any

from .. import errors as E
from ..types import Usage
from .base import ChatRequest, HttpAdapter, HttpCall, ProviderResponse, api_key, as_int, renamed_params
from .streaming import StreamParser

DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


def ollama_usage(body: dict[str, Any]) -> Usage | None:
    """Counts onto the axes; ``raw`` keeps the counts and the nanosecond durations. None when neither
    count is reported."""
    if "prompt_eval_count" not in body and "eval_count" not in body:
        return None
    raw = {k: body[k] for k in ("prompt_eval_count", "eval_count", *DURATIONS) if k in body}
    return Usage(
        input_uncached=as_int(body.get("prompt_eval_count"), "prompt_eval_count"),
        output=as_int(body.get("eval_count"), "eval_count"),
        raw=raw,
    )


class OllamaStream(StreamParser):
    """``ChatStreamEvent`` lines: ``message.content`` pieces, then a line with ``done: true`` that carries
    ``done_reason``, the counts and the durations; an ``{"error"}`` line is a failure mid-stream."""

    def __init__(self, adapter: Any, req: ChatRequest) -> None:
        super().__init__(adapter, req)
        self.last: dict[str, Any] = {}

    def feed(self, data: dict[str, Any], event: str | None = None) -> str:
        if data.get("error"):
            raise self.adapter.err(
                E.OverloadedError,
                f"generation failed mid-stream: {data['error']}",
                self.req,
                status=200,
                maybe_billed=True,
            )
        if data.get("done"):
            self.done = True
            self.last = data
        return self.add((data.get("message") or {}).get("content"))

    def finish(self) -> ProviderResponse:
        body = self.last
        return ProviderResponse(
            text=self.text,
            usage=ollama_usage(body),
            served_model=body.get("model"),
            finish_reason=body.get("done_reason"),
            extra={k: body[k] for k in DURATIONS if k in body},
        )


class OllamaAdapter(HttpAdapter):
    name = "ollama"
    default_base_url = "http://localhost:11434"
    structured_output = True
    streams = True
    stream_format = "ndjson"

    def body(self, req: ChatRequest) -> dict[str, Any]:
        p = req.params
        opts = req.spec.options
        names = {"temperature": "temperature", "top_p": "top_p", "seed": "seed", "max_tokens": "num_predict"}
        options = renamed_params(p, names)
        if opts.get("num_ctx"):
            options["num_ctx"] = int(opts["num_ctx"])
        body: dict[str, Any] = {
            "model": req.spec.model or req.spec.id.split("/", 1)[-1],
            "messages": [{"role": m.role, "content": m.content} for m in req.messages],
            "stream": False,
        }
        if options:
            body["options"] = options
        if req.schema is not None and self.supports_schema(req.spec):
            body["format"] = req.schema
        for name in ("keep_alive", "think"):
            if opts.get(name) is not None:
                body[name] = opts[name]
        return body

    def build_request(self, req: ChatRequest) -> HttpCall:
        headers = dict(req.spec.headers)
        key = api_key(req.spec, self.name, required=False)
        if key:
            headers["authorization"] = f"Bearer {key}"
        return HttpCall(url=f"{self.base_url(req.spec)}/api/chat", headers=headers, json=self.body(req))

    def stream_parser(self, req: ChatRequest) -> OllamaStream:
        return OllamaStream(self, req)

    def parse_response(self, req: ChatRequest, body: dict[str, Any], headers: Any) -> ProviderResponse:
        text = body["message"].get("content") or ""
        return ProviderResponse(
            text=text,
            usage=ollama_usage(body),
            served_model=body.get("model"),
            finish_reason=body.get("done_reason"),
            extra={k: body[k] for k in DURATIONS if k in body},
        )


ADAPTER = OllamaAdapter()
