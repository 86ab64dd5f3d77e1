"""One module per provider; each exposes ``ADAPTER``. Modules load on first use, not at import."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Adapter

PROVIDER_MODULES = {
    "openai": "openai",
    "openrouter": "openrouter",
    "anthropic": "anthropic",
    "cohere": "cohere",
    "gemini": "gemini",
    "ollama": "ollama",
    "local": "local",
    "baseline": "baseline",
}


def get_adapter(provider: str) -> Adapter:
    """The adapter for ``provider`` (a name from orchestrator.toml)."""
    try:
        module = PROVIDER_MODULES[provider]
    except KeyError:
        raise ValueError(f"unknown provider {provider!r}; known: {', '.join(PROVIDER_MODULES)}") from None
    return importlib.import_module(f"{__name__}.{module}").ADAPTER
