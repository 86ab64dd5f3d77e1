"""Local model throughput through LLMClient versus xllamacpp called directly, in one process.

    python bench/bench_local.py --rounds 8 --max-tokens 128            # about a minute on 2 cores
    python bench/bench_local.py --rounds 8 --threads 1                 # on a shared machine

The same GGUF, the same llama.cpp parameters and the same request body (messages, max_tokens,
temperature 0, seed 0, cache_prompt false) through ``LLMClient.complete_sync`` (response cache off) and
through ``xllamacpp.Server.handle_chat_completions`` on a server built directly with the same
``CommonParams``. The prompt makes the model generate the full ``max_tokens`` so that both arms produce
the same number of tokens; each round runs both arms (alternating which goes first: A B, B A, ...) after a
warm-up. tok/s = generated tokens / wall time of the call. The figure judged is the median over rounds
of each round's ratio client / direct (target >= 0.95); the ratio of the two medians is shown beside it.

``import orchestrator`` time is measured by bench/bench_import.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Report, Target  # noqa: E402

PROMPT = "Count from 1 to 1000, one number after another, separated by commas. Do not stop early."
TARGET_RATIO = Target(">=", 0.95)  # tok/s through LLMClient / tok/s through xllamacpp directly


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


def bench_tokps(rounds: int, max_tokens: int, threads: int) -> dict[str, Any]:
    """Both arms once per round; per-round tok/s of each, paired ratios and time outside llama.cpp."""
    from orchestrator import LLMClient
    from orchestrator.config import config_from_dict
    from orchestrator.providers.local import DEFAULT_N_CTX, engine_for
    from orchestrator.providers.model_files import fetch
    from orchestrator.types import Message

    gguf = fetch(quiet=True)
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
        "client": a_rates,
        "direct": b_rates,
        "paired": paired,
        "client_over_ms": [x * 1000 for x in a_over],
        "direct_over_ms": [x * 1000 for x in b_over],
        "tokens": sorted(token_counts),
        "same_text": same_text,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds; medians shown")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 2, help="llama.cpp threads (default: every CPU)"
    )
    args = parser.parse_args(argv)

    report = Report(
        f"python bench/bench_local.py --rounds {args.rounds} --max-tokens {args.max_tokens} --threads {args.threads}"
    )
    print(f"throughput: {args.rounds} interleaved rounds of {args.max_tokens} tokens after a warm-up")
    r = bench_tokps(args.rounds, args.max_tokens, args.threads)
    report.section(f"{args.max_tokens} generated tokens a call, llama.cpp threads: {args.threads}")
    report.add("local via LLMClient, tok/s", r["client"], unit="tok/s", digits=1)
    report.add("xllamacpp direct, tok/s", r["direct"], unit="tok/s", digits=1)
    report.add("client / direct tok/s, round by round", r["paired"], target=TARGET_RATIO)
    of_medians = statistics.median(r["client"]) / statistics.median(r["direct"])
    report.add("client / direct, ratio of the two medians", of_medians, basis="the medians above")
    report.add("time outside llama.cpp a call, client", r["client_over_ms"], unit="ms", digits=1)
    report.add("time outside llama.cpp a call, direct", r["direct_over_ms"], unit="ms", digits=1)
    report.note(
        f"generated tokens (client, direct) per call: {r['tokens']}; same text in every round: {r['same_text']}"
    )
    report.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
