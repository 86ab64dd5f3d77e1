"""The answer as the caller gets it: a provider's response turned into the :class:`Completion`.

Cost is the provider's own figure when it reports one, else the list price of the usage; an answer without
usage keeps its cost unknown (None, noted ``usage_missing``) and the budget charges its worst case. The
text is made safe (surrogates, secrets) before a label task's JSON is parsed from it, so what is parsed is
what is stored. A streamed answer also gets its time to first token and its output speed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..modes import parse_structured
from ..types import Completion, Usage
from .pricing import list_cost
from .safety import make_safe

if TYPE_CHECKING:
    from ..config import ModelSpec
    from ..providers.base import ChatRequest, ProviderResponse


def to_completion(
    spec: ModelSpec,
    req: ChatRequest,
    key: str,
    worst_cost: float | None,
    response: ProviderResponse,
    latency: float,
    attempts: int,
    charged_before: float,
    ttft: float | None = None,
) -> Completion:
    """The Completion of ``response``: ``charged_before`` is what the call's earlier failed attempts were
    charged; the answer adds its cost, or its worst case when the cost is unknown."""
    notes = [note for note in ("text_repaired", "secret_redacted") if response.extra.get(note)]
    usage = response.usage
    if usage is None:
        usage = Usage()
        notes.append("usage_missing")
    if response.provider_cost_usd is not None:
        cost = response.provider_cost_usd
    elif response.usage is None and worst_cost:
        cost = None  # billed, but for how much is unknown: the worst case is charged instead
    else:
        cost = list_cost(spec, usage)
    charged = charged_before + (cost if cost is not None else (worst_cost or 0.0))
    completion = Completion(
        text=response.text,
        model=spec.id,
        served_model=response.served_model,
        provider=spec.provider,
        usage=usage,
        cost_usd=cost,
        latency_s=latency,
        ttft_s=ttft,
        output_tps=output_rate(usage, latency, ttft),
        finish_reason=response.finish_reason,
        attempts=attempts,
        request_id=response.request_id,
        mode=req.mode,
        request_hash=key,
        provider_cost_usd=response.provider_cost_usd,
        charged_usd=charged,
        notes=notes,
        raw=response.raw,
    )
    make_safe(completion)
    if req.schema is not None:  # on the safe text: what is parsed is what is stored
        completion.parsed, completion.parse_error = parse_structured(completion.text, req.schema)
    return completion


def as_cache_hit(hit: Completion, model: str, mode: str | None, key: str, lookup_s: float) -> Completion:
    """A stored answer as this call's (in place): free, cost saved, no attempt, the lookup as its latency;
    the stored timings of the first call are dropped, and the text is made safe again (an entry stored
    before a key was configured may hold it)."""
    hit.cost_saved_usd = hit.cost_usd
    hit.cost_usd = 0.0
    hit.from_cache = True
    hit.attempts = 0
    hit.latency_s = lookup_s
    hit.ttft_s = hit.output_tps = None
    hit.request_hash = key
    hit.model = model
    hit.mode = mode
    hit.charged_usd = 0.0
    make_safe(hit)
    return hit


def output_rate(usage: Usage, latency: float, ttft: float | None) -> float | None:
    """Output tokens per second while the answer streamed: the tokens after the first over the time from
    the first token to the last (the decode speed a reader sees). None unless streamed with at least two
    output tokens over a measurable time."""
    tokens = usage.output_total
    if ttft is None or tokens < 2 or latency - ttft <= 1e-6:
        return None
    return (tokens - 1) / (latency - ttft)
