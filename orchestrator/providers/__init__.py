"""One module per provider, each exposing ``ADAPTER``, and the one registry that lists them.

To add a provider: write ``providers/<name>.py`` (an :class:`~orchestrator.providers.base.HttpAdapter`
with ``build_request``, ``parse_response`` and ``map_error``), then add its :func:`register_provider` line
below. Config validation, prices and the CLI read the registry; nothing else names providers.
Provider modules load on first use, not at import.
"""

from __future__ import annotations

from .registry import PROVIDERS, ProviderInfo, get_adapter, provider_info, provider_names, register_provider
from .sampling import SAMPLING_RANGES, SamplingRanges, check_call_params, sampling_problems

__all__ = [
    "PROVIDERS",
    "SAMPLING_RANGES",
    "ProviderInfo",
    "SamplingRanges",
    "check_call_params",
    "get_adapter",
    "provider_info",
    "provider_names",
    "register_provider",
    "sampling_problems",
]

# One line per provider: its name in orchestrator.toml, the module holding its ADAPTER, and its traits.
register_provider(ProviderInfo("openai", f"{__name__}.openai", sampling=SAMPLING_RANGES["openai"]))
register_provider(
    ProviderInfo(
        "openrouter", f"{__name__}.openrouter", needs_key=True, sampling=SAMPLING_RANGES["openrouter"]
    )
)
register_provider(
    ProviderInfo("anthropic", f"{__name__}.anthropic", needs_key=True, sampling=SAMPLING_RANGES["anthropic"])
)
register_provider(
    ProviderInfo("cohere", f"{__name__}.cohere", needs_key=True, sampling=SAMPLING_RANGES["cohere"])
)
register_provider(
    ProviderInfo("gemini", f"{__name__}.gemini", needs_key=True, sampling=SAMPLING_RANGES["gemini"])
)
register_provider(ProviderInfo("ollama", f"{__name__}.ollama", sampling=SAMPLING_RANGES["ollama"]))
register_provider(
    ProviderInfo(
        "local", f"{__name__}.local", free=True, local_weights=True, sampling=SAMPLING_RANGES["local"]
    )
)
register_provider(
    ProviderInfo("baseline", f"{__name__}.baseline", free=True, sampling=SAMPLING_RANGES["baseline"])
)
register_provider(
    ProviderInfo(
        "trained", f"{__name__}.trained", free=True, cache_answers=False, sampling=SAMPLING_RANGES["baseline"]
    )
)
