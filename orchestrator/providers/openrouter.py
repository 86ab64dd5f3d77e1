"""OpenRouter: OpenAI Chat Completions at ``https://openrouter.ai/api/v1`` with a few extras.

Wire facts: Bearer key; optional ``HTTP-Referer``/``X-Title`` attribution headers; its own fallback
list ``models`` and routing ``provider`` preferences in the body; ``usage: {include: true}`` is
deprecated and harmless (usage with ``cost`` in USD credits now always comes back). ``model`` in the
answer is the model that actually served. Errors are ``{"error": {"code", "message", "metadata"}}``:
402 = no credits (terminal), 403 with moderation metadata = flagged input, 502/503 = upstream down or
no provider; an error after generation started arrives as HTTP 200 with ``finish_reason: "error"``.
"""

from __future__ import annotations

from typing import Any

from .. import errors as E
from .base import ChatRequest, ProviderResponse, error_for_status, retry_after_seconds
from .openai import OpenAIAdapter, OpenAIStream

DAILY_HINTS = ("per-day", "per day", "perday")


def provider_cost(usage: dict[str, Any] | None) -> float | None:
    """USD spent as OpenRouter reports it; with your own key (BYOK) the upstream bill is added."""
    if not usage or not isinstance(usage.get("cost"), (int, float)):
        return None
    cost = float(usage["cost"])
    upstream = (usage.get("cost_details") or {}).get("upstream_inference_cost")
    if usage.get("is_byok") and isinstance(upstream, (int, float)):
        cost += float(upstream)
    return cost


class OpenRouterStream(OpenAIStream):
    """OpenAI's chunks, with the cost OpenRouter reports in the usage chunk; its keep-alive comments
    (``: OPENROUTER PROCESSING``) are skipped by the SSE decoder."""

    def finish(self) -> ProviderResponse:
        response = super().finish()
        response.provider_cost_usd = provider_cost(self.usage_raw)
        return response


class OpenRouterAdapter(OpenAIAdapter):
    name = "openrouter"
    default_base_url = "https://openrouter.ai/api/v1"

    def key_required(self, spec: Any) -> bool:
        return True

    def headers(self, req: ChatRequest) -> dict[str, str]:
        headers = super().headers(req)
        opts = req.spec.options
        if opts.get("referer"):
            headers["HTTP-Referer"] = str(opts["referer"])
        if opts.get("title"):
            headers["X-Title"] = str(opts["title"])
        return headers

    def body(self, req: ChatRequest) -> dict[str, Any]:
        body = super().body(req)
        opts = req.spec.options
        if opts.get("models"):
            body.setdefault("models", list(opts["models"]))
        if opts.get("provider"):
            body.setdefault("provider", dict(opts["provider"]))
        body.setdefault("usage", {"include": True})
        return body

    def stream_parser(self, req: ChatRequest) -> OpenRouterStream:
        return OpenRouterStream(self, req)

    def parse_response(self, req: ChatRequest, body: dict[str, Any], headers: Any) -> ProviderResponse:
        choice = (body.get("choices") or [{}])[0]
        failed = choice.get("error") or body.get("error")
        if failed or choice.get("finish_reason") == "error":
            detail = self.error_message({"error": failed}) if failed else "no detail"
            raise self.err(
                E.OverloadedError, f"generation failed after it started (HTTP 200): {detail}", req, status=200
            )
        response = super().parse_response(req, body, headers)
        response.provider_cost_usd = provider_cost(body.get("usage"))
        if body.get("provider"):
            response.extra["upstream_provider"] = body["provider"]
        return response

    def map_error(self, req: ChatRequest, status: int, headers: Any, body: Any, text: str) -> E.ProviderError:
        err = body.get("error") if isinstance(body, dict) else None
        err = err if isinstance(err, dict) else {}
        meta = err.get("metadata") if isinstance(err.get("metadata"), dict) else {}
        message = str(err.get("message") or self.error_message(body) or f"HTTP {status}")
        if meta.get("provider_name"):
            message += f" (upstream {meta['provider_name']}: {str(meta.get('raw') or '')[:300]})"
        hint = retry_after_seconds(headers)
        kw: dict[str, Any] = {"status": status, "retry_after_s": hint, "body": text}
        if status == 402:
            if meta.get("limit_source") == "openrouter_in_flight_budget" and hint is not None:
                return self.err(E.RateLimitedError, message, req, **kw)
            return self.err(E.QuotaExhaustedError, f"no credits: {message}", req, **kw)
        if status == 403 and ("reasons" in meta or "flagged_input" in meta):
            return self.err(E.ContentFilteredError, message, req, **kw)
        if status == 429 and any(h in message.lower() for h in DAILY_HINTS):
            return self.err(E.QuotaExhaustedError, message, req, **kw)
        return error_for_status(
            status, message, provider=self.name, model=req.spec.id, headers=headers, body=text
        )


ADAPTER = OpenRouterAdapter()
