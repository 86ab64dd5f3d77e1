"""One model's share of a call, prepared once: its parameters, its request, its cache key, its worst case.

The parameters are the task's defaults, then the model's own (and its per-task override), then the caller's;
the messages are made sendable; the cache key holds everything that changes the answer and nothing secret.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..providers import check_call_params, get_adapter, provider_info
from ..providers.base import ChatRequest
from .cache import cache_key
from .pricing import worst_case_cost, worst_case_prompt_tokens
from .safety import safe_messages

if TYPE_CHECKING:
    from ..config import Config, ModelSpec
    from ..modes import Mode
    from ..types import Issue, Message
    from .streaming import DeltaCallback


@dataclass
class PreparedCall:
    """One model's share of a ``complete`` call, prepared once."""

    spec: ModelSpec
    adapter: Any
    req: ChatRequest
    key: str
    prompt_chars: int
    max_tokens: int
    cacheable: bool = True  # the provider's answers go through the response cache
    streaming: bool = False  # attempts stream (the provider can, and the caller asked)
    forward: DeltaCallback | None = None  # where the safe pieces of a streamed answer go

    # Computed on first use: a cache hit never needs them.
    @functools.cached_property
    def worst_prompt_tokens(self) -> int:
        return worst_case_prompt_tokens(self.req.messages, self.req.schema)

    @functools.cached_property
    def worst_cost(self) -> float | None:
        """What one attempt can cost at most; None when the model is unpriced."""
        return worst_case_cost(self.spec, self.worst_prompt_tokens, self.max_tokens)


def call_params(spec: ModelSpec, mode: Mode | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """The sampling parameters of one call: the task's defaults, the model's, then the caller's."""
    params: dict[str, Any] = dict(mode.defaults) if mode else {}
    overrides_for = (mode.name if mode.name in spec.modes else mode.task_name) if mode else None
    for key, value in spec.params_for(overrides_for).items():
        if value is not None:
            params[key] = value
    params.update({k: v for k, v in overrides.items() if v is not None})
    params.setdefault("max_tokens", spec.max_tokens)
    return params


def prepare_call(
    config: Config,
    spec: ModelSpec,
    messages: list[Message],
    mode: Mode | None,
    overrides: dict[str, Any],
    repeat: int,
    issue: Issue | None = None,
) -> PreparedCall:
    """``spec``'s share of a call: the request its adapter sends and what the client needs to know of it."""
    params = call_params(spec, mode, overrides)
    if overrides:  # the config's own values were checked when it loaded
        check_call_params(spec, params)
    messages = safe_messages(messages)
    req = ChatRequest(
        spec=spec,
        messages=messages,
        params=params,
        schema=mode.schema if mode else None,
        schema_name=re.sub(r"[^A-Za-z0-9_-]", "_", mode.name) if mode else "answer",
        mode=mode.name if mode else None,
        issue=issue,
        config=config,
    )
    return PreparedCall(
        spec=spec,
        adapter=get_adapter(spec.provider),
        req=req,
        key=request_key(spec, req, mode, repeat),
        prompt_chars=sum(len(m.content) for m in messages),
        max_tokens=int(params.get("max_tokens") or spec.max_tokens),
        cacheable=provider_info(spec.provider).cache_answers,
    )


def request_key(spec: ModelSpec, req: ChatRequest, mode: Mode | None, repeat: int) -> str:
    """The cache key: everything that changes the answer, nothing secret (no key, no headers)."""
    return cache_key(
        {
            "provider": spec.provider,
            "model": spec.model,
            "base_url": spec.base_url,
            "options": {
                k: v for k, v in spec.options.items() if k not in ("account_limits", "referer", "title")
            },
            "messages": [[m.role, m.content] for m in req.messages],
            "params": req.params,
            "schema": req.schema,
            "mode_version": mode.version if mode else None,
            "repeat": repeat,
        }
    )
