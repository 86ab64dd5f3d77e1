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
import concurrent.futures
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from .. import errors as E
from ..config import Config, ModelSpec, load_config
from ..modes import Mode, build_messages
from ..providers.base import ChatRequest, ProviderResponse
from ..providers.http import HttpPool
from ..types import Completion, Issue, Message, Usage
from .answer import as_cache_hit, to_completion
from .cache import ResponseCache
from .call import PreparedCall as _Call
from .call import prepare_call, request_key
from .in_flight import InFlight
from .ledger import Ledger, reserve_attempt, settle_failed_attempt
from .limits import LIMITER, Bucket, BucketPaused, Limiter, buckets_for
from .retry import (
    FALLBACK_ON,
    Breaker,
    RetryPolicy,
    all_failed,
    annotate,
    failure_reasons,
    reached_server,
    transport_error,
    transport_errors,
    trips_breaker,
)
from .route import model_chain, route_issue, routed_mode
from .safety import register_config_secrets
from .streaming import DeltaCallback, StreamProbe, stream_answer, stream_answer_sync
from .sync import BackgroundLoop

log = logging.getLogger("orchestrator")
T = TypeVar("T")
CachePolicy = Literal["use", "refresh", "off"]
PARAMS = ("temperature", "max_tokens", "top_p", "seed")


@dataclass
class _Spend:
    """What one ``complete`` call has been charged so far, over every attempt and model."""

    charged: float = 0.0


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
        register_config_secrets(self.config)
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
        self._background = BackgroundLoop()
        self.in_flight = InFlight()

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
        stream: bool = False,
        on_delta: DeltaCallback | None = None,
        **params: Any,
    ) -> Completion:
        """Answer one prompt or issue.

        ``model``: a configured id; without it the ``[routing]`` entry for ``mode`` decides, else the
        default model. ``params`` (temperature, max_tokens, top_p, seed) override the config for this
        call. ``repeat`` makes a fresh sample: it is part of the cache key. ``cache``: "use" (default),
        "refresh" (call and overwrite), "off" (neither read nor write). ``ttl_s``: how long a stored
        answer stays valid (None: forever). ``ledger``: a second ledger (e.g. per run) that records
        this call and whose budget is checked too.

        ``stream``: send streamed requests where the provider streams (``Completion.ttft_s`` and
        ``output_tps`` are then measured); ``on_delta`` (implies ``stream``) gets each safe piece of text
        as it arrives. An attempt is retried, and the next model tried, only before its first piece; a
        failure after it raises :class:`~orchestrator.errors.StreamInterruptedError` with the partial text.

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
        entry = self.config.routing.get(mode) if (mode and not model) else None
        if isinstance(entry, dict) and entry.get("router") and isinstance(prompt_or_issue, Issue):
            model, mode = route_issue(self.config, mode, entry, prompt_or_issue)  # a learned per-issue router
            entry = None
        mode_obj = routed_mode(mode, entry) if mode else None
        if isinstance(entry, dict) and isinstance(entry.get("cascade"), dict):
            from .cascade import complete_cascade  # each step names its model: no recursion

            return await complete_cascade(
                self,
                prompt_or_issue,
                mode_obj.name if mode_obj is not None else mode,  # the routed prompt variant
                entry["cascade"],
                messages=messages,
                cache=cache,
                ttl_s=ttl_s,
                repeat=repeat,
                ledger=ledger,
                stream=stream,
                on_delta=on_delta,
                **params,
            )
        msgs = build_messages(prompt_or_issue, mode_obj, messages)
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
            call.streaming = (stream or on_delta is not None) and call.adapter.can_stream(call.spec)
            call.forward = on_delta
            last = i == len(chain) - 1
            shareable = cache == "use" and self.cache is not None and call.cacheable
            if shareable:
                hit = self._cached(call, ledgers) or await self._twin_answer(call, ledgers)
                if hit is not None:
                    if on_delta is not None and hit.text:
                        on_delta(hit.text)  # a stored answer arrives whole
                    if stream or on_delta is not None:
                        hit.ttft_s = hit.latency_s
                    hit.attempts = sent
                    hit.fallback_path = [*tried, model_id]
                    hit.fallback_reasons = failure_reasons(failures)
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
                with self.in_flight.lead(call.key, enabled=shareable) as lead:
                    completion = await self._call_model(call, ledgers, spend, cache=cache, ttl_s=ttl_s)
                    if lead is not None:
                        lead.set_result(completion)
                if not call.streaming and on_delta is not None and completion.text:
                    on_delta(completion.text)  # a provider that does not stream: the answer in one piece
            except E.ProviderError as exc:
                sent += exc.attempts or 0
                failures.append(exc)
                if isinstance(exc, E.StreamInterruptedError):  # part of it was handed on: no fallback
                    exc.fallback_reasons = failure_reasons(failures[:-1])  # type: ignore[attr-defined]
                    annotate(exc, tried, sent, spend.charged)
                    raise
                if isinstance(exc, FALLBACK_ON) and not last:
                    log.info("model %s failed (%s); falling back", model_id, exc.kind)
                    continue
                if len(failures) == 1 or isinstance(exc, E.BudgetExceededError):
                    annotate(exc, tried, sent, spend.charged)
                    raise
                raise all_failed(failures, tried, model_id, sent, spend.charged) from exc
            completion.attempts += sent
            completion.fallback_path = tried
            completion.fallback_reasons = failure_reasons(failures)
            return completion
        raise all_failed(failures, tried, chain[-1], sent, spend.charged)

    def complete_sync(self, prompt_or_issue: Issue | str | None = None, **kwargs: Any) -> Completion:
        """``complete`` for plain scripts and notebook cells; safe inside a running event loop."""
        return self.run_sync(self.complete(prompt_or_issue, **kwargs))

    def stream(
        self,
        prompt_or_issue: Issue | str | None = None,
        *,
        task: str | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[str | Completion]:
        """The answer's text as it arrives, piece by piece (``str``), then its :class:`Completion`.

        Takes what :meth:`complete` takes (``task`` is ``mode`` under the name tasks go by)::

            async for item in client.stream(issue, task="summarize"):
                if isinstance(item, str):
                    print(item, end="", flush=True)
                else:
                    print(f"\n{item.ttft_s:.2f} s to first token")

        A provider that cannot stream (a baseline) gives its whole answer as one piece; so does a cached
        answer. Breaking out of the loop cancels the call.
        """
        return stream_answer(self, prompt_or_issue, **_task_as_mode(task, kwargs))

    def stream_sync(
        self, prompt_or_issue: Issue | str | None = None, *, task: str | None = None, **kwargs: Any
    ) -> Iterator[str | Completion]:
        """:meth:`stream` as a plain iterator, for scripts and notebook cells (Jupyter's loop included)."""
        return stream_answer_sync(self, prompt_or_issue, **_task_as_mode(task, kwargs))

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the client's own loop (a background thread) and wait for its result."""
        return self._background.run(coro)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` on the client's own loop and return at once (a widget's run that must not block
        the kernel); ``cancel()`` on the future cancels it."""
        return self._background.submit(coro)

    def route(self, model: str | None, mode: str | None) -> list[str]:
        """The models to try, in order (see :func:`orchestrator.client.route.model_chain`)."""
        return model_chain(self.config, model, mode)

    async def aclose(self) -> None:
        await self.pool.aclose()

    def close(self) -> None:
        """Close HTTP clients, the background loop and the cache."""
        self._background.close(before=self.pool.aclose)
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

    def _prepare(
        self,
        spec: ModelSpec,
        messages: list[Message],
        mode: Mode | None,
        overrides: dict[str, Any],
        repeat: int,
        issue: Issue | None = None,
    ) -> _Call:
        return prepare_call(self.config, spec, messages, mode, overrides, repeat, issue)

    @staticmethod
    def _fits(call: _Call) -> bool:
        window = call.spec.context_window
        return not window or call.prompt_chars / 4 + call.max_tokens <= window

    def _buckets(self, spec: ModelSpec) -> list[Bucket]:
        buckets = self._buckets_by_model.get(spec.id)
        if buckets is None:
            # shared with this machine's other processes through ORCHESTRATOR_HOME
            buckets = self._buckets_by_model[spec.id] = buckets_for(
                self.limiter, spec, self.config.home / "limits.sqlite"
            )
        return buckets

    @staticmethod
    def request_key(spec: ModelSpec, req: ChatRequest, mode: Mode | None, repeat: int) -> str:
        """The cache key: everything that changes the answer, nothing secret (see :func:`.call.request_key`)."""
        return request_key(spec, req, mode, repeat)

    def _cached(self, call: _Call, ledgers: list[Ledger]) -> Completion | None:
        assert self.cache is not None
        started = time.perf_counter()
        hit = self.cache.get(call.key)
        if hit is None:
            return None
        as_cache_hit(hit, call.spec.id, call.req.mode, call.key, time.perf_counter() - started)
        for lg in ledgers:
            lg.record(hit)
        return hit

    async def _twin_answer(self, call: _Call, ledgers: list[Ledger]) -> Completion | None:
        """The answer of an identical request already in flight, as this call's cache hit (None: none)."""
        started = time.perf_counter()
        twin = await self.in_flight.wait(call.key)
        if twin is None:
            return None
        hit = as_cache_hit(twin.model_copy(deep=True), call.spec.id, call.req.mode, call.key, 0.0)
        hit.latency_s = time.perf_counter() - started  # what this call waited
        hit.notes.append("coalesced")
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
            response, latency, ttft, attempts, reserved = await self._send_with_retries(call, ledgers, spend)
        except E.ProviderError as exc:
            if not isinstance(exc, E.BudgetExceededError):
                for lg in ledgers:
                    lg.record_error(spec.id, call.req.mode)
                if trips_breaker(exc):
                    self.breaker.failure(spec.id)
            raise
        self.breaker.success(spec.id)
        completion = self._to_completion(call, response, latency, attempts, spend, ttft)
        for lg, amount in reserved:
            lg.record(completion, reserved=amount)
        if cache != "off" and self.cache is not None and call.cacheable:
            try:
                self.cache.put(call.key, completion, ttl_s)
            except Exception as exc:  # a full disk or a read-only home must not lose a paid answer
                log.warning("could not store %s's answer in the response cache: %s", spec.id, exc)
        return completion

    async def _send_with_retries(
        self, call: _Call, ledgers: list[Ledger], spend: _Spend
    ) -> tuple[ProviderResponse, float, float | None, int, list[tuple[Ledger, float]]]:
        """Send until an answer, a terminal error, exhausted attempts, a budget stop or a wait above the
        caps (or, streaming, a failure after the first token). Returns the response, its latency, its time
        to first token (None unless streamed), the attempts sent and the answer's reservations."""
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
            reserved = reserve_attempt(ledgers, call.spec.id, call.worst_cost, sent)
            try:
                response, latency, ttft = await self._send_once(call, buckets, est_tokens, honoured)
            except E.ProviderError as exc:
                error = exc
                if not isinstance(error, BucketPaused):
                    tries += 1
                    sent += reached_server(error)
                spend.charged += settle_failed_attempt(
                    reserved, call.spec.id, call.req.mode, call.worst_cost, error
                )
            except BaseException:  # cancelled: nothing is known of the attempt, keep the worst case
                cancelled = E.ProviderError("cancelled", maybe_billed=True)
                spend.charged += settle_failed_attempt(
                    reserved, call.spec.id, call.req.mode, call.worst_cost, cancelled
                )
                raise
            else:
                return response, latency, ttft, sent + 1, reserved
            error.attempts = sent
            error.tries = tries
            if isinstance(error, BucketPaused):
                raise error
            self.limiter.reconcile(buckets, est_tokens, prompt_tokens)
            hint = error.retry_after_s
            wait = hint if hint is not None else policy.backoff(tries, self._rng)
            if isinstance(error, E.RateLimitedError):
                until = self.limiter.pause(buckets[0], wait)  # every task of this model waits it out
            if isinstance(error, E.StreamInterruptedError):
                raise error
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
    ) -> tuple[ProviderResponse, float, float | None]:
        """One attempt: a concurrency permit, then a rate slot, then the adapter. Every failure is typed.
        Returns the response, its latency and (streamed) its time to first token."""
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
            probe = StreamProbe(call.forward) if call.streaming else None
            try:
                if probe is None:
                    response = await call.adapter.send(call.req, self.pool)
                else:
                    response = await call.adapter.send_stream(call.req, self.pool, probe.on_delta)
                    probe.flush()
            except E.ProviderError as exc:
                if probe is not None and probe.started:
                    raise probe.interrupted(exc) from None
                raise
            except Exception as exc:  # a transport's own exception type: type it, never let it escape
                if not isinstance(exc, transport_errors()):
                    raise
                error = transport_error(exc, spec)
                if probe is not None and probe.started:
                    raise probe.interrupted(error) from None
                raise error from None
            latency = time.perf_counter() - started
            ttft = probe.first_at - started if probe is not None and probe.first_at is not None else None
            usage = response.usage or Usage()
            self.limiter.reconcile(buckets, est_tokens, usage.input_total + usage.output_total)
            return response, latency, ttft
        finally:
            for gate in reversed(held):  # the permit is given back before any wait
                gate.release()

    def _to_completion(
        self,
        call: _Call,
        response: ProviderResponse,
        latency: float,
        attempts: int,
        spend: _Spend,
        ttft: float | None = None,
    ) -> Completion:
        completion = to_completion(
            call.spec, call.req, call.key, call.worst_cost, response, latency, attempts, spend.charged, ttft
        )
        if completion.cost_usd is None and call.worst_cost is None:
            self.ledger.warn_unpriced(call.spec.id)
        return completion


def _task_as_mode(task: str | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    if task is not None:
        if kwargs.get("mode") not in (None, task):
            raise TypeError("stream() takes task= or mode=, not both")
        kwargs["mode"] = task
    return kwargs
