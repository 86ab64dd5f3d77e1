"""Shared reporting for the bench scripts: each figure with its spread, its target and a verdict.

Every figure is a list of samples, one per round (a single sample prints as "one run"). The line shows the
median with the min and max over rounds; the verdict (PASS / MISS) is computed from the unrounded median,
never from the printed digits, so 1.104 against "<= 1.1" is a MISS however it is rounded.

    report = Report("python bench/bench_grid.py --rounds 3")
    report.section("grid efficiency")
    report.add("run_grid wall / limit", ratios, target=Target("<=", 1.1))
    report.print()
"""

from __future__ import annotations

import math
import operator
import os
import platform
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}


@dataclass(frozen=True)
class Target:
    """A bound a figure must meet, e.g. ``Target("<=", 1.1)`` or ``Target("<", 2.0, "s")``."""

    op: str
    bound: float
    unit: str = ""

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"unknown comparison {self.op!r}")

    def met(self, value: float) -> bool:
        """Whether the unrounded ``value`` meets the bound (NaN never does)."""
        return not math.isnan(value) and _OPS[self.op](value, self.bound)

    def __str__(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.op} {self.bound:g}{unit}"


@dataclass(frozen=True)
class Spread:
    """Median, min and max of one figure's samples (one per round)."""

    median: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float] | float) -> Spread:
        values = [float(samples)] if isinstance(samples, int | float) else [float(s) for s in samples]
        if not values:
            return cls(math.nan, math.nan, math.nan, 0)
        return cls(statistics.median(values), min(values), max(values), len(values))

    @property
    def basis(self) -> str:
        """What the figure is: "one run" or "median of N"."""
        if self.n == 0:
            return "not measured"
        return "one run" if self.n == 1 else f"median of {self.n}"


@dataclass
class Row:
    figure: str
    spread: Spread
    unit: str
    digits: int
    target: Target | None
    basis: str = ""

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "-"
        if self.spread.n == 0:
            return "n/a"
        return "PASS" if self.target.met(self.spread.median) else "MISS"

    def cells(self) -> list[str]:
        s, d = self.spread, self.digits
        unit = f" {self.unit}" if self.unit else ""
        value = "-" if s.n == 0 else f"{s.median:.{d}f}{unit}"
        lo_hi = f"{s.lo:.{d}f} - {s.hi:.{d}f}" if s.n > 1 else "-"
        return [self.figure, value, lo_hi, self.basis or s.basis, str(self.target or "-"), self.verdict]


@dataclass
class Report:
    """Collects figures, then prints them as one table with a verdict per targeted figure."""

    command: str
    rows: list[Row | str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: str = field(default_factory=lambda: environment())

    def section(self, title: str) -> None:
        self.rows.append(title)

    def add(
        self,
        figure: str,
        samples: Sequence[float] | float,
        *,
        unit: str = "",
        digits: int = 3,
        target: Target | None = None,
        basis: str = "",
    ) -> Row:
        """Add a figure; ``samples`` holds one value per round (or one value: "one run").

        ``basis`` replaces the "median of N" / "one run" column, e.g. "computed" for a limit."""
        row = Row(figure, Spread.of(samples), unit, digits, target, basis)
        self.rows.append(row)
        return row

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def verdicts(self) -> list[str]:
        return [r.verdict for r in self.rows if isinstance(r, Row) and r.target is not None]

    def print(self) -> None:
        header = ["figure", "median", "min - max", "of", "target", "verdict"]
        table = [r.cells() for r in self.rows if isinstance(r, Row)]
        widths = [max(len(c[i]) for c in [header, *table]) for i in range(len(header))]
        right = {1, 2}

        def line(cells: list[str]) -> str:
            out = [
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ]
            return "  ".join(out).rstrip()

        print(f"\n$ {self.command}")
        print(f"{self.started} (at the start)")
        print(line(header))
        print("-" * len(line(header)))
        for r in self.rows:
            print(f"[{r}]" if isinstance(r, str) else line(r.cells()))
        for text in self.notes:
            print(f"note: {text}")
        v = self.verdicts
        if v:
            print(f"verdicts: {v.count('PASS')} PASS, {v.count('MISS')} MISS, {v.count('n/a')} not measured")
        else:
            print("verdicts: none (no figure here has a target)")
        print(f"load average at the end: {load_average()}")


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, as a short string (or "n/a")."""
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def environment() -> str:
    """One line about the machine the figures come from."""
    return (
        f"python {platform.python_version()} ({sys.executable}), {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load_average()}"
    )


def ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Pair-by-pair ratios a[i] / b[i] (same round), NaN where b[i] is 0."""
    return [x / y if y else math.nan for x, y in zip(a, b, strict=True)]


def diffs(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Pair-by-pair differences a[i] - b[i] (same round)."""
    return [x - y for x, y in zip(a, b, strict=True)]


def current_rss_mb() -> float:
    """This process's resident set size now, in MB (Linux /proc; NaN elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return math.nan
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
