"""Which models answer a call, and with which prompt: the asked model, else the ``[routing]`` entry of the
mode (a winner written back by ``orchestrator route``, or a learned router that picks the model and
prompt per issue), else the default model; then the fallbacks.

For a task whose routing entry names a prompt variant, that variant answers (with a warning when the task
file has changed since the routing was written: its version no longer matches the recorded one).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..modes import Mode, get_mode

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["model_chain", "route_issue", "routed_mode"]

log = logging.getLogger("orchestrator")


def routed_mode(mode: str, entry: Any) -> Mode:
    """The mode to answer ``mode`` with: for a task whose routing names a prompt variant, that variant."""
    asked = get_mode(mode)
    prompt = entry.get("prompt") if isinstance(entry, dict) else None
    if not prompt or prompt == asked.prompt or ":" in mode:
        return asked
    routed = get_mode(f"{asked.task_name}:{prompt}")
    recorded = entry.get("prompt_version")
    if recorded and recorded != routed.version:
        log.warning(
            "[routing.%s] chose prompt %r at version %s; the task file now makes version %s (edited since)",
            mode,
            prompt,
            recorded,
            routed.version,
        )
    return routed


def route_issue(config: Config, mode: str, entry: dict[str, Any], issue: Any) -> tuple[str, str]:
    """(model, mode) the learned router named by ``entry["router"]`` sends ``issue`` to, at the entry's
    ``router_tau``. The router file is plain data (:mod:`orchestrator.routing.router`); one that names a
    model or prompt the config no longer has is a ConfigError."""
    from ..errors import ConfigError
    from ..modes import MODES
    from ..routing.router import load_router

    router = load_router(config.home, str(entry["router"]))
    if router.task != get_mode(mode).task_name:
        raise ConfigError(f"[routing.{mode}] router {entry['router']!r} was learned for task {router.task!r}")
    tau = entry.get("router_tau")
    chosen = router.choose(issue, None if tau is None else float(tau))
    if chosen.model not in config.models:
        raise ConfigError(
            f"[routing.{mode}] router {entry['router']!r} chose model {chosen.model!r}, which the config no "
            "longer has; learn the router again (`orchestrator route RUN_ID --router learned --write`)"
        )
    if chosen.mode not in MODES:
        raise ConfigError(
            f"[routing.{mode}] router {entry['router']!r} chose prompt mode {chosen.mode!r}, unknown"
        )
    return chosen.model, chosen.mode


def model_chain(config: Config, model: str | None, mode: str | None) -> list[str]:
    """The models to try, in order: the asked model (or the routing for ``mode``, or the default), then its
    fallbacks; every id is checked against the config."""
    if model:
        return _dedupe([model, *config.model_spec(model).fallbacks])
    entry = config.routing.get(mode) if mode else None
    if isinstance(entry, dict) and entry.get("primary"):
        primary = str(entry["primary"])
        config.model_spec(primary)
        fallbacks = [str(m) for m in entry.get("fallbacks", [])]
        for fb in fallbacks:
            config.model_spec(fb)
        return _dedupe([primary, *fallbacks, *config.model_spec(primary).fallbacks])
    default = config.default_model
    return _dedupe([default, *config.model_spec(default).fallbacks])


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
