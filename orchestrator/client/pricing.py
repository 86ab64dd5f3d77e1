"""Cost of a usage at a model's list price, and the worst case a call could cost before it is sent.

- :func:`list_cost`: what a usage costs, each token priced on exactly one axis (cached input is never
  priced twice); ``None`` when the model has no price, never a fake 0.
- :func:`worst_case_cost`: what the budget reserves before a call. Any honest server bills at most one
  input token per UTF-8 byte of what it was sent (byte-level BPE tokenizers never need more; code and CJK
  come close: a CJK character is 3 bytes and 1-2 tokens), plus a few template tokens per message, plus at
  most ``max_tokens`` of output, each at the dearest axis that could apply. The previous estimate
  (characters / 4) let 16 concurrent reservations overshoot a $0.05 cap by half.
- :func:`expected_cost`: a typical cost for ``orchestrator run --estimate`` (given token counts).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import ModelSpec
    from ..types import Message, Usage


def _free(spec: ModelSpec) -> bool:
    from ..providers import provider_info

    return provider_info(spec.provider).free


# Chat templates wrap each message in role markers and separators (OpenAI: 3-4 tokens a message plus 3
# for the reply; Llama-style templates up to ~8). Counted generously, since a worst case must not be low.
TEMPLATE_TOKENS_PER_MESSAGE = 8
TEMPLATE_TOKENS_PER_REQUEST = 16


def list_cost(spec: ModelSpec, usage: Usage) -> float | None:
    """USD at list price, or None when the model has no price (never a fake 0).

    Local and baseline models cost 0. Each token is priced on exactly one axis.
    """
    if _free(spec):
        return 0.0
    price = spec.price
    if price is None:
        return None
    cache_read = price.cache_read if price.cache_read is not None else price.input
    cache_write = price.cache_write if price.cache_write is not None else price.input
    reasoning = price.reasoning if price.reasoning is not None else price.output
    total = (
        usage.input_uncached * price.input
        + usage.cache_read * cache_read
        + usage.cache_write * cache_write
        + usage.output * price.output
        + usage.reasoning * reasoning
    )
    return total / 1_000_000


def worst_case_prompt_tokens(messages: Sequence[Message], schema: dict[str, Any] | None = None) -> int:
    """The most input tokens an honest server can bill for these messages (and the output schema it
    is sent, which providers add to the prompt): one per UTF-8 byte, plus template tokens."""
    total = TEMPLATE_TOKENS_PER_REQUEST
    for m in messages:
        total += len(m.content.encode("utf-8", "surrogatepass")) + TEMPLATE_TOKENS_PER_MESSAGE
    if schema is not None:
        total += _schema_bytes(schema)
    return total


_schema_sizes: dict[int, tuple[dict[str, Any], int]] = {}


def _schema_bytes(schema: dict[str, Any]) -> int:
    """The JSON size of a schema, memoised per schema object (a mode's schema is one constant)."""
    found = _schema_sizes.get(id(schema))
    if found is not None and found[0] is schema:
        return found[1]
    size = len(json.dumps(schema, separators=(",", ":")).encode("utf-8"))
    if len(_schema_sizes) < 1024:  # holding the schema keeps its id from being reused
        _schema_sizes[id(schema)] = (schema, size)
    return size


def _dearest_input(spec: ModelSpec) -> float:
    p = spec.price
    assert p is not None
    return max(p.input, p.cache_read or 0.0, p.cache_write or 0.0)


def _dearest_output(spec: ModelSpec) -> float:
    p = spec.price
    assert p is not None
    return max(p.output, p.reasoning or 0.0)


def worst_case_cost(spec: ModelSpec, prompt_tokens: int, max_tokens: int) -> float | None:
    """The most one request can cost: ``prompt_tokens`` at the dearest input axis (uncached, cache
    write or cache read) plus ``max_tokens`` at the dearest output axis (output or reasoning).

    0 for free providers; None when the model has no price (such a call cannot be counted).
    """
    if _free(spec):
        return 0.0
    if spec.price is None:
        return None
    return (prompt_tokens * _dearest_input(spec) + max_tokens * _dearest_output(spec)) / 1_000_000


def expected_cost(spec: ModelSpec, prompt_tokens: float, output_tokens: float) -> float | None:
    """A typical cost: ``prompt_tokens`` at the uncached input price plus ``output_tokens`` at the
    output price. None when the model has no price."""
    if _free(spec):
        return 0.0
    price = spec.price
    if price is None:
        return None
    return (prompt_tokens * price.input + output_tokens * price.output) / 1_000_000
