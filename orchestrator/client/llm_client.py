"""LLMClient: route → cache → budget → rate limit → adapter → retries / fallback → Completion.

One interface over every provider. ``await client.complete(issue, mode="classify")`` in async code or
a notebook cell; ``client.complete_sync(...)`` anywhere, including inside Jupyter's running loop
(sync calls run on a loop the client owns, in a background thread).

For each model of the chain (the asked model, then its fallbacks):

1. the response cache is read (``cache="use"``): a hit costs nothing and is returned;
2. a model whose circuit is open (it kept failing) is skipped, unless it is the last one left;
   a fallback whose context window cannot hold the prompt is skipped;
3. each attempt reserves its worst case against the budget (see :mod:`orchestrator.client.ledger`): an
   attempt that could cross the cap is not sent; the reservation is settled when the attempt ends;
4. each attempt takes a concurrency permit, then a rate-limit slot (RPM, TPM, 429 pauses), then is sent;
5. a retryable error is retried with exponential backoff and full jitter, or after the server's hint;
   a hint above ``RetryPolicy.max_wait_s``, exhausted retries, a context-window or content-filter error
   move on to the next model.

Every answer is made safe to store before anyone sees it: lone surrogates are replaced, and the value
of every configured key (any ``api_key_env``, any credential header) is redacted from the text, however
the key is shaped; ``Completion.notes`` says what was repaired.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx

from .. import errors as E
from ..config import Config, ModelSpec, load_config
from ..modes import Mode, get_mode, parse_structured
from ..providers import check_call_params, get_adapter
from ..providers.base import ChatRequest, ProviderResponse
from ..providers.http import HttpPool
from ..safe_text import repair_text
from ..types import Completion, Issue, Message, Usage
from .cache import ResponseCache, cache_key
from .ledger import Ledger
from .limits import LIMITER, Bucket, BucketPaused, Limiter
from .pricing import list_cost, worst_case_cost, worst_case_prompt_tokens

log = logging.getLogger("orchestrator")
T = TypeVar("T")
CachePolicy = Literal["use", "refresh", "off"]
PARAMS = ("temperature", "max_tokens", "top_p", "seed")

# Errors after which the next model in the chain is tried: outages and exhausted retries, a context
# window too small, a content filter, a model this key cannot use. A bad request is the caller's to fix
# and a budget stop is deliberate: neither falls back.
FALLBACK_ON: tuple[type[E.ProviderError], ...] = (
    E.OverloadedError,
    E.ProviderTimeoutError,
    E.ConnectionFailedError,
    E.MalformedResponseError,
    E.ResponseTooLargeError,
    E.RateLimitedError,
    E.QuotaExhaustedError,
    E.ContextTooLongError,
    E.ContentFilteredError,
    E.AuthError,
    E.PermissionDeniedError,
    E.UnknownProviderModelError,
)
# Errors that say the model (not the request) is failing: they count towards its circuit breaker.
BREAKER_ON: tuple[type[E.ProviderError], ...] = (
    E.OverloadedError,
    E.ProviderTimeoutError,
    E.ConnectionFailedError,
    E.MalformedResponseError,
    E.ResponseTooLargeError,
    E.RateLimitedError,
    E.QuotaExhaustedError,
    E.AuthError,
    E.PermissionDeniedError,
    E.UnknownProviderModelError,
)


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter; each wait from the latest error; capped per wait and in total.

    ``max_attempts`` counts attempts at one model (the first one included; an attempt whose connection
    never opened counts here, though it is not a request sent, see ``Completion.attempts``). A server hint
    (Retry-After, retry-after-ms, Gemini retryDelay) replaces the computed backoff; a hint above
    ``max_wait_s``, or one that would take the total above ``max_total_wait_s``, is not slept: the call
    moves on to the fallback. Own loop rather than tenacity: the wait depends on the latest error's hint
    and on a cap that hands over to the fallback chain.
    """

    max_attempts: int = 4
    base_delay_s: float = 0.5
    max_wait_s: float = 30.0
    max_total_wait_s: float = 90.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max_wait_s, base_delay_s * 2**(attempt-1))]."""
        return rng.uniform(0, min(self.max_wait_s, self.base_delay_s * 2 ** (attempt - 1)))


@dataclass
class Breaker:
    """Per model: after ``threshold`` consecutive failed calls, skip the model for ``cooldown_s``.

    After the cooldown one call is let through (half open): a success closes the circuit, a failure
    opens it again at once. The last model of a chain is always tried (there is nothing to fall back to).
    """

    threshold: int = 3
    cooldown_s: float = 30.0

    def __post_init__(self) -> None:
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def is_open(self, model: str) -> bool:
        return self._open_until.get(model, 0.0) > time.monotonic()

    def failure(self, model: str) -> None:
        with self._lock:
            n = self._failures.get(model, 0) + 1
            self._failures[model] = n
            opened = n >= self.threshold and not self.is_open(model)
            if n >= self.threshold:
                self._open_until[model] = time.monotonic() + self.cooldown_s
        if opened:
            log.warning("model %s failed %d times in a row: skipped for %.0f s", model, n, self.cooldown_s)

    def success(self, model: str) -> None:
        if model in self._failures or model in self._open_until:
            with self._lock:
                self._failures.pop(model, None)
                self._open_until.pop(model, None)


@dataclass
class _Call:
    """One model's share of a ``complete`` call, prepared once."""

    spec: ModelSpec
    adapter: Any
    req: ChatRequest
    key: str
    prompt_chars: int
    max_tokens: int

    # Computed on first use: a cache hit never needs them.
    @functools.cached_property
    def worst_prompt_tokens(self) -> int:
        return worst_case_prompt_tokens(self.req.messages, self.req.schema)

    @functools.cached_property
    def worst_cost(self) -> float | None:
        """What one attempt can cost at most; None when the model is unpriced."""
        return worst_case_cost(self.spec, self.worst_prompt_tokens, self.max_tokens)


@dataclass
class _Spend:
    """What one ``complete`` call has been charged so far, over every attempt and model."""

    charged: float = 0.0


def _prompt_chars(messages: list[Message]) -> int:
    return sum(len(m.content) for m in messages)


_TRANSPORT_ERRORS: tuple[type[BaseException], ...] | None = None
_TIMEOUT_ERRORS: tuple[type[BaseException], ...] = (httpx.TimeoutException, TimeoutError)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network-level exceptions an adapter may let through (a transport's own types included)."""
    global _TRANSPORT_ERRORS
    if _TRANSPORT_ERRORS is None:
        found: list[type[BaseException]] = [httpx.HTTPError, httpx.StreamError, OSError, EOFError]
        try:
            import aiohttp

            found.append(aiohttp.ClientError)
        except ImportError:  # pragma: no cover
            pass
        _TRANSPORT_ERRORS = tuple(found)
    return _TRANSPORT_ERRORS


class LLMClient:
    """One interface over every configured model.

    ``config``: a Config, a path, or None to find orchestrator.toml (``$ORCHESTRATOR_CONFIG``, the
    current directory or a parent, else the shipped default). ``cache=False`` disables the response
    cache; ``budget_usd`` caps what this client may spend; ``sleep`` is what retries wait with (tests
    inject one that records); ``limiter`` defaults to the process-wide one shared by every client.
    """

    def __init__(
        self,
        config: Config | str | Path | None = None,
        *,
        cache: bool | ResponseCache = True,
        budget_usd: float | None = None,
        retry: RetryPolicy | None = None,
        breaker: Breaker | None = None,
        transport_factory: Callable[[], Any] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        seed: int | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self.config = config if isinstance(config, Config) else load_config(config)
        E.redact_env_secrets()
        _register_config_secrets(self.config)
        self.pool = HttpPool(transport_factory)
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or Breaker()
        self.ledger = Ledger(budget_usd=budget_usd)
        self.limiter = limiter or LIMITER
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._buckets_by_model: dict[str, list[Bucket]] = {}
        self.cache: ResponseCache | None = None
        if cache is True:
            try:
                self.cache = ResponseCache(self.config.home / "cache.sqlite")
            except E.StorageError as exc:  # a read-only home: answer without a cache, say so once
                log.warning("response cache disabled: %s", exc)
        else:
            self.cache = cache or None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._loop_lock = threading.Lock()

    # ----------------------------------------------------------------- public API

    def models(self) -> list[str]:
        return list(self.config.models)

    async def complete(
        self,
        prompt_or_issue: Issue | str | None = None,
        *,
        model: str | None = None,
        mode: str | None = None,
        messages: list[Message] | None = None,
        cache: CachePolicy = "use",
        ttl_s: float | None = None,
        repeat: int = 0,
        ledger: Ledger | None = None,
        **params: Any,
    ) -> Completion:
        """Answer one prompt or issue.

        ``model``: a configured id; without it the ``[routing]`` entry for ``mode`` decides, else the
        default model. ``params`` (temperature, max_tokens, top_p, seed) override the config for this
        call. ``repeat`` makes a fresh sample: it is part of the cache key. ``cache``: "use" (default),
        "refresh" (call and overwrite), "off" (neither read nor write). ``ttl_s``: how long a stored
        answer stays valid (None: forever). ``ledger``: a second ledger (e.g. per run) that records
        this call and whose budget is checked too.

        ``Completion.attempts`` counts the requests sent for this call over the whole chain (0 for a
        cache hit); ``Completion.fallback_path`` lists the models tried, the answering one last.
        Raises a :class:`~orchestrator.errors.ProviderError` subclass: the model's own error when a
        single model was tried, ``AllModelsFailedError`` when several were, ``BudgetExceededError``
        when the budget stops the call. The error carries ``attempts`` and ``fallback_path`` too.
        """
        unknown = [p for p in params if p not in PARAMS]
        if unknown:
            raise TypeError(f"complete() got unknown parameters: {', '.join(unknown)}")
        if cache not in ("use", "refresh", "off"):
            raise ValueError(f"cache must be 'use', 'refresh' or 'off', not {cache!r}")
        mode_obj = get_mode(mode) if mode else None
        entry = self.config.routing.get(mode) if (mode and not model) else None
        if isinstance(entry, dict) and isinstance(entry.get("cascade"), dict):
            from .cascade import complete_cascade  # each step names its model: no recursion

            return await complete_cascade(
                self,
                prompt_or_issue,
                mode,
                entry["cascade"],
                messages=messages,
                cache=cache,
                ttl_s=ttl_s,
                repeat=repeat,
                ledger=ledger,
                **params,
            )
        msgs = self._messages(prompt_or_issue, mode_obj, messages)
        chain = self.route(model, mode)
        ledgers = [self.ledger] if ledger is None or ledger is self.ledger else [self.ledger, ledger]
        tried: list[str] = []
        failures: list[E.ProviderError] = []
        sent = 0
        spend = _Spend()
        for i, model_id in enumerate(chain):
            call = self._prepare(
                self.config.model_spec(model_id),
                msgs,
                mode_obj,
                params,
                repeat,
                issue=prompt_or_issue if isinstance(prompt_or_issue, Issue) else None,
            )
            last = i == len(chain) - 1
            if cache == "use" and self.cache is not None:
                hit = self._cached(call, ledgers)
                if hit is not None:
                    hit.attempts = sent
                    hit.fallback_path = [*tried, model_id]
                    hit.charged_usd = spend.charged  # failed attempts earlier in the chain, if any
                    return hit
            spec = call.spec
            if self.breaker.is_open(model_id) and not last:
                failures.append(
                    E.OverloadedError(
                        "skipped: circuit open after repeated failures",
                        provider=spec.provider,
                        model=model_id,
                    )
                )
                continue
            if i > 0 and not self._fits(call):
                failures.append(
                    E.ContextTooLongError(
                        f"skipped: the prompt (~{call.prompt_chars // 4} tokens) plus max_tokens ({call.max_tokens}) "
                        f"exceeds the context window ({spec.context_window})",
                        provider=spec.provider,
                        model=model_id,
                    )
                )
                continue
            tried.append(model_id)
            try:
                completion = await self._call_model(call, ledgers, spend, cache=cache, ttl_s=ttl_s)
            except E.ProviderError as exc:
                sent += exc.attempts or 0
                failures.append(exc)
                if isinstance(exc, FALLBACK_ON) and not last:
                    log.info("model %s failed (%s); falling back", model_id, exc.kind)
                    continue
                if len(failures) == 1 or isinstance(exc, E.BudgetExceededError):
                    self._annotate(exc, tried, sent, spend)
                    raise
                raise self._all_failed(failures, tried, model_id, sent, spend) from exc
            completion.attempts += sent
            completion.fallback_path = tried
            return completion
        raise self._all_failed(failures, tried, chain[-1], sent, spend)

    def complete_sync(self, prompt_or_issue: Issue | str | None = None, **kwargs: Any) -> Completion:
        """``complete`` for plain scripts and notebook cells; safe inside a running event loop."""
        return self.run_sync(self.complete(prompt_or_issue, **kwargs))

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the client's own loop (a background thread) and wait for its result."""
        loop = self._ensure_loop()
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    def route(self, model: str | None, mode: str | None) -> list[str]:
        """The models to try, in order: the asked model (or the routing for ``mode``, or the default),
        then its fallbacks."""
        if model:
            spec = self.config.model_spec(model)
            return _dedupe([model, *spec.fallbacks])
        entry = self.config.routing.get(mode) if mode else None
        if isinstance(entry, dict) and entry.get("primary"):
            primary = str(entry["primary"])
            self.config.model_spec(primary)
            fallbacks = [str(m) for m in entry.get("fallbacks", [])]
            for fb in fallbacks:
                self.config.model_spec(fb)
            return _dedupe([primary, *fallbacks, *self.config.model_spec(primary).fallbacks])
        default = self.config.default_model
        return _dedupe([default, *self.config.model_spec(default).fallbacks])

    async def aclose(self) -> None:
        await self.pool.aclose()

    def close(self) -> None:
        """Close HTTP clients, the background loop and the cache."""
        if self._loop is not None:
            loop = self._loop
            asyncio.run_coroutine_threadsafe(self.pool.aclose(), loop).result()
            loop.call_soon_threadsafe(loop.stop)
            if self._loop_thread:
                self._loop_thread.join(timeout=5)
            if not loop.is_running():
                loop.close()
            self._loop = None
        if self.cache:
            self.cache.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
        self.close()

    # ----------------------------------------------------------------- internals

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._loop_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="orchestrator-loop", daemon=True)
                thread.start()
                self._loop, self._loop_thread = loop, thread
            return self._loop

    @staticmethod
    def _messages(
        prompt_or_issue: Issue | str | None, mode: Mode | None, messages: list[Message] | None
    ) -> list[Message]:
        if messages is not None:
            return list(messages)
        if prompt_or_issue is None:
            raise ValueError("complete() needs a prompt, an Issue or messages=")
        if mode is not None:
            return mode.messages(prompt_or_issue)
        if isinstance(prompt_or_issue, Issue):
            text = f"{prompt_or_issue.title}\n\n{prompt_or_issue.body}"
        else:
            text = prompt_or_issue
        return [Message(role="user", content=text)]

    def _params(self, spec: ModelSpec, mode: Mode | None, overrides: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = dict(mode.defaults) if mode else {}
        for key, value in spec.params_for(mode.name if mode else None).items():
            if value is not None:
                params[key] = value
        params.update({k: v for k, v in overrides.items() if v is not None})
        params.setdefault("max_tokens", spec.max_tokens)
        return params

    def _prepare(
        self,
        spec: ModelSpec,
        messages: list[Message],
        mode: Mode | None,
        overrides: dict[str, Any],
        repeat: int,
        issue: Issue | None = None,
    ) -> _Call:
        params = self._params(spec, mode, overrides)
        if overrides:  # the config's own values were checked when it loaded
            check_call_params(spec, params)
        messages = _safe_messages(messages)
        req = ChatRequest(
            spec=spec,
            messages=messages,
            params=params,
            schema=mode.schema if mode else None,
            schema_name=mode.name if mode else "answer",
            mode=mode.name if mode else None,
            issue=issue,
        )
        return _Call(
            spec=spec,
            adapter=get_adapter(spec.provider),
            req=req,
            key=self.request_key(spec, req, mode, repeat),
            prompt_chars=_prompt_chars(messages),
            max_tokens=int(params.get("max_tokens") or spec.max_tokens),
        )

    @staticmethod
    def _fits(call: _Call) -> bool:
        window = call.spec.context_window
        return not window or call.prompt_chars / 4 + call.max_tokens <= window

    def _buckets(self, spec: ModelSpec) -> list[Bucket]:
        buckets = self._buckets_by_model.get(spec.id)
        if buckets is None:
            lim = spec.limits
            db = self.config.home / "limits.sqlite"  # shares the limits with this machine's other processes
            scope = f"model:{spec.id}|{spec.provider}|{spec.base_url}|{spec.model}|{spec.api_key_env}"
            buckets = [self.limiter.bucket(scope, lim.rpm, lim.tpm, lim.max_concurrency, shared=db)]
            # Provider-wide scope: models sharing a key share the provider's account limits.
            shared = spec.options.get("account_limits")
            if isinstance(shared, dict):
                scope = f"account:{spec.provider}|{spec.api_key_env}|{spec.base_url}"
                buckets.append(
                    self.limiter.bucket(
                        scope, shared.get("rpm"), shared.get("tpm"), shared.get("max_concurrency"), shared=db
                    )
                )
            self._buckets_by_model[spec.id] = buckets
        return buckets

    def request_key(self, spec: ModelSpec, req: ChatRequest, mode: Mode | None, repeat: int) -> str:
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

    def _cached(self, call: _Call, ledgers: list[Ledger]) -> Completion | None:
        assert self.cache is not None
        started = time.perf_counter()
        hit = self.cache.get(call.key)
        if hit is None:
            return None
        hit.cost_saved_usd = hit.cost_usd
        hit.cost_usd = 0.0
        hit.from_cache = True
        hit.attempts = 0
        hit.latency_s = time.perf_counter() - started
        hit.request_hash = call.key
        hit.model = call.spec.id
        hit.mode = call.req.mode
        hit.charged_usd = 0.0
        _make_safe(hit)  # an entry stored before a key was configured may hold it
        for lg in ledgers:
            lg.record(hit)
        return hit

    async def _call_model(
        self,
        call: _Call,
        ledgers: list[Ledger],
        spend: _Spend,
        *,
        cache: CachePolicy,
        ttl_s: float | None,
    ) -> Completion:
        """One model's share of a call: retries inside, then the answer settled, cached and returned."""
        spec = call.spec
        if call.worst_cost is None:
            self.ledger.warn_unpriced(spec.id)
        try:
            response, latency, attempts, reserved = await self._send_with_retries(call, ledgers, spend)
        except E.ProviderError as exc:
            if not isinstance(exc, E.BudgetExceededError):
                for lg in ledgers:
                    lg.record_error(spec.id, call.req.mode)
                if isinstance(exc, BREAKER_ON) and not isinstance(exc, BucketPaused):
                    self.breaker.failure(spec.id)
            raise
        self.breaker.success(spec.id)
        completion = self._to_completion(call, response, latency, attempts, spend)
        for lg, amount in reserved:
            lg.record(completion, reserved=amount)
        if cache != "off" and self.cache is not None:
            try:
                self.cache.put(call.key, completion, ttl_s)
            except Exception as exc:  # a full disk or a read-only home must not lose a paid answer
                log.warning("could not store %s's answer in the response cache: %s", spec.id, exc)
        return completion

    def _reserve(self, call: _Call, ledgers: list[Ledger], sent: int) -> list[tuple[Ledger, float]]:
        """Reserve one attempt's worst case in every ledger, or raise BudgetExceededError (nothing held)."""
        reserved: list[tuple[Ledger, float]] = []
        try:
            for lg in ledgers:
                reserved.append((lg, lg.reserve(call.spec.id, call.worst_cost)))
        except E.BudgetExceededError as exc:
            for lg, amount in reserved:
                lg.release(amount)
            exc.attempts = sent
            raise
        return reserved

    def _settle_failed(
        self, call: _Call, reserved: list[tuple[Ledger, float]], error: E.ProviderError, spend: _Spend
    ) -> None:
        """A failed attempt: its worst case is charged if the provider may bill it, else released."""
        charged = (call.worst_cost or 0.0) if error.maybe_billed else 0.0
        spend.charged += charged
        for lg, amount in reserved:
            lg.charge_failed(call.spec.id, call.req.mode, amount, charged)

    async def _send_with_retries(
        self, call: _Call, ledgers: list[Ledger], spend: _Spend
    ) -> tuple[ProviderResponse, float, int, list[tuple[Ledger, float]]]:
        """Send until an answer, a terminal error, exhausted attempts, a budget stop or a wait above the
        caps. Returns the response, its latency, the attempts sent and the answer's reservations."""
        spec, policy = call.spec, self.retry
        buckets = self._buckets(spec)
        prompt_tokens = call.prompt_chars // 4
        est_tokens = prompt_tokens + call.max_tokens
        waited = 0.0
        tries = 0  # attempts made, what the retry policy counts
        sent = 0  # requests that reached a server: what ``attempts`` reports (a refused connect is none)
        honoured = 0.0  # the end of the pause this task already slept through
        base_url = getattr(call.adapter, "base_url", None)
        if base_url is not None:
            # build the pooled HTTP client (and its TLS context) before taking a rate slot, so that the
            # first request is not sent late and bunched with the next one
            self.pool.client(base_url(spec))
        while True:
            reserved = self._reserve(call, ledgers, sent)
            try:
                response, latency = await self._send_once(call, buckets, est_tokens, honoured)
            except E.ProviderError as exc:
                error = exc
                if not isinstance(error, BucketPaused):
                    tries += 1
                    sent += _reached_server(error)
                self._settle_failed(call, reserved, error, spend)
            except BaseException:  # cancelled: nothing is known of the attempt, keep the worst case
                self._settle_failed(call, reserved, E.ProviderError("cancelled", maybe_billed=True), spend)
                raise
            else:
                return response, latency, sent + 1, reserved
            error.attempts = sent
            error.tries = tries
            if isinstance(error, BucketPaused):
                raise error
            self.limiter.reconcile(buckets, est_tokens, prompt_tokens)
            hint = error.retry_after_s
            wait = hint if hint is not None else policy.backoff(tries, self._rng)
            if isinstance(error, E.RateLimitedError):
                until = self.limiter.pause(buckets[0], wait)  # every task of this model waits it out
            if not error.retryable or tries >= policy.max_attempts:
                raise error
            if wait > policy.max_wait_s or waited + wait > policy.max_total_wait_s:
                log.info(
                    "%s: %s; a wait of %.2f s is above the cap: giving up on this model",
                    spec.id,
                    error.kind,
                    wait,
                )
                raise error
            if isinstance(error, E.RateLimitedError):
                honoured = until
            waited += wait
            log.info("%s: %s, retry %d in %.2f s", spec.id, error.kind, tries, wait)
            await self._sleep(wait)

    async def _send_once(
        self, call: _Call, buckets: list[Bucket], est_tokens: int, honoured: float
    ) -> tuple[ProviderResponse, float]:
        """One attempt: a concurrency permit, then a rate slot, then the adapter. Every failure is typed."""
        spec = call.spec
        gates = [b.gate for b in buckets if b.gate is not None]
        held = []
        try:
            for gate in gates:  # concurrency first, then the rate slot: a slot is never held idle
                await gate.acquire()
                held.append(gate)
            try:
                await self.limiter.acquire(
                    buckets, est_tokens, max_pause=self.retry.max_wait_s, honoured=honoured
                )
            except BucketPaused as exc:
                raise BucketPaused(
                    exc.detail, provider=spec.provider, model=spec.id, retry_after_s=exc.retry_after_s
                ) from None
            started = time.perf_counter()
            try:
                response = await call.adapter.send(call.req, self.pool)
            except E.ProviderError:
                raise
            except Exception as exc:  # a transport's own exception type: type it, never let it escape
                if not isinstance(exc, _transport_errors()):
                    raise
                raise self._transport_error(exc, spec) from None
            latency = time.perf_counter() - started
            usage = response.usage or Usage()
            self.limiter.reconcile(buckets, est_tokens, usage.input_total + usage.output_total)
            return response, latency
        finally:
            for gate in reversed(held):  # the permit is given back before any wait
                gate.release()

    @staticmethod
    def _transport_error(exc: BaseException, spec: ModelSpec) -> E.ProviderError:
        cls: type[E.ProviderError] = E.ConnectionFailedError
        try:
            import aiohttp

            timeouts: tuple[type[BaseException], ...] = (*_TIMEOUT_ERRORS, aiohttp.ServerTimeoutError)
        except ImportError:  # pragma: no cover
            timeouts = _TIMEOUT_ERRORS
        if isinstance(exc, timeouts):
            cls = E.ProviderTimeoutError
        never_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, ConnectionRefusedError))
        return cls(
            f"{type(exc).__name__}: {exc}", provider=spec.provider, model=spec.id, maybe_billed=not never_sent
        )

    def _to_completion(
        self, call: _Call, response: ProviderResponse, latency: float, attempts: int, spend: _Spend
    ) -> Completion:
        spec, req = call.spec, call.req
        notes = [note for note in ("text_repaired", "secret_redacted") if response.extra.get(note)]
        usage = response.usage
        if usage is None:
            usage = Usage()
            notes.append("usage_missing")
        if response.provider_cost_usd is not None:
            cost = response.provider_cost_usd
        elif response.usage is None and call.worst_cost:
            cost = None  # billed, but for how much is unknown: the worst case is charged instead
        else:
            cost = list_cost(spec, usage)
        if cost is None and call.worst_cost is None:
            self.ledger.warn_unpriced(spec.id)
        charged = spend.charged + (cost if cost is not None else (call.worst_cost or 0.0))
        completion = Completion(
            text=response.text,
            model=spec.id,
            served_model=response.served_model,
            provider=spec.provider,
            usage=usage,
            cost_usd=cost,
            latency_s=latency,
            finish_reason=response.finish_reason,
            attempts=attempts,
            request_id=response.request_id,
            mode=req.mode,
            request_hash=call.key,
            provider_cost_usd=response.provider_cost_usd,
            charged_usd=charged,
            notes=notes,
            raw=response.raw,
        )
        _make_safe(completion)
        if req.schema is not None:  # on the safe text: what is parsed is what is stored
            completion.parsed, completion.parse_error = parse_structured(completion.text, req.schema)
        return completion

    @staticmethod
    def _annotate(exc: E.ProviderError, tried: list[str], sent: int, spend: _Spend) -> E.ProviderError:
        exc.fallback_path = list(tried)
        exc.attempts = sent
        exc.charged_usd = spend.charged  # type: ignore[attr-defined]
        return exc

    @classmethod
    def _all_failed(
        cls, failures: list[E.ProviderError], tried: list[str], model: str, sent: int, spend: _Spend
    ) -> E.ProviderError:
        summary = "; ".join(f"{f.model}: {f.kind}" for f in failures)
        err = E.AllModelsFailedError(
            f"every model in the chain failed ({summary})", errors=failures, model=model
        )
        return cls._annotate(err, tried, sent, spend)


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _register_config_secrets(config: Config) -> None:
    """Every configured credential becomes a secret to redact, whatever its shape: the value of each
    model's ``api_key_env`` and of each header whose name says it is a credential."""
    import os

    for spec in config.models.values():
        if spec.api_key_env:
            E.register_secret(os.environ.get(spec.api_key_env))
        for name, value in spec.headers.items():
            if E.is_secret_header(name):
                E.register_secret(value)


def _reached_server(error: E.ProviderError) -> bool:
    """Whether a failed attempt's request reached a server: it has an HTTP status, or it failed after
    the connection was made (then the provider may bill it). A refused or timed-out connect did not."""
    return error.status is not None or error.maybe_billed


def _safe_messages(messages: list[Message]) -> list[Message]:
    """Messages whose text every provider can be sent: lone surrogates (from an issue file) replaced."""
    out = messages
    for i, m in enumerate(messages):
        text, n = repair_text(m.content)
        if n:
            if out is messages:
                out = list(messages)
            out[i] = Message(role=m.role, content=text)
    return out


def _make_safe(completion: Completion) -> None:
    """Repair what cannot be stored and redact what must not be, in the text: in place, noted in
    ``notes`` (HTTP adapters do the same to the raw body as they read it)."""
    text, repaired = repair_text(completion.text)
    if E.contains_secret(text) or any(p.search(text) for p in E.SECRET_PATTERNS):
        text = E.redact(text)
        if "secret_redacted" not in completion.notes:
            completion.notes.append("secret_redacted")
    if repaired and "text_repaired" not in completion.notes:
        completion.notes.append("text_repaired")
    completion.text = text
