"""The default ``orchestrator bench`` report, timed as a whole process, in a fresh home each round.

    python bench/bench_cli.py --rounds 1                  # the default report: target < 10 minutes on 2 cores
    python bench/bench_cli.py --rounds 2 -- --models baseline/rules --modes classify -p limit 2   # a quick check

Each round runs ``orchestrator bench`` (the console script of this environment) with a new, empty
ORCHESTRATOR_HOME (no cached answers, no earlier results: every round is a cold run) and a temporary
output directory, from the project root; the figure is its wall time from start to exit, with its CPU
(user + sys, the child and its kernel) from the operating system's accounting. Anything after ``--`` is
passed to ``orchestrator bench``; the target applies to the default command only.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _report import Report, Target  # noqa: E402

TARGET_S = Target("<", 600.0, "s")  # the default report on 2 cores


def run_once(extra: list[str]) -> dict[str, float]:
    """One cold ``orchestrator bench``: wall and CPU seconds (children included)."""
    exe = Path(sys.executable).parent / "orchestrator"
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        env = {**os.environ, "ORCHESTRATOR_HOME": str(Path(tmp) / "home")}
        cmd = [str(exe), "bench", "--output-dir", str(Path(tmp) / "reports"), *extra]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    ours = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="cold runs one after another; medians shown")
    args = parser.parse_args(ours)
    shown = f"python bench/bench_cli.py --rounds {args.rounds}" + (f" -- {' '.join(extra)}" if extra else "")
    report = Report(shown)
    runs = [run_once(extra) for _ in range(args.rounds)]
    report.section(f"orchestrator bench {' '.join(extra) or '(the default report)'}, a cold run each round")
    report.add("wall, start to exit", [r["wall"] for r in runs], unit="s", target=None if extra else TARGET_S)
    report.add("CPU (user + sys, with its children)", [r["cpu"] for r in runs], unit="s")
    if extra:
        report.note("the < 10 minutes target is for the default command: no verdict with extra arguments")
    report.print()


if __name__ == "__main__":
    main()
