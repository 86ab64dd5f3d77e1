"""Benchmark: the analysis of a 1,000,000-row results frame (10 models x 4 modes x 25,000 issues).

Reproduce from the project root with::

    python bench/bench_analysis.py            # or: python bench/bench_analysis.py --issues 25000 --repeats 1

Scores are shaped like the real scorers': classify 0/1, fix shares of 1-3 gold files, explain shares of
3-4 key points, summarize continuous chrF-like values (the slow case for the bootstrap). One model has an
unknown price (NaN cost), one is free; 2 % of cells failed, 10 % came from the cache.
Target: summary_table plus one mode's paired_comparison in < 10 s together. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.analysis import paired_comparison, summary_table, tied_with_best  # noqa: E402

MODES = ("classify", "fix", "summarize", "explain")
TARGET_S = 10.0


def _scores(mode: str, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scores for one mode given each cell's success probability ``p``."""
    if mode == "classify":
        return (rng.random(p.size) < p).astype(float)
    if mode == "fix":
        files = rng.integers(1, 4, p.size)
        return rng.binomial(files, p) / files
    if mode == "explain":
        points = rng.integers(3, 5, p.size)
        return rng.binomial(points, p) / points
    return np.clip(rng.beta(8 * p + 1, 8 * (1 - p) + 1), 0, 1)


def synthetic_results(
    n_models: int = 10, n_issues: int = 25_000, repeats: int = 1, seed: int = 0
) -> pd.DataFrame:
    """A results frame with ``n_models * 4 * n_issues * repeats`` rows and the store's columns."""
    rng = np.random.default_rng(seed)
    models = np.array([f"provider{i % 4}/model-{i:02d}" for i in range(n_models)])
    issue_ids = np.array([f"org{i % 50}/repo{i % 50}#{i}" for i in range(n_issues)])
    repos = np.array([f"org{i % 50}/repo{i % 50}" for i in range(n_issues)])
    skill = np.linspace(0.55, 0.75, n_models)
    issue_effect = rng.normal(0, 0.15, n_issues)
    frames = []
    for mi, model in enumerate(models):
        for mode in MODES:
            n = n_issues * repeats
            iss = np.repeat(np.arange(n_issues), repeats)
            p = np.clip(skill[mi] + issue_effect[iss], 0.01, 0.99)
            err = rng.random(n) < 0.02
            score = np.where(err, np.nan, _scores(mode, p, rng))
            price = np.nan if mi == 0 else (0.0 if mi == 1 else 10 ** rng.uniform(-5, -2))
            frames.append(
                pd.DataFrame(
                    {
                        "run_id": "bench",
                        "issue_id": issue_ids[iss],
                        "repo": repos[iss],
                        "split": "test",
                        "model": model,
                        "mode": mode,
                        "repeat": np.tile(np.arange(repeats), n_issues),
                        "score": score,
                        "error_type": np.where(err, "timeout", None),
                        "cost_usd": np.full(n, price) * rng.uniform(0.5, 1.5, n),
                        "latency_s": rng.lognormal(0, 0.6, n),
                        "input_uncached": rng.integers(200, 2000, n),
                        "cache_read": 0,
                        "cache_write": 0,
                        "output": rng.integers(10, 400, n),
                        "reasoning": 0,
                        "pred_type": None,
                        "gold_type": None,
                        "from_cache": rng.random(n) < 0.1,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def _time(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--issues", type=int, default=25_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--n-boot", type=int, default=2000)
    args = parser.parse_args(argv)

    t_build, df = _time(synthetic_results, args.models, args.issues, args.repeats)
    print(f"built {len(df):,} rows in {t_build:.1f} s (setup, not timed below)")
    steps = [
        ("summary_table (all 4 modes, 40 groups)", summary_table, (df,), {"n_boot": args.n_boot}),
        (
            "paired_comparison classify (45 pairs, 0/1)",
            paired_comparison,
            (df, "classify"),
            {"n_boot": args.n_boot},
        ),
        (
            "paired_comparison summarize (45 pairs, cont.)",
            paired_comparison,
            (df, "summarize"),
            {"n_boot": args.n_boot},
        ),
        ("tied_with_best summarize", tied_with_best, (df, "summarize"), {"n_boot": args.n_boot}),
    ]
    timings = []
    for name, fn, fargs, kwargs in steps:
        seconds, _ = _time(fn, *fargs, **kwargs)
        timings.append((name, seconds))
    core = timings[0][1] + max(timings[1][1], timings[2][1])
    print()
    print(f"{'step':<48} {'rows':>10} {'seconds':>8}")
    for name, seconds in timings:
        print(f"{name:<48} {len(df):>10,} {seconds:>8.2f}")
    print(
        f"{'summary_table + slowest paired_comparison':<48} {len(df):>10,} {core:>8.2f}   target < {TARGET_S:.0f} s"
    )
    print(
        f"\nn_boot={args.n_boot}; python {platform.python_version()}, pandas {pd.__version__}, numpy {np.__version__},"
    )
    print(f"{platform.machine()} with {__import__('os').cpu_count()} CPUs")
    print("reproduce: python bench/bench_analysis.py")


if __name__ == "__main__":
    main()
