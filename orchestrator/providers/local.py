"""The embedded default: llama.cpp in-process through xllamacpp, no key, no network.

Each GGUF is loaded once per process and shared by every config that names it; calls to one model
instance are serialised (one llama.cpp slot). llama.cpp's prompt cache is switched off per request
(``cache_prompt: false``): with it on, the first call at temperature 0 can differ from later identical
calls, and reproducible answers matter more here than the few milliseconds it saves.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

from .. import errors as E
from .base import Adapter, ChatRequest, ProviderResponse
from .openai import openai_usage

DEFAULT_N_CTX = 4096


class LocalEngine:
    """One loaded GGUF: an xllamacpp server object and the lock that serialises its calls."""

    def __init__(self, path: Path, n_ctx: int, threads: int) -> None:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = n_ctx
        params.n_parallel = 1
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.verbosity = -1  # llama.cpp logs to stderr otherwise, into every notebook cell
        params.warmup = False
        self.path = path
        self.n_ctx = n_ctx
        self.server = xllamacpp.Server(params)
        self.lock = threading.Lock()

    @property
    def listening_address(self) -> str:
        """llama.cpp's own OpenAI-compatible HTTP server for this model (bound to 127.0.0.1 only)."""
        return self.server.listening_address

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return self.server.handle_chat_completions(body)


_engines: dict[tuple[str, int], LocalEngine] = {}
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


def engine_for(spec: Any) -> LocalEngine:
    """The process-wide engine for this spec's GGUF, loaded on first use."""
    path = model_path(spec)
    n_ctx = int(spec.options.get("n_ctx") or spec.context_window or DEFAULT_N_CTX)
    key = (str(path.resolve()), n_ctx)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            threads = int(spec.options.get("threads") or os.cpu_count() or 2)
            engine = LocalEngine(path, n_ctx, threads)
            _engines[key] = engine
        return engine


def loaded_engines() -> list[LocalEngine]:
    return list(_engines.values())


class LocalAdapter(Adapter):
    name = "local"

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
        if req.schema is not None:
            # llama.cpp turns the schema into a grammar: the output is constrained to valid JSON.
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": req.schema_name, "schema": req.schema},
            }
        return body

    def parse(self, req: ChatRequest, raw: dict[str, Any], engine: LocalEngine) -> ProviderResponse:
        if "error" in raw:
            err = raw["error"] if isinstance(raw["error"], dict) else {"message": str(raw["error"])}
            message = str(err.get("message", err))
            cls: type[E.ProviderError] = E.BadRequestError
            if "context" in message.lower() or "exceed" in message.lower():
                cls = E.ContextTooLongError
            raise self.err(
                cls, message, req, status=err.get("code") if isinstance(err.get("code"), int) else None
            )
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


ADAPTER = LocalAdapter()
