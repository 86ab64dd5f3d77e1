"""The embedded default: llama.cpp in-process through xllamacpp, no key, no network.

Each GGUF is loaded once per process (per context size and slot count) and shared by every config that
names it. ``options.slots`` sets llama.cpp's parallel slots (continuous batching); at most that many calls
run at once, the rest wait. llama.cpp's prompt cache is switched off per request (``cache_prompt: false``):
with it on, the first call at temperature 0 can differ from later identical calls, and reproducible
answers matter more here than the few milliseconds it saves.

Sampling options llama.cpp takes beyond the common parameters (``repeat_penalty``, the DRY sampler,
``stop``, ``top_k``, ``min_p``; see :data:`~orchestrator.providers.sampling.LOCAL_SAMPLING`) are passed from
``options.sampling``, checked when the config loads. They apply to every task of the model: a per-task
``[models.X.modes.T]`` table sets the common parameters only (max_tokens, temperature, top_p, seed).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import errors as E
from .base import Adapter, ChatRequest, ProviderResponse
from .openai import OpenAIStream, openai_usage
from .sampling import LOCAL_SAMPLING

DEFAULT_N_CTX = 4096
DEFAULT_SLOTS = 1


class LocalEngine:
    """One loaded GGUF: an xllamacpp server object with ``slots`` parallel slots, and the semaphore that
    keeps at most that many calls inside it."""

    def __init__(self, path: Path, n_ctx: int, threads: int, slots: int = DEFAULT_SLOTS) -> None:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_parallel = slots
        params.n_ctx = n_ctx * slots  # llama.cpp splits the context between the slots
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.verbosity = -1  # llama.cpp logs to stderr otherwise, into every notebook cell
        params.warmup = False
        self.path = path
        self.n_ctx = n_ctx
        self.slots = slots
        self.server = xllamacpp.Server(params)
        self.gate = threading.BoundedSemaphore(slots)

    @property
    def listening_address(self) -> str:
        """llama.cpp's own OpenAI-compatible HTTP server for this model (bound to 127.0.0.1 only)."""
        return self.server.listening_address

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.gate:
            return self.server.handle_chat_completions(body)

    def chat_stream(self, body: dict[str, Any], on_chunk: Callable[[dict[str, Any]], bool]) -> None:
        """Stream ``body``'s answer: ``on_chunk`` gets each OpenAI-shaped chunk and returns True to stop."""
        with self.gate:
            streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
            self.server.handle_chat_completions(streamed, on_chunk)


_engines: dict[tuple[str, int, int], LocalEngine] = {}
_engines_lock = threading.Lock()


def model_path(spec: Any) -> Path:
    """The GGUF a config names (``options.gguf``), else the default model, fetched on first use."""
    gguf = spec.options.get("gguf")
    if gguf:
        path = Path(os.path.expanduser(str(gguf)))
        if not path.is_file():
            raise E.UnknownProviderModelError(f"GGUF file not found: {path}", provider="local", model=spec.id)
        return path
    from .model_files import fetch

    return fetch()


def slots_for(spec: Any) -> int:
    return int(spec.options.get("slots") or DEFAULT_SLOTS)


def engine_for(spec: Any) -> LocalEngine:
    """The process-wide engine for this spec's GGUF, context size and slot count, loaded on first use."""
    path = model_path(spec)
    n_ctx = int(spec.options.get("n_ctx") or spec.context_window or DEFAULT_N_CTX)
    slots = slots_for(spec)
    key = (str(path.resolve()), n_ctx, slots)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            threads = int(spec.options.get("threads") or os.cpu_count() or 2)
            engine = LocalEngine(path, n_ctx, threads, slots)
            _engines[key] = engine
        return engine


def loaded_engines() -> list[LocalEngine]:
    return list(_engines.values())


class LocalAdapter(Adapter):
    name = "local"
    streams = True

    def supports_schema(self, spec: Any) -> bool:
        return True

    def body(self, req: ChatRequest) -> dict[str, Any]:
        p = req.params
        body: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in req.messages],
            "max_tokens": p.get("max_tokens") or 512,
            "temperature": p["temperature"] if p.get("temperature") is not None else 0.0,
            "seed": p["seed"] if p.get("seed") is not None else 0,
            "cache_prompt": False,
        }
        if p.get("top_p") is not None:
            body["top_p"] = p["top_p"]
        sampling = req.spec.options.get("sampling")
        if isinstance(sampling, dict):
            body.update({k: v for k, v in sampling.items() if k in LOCAL_SAMPLING or k == "stop"})
        if req.schema is not None:
            # llama.cpp turns the schema into a grammar: the output is constrained to valid JSON. A stop
            # sequence could cut the JSON short, so none applies.
            body.pop("stop", None)
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": req.schema_name, "schema": req.schema},
            }
        return body

    def raise_error(self, req: ChatRequest, raw: dict[str, Any]) -> None:
        err = raw["error"] if isinstance(raw["error"], dict) else {"message": str(raw["error"])}
        message = str(err.get("message", err))
        cls: type[E.ProviderError] = E.BadRequestError
        if "context" in message.lower() or "exceed" in message.lower():
            cls = E.ContextTooLongError
        raise self.err(
            cls, message, req, status=err.get("code") if isinstance(err.get("code"), int) else None
        )

    def parse(self, req: ChatRequest, raw: dict[str, Any], engine: LocalEngine) -> ProviderResponse:
        if "error" in raw:
            self.raise_error(req, raw)
        choice = raw["choices"][0]
        return ProviderResponse(
            text=choice["message"].get("content") or "",
            usage=openai_usage(raw.get("usage")),
            served_model=engine.path.name,
            finish_reason=choice.get("finish_reason"),
            request_id=raw.get("id"),
            raw=raw,
            extra={"timings": raw.get("timings")},
        )

    async def send(self, req: ChatRequest, pool: Any) -> ProviderResponse:
        engine = await asyncio.to_thread(engine_for, req.spec)
        raw = await asyncio.to_thread(engine.chat, self.body(req))
        return self.parse(req, raw, engine)

    async def send_stream(
        self, req: ChatRequest, pool: Any, on_delta: Callable[[str], None]
    ) -> ProviderResponse:
        """Stream through xllamacpp's callback: each chunk is handed to the event loop as it is decoded;
        a cancelled call (a deadline, a halted run) stops llama.cpp at its next token."""
        engine = await asyncio.to_thread(engine_for, req.spec)
        loop = asyncio.get_running_loop()
        stream = OpenAIStream(self, req)
        stop = threading.Event()
        failure: list[BaseException] = []
        last: dict[str, Any] = {}

        def on_chunk(chunk: Any) -> bool:
            try:
                if isinstance(chunk, dict) and "error" in chunk:
                    self.raise_error(req, chunk)
                if isinstance(chunk, dict) and chunk.get("timings"):
                    last["timings"] = chunk["timings"]
                text = stream.feed(chunk)
                if text:
                    loop.call_soon_threadsafe(on_delta, text)
            except BaseException as exc:  # xllamacpp swallows a callback's exception: keep it, stop
                failure.append(exc)
                return True
            return stop.is_set()

        try:
            await asyncio.to_thread(engine.chat_stream, self.body(req), on_chunk)
        except BaseException:
            stop.set()
            raise
        await asyncio.sleep(0)  # let the deltas scheduled from the thread run before the answer is returned
        if failure:
            raise failure[0]
        response = stream.finish()
        response.served_model = engine.path.name
        response.extra["timings"] = last.get("timings")
        return response


ADAPTER = LocalAdapter()
