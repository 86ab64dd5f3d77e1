"""orchestrator against its peers, in one run: per-call client overhead and import time.

    python bench/bench_peers.py --setup     # once: a separate venv with the peers (bench/requirements-peers.txt)
    python bench/bench_peers.py             # the table

The peers (LiteLLM, the official openai SDK) live in their own virtual environment (bench/.venv-peers) so
they never touch the project's dependencies. Every client makes the same sequential calls to the same
loopback fake OpenAI-compatible server (no latency, a separate process), each in a fresh subprocess,
interleaved A B C D A B C D ... over several rounds; the figure is the median over rounds.
Overhead = the client's wall (and CPU) per call minus raw httpx's (httpx-aiohttp transport): what the
library adds on top of the HTTP round trip and the server's own time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS_VENV = HERE / ".venv-peers"
sys.path.insert(0, str(HERE))

from bench_overhead import start_server_process  # noqa: E402

PROLOGUE = """
import asyncio, json, sys, time
URL, N, WARMUP = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
MSG = "Summarize GitHub issue number {i}: the build fails on Windows with a long path error."
async def measure(call):
    for i in range(WARMUP):
        await call(-1 - i)
    w, c = time.perf_counter(), time.process_time()
    for i in range(N):
        await call(i)
    print(json.dumps({"wall_ms": (time.perf_counter() - w) / N * 1e3, "cpu_ms": (time.process_time() - c) / N * 1e3}))
"""

CLIENTS = {
    "raw httpx (floor)": (
        "project",
        """
import httpx
from httpx_aiohttp import AiohttpTransport
async def main():
    async with httpx.AsyncClient(transport=AiohttpTransport()) as h:
        async def call(i):
            r = await h.post(URL + "/chat/completions", json={"model": "fake", "max_tokens": 16,
                             "messages": [{"role": "user", "content": MSG.format(i=i)}]})
            return r.json()["choices"][0]["message"]["content"]
        await measure(call)
asyncio.run(main())
""",
    ),
    "orchestrator": (
        "project",
        """
import os, tempfile, pathlib
os.environ["ORCHESTRATOR_HOME"] = tempfile.mkdtemp()
from orchestrator.client import LLMClient
from orchestrator.config import config_from_dict
cfg = config_from_dict({"models": {"openai/fake": {"provider": "openai", "model": "fake", "base_url": URL,
      "max_tokens": 16, "price": {"input": 0.15, "output": 0.6}}}}, pathlib.Path("bench.toml"))
async def main():
    client = LLMClient(cfg, cache=False)
    async def call(i):
        return (await client.complete(MSG.format(i=i), model="openai/fake")).text
    await measure(call)
    await client.aclose()
asyncio.run(main())
""",
    ),
    "openai SDK": (
        "peers",
        """
from openai import AsyncOpenAI
async def main():
    client = AsyncOpenAI(base_url=URL, api_key="sk-bench-not-a-key", max_retries=0)
    async def call(i):
        r = await client.chat.completions.create(model="fake", max_tokens=16,
                messages=[{"role": "user", "content": MSG.format(i=i)}])
        return r.choices[0].message.content
    await measure(call)
asyncio.run(main())
""",
    ),
    "LiteLLM acompletion": (
        "peers",
        """
import os
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
import litellm
litellm.telemetry = False
async def main():
    async def call(i):
        r = await litellm.acompletion(model="openai/fake", api_base=URL, api_key="sk-bench-not-a-key",
                max_tokens=16, messages=[{"role": "user", "content": MSG.format(i=i)}], num_retries=0)
        return r.choices[0].message.content
    await measure(call)
asyncio.run(main())
""",
    ),
}

IMPORTS = {
    "orchestrator": ("project", "import orchestrator"),
    "orchestrator+client": ("project", "from orchestrator import LLMClient"),  # what a notebook pays first
    "openai": ("peers", "import openai"),
    "litellm": ("peers", "import litellm"),
}


def python_for(env: str) -> str:
    if env == "project":
        return sys.executable
    py = PEERS_VENV / "bin" / "python"
    if not py.exists():
        sys.exit("no peers venv: run `python bench/bench_peers.py --setup` first")
    return str(py)


def setup() -> None:
    subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    subprocess.run(
        [str(PEERS_VENV / "bin" / "pip"), "install", "-q", "-r", str(HERE / "requirements-peers.txt")],
        check=True,
    )
    print(f"peers installed in {PEERS_VENV.relative_to(ROOT)}")


def overhead(rounds: int, calls: int, warmup: int) -> dict[str, dict[str, float]]:
    url, server = start_server_process(0.0)
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in CLIENTS}
    try:
        for _ in range(rounds):
            for name, (env, body) in CLIENTS.items():
                script = PROLOGUE + textwrap.dedent(body)
                proc = subprocess.run(
                    [python_for(env), "-c", script, url, str(calls), str(warmup)],
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                )
                if proc.returncode != 0:
                    raise RuntimeError(f"{name} failed:\n{proc.stderr[-2000:]}")
                samples[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    finally:
        server.terminate()
    return {
        name: {k: statistics.median(s[k] for s in runs) for k in ("wall_ms", "cpu_ms")}
        for name, runs in samples.items()
    }


def import_times(runs: int, slow_runs: int) -> dict[str, float]:
    out = {}
    for name, (env, statement) in IMPORTS.items():
        n = slow_runs if name == "litellm" else runs
        times = []
        for _ in range(n):
            code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
            proc = subprocess.run(
                [python_for(env), "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
            )
            times.append(float(proc.stdout.strip().splitlines()[-1]))
        out[name] = statistics.median(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setup", action="store_true", help="create bench/.venv-peers with the peers")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--import-runs", type=int, default=7)
    args = parser.parse_args()
    if args.setup:
        setup()
        return
    o = overhead(args.rounds, args.calls, args.warmup)
    floor = o["raw httpx (floor)"]
    cmd = "python bench/bench_peers.py"
    print(f"per sequential call, median of {args.rounds} rounds x {args.calls} calls ({cmd}):")
    print(f"{'client':<22} {'wall ms':>8} {'cpu ms':>8} {'overhead wall':>14} {'overhead cpu':>13}")
    for name, v in o.items():
        print(
            f"{name:<22} {v['wall_ms']:>8.3f} {v['cpu_ms']:>8.3f} {v['wall_ms'] - floor['wall_ms']:>14.3f} "
            f"{v['cpu_ms'] - floor['cpu_ms']:>13.3f}"
        )
    ours = o["orchestrator"]["wall_ms"] - floor["wall_ms"]
    sdk = o["openai SDK"]["wall_ms"] - floor["wall_ms"]
    lite = o["LiteLLM acompletion"]["wall_ms"] - floor["wall_ms"]
    print(f"orchestrator overhead / openai SDK overhead = {ours / sdk:.2f} (target <= 1.0)")
    print(f"orchestrator overhead / LiteLLM overhead    = {ours / lite:.3f} (target <= 0.2)")
    t = import_times(args.import_runs, max(3, args.import_runs // 2))
    print(f"\nimport time, median of fresh processes ({cmd}):")
    for name, s in t.items():
        print(f"  {IMPORTS[name][1]:<36} {s:.3f} s")
    print(
        f"import orchestrator / import litellm = {t['orchestrator'] / t['litellm']:.3f} (target <= 0.1, "
        f"and orchestrator < 0.3 s)"
    )
    print(
        f"from orchestrator import LLMClient / import litellm = {t['orchestrator+client'] / t['litellm']:.3f}"
    )


if __name__ == "__main__":
    main()
