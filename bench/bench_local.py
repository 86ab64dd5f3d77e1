"""Local model throughput through LLMClient versus xllamacpp called directly, and `import orchestrator` time.

    python bench/bench_local.py                 # everything (about a minute on 2 cores)
    python bench/bench_local.py --only tokps    # throughput only
    python bench/bench_local.py --only import   # import time only

Throughput: the same GGUF, the same llama.cpp parameters and the same request body (messages,
max_tokens, temperature 0, seed 0, cache_prompt false) through ``LLMClient.complete_sync`` (response
cache off) and through ``xllamacpp.Server.handle_chat_completions`` on a server built directly with the
same ``CommonParams``. The prompt makes the model generate the full ``max_tokens`` so that both arms
produce the same number of tokens; each round runs both arms (alternating which goes first) after a
warm-up, in one process. tok/s = generated tokens / wall time of the call. Target: ratio >= 0.95.

Import time: ``import orchestrator`` timed inside fresh interpreters (median of 7). Target: < 0.3 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROMPT = "Count from 1 to 1000, one number after another, separated by commas. Do not stop early."
TARGET_RATIO = 0.95
TARGET_IMPORT_S = 0.3
CMD = "python bench/bench_local.py"


def direct_server(path: Path, n_ctx: int, threads: int) -> Any:
    """An xllamacpp server with exactly the parameters orchestrator.providers.local uses."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = n_ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.verbosity = -1
    params.warmup = False
    return xllamacpp.Server(params)


def bench_tokps(rounds: int, max_tokens: int) -> dict[str, Any]:
    from orchestrator import LLMClient
    from orchestrator.config import config_from_dict
    from orchestrator.model_files import fetch
    from orchestrator.providers.local import DEFAULT_N_CTX, engine_for
    from orchestrator.types import Message

    gguf = fetch(quiet=True)
    threads = os.cpu_count() or 2
    raw = {
        "models": {
            "local/bench": {
                "provider": "local",
                "temperature": 0.0,
                "seed": 0,
                "max_tokens": max_tokens,
                "options": {"threads": threads, "n_ctx": DEFAULT_N_CTX},
            }
        }
    }
    cfg = config_from_dict(raw, Path("bench.toml"))
    client = LLMClient(cfg, cache=False)
    messages = [Message(role="user", content=PROMPT)]
    engine = engine_for(cfg.model_spec("local/bench"))
    server = direct_server(gguf, engine.n_ctx, threads)
    # What LocalAdapter sends for these parameters, built here by hand: the direct arm uses no orchestrator code.
    body = {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "seed": 0,
        "cache_prompt": False,
    }

    def engine_s(raw: dict[str, Any]) -> float:
        """Time llama.cpp itself reports for the request (prompt + generation)."""
        t = raw.get("timings") or {}
        return (float(t.get("prompt_ms", 0.0)) + float(t.get("predicted_ms", 0.0))) / 1000.0

    def via_client() -> tuple[int, float, str, float]:
        t0 = time.perf_counter()
        c = client.complete_sync(
            messages=messages, model="local/bench", max_tokens=max_tokens, temperature=0.0, seed=0
        )
        dt = time.perf_counter() - t0
        return c.usage.output_total, dt, c.text, dt - engine_s(c.raw or {})

    def direct() -> tuple[int, float, str, float]:
        t0 = time.perf_counter()
        r = server.handle_chat_completions(dict(body))
        dt = time.perf_counter() - t0
        return (
            int(r["usage"]["completion_tokens"]),
            dt,
            r["choices"][0]["message"]["content"],
            dt - engine_s(r),
        )

    for fn in (via_client, direct, via_client, direct):  # warm-up
        fn()
    a_rates: list[float] = []
    b_rates: list[float] = []
    paired: list[float] = []
    a_over: list[float] = []
    b_over: list[float] = []
    token_counts: set[tuple[int, int]] = set()
    same_text = True
    for i in range(rounds):
        order = (via_client, direct) if i % 2 == 0 else (direct, via_client)
        results = {}
        for fn in order:
            results[fn.__name__] = fn()
        (na, ta, xa, oa), (nb, tb, xb, ob) = results["via_client"], results["direct"]
        a_rates.append(na / ta)
        b_rates.append(nb / tb)
        paired.append((na / ta) / (nb / tb))
        a_over.append(oa)
        b_over.append(ob)
        token_counts.add((na, nb))
        same_text &= xa == xb
        print(
            f"  round {i + 1}: client {na} tok / {ta:.3f} s = {na / ta:6.1f} tok/s   "
            f"direct {nb} tok / {tb:.3f} s = {nb / tb:6.1f} tok/s",
            flush=True,
        )
    client.close()
    return {
        "client": statistics.median(a_rates),
        "direct": statistics.median(b_rates),
        "paired": statistics.median(paired),
        "client_over_ms": statistics.median(a_over) * 1000,
        "direct_over_ms": statistics.median(b_over) * 1000,
        "tokens": sorted(token_counts),
        "same_text": same_text,
        "threads": threads,
    }


def bench_import(runs: int = 7) -> dict[str, float]:
    code = "import time; t = time.perf_counter(); import orchestrator; print(time.perf_counter() - t)"
    inner: list[float] = []
    wall: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        wall.append(time.perf_counter() - t0)
        inner.append(float(out.strip()))
    bare: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - t0)
    return {
        "import": statistics.median(inner),
        "wall": statistics.median(wall),
        "bare": statistics.median(bare),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--only", choices=["tokps", "import"])
    args = parser.parse_args(argv)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.2f} at start")
    rows: list[tuple[str, str, str, str]] = []
    ok = True
    if args.only in (None, "tokps"):
        print(f"throughput: {args.rounds} interleaved rounds of {args.max_tokens} tokens after a warm-up")
        r = bench_tokps(args.rounds, args.max_tokens)
        ratio = r["client"] / r["direct"]
        ok &= ratio >= TARGET_RATIO
        cmd = f"{CMD} --only tokps --rounds {args.rounds} --max-tokens {args.max_tokens}"
        rows += [
            ("local via LLMClient, median tok/s", f"{r['client']:.1f}", "", cmd),
            ("xllamacpp direct, median tok/s", f"{r['direct']:.1f}", "", cmd),
            ("ratio client / direct (of medians)", f"{ratio:.3f}", f">= {TARGET_RATIO}", cmd),
            ("  median of per-round paired ratios", f"{r['paired']:.3f}", "", cmd),
            ("  time outside llama.cpp, client, ms", f"{r['client_over_ms']:.1f}", "", cmd),
            ("  time outside llama.cpp, direct, ms", f"{r['direct_over_ms']:.1f}", "", cmd),
        ]
        print(
            f"generated tokens (client, direct) per call: {r['tokens']}; same text in every round: "
            f"{r['same_text']}; threads {r['threads']}"
        )
    if args.only in (None, "import"):
        t = bench_import()
        ok &= t["import"] < TARGET_IMPORT_S
        cmd = f"{CMD} --only import"
        rows += [
            ("import orchestrator, s (median of 7)", f"{t['import']:.4f}", f"< {TARGET_IMPORT_S}", cmd),
            ("  python -c 'import orchestrator' wall, s", f"{t['wall']:.4f}", "", cmd),
            ("  python -c 'pass' wall, s (interpreter)", f"{t['bare']:.4f}", "", cmd),
        ]
    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'measure':<{width}}  {'value':>9}  {'target':<8}  command")
    print("-" * (width + 60))
    for name, value, target, cmd in rows:
        print(f"{name:<{width}}  {value:>9}  {target:<8}  {cmd}")
    print()
    print("all targets met" if ok else "some targets NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
