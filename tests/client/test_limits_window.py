"""The rate limits hold over every sliding 60 s window, within a process and across processes.

In-process tests run on virtual time (instant): many tasks sleep on one clock that wakes them in time
order, a little late (a seeded jitter, and now and then a stall, as a busy event loop does). The
cross-process tests are real: separate Python processes share one SQLite file, and the client test
counts what a loopback server received. Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers.fault_server import FaultServer, config_for

from orchestrator.client import LLMClient, RetryPolicy, shared_limits
from orchestrator.client.limits import SPAN_S, BucketPaused, Limiter
from orchestrator.client.shared_limits import SharedLog

ROOT = Path(__file__).resolve().parents[2]


class VirtualClock:
    """Virtual time for many tasks: ``sleep`` wakes them in time order, each late by a seeded jitter
    (up to ``jitter_s``), and every ``stall_every``-th wake-up ``stall_s`` late (a blocked loop)."""

    def __init__(self, seed: int = 0, jitter_s: float = 0.0009, stall_every: int = 0, stall_s: float = 0.0):
        self.now = 1_000_000.0
        self.rng = random.Random(seed)
        self.jitter_s, self.stall_every, self.stall_s = jitter_s, stall_every, stall_s
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._n = 0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self._n += 1
        late = self.rng.uniform(0, self.jitter_s)
        if self.stall_every and self._n % self.stall_every == 0:
            late += self.stall_s
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self.now + max(0.0, seconds) + late, self._n, fut))
        await fut

    async def run(self, *coros):
        tasks = [asyncio.ensure_future(c) for c in coros]
        idle = 0
        while not all(t.done() for t in tasks):
            for _ in range(3):
                await asyncio.sleep(0)
            if self._heap:
                idle = 0
                t, _, fut = heapq.heappop(self._heap)
                self.now = max(self.now, t)
                if not fut.done():
                    fut.set_result(None)
            else:
                idle += 1
                assert idle < 10_000, "no task sleeps and none finishes"
        return [t.result() for t in tasks]


def max_in_window(times: list[float], window_s: float) -> int:
    """The most releases in any closed window ``[t, t + window_s]``."""
    times = sorted(times)
    best = lo = 0
    for hi, t in enumerate(times):
        while t - times[lo] > window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def worst_tokens(released: list[tuple[float, float]], window_s: float, tpm: float) -> tuple[float, int]:
    """The largest token sum of any closed window holding more than one request, and how many windows
    hold more than ``tpm`` (a window holding one request only is allowed to)."""
    released = sorted(released)
    worst, over = 0.0, 0
    lo, total = 0, 0.0
    for hi, (t, tokens) in enumerate(released):
        total += tokens
        while t - released[lo][0] > window_s:
            total -= released[lo][1]
            lo += 1
        if hi > lo:
            worst = max(worst, total)
            over += total > tpm + 1e-6
    return worst, over


async def release_all(limiter: Limiter, buckets, sizes: list[int], workers: int, clock: VirtualClock, **kw):
    """Release requests of ``sizes`` from ``workers`` concurrent tasks; returns [(time, tokens)]."""
    todo = list(enumerate(sizes))
    released: list[tuple[float, float]] = []
    rng = random.Random(7)
    reconcile = kw.get("reconcile", False)

    async def worker() -> None:
        while todo:
            _, tokens = todo.pop(0)
            await limiter.acquire(buckets, tokens)
            released.append((clock.now, tokens))
            if reconcile:  # the answer arrives later and used less than reserved
                i = len(released) - 1
                await clock.sleep(rng.uniform(0.0, 5.0))
                actual = int(tokens * rng.uniform(0.2, 1.0))
                limiter.reconcile(buckets, tokens, actual)
                released[i] = (released[i][0], actual)

    await clock.run(*(worker() for _ in range(workers)))
    return released


# ------------------------------------------------------------------------------------ within a process


async def test_rpm_never_exceeded_in_any_sliding_minute():
    clock = VirtualClock(seed=1, stall_every=37, stall_s=0.5)
    limiter = Limiter(clock=clock, sleep=clock.sleep)
    b = limiter.bucket("rpm30", rpm=30)
    released = await release_all(limiter, [b], [1] * 200, workers=50, clock=clock)
    times = sorted(t for t, _ in released)
    worst = max_in_window(times, 60.0)
    print(f"\nrpm=30, 200 requests: at most {worst} in a 60 s window, {max_in_window(times, 1.0)} in 1 s")
    assert len(times) == 200
    assert worst <= 30
    assert max_in_window(times, SPAN_S - 1e-6) <= 30  # the slack holds too
    # the spacing is kept (a release may sit up to 1 ms late on its grid slot)
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 2.0 - 0.0011
    # and the window costs no more than the slack per minute: not a throttle
    assert times[-1] - times[0] <= 199 * 2.0 + 7 * (SPAN_S - 60.0) + 3.0


async def test_rpm_window_holds_for_a_burst_after_a_long_stall():
    """Every planned slot wakes at once after a 70 s stall: the releases still keep the window."""
    clock = VirtualClock(seed=2, stall_every=5, stall_s=70.0)
    limiter = Limiter(clock=clock, sleep=clock.sleep)
    b = limiter.bucket("rpm10", rpm=10)
    released = await release_all(limiter, [b], [1] * 60, workers=60, clock=clock)
    assert max_in_window([t for t, _ in released], 60.0) <= 10


async def test_tpm_never_exceeded_in_any_sliding_minute():
    clock = VirtualClock(seed=3, stall_every=41, stall_s=0.3)
    limiter = Limiter(clock=clock, sleep=clock.sleep)
    tpm = 1000
    b = limiter.bucket("tpm", tpm=tpm)
    rng = random.Random(3)
    sizes = [rng.choice([20, 50, 120, 300, 450, 700]) for _ in range(150)]
    sizes[10] = sizes[77] = 2500  # larger than a minute's budget: each must go alone
    released = await release_all(limiter, [b], sizes, workers=40, clock=clock)
    worst, over = worst_tokens(released, 60.0, tpm)
    print(
        f"\ntpm={tpm}, 150 requests: at most {worst:.0f} tokens in a 60 s window shared by several requests"
    )
    assert len(released) == 150
    assert over == 0 and worst <= tpm
    for big in (t for t, tokens in released if tokens == 2500):  # alone in its window
        assert sum(1 for t, _ in released if abs(t - big) <= 60.0) == 1


async def test_tpm_window_counts_the_reported_usage():
    """Reservations corrected downwards by reconcile let more in, never more than tpm of actual usage."""
    clock = VirtualClock(seed=4)
    limiter = Limiter(clock=clock, sleep=clock.sleep)
    tpm = 2000
    b = limiter.bucket("tpm-usage", rpm=600, tpm=tpm)
    rng = random.Random(4)
    sizes = [rng.randint(100, 900) for _ in range(120)]
    released = await release_all(limiter, [b], sizes, workers=30, clock=clock, reconcile=True)
    worst, over = worst_tokens(released, 60.0, tpm)
    assert over == 0 and worst <= tpm
    assert max_in_window([t for t, _ in released], 60.0) <= 600


async def test_usage_above_the_estimate_holds_the_next_request_back():
    clock = VirtualClock(seed=5, jitter_s=0.0)
    limiter = Limiter(clock=clock, sleep=clock.sleep)
    b = limiter.bucket("tpm-up", tpm=1000)
    await limiter.acquire([b], 300)
    limiter.reconcile([b], 300, 900)  # the answer was much longer than estimated
    assert b.earliest(200, clock.now) - clock.now == pytest.approx(SPAN_S)
    assert b.earliest(100, clock.now) == clock.now


async def assert_two_share_rpm_30_tpm_9000(clock: VirtualClock, limiters, buckets, *, seed: int) -> None:
    """Eight tasks on each of two limiters release ten requests each (tokens drawn with ``seed``); together
    never more than 30 requests nor 9,000 tokens in a minute, and the 2 s spacing holds over both."""
    rng = random.Random(seed)
    released: list[tuple[float, float]] = []

    async def worker(lim: Limiter, b, n: int) -> None:
        for _ in range(n):
            tokens = rng.choice([50, 200, 400, 800])
            await lim.acquire([b], tokens)
            released.append((clock.now, tokens))

    await clock.run(*(worker(lim, b, 10) for lim, b in zip(limiters, buckets, strict=True) for _ in range(8)))
    times = sorted(t for t, _ in released)
    worst = max_in_window(times, 60.0)
    tokens_worst, over = worst_tokens(released, 60.0, 9000)
    print(f"\ntwo limiters, rpm=30 tpm=9000: {worst} requests and {tokens_worst:.0f} tokens at most")
    assert len(times) == 160
    assert worst <= 30 and over == 0
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 2.0 - 0.0011


async def test_two_limiters_on_one_file_share_the_window(tmp_path):
    """Two limiters (as two processes would) on one SQLite file, on one virtual clock: together, never
    more than rpm per minute nor tpm, and the spacing holds over both."""
    clock = VirtualClock(seed=6, stall_every=29, stall_s=0.4)
    db = tmp_path / "limits.sqlite"
    limiters = [Limiter(clock=clock, sleep=clock.sleep, wall=clock) for _ in range(2)]
    buckets = [lim.bucket("shared-scope", rpm=30, tpm=9000, shared=db) for lim in limiters]
    await assert_two_share_rpm_30_tpm_9000(clock, limiters, buckets, seed=6)
    for b in buckets:
        assert b.shared is not None and b.shared.ok


async def test_a_429_pause_reaches_the_other_process(tmp_path):
    db = tmp_path / "limits.sqlite"
    first, second = Limiter(), Limiter()
    for kw in ({}, {"rpm": 6000}):  # a scope with limits (release transaction) and one without (pause read)
        a = first.bucket(f"paused-{bool(kw)}", shared=db, **kw)
        b = second.bucket(f"paused-{bool(kw)}", shared=db, **kw)
        await second.acquire([b], 1)  # known to the other process before the pause
        first.pause(a, 30.0)
        await asyncio.sleep(0.3)  # past the cached read of a scope without limits
        with pytest.raises(BucketPaused):
            await second.acquire([b], 1, max_pause=5.0)


# ----------------------------------------------------------------------------------- across processes

WORKER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from pathlib import Path
    from orchestrator.client.limits import Limiter

    db, rpm, n, tasks = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    limiter = Limiter()
    bucket = limiter.bucket("proc-scope", rpm=rpm, shared=Path(db))
    print("ready", flush=True)
    sys.stdin.readline()

    async def main():
        times = []

        async def worker(k):
            for _ in range(k):
                await limiter.acquire([bucket], 1)
                times.append(time.time())

        await asyncio.gather(*(worker(n // tasks) for _ in range(tasks)))
        ok = bucket.shared is not None and bucket.shared.ok
        print(json.dumps({"times": times, "shared_ok": ok}), flush=True)

    asyncio.run(main())
    """
)

CLIENT = textwrap.dedent(
    """
    import asyncio, json, sys
    sys.path.insert(0, sys.argv[1])
    from helpers.fault_server import config_for
    from orchestrator.client import LLMClient

    url, rpm, n, tag = sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    cfg = config_for({"t/m": {"provider": "openai", "model": "m", "base_url": url, "timeout": 5.0,
                              "price": {"input": 1.0, "output": 2.0}, "limits": {"rpm": rpm}}})
    print("ready", flush=True)
    sys.stdin.readline()

    async def main():
        client = LLMClient(cfg, cache=False)
        done = await asyncio.gather(*(client.complete(f"hi [call:{tag}{i}]", model="t/m") for i in range(n)))
        await client.aclose()
        print(json.dumps({"answered": len(done)}), flush=True)

    asyncio.run(main())
    """
)


def run_together(scripts: list[list[str]], timeout: float = 120.0) -> list[dict]:
    """Start the processes, wait until each is ready, let them all go at once; their last JSON lines."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for args in scripts
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.stderr
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outputs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    results = []
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


@pytest.mark.timeout(120)
def test_three_processes_share_one_rate(tmp_path):
    """Three processes at rpm=600 (one request every 100 ms) together, not each."""
    rpm, n, procs = 600, 16, 3
    db = str(tmp_path / "limits.sqlite")
    results = run_together([[WORKER, db, str(rpm), str(n), "4"] for _ in range(procs)])
    assert all(r["shared_ok"] for r in results)
    times = sorted(t for r in results for t in r["times"])
    spacing = 60 / rpm
    per_s = max_in_window(times, 1.0 - 1e-9)
    print(
        f"\n{procs} processes, rpm={rpm}: {per_s} releases in the busiest second, {times[-1] - times[0]:.2f} s"
    )
    assert len(times) == n * procs
    # one shared spacing: a second holds rpm/60 (+1 at its edges, +1 for the jitter of reading the time)
    assert per_s <= rpm / 60 + 2
    assert times[-1] - times[0] >= (len(times) - 1) * spacing * 0.9
    assert sum(1 for t in times if t - times[0] <= 60.0) <= rpm  # the minute (trivially, this short)


@pytest.mark.timeout(120)
def test_two_processes_share_tpm(tmp_path):
    """A process that used 600 of tpm=1000 leaves another 400: 300 go at once, 600 more do not."""
    db = tmp_path / "limits.sqlite"
    script = textwrap.dedent(
        """
        import asyncio, json, sys
        from pathlib import Path
        from orchestrator.client.limits import Limiter

        limiter = Limiter()
        bucket = limiter.bucket("tpm-scope", tpm=1000, shared=Path(sys.argv[1]))
        print("ready", flush=True)
        sys.stdin.readline()

        async def main():
            out = {}
            for tokens in map(int, sys.argv[2:]):
                try:
                    await asyncio.wait_for(limiter.acquire([bucket], tokens), 3.0)
                    out[tokens] = "released"
                except asyncio.TimeoutError:
                    out[tokens] = "held"
            print(json.dumps(out), flush=True)

        asyncio.run(main())
        """
    )
    (first,) = run_together([[script, str(db), "600"]])
    (second,) = run_together([[script, str(db), "300", "600"]])
    assert first == {"600": "released"}
    assert second == {"300": "released", "600": "held"}


@pytest.mark.timeout(120)
def test_two_client_processes_share_the_rpm_on_the_server():
    """End to end: two processes, each with an LLMClient on one ORCHESTRATOR_HOME, against one server."""
    rpm, n = 600, 15
    with FaultServer() as server:
        results = run_together(
            [[CLIENT, str(ROOT / "tests"), server.url, str(rpm), str(n), tag] for tag in ("a", "b")]
        )
        times = sorted(r.t for r in server.requests)
        per_s = server.max_rate(1.0)
    print(f"\ntwo client processes, rpm={rpm}: the server saw at most {per_s} requests in a second")
    assert [r["answered"] for r in results] == [n, n]
    assert len(times) == 2 * n
    assert per_s <= rpm / 60 + 2
    assert times[-1] - times[0] >= (2 * n - 1) * (60 / rpm) * 0.9


# --------------------------------------------------------------------------------------------- fallback


def shared_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == shared_limits.__name__ and r.levelno == logging.WARNING]


@pytest.mark.parametrize("how", ["not-a-directory", "not-a-database", "read-only"])
async def test_unusable_file_falls_back_with_one_warning(tmp_path, caplog, how):
    if how == "not-a-directory":
        (tmp_path / "home").write_text("a file where the home should be")
        db = tmp_path / "home" / "limits.sqlite"
    elif how == "not-a-database":
        db = tmp_path / "limits.sqlite"
        db.write_bytes(b"this is not an SQLite file, not at all" * 100)
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only directories")
        home = tmp_path / "ro"
        home.mkdir()
        home.chmod(0o500)
        db = home / "limits.sqlite"
    clock = VirtualClock(seed=8, jitter_s=0.0)
    limiter = Limiter(clock=clock, sleep=clock.sleep, wall=clock)
    b = limiter.bucket("fallback", rpm=60, shared=db)
    caplog.set_level(logging.WARNING)
    released = await release_all(limiter, [b], [1] * 5, workers=5, clock=clock)
    limiter.pause(b, 0.0)
    limiter.reconcile([b], 1, 1)
    assert len(released) == 5
    assert b.shared is not None and not b.shared.ok
    assert len(shared_warnings(caplog)) == 1
    # the in-process limits still hold
    times = sorted(t for t, _ in released)
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 1.0 - 1e-6


async def test_a_file_locked_for_too_long_falls_back(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(shared_limits, "GIVE_UP_S", 0.3)
    db = tmp_path / "limits.sqlite"
    limiter = Limiter()
    b = limiter.bucket("locked", rpm=6000, shared=db)
    await limiter.acquire([b], 1)  # the file exists and works
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock and does not let go
    caplog.set_level(logging.WARNING)
    started = time.monotonic()
    try:
        await asyncio.wait_for(limiter.acquire([b], 1), 5.0)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert 0.3 <= time.monotonic() - started < 3.0
    assert not b.shared.ok and len(shared_warnings(caplog)) == 1


async def test_client_on_a_read_only_home_still_answers(tmp_path, caplog, monkeypatch):
    (tmp_path / "home").write_text("not a directory")
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(tmp_path / "home" / "orch"))
    monkeypatch.setattr("orchestrator.client.llm_client.LIMITER", Limiter())
    caplog.set_level(logging.WARNING)
    with FaultServer() as server:
        cfg = config_for(
            {"t/m": {"provider": "openai", "model": "m", "base_url": server.url, "limits": {"rpm": 600}}}
        )
        client = LLMClient(cfg, cache=False, retry=RetryPolicy(max_attempts=1))
        answers = await asyncio.gather(*(client.complete(f"hi [call:{i}]", model="t/m") for i in range(4)))
        await client.aclose()
    assert len(answers) == 4
    assert len(shared_warnings(caplog)) == 1


def test_a_limits_file_from_another_version_is_started_afresh(tmp_path, caplog):
    """A file whose tables another version made (here: no `n` column) must not disable sharing."""
    import sqlite3

    from orchestrator.client.shared_limits import SharedLog

    path = tmp_path / "limits.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE limit_scopes (scope TEXT PRIMARY KEY, next_slot REAL)")
    conn.execute("CREATE TABLE limit_releases (scope TEXT, t REAL)")
    conn.commit()
    conn.close()
    log = SharedLog(path, span_s=60.1)
    log._connect()
    columns = {r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(limit_scopes)")}
    assert "n" in columns and "tokens" in columns
    assert "not shared" not in caplog.text


# ------------------------------------------------------------------------------------ across a cluster


class NetworkLog:
    """A cluster's log as a Ray worker's limiter sees it (``ray_workers.ClusterLog``'s face): one real
    SharedLog in the "actor", answering each release after a round trip on the virtual clock. A blocking
    release (the worker's event loop stalled for the round trip) fails the test."""

    ok = True

    def __init__(self, log: SharedLog, clock: VirtualClock, one_way_s: float) -> None:
        self.log, self.clock, self.one_way_s = log, clock, one_way_s
        self.wall = log.wall
        self.asked = 0
        self.forgotten: list[list[int | None]] = []

    def release(self, claims, honoured: float = 0.0):
        raise AssertionError("a release blocked the worker's event loop for a round trip")

    async def release_async(self, claims, honoured: float = 0.0):
        self.asked += 1
        await self.clock.sleep(self.one_way_s)  # to the actor, which decides on arrival
        verdict = self.log.release(claims, honoured)
        arrived = self.clock.now + self.one_way_s
        await self.clock.sleep(self.one_way_s)  # and back, and taken up late by a loop that stalls
        return verdict, arrived

    def forget(self, rows) -> None:
        self.forgotten.append(list(rows))
        self.log.forget(rows)

    def pause(self, scope: str, seconds: float) -> None:
        self.log.pause(scope, seconds)

    def set_tokens(self, row: int, tokens: float) -> None:
        self.log.set_tokens(row, tokens)

    def paused_until(self, scope: str) -> float:
        return self.log.paused_until(scope)


async def test_two_workers_on_one_cluster_log_share_the_window_without_blocking_their_loops():
    """Two limiters (two Ray workers) asking one cluster log over a 3 ms round trip, many requests of each
    in flight at once: every release is awaited (none blocks), and together they never exceed rpm or tpm
    in a minute, and the spacing holds over both, although several asks cross on the way."""
    clock = VirtualClock(seed=8, stall_every=31, stall_s=0.4)
    actor = SharedLog(Path(":memory:"), span_s=SPAN_S, wall=clock)
    logs = [NetworkLog(actor, clock, 0.0015) for _ in range(2)]
    limiters = [Limiter(clock=clock, sleep=clock.sleep, wall=clock, cluster=log) for log in logs]
    buckets = [lim.bucket("cluster-scope", rpm=30, tpm=9000) for lim in limiters]
    await assert_two_share_rpm_30_tpm_9000(clock, limiters, buckets, seed=8)
    assert all(log.asked >= 80 for log in logs)  # every release went through the cluster, awaited
    assert sum(log.asked for log in logs) > 160  # and some were told to wait: the asks crossed


async def test_a_pause_that_arrives_while_the_cluster_answers_gives_the_granted_release_back():
    """The cluster grants a release, but a 429 pauses the bucket before the answer is back: the request
    does not go, the cluster forgets the release it granted, and the request goes after the pause."""
    clock = VirtualClock(jitter_s=0.0)
    log = NetworkLog(SharedLog(Path(":memory:"), span_s=SPAN_S, wall=clock), clock, 0.5)
    limiter = Limiter(clock=clock, sleep=clock.sleep, wall=clock, cluster=log)
    bucket = limiter.bucket("paused-scope", rpm=600)
    started = clock.now
    sent_at: list[float] = []

    async def request() -> None:
        await limiter.acquire([bucket], 1)
        sent_at.append(clock.now)

    async def a_429_meanwhile() -> None:
        await clock.sleep(0.7)  # after the actor granted (0.5 s in), before the answer is back (1.0 s)
        limiter.pause(bucket, 5.0)

    await clock.run(request(), a_429_meanwhile())
    assert len(log.forgotten) == 1 and log.forgotten[0] != [None]
    assert sent_at and sent_at[0] >= started + 0.7 + 5.0
