"""Import time of orchestrator against the openai SDK and LiteLLM, in fresh processes, in one run.

    python bench/bench_import.py --rounds 7     # the peers need `python bench/bench_peers.py --setup` once

Every statement runs in a fresh interpreter, one after the other within a round, and the rounds repeat
(A B C D E F, A B C D E F, ...) after one uncounted warm-up round (disk cache, .pyc files). Each run is

    python -c "import time; t = time.perf_counter(); STATEMENT; print(time.perf_counter() - t)"

which gives two figures: the statement's own time, printed by the child, and the whole process as a
command pays it (interpreter start-up included), timed by this script from start to exit, with its CPU
(user + sys) from the operating system's accounting of the finished child. ``pass`` in each environment
is the interpreter's own start-up. orchestrator runs in the project's environment, the peers in
bench/.venv-peers (the same interpreter); LiteLLM is imported with LITELLM_LOCAL_MODEL_COST_MAP=True
(its packaged price map), since by default its import fetches the map over the network.

``import orchestrator`` is lazy (names resolve on first use); ``from orchestrator import LLMClient`` is
what a script or notebook pays before its first call.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _report import Report, Target, ratios  # noqa: E402
from bench_peers import peers_python  # noqa: E402
from with_tree import import_tree_code  # noqa: E402

TARGET_IMPORT_S = Target("<", 0.3, "s")  # import orchestrator, in-process
TARGET_VS_LITELLM = Target("<=", 0.1)  # orchestrator's import / litellm's, in-process and whole-process

PROJECT, PEERS = "project", "peers"
STATEMENTS: list[tuple[str, str]] = [
    (PROJECT, "pass"),
    (PROJECT, "import orchestrator"),
    (PROJECT, "from orchestrator import LLMClient"),
    (PEERS, "pass"),
    (PEERS, "import openai"),
    (PEERS, "import litellm"),
]


def run_once(python: str, statement: str) -> dict[str, float]:
    """One fresh process: the statement's own seconds, the whole process's wall and CPU seconds."""
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    if python == sys.executable:  # under bench/with_tree.py: that checkout's package
        code = import_tree_code() + code
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{python} -c {statement!r} failed:\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"inner": float(proc.stdout.strip().splitlines()[-1]), "wall": wall, "cpu": cpu}


def measure(rounds: int, warmup: int, with_peers: bool) -> dict[tuple[str, str], dict[str, list[float]]]:
    """Per statement, per figure, one value per round; the statements interleaved within each round."""
    peers = peers_python()
    pythons = {PROJECT: sys.executable, PEERS: str(peers) if peers else ""}
    todo = [(env, s) for env, s in STATEMENTS if env == PROJECT or with_peers]
    out: dict[tuple[str, str], dict[str, list[float]]] = {
        k: {"inner": [], "wall": [], "cpu": []} for k in todo
    }
    for r in range(warmup + rounds):
        for env, statement in todo:
            row = run_once(pythons[env], statement)
            if r >= warmup:
                for key, value in row.items():
                    out[(env, statement)][key].append(value)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; medians shown")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted rounds first")
    args = parser.parse_args(argv)
    with_peers = peers_python() is not None
    report = Report(f"python bench/bench_import.py --rounds {args.rounds}")
    t = measure(args.rounds, args.warmup, with_peers)

    def fig(env: str, statement: str, key: str) -> list[float]:
        return t.get((env, statement), {}).get(key, [])

    for key, title in (
        ("inner", "the statement's own time, timed inside a fresh process"),
        ("wall", 'whole process, `python -c "STATEMENT"` from start to exit, wall'),
        ("cpu", "whole process, CPU (user + sys)"),
    ):
        report.section(title)
        for env, statement in t:
            target = TARGET_IMPORT_S if (key, statement) == ("inner", "import orchestrator") else None
            report.add(f"{statement} [{env} env]", fig(env, statement, key), unit="s", target=target)
        litellm = fig(PEERS, "import litellm", key)
        for statement in ("import orchestrator", "from orchestrator import LLMClient"):
            ours = fig(PROJECT, statement, key)
            both = ratios(ours, litellm) if litellm else []
            target = TARGET_VS_LITELLM if key != "cpu" else None  # the targets are on time
            report.add(f"{statement} / import litellm, {key}", both, target=target)
    report.note("ratios are taken round by round (the two runs of the same round), then the median")
    if not with_peers:
        report.note("no bench/.venv-peers: the peers were not measured (python bench/bench_peers.py --setup)")
    report.print()


if __name__ == "__main__":
    main()
