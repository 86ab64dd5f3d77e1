"""Cost of a usage at a model's list price: per axis, never double-counting cached tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import ModelSpec
    from .types import Usage

FREE_PROVIDERS = frozenset({"local", "baseline"})


def list_cost(spec: ModelSpec, usage: Usage) -> float | None:
    """USD at list price, or None when the model has no price (never a fake 0).

    Local and baseline models cost 0. Each token is priced on exactly one axis.
    """
    if spec.provider in FREE_PROVIDERS:
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


def estimate_cost(spec: ModelSpec, prompt_chars: int, max_tokens: int) -> float | None:
    """Pre-flight estimate for the budget: prompt characters / 4 at the (uncached) input price plus
    ``max_tokens`` at the output price (or the reasoning price, where that is higher)."""
    if spec.provider in FREE_PROVIDERS:
        return 0.0
    price = spec.price
    if price is None:
        return None
    output = max(price.output, price.reasoning if price.reasoning is not None else price.output)
    return (prompt_chars / 4 * price.input + max_tokens * output) / 1_000_000
