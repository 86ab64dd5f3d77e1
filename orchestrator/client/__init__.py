"""The request path, one module a layer: route -> cache -> budget -> rate limit -> adapter -> retries and
fallbacks -> a normalized Completion (see :mod:`orchestrator.client.llm_client`)."""

from __future__ import annotations

from .llm_client import BREAKER_ON, FALLBACK_ON, Breaker, LLMClient, RetryPolicy

__all__ = ["BREAKER_ON", "FALLBACK_ON", "Breaker", "LLMClient", "RetryPolicy"]
