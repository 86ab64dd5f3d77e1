"""orchestrator: one interface over many LLMs, and a workbench to benchmark and route them.

Importing the package is cheap: it loads no model, imports no provider module and opens no socket.
Names are resolved on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "LLMClient": "client",
    "RetryPolicy": "client",
    "Breaker": "client",
    "Config": "config",
    "ModelSpec": "config",
    "load_config": "config",
    "Completion": "types",
    "Usage": "types",
    "Message": "types",
    "Issue": "types",
    "Gold": "types",
    "Comment": "types",
    "MODES": "modes",
    "get_mode": "modes",
    "Ledger": "client.ledger",
    "ProviderError": "errors",
    "BudgetExceeded": "errors",
    "BudgetExceededError": "errors",
    "ConfigError": "errors",
    "UnknownModelError": "errors",
    "load_issues": "issues.files",
    "write_issues": "issues.files",
    "run_grid": "runs.runner",
    "run_grid_sync": "runs.runner",
    "results_df": "runs.store",
    "summary_table": "analysis",
    "paired_comparison": "analysis",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from .client import Breaker, LLMClient, RetryPolicy
    from .client.ledger import Ledger
    from .config import Config, ModelSpec, load_config
    from .errors import BudgetExceeded, BudgetExceededError, ConfigError, ProviderError, UnknownModelError
    from .modes import MODES, get_mode
    from .types import Comment, Completion, Gold, Issue, Message, Usage


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
