"""orchestrator against its peers, in one run: per-call client overhead over two raw HTTP floors.

    python bench/bench_peers.py --setup     # once: a separate venv with the peers (bench/requirements-peers.txt)
    python bench/bench_peers.py             # the table (import times: bench/bench_import.py)

The peers (LiteLLM, the official openai SDK) live in their own virtual environment (bench/.venv-peers) so
they never touch the project's dependencies. Every client makes the same sequential calls to the same
loopback fake OpenAI-compatible server (no latency, a separate process), each in a fresh subprocess;
one round runs every client once in a fixed order and the rounds repeat (A B C D E F, A B C D E F, ...).

Overhead = a client's wall (and CPU) per call minus a floor's in the same round, over two floors:

- the neutral floor: raw aiohttp (a bare ``aiohttp.ClientSession`` POST and JSON parse), the leanest
  async HTTP round trip in Python, which none of the three clients uses as it is;
- orchestrator's own transport: raw httpx on the httpx-aiohttp transport, what orchestrator is built on.
  Over it orchestrator's overhead is only what it adds beyond its HTTP stack, while the peers' overhead
  includes their own choice of stack: flattering to orchestrator, so the verdicts are given over both.

Raw httpx with its default transport (httpcore, what the openai SDK is built on) is shown for reference.
The floors run in the project's environment, the peers in bench/.venv-peers (the same interpreter).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS_VENV = HERE / ".venv-peers"
sys.path.insert(0, str(HERE))

from _report import Report, Target, diffs, ratios  # noqa: E402
from fake_openai_server import start_server_process, stop_server_process  # noqa: E402

TARGET_VS_SDK = Target("<=", 1.0)  # orchestrator's overhead / the openai SDK's
TARGET_VS_LITELLM = Target("<=", 0.2)  # orchestrator's overhead / LiteLLM's

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

NEUTRAL = "raw aiohttp (neutral floor)"
HTTPX = "raw httpx, default transport"
TRANSPORT = "raw httpx + httpx-aiohttp (orchestrator's transport)"
OURS, SDK, LITELLM = "orchestrator", "openai SDK", "LiteLLM acompletion"

CLIENTS: dict[str, tuple[str, str]] = {
    NEUTRAL: (
        "project",
        """
import aiohttp
async def main():
    async with aiohttp.ClientSession() as s:
        async def call(i):
            async with s.post(URL + "/chat/completions", json={"model": "fake", "max_tokens": 16,
                              "messages": [{"role": "user", "content": MSG.format(i=i)}]}) as r:
                return (await r.json())["choices"][0]["message"]["content"]
        await measure(call)
asyncio.run(main())
""",
    ),
    HTTPX: (
        "project",
        """
import httpx
async def main():
    async with httpx.AsyncClient() as h:
        async def call(i):
            r = await h.post(URL + "/chat/completions", json={"model": "fake", "max_tokens": 16,
                             "messages": [{"role": "user", "content": MSG.format(i=i)}]})
            return r.json()["choices"][0]["message"]["content"]
        await measure(call)
asyncio.run(main())
""",
    ),
    TRANSPORT: (
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
    OURS: (
        "project",
        """
import os, tempfile, pathlib
HOME = tempfile.TemporaryDirectory()  # removed at exit
os.environ["ORCHESTRATOR_HOME"] = HOME.name
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
    SDK: (
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
    LITELLM: (
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


def peers_python() -> Path | None:
    """The peers venv's interpreter, or None when ``--setup`` has not been run."""
    py = PEERS_VENV / "bin" / "python"
    return py if py.exists() else None


def python_for(env: str) -> str:
    if env == "project":
        return sys.executable
    py = peers_python()
    if py is None:
        sys.exit("no peers venv: run `python bench/bench_peers.py --setup` first")
    return str(py)


def setup() -> None:
    """Create bench/.venv-peers and install bench/requirements-peers.txt into it."""
    subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    subprocess.run(
        [str(PEERS_VENV / "bin" / "pip"), "install", "-q", "-r", str(HERE / "requirements-peers.txt")],
        check=True,
    )
    print(f"peers installed in {PEERS_VENV.relative_to(ROOT)}")


def overhead(rounds: int, calls: int, warmup: int) -> dict[str, dict[str, list[float]]]:
    """Each client's wall and CPU ms per call, one value per round, clients interleaved within a round."""
    url, server = start_server_process(0.0)
    samples: dict[str, dict[str, list[float]]] = {n: {"wall_ms": [], "cpu_ms": []} for n in CLIENTS}
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
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                for key in ("wall_ms", "cpu_ms"):
                    samples[name][key].append(row[key])
    finally:
        stop_server_process(server)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setup", action="store_true", help="create bench/.venv-peers with the peers")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians shown")
    parser.add_argument("--calls", type=int, default=500, help="sequential calls per client per round")
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    if args.setup:
        setup()
        return
    python_for("peers")  # fail early, before the floors run
    report = Report(f"python bench/bench_peers.py --rounds {args.rounds} --calls {args.calls}")
    o = overhead(args.rounds, args.calls, args.warmup)
    report.section(f"ms per sequential call, each client in a fresh process, {args.calls} calls a round")
    for name, v in o.items():
        report.add(f"{name}, wall", v["wall_ms"], unit="ms")
        report.add(f"{name}, CPU", v["cpu_ms"], unit="ms")
    for floor, tag in ((NEUTRAL, "neutral floor"), (TRANSPORT, "own-transport floor")):
        report.section(f"overhead over {floor}: client - floor, round by round, ms per call")
        over = {}
        for name in (OURS, SDK, LITELLM):
            over[name] = diffs(o[name]["wall_ms"], o[floor]["wall_ms"])
            report.add(f"{name} overhead, wall [{tag}]", over[name], unit="ms")
            cpu = diffs(o[name]["cpu_ms"], o[floor]["cpu_ms"])
            report.add(f"{name} overhead, CPU [{tag}]", cpu, unit="ms")
        below = sum(x <= 0 for x in over[OURS])
        if below:
            report.note(
                f"orchestrator's wall overhead over the {tag} was <= 0 in {below} of {args.rounds} rounds: "
                "within the floor's noise, so its ratios say little (raise --calls or --rounds)"
            )
        sdk, lite = ratios(over[OURS], over[SDK]), ratios(over[OURS], over[LITELLM])
        report.add(f"orchestrator / openai SDK overhead, wall [{tag}]", sdk, target=TARGET_VS_SDK)
        report.add(f"orchestrator / LiteLLM overhead, wall [{tag}]", lite, target=TARGET_VS_LITELLM)
    report.note("ratios are taken round by round (the same round's floor and clients), then the median")
    report.note("the fake server runs in another process with no latency; CPU is each client process's own")
    report.print()


if __name__ == "__main__":
    main()
