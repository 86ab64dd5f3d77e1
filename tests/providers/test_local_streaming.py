"""Streaming from the real llama.cpp: in-process through xllamacpp's callback, and over llama.cpp's own HTTP
server on loopback (real SSE from the real server, not a replay), including killing that server mid-stream.

- In process: the streamed greedy answer is byte for byte the whole one, with the same usage; TTFT is
  measured below total latency.
- Over HTTP: the OpenAI adapter streams from llama.cpp's server, usage comes in the final chunk
  (``stream_options.include_usage``), and the answer equals the in-process one.
- Kill: a llama.cpp server in a child process is SIGKILLed once the first pieces have arrived: a typed
  StreamInterruptedError with the partial text, one request only (no retry after the first token). With the
  server already dead (before the first token), the call is retried and falls back to the next model.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.fault_server import config_for

from orchestrator import errors as E
from orchestrator.client import LLMClient, RetryPolicy
from orchestrator.config import load_config
from orchestrator.types import Completion

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "List the steps to reproduce a crash when saving an empty project."
COUNT = "Count from 1 to 500, separated by commas. Do not stop early."


def _stream(client: LLMClient, prompt: str, **kw) -> tuple[list[str], Completion]:
    pieces: list[str] = []
    for item in client.stream_sync(prompt, **kw):
        if isinstance(item, Completion):
            return pieces, item
        pieces.append(item)
    raise AssertionError("no Completion")


@pytest.fixture(scope="module")
def local_client(gguf_path) -> Iterator[LLMClient]:
    client = LLMClient(load_config(ROOT / "orchestrator.toml"), cache=False)
    yield client
    client.close()


def test_in_process_stream_equals_the_whole_greedy_answer(local_client) -> None:
    kw = {"model": "local/smollm2", "max_tokens": 48, "temperature": 0.0, "seed": 0}
    whole = local_client.complete_sync(PROMPT, **kw)
    pieces, streamed = _stream(local_client, PROMPT, **kw)
    assert "".join(pieces) == streamed.text == whole.text and len(pieces) > 3
    assert streamed.usage.output_total == whole.usage.output_total > 0
    assert streamed.usage.input_total == whole.usage.input_total
    assert 0 < streamed.ttft_s < streamed.latency_s and streamed.output_tps > 0
    assert whole.ttft_s is None and whole.output_tps is None


def test_llama_cpp_http_server_streams_real_sse_with_usage_in_the_final_chunk(local_client) -> None:
    from orchestrator.providers.local import engine_for

    spec = local_client.config.model_spec("local/smollm2")
    address = engine_for(spec).listening_address  # llama.cpp's own server, 127.0.0.1 only
    cfg = config_for({"cpp/smollm2": {"provider": "openai", "model": "smollm2", "base_url": f"{address}/v1"}})
    with LLMClient(cfg, cache=False) as http_client:
        kw = {"max_tokens": 40, "temperature": 0.0, "seed": 0}
        pieces, streamed = _stream(http_client, PROMPT, model="cpp/smollm2", **kw)
        whole = http_client.complete_sync(PROMPT, model="cpp/smollm2", cache="off", **kw)
    assert "".join(pieces) == streamed.text == whole.text and len(pieces) > 3
    assert streamed.usage.output_total == whole.usage.output_total > 0  # from the final chunk's usage
    assert streamed.usage.input_total == whole.usage.input_total > 0
    assert "usage_missing" not in streamed.notes
    assert 0 < streamed.ttft_s < streamed.latency_s


SERVER = textwrap.dedent(
    """
    import sys, time, xllamacpp
    p = xllamacpp.CommonParams()
    p.model.path = sys.argv[1]
    p.n_ctx = 2048
    p.n_parallel = 1
    p.verbosity = -1
    p.warmup = False
    p.cpuparams.n_threads = 1
    p.cpuparams_batch.n_threads = 1
    server = xllamacpp.Server(p)
    print(server.listening_address, flush=True)
    time.sleep(600)
    """
)


def test_killing_llama_cpp_mid_stream_keeps_the_partial_text_and_does_not_retry(gguf_path, tmp_path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(gguf_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        address = child.stdout.readline().strip()
        assert address.startswith("http://127.0.0.1:"), address
        cfg = config_for(
            {
                "cpp/child": {
                    "provider": "openai",
                    "model": "m",
                    "base_url": f"{address}/v1",
                    "fallbacks": ["baseline/rules"],
                },
                "baseline/rules": {"provider": "baseline", "model": "rules-v1"},
            }
        )
        with LLMClient(cfg, cache=False, retry=RetryPolicy(max_attempts=3, base_delay_s=0.05)) as client:
            seen: list[str] = []
            with pytest.raises(E.StreamInterruptedError) as info:
                for item in client.stream_sync(COUNT, model="cpp/child", max_tokens=400, temperature=0.0):
                    seen.append(item)  # type: ignore[arg-type]
                    if len("".join(seen)) > 20 and child.poll() is None:
                        os.kill(child.pid, signal.SIGKILL)
            exc = info.value
            assert exc.partial_text.startswith("".join(seen)[:20]) and len(exc.partial_text) >= 20
            assert exc.cause is not None and exc.cause.kind in ("connection", "malformed_response")
            assert exc.attempts == 1 and exc.fallback_path == ["cpp/child"]  # no retry, no fallback
            child.wait(timeout=10)
            # now the server is gone before any token: retried (connection refused), then the fallback answers
            started = time.monotonic()
            pieces, answer = _stream(client, COUNT, model="cpp/child", max_tokens=40)
        assert answer.model == "baseline/rules" and answer.fallback_path == ["cpp/child", "baseline/rules"]
        assert "".join(pieces) == answer.text and time.monotonic() - started < 30
        assert any("connection" in r for r in answer.fallback_reasons)
    finally:
        child.kill()
        child.wait(timeout=10)
