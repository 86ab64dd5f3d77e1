"""The request path, one module a layer: route -> cache -> budget -> rate limit -> adapter -> retries and
fallbacks -> a normalized Completion.

- :mod:`.llm_client`: :class:`LLMClient`, the one interface over every configured model;
- :mod:`.retry`: which failures are retried or fall back, backoff, the circuit breaker;
- :mod:`.cascade`: a fallback triggered by a check on the answer;
- :mod:`.limits`, :mod:`.shared_limits`: requests and tokens per minute, concurrency, across processes;
- :mod:`.cache`, :mod:`.ledger`, :mod:`.pricing`: the response cache, the budget, list prices;
- :mod:`.call`: one model's share of a call prepared once (parameters, request, cache key, worst case);
- :mod:`.answer`: a response turned into the Completion (cost known or not, timings, parsed labels);
- :mod:`.streaming`: streamed pieces made safe, the first token timed, a broken stream's partial text;
- :mod:`.safety`: storable text and redacted secrets.
"""

from __future__ import annotations

from .llm_client import LLMClient
from .retry import BREAKER_ON, FALLBACK_ON, Breaker, RetryPolicy

__all__ = ["BREAKER_ON", "FALLBACK_ON", "Breaker", "LLMClient", "RetryPolicy"]
