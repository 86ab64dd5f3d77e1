"""The one list of providers: every other place (config validation, prices, the CLI) reads it.

A provider is one module exposing ``ADAPTER`` (see :mod:`orchestrator.providers.base`) plus one
:func:`register_provider` line; nothing else in the package names providers. Modules are imported on first
use, so registering costs nothing at import time.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .sampling import GENERIC, SamplingRanges

if TYPE_CHECKING:
    from .base import Adapter


@dataclass(frozen=True)
class ProviderInfo:
    """One provider: its config name, the module that holds its ``ADAPTER``, and what the rest of the
    package needs to know without importing it."""

    name: str
    module: str  # absolute import path of the module exposing ADAPTER
    needs_key: bool = False  # a call without a key in the environment cannot succeed
    free: bool = False  # runs on this machine and bills nothing: its cost is 0, never unknown
    local_weights: bool = False  # its weights are fetched by `orchestrator models pull`
    # answers go through the response cache; off for a model whose answer depends on more than the request
    # (a trained baseline's depends on its training data) and that is faster than a cache lookup anyway
    cache_answers: bool = True
    sampling: SamplingRanges = field(default=GENERIC)


PROVIDERS: dict[str, ProviderInfo] = {}


def register_provider(info: ProviderInfo) -> ProviderInfo:
    """Add (or replace) a provider; returns ``info``. Usable from any module, tests included."""
    PROVIDERS[info.name] = info
    return info


def provider_names() -> list[str]:
    """Every registered provider, in registration order."""
    return list(PROVIDERS)


def provider_info(name: str) -> ProviderInfo:
    """The registered provider ``name``; ValueError lists the known ones."""
    try:
        return PROVIDERS[name]
    except KeyError:
        raise ValueError(f"unknown provider {name!r}; known: {', '.join(PROVIDERS)}") from None


def get_adapter(provider: str) -> Adapter:
    """The adapter of ``provider`` (a name from orchestrator.toml), its module imported on first use."""
    return importlib.import_module(provider_info(provider).module).ADAPTER
