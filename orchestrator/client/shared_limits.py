"""Rate-limit state shared by the processes of one machine: a SQLite file (``$ORCHESTRATOR_HOME/limits.sqlite``).

For every scope the file holds the log of the releases of the last minute (time, tokens), their count
and token sum (kept up to date by every write, so that a release costs the same however full the window
is), and the scope's RPM spacing slot and 429 pause. A process releases a request only inside one short write transaction
(``BEGIN IMMEDIATE``) that checks the pause, the spacing and the window against that log and appends
to it, so the window guarantee of :mod:`orchestrator.client.limits` holds over every process together.

Times are ``time.time()``: one machine, one clock (``time.monotonic()`` is not comparable across
containers). A clock step is tolerated: a time found more than a second in the future (the clock went
back) is taken as "now", and no wait decided here is longer than one window; a step forward lets the
log's rows leave the window early, once.

Every failure falls back: a file that cannot be opened or written, or a lock held for longer than
:data:`GIVE_UP_S`, logs one warning and the log turns itself off (``ok`` is False): the caller then
enforces its limits in-process only. The log never raises.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 0.05  # one attempt's wait for the write lock; the caller retries without holding its loop
GIVE_UP_S = 3.0  # the file locked for this long: warn and fall back to in-process limits
BUSY_RETRY_S = 0.01  # how soon a caller that found the file locked tries again
PAUSE_REFRESH_S = 0.25  # how stale a scope's pause may be when read outside a release (no transaction)
FUTURE_S = 1.0  # a time further ahead than this was written before the clock stepped back
EARLY_OK_S = 1e-4  # spacing slack: the two clocks' conversion and wake-up jitter, not a burst

SCHEMA_VERSION = 1  # bump when the tables change: a file with another version is started afresh
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS limit_scopes (
        scope TEXT PRIMARY KEY,
        next_slot REAL NOT NULL DEFAULT 0,
        paused_until REAL NOT NULL DEFAULT 0,
        paused_at REAL NOT NULL DEFAULT 0,
        n INTEGER NOT NULL DEFAULT 0,
        tokens REAL NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS limit_releases (
        id INTEGER PRIMARY KEY,
        scope TEXT NOT NULL,
        t REAL NOT NULL,
        tokens REAL NOT NULL,
        pid INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS limit_releases_scope_t ON limit_releases (scope, t, tokens)",
)


@dataclass(frozen=True)
class Claim:
    """What one scope asks of a release: its limits and the request's token estimate."""

    scope: str
    allow: int  # requests one window may hold (0: no RPM)
    spacing: float  # 60/rpm (0: no RPM)
    tpm: float | None
    tokens: float


@dataclass
class Verdict:
    """``go`` (with the new rows' ids), ``wait`` or ``paused`` (until a wall time), ``busy`` or ``off``."""

    kind: str
    until: float = 0.0
    rows: list[int | None] = field(default_factory=list)


BUSY = Verdict("busy")
OFF = Verdict("off")


class SharedLog:
    """One SQLite file of scopes, their release logs and pauses. Thread-safe; reopened after a fork."""

    def __init__(self, path: Path, *, span_s: float, wall: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.span = span_s  # how long a release counts against its window (the window plus slack)
        self.wall = wall
        self.ok = True
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._busy_since: float | None = None
        self._pauses: dict[str, tuple[float, float]] = {}  # scope -> (read at, paused until)
        # writes that found the file locked, applied by the next transaction (a pause, a usage correction)
        self._deferred: list[Callable[[sqlite3.Connection, float], Any]] = []

    # ------------------------------------------------------------------ the transactions

    def release(self, claims: Sequence[Claim], honoured: float = 0.0) -> Verdict:
        """Release one request in every scope of ``claims`` at once, or say why not and until when.

        ``honoured``: the (wall) end of a pause the caller already slept through.
        """

        def body(conn: sqlite3.Connection, now: float) -> Verdict:
            until = 0.0
            scopes = []
            for c in claims:
                next_slot, paused_until, count, total = self._scope(conn, c.scope, now, c.spacing)
                if paused_until > max(now, honoured + 0.01):
                    return Verdict("paused", paused_until)
                scopes.append(next_slot)
                if c.spacing and now < next_slot - EARLY_OK_S:
                    until = max(until, next_slot)
                if not (c.allow or c.tpm):
                    continue
                count, total = self._prune(conn, c.scope, now, count, total)
                if c.allow and count >= c.allow:
                    (t,) = conn.execute(
                        "SELECT t FROM limit_releases WHERE scope = ? ORDER BY t LIMIT 1 OFFSET ?",
                        (c.scope, count - c.allow),
                    ).fetchone()
                    until = max(until, t + self.span)
                if c.tpm and total > 0 and total + c.tokens > c.tpm:
                    rest = total
                    rows = conn.execute(
                        "SELECT t, tokens FROM limit_releases WHERE scope = ? ORDER BY t", (c.scope,)
                    )
                    for t, tokens in rows:  # the oldest leave first
                        if rest <= 0 or rest + c.tokens <= c.tpm:
                            break
                        until = max(until, t + self.span)
                        rest -= tokens
            if until > now:
                return Verdict("wait", min(until, now + self.span))
            # stamped when the checks are done, not when they began: the request leaves after them (a
            # later time is the safe side for the window, and spaces the next request from its departure)
            now = max(now, self.wall())
            ids: list[int | None] = []
            for c, next_slot in zip(claims, scopes, strict=True):
                if c.allow or c.tpm:
                    cur = conn.execute(
                        "INSERT INTO limit_releases (scope, t, tokens, pid) VALUES (?, ?, ?, ?)",
                        (c.scope, now, c.tokens, os.getpid()),
                    )
                    ids.append(cur.lastrowid)
                    conn.execute(
                        "UPDATE limit_scopes SET n = n + 1, tokens = tokens + ? WHERE scope = ?",
                        (c.tokens, c.scope),
                    )
                else:
                    ids.append(None)
                if c.spacing:
                    # on the grid when on time (as the in-process spacing does), else from now
                    late_ok = min(0.001, c.spacing / 10)
                    stamp = next_slot if now - next_slot <= late_ok else now
                    conn.execute(
                        "UPDATE limit_scopes SET next_slot = ? WHERE scope = ?", (stamp + c.spacing, c.scope)
                    )
            return Verdict("go", rows=ids)

        return self._transaction(body, BUSY)

    def pause(self, scope: str, seconds: float) -> None:
        """Pause ``scope`` for every process (after a 429)."""
        at = self.wall()
        until = at + max(0.0, seconds)
        self._pauses[scope] = (at, max(until, self._pauses.get(scope, (0.0, 0.0))[1]))

        def body(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(
                "INSERT INTO limit_scopes (scope, paused_until, paused_at) VALUES (?1, ?2, ?3) "
                "ON CONFLICT (scope) DO UPDATE SET paused_until = max(paused_until, ?2), paused_at = ?3",
                (scope, until, at),
            )

        self._write(body)

    def set_tokens(self, row: int, tokens: float) -> None:
        """Correct a release's token reservation with the usage the provider reported."""

        def body(conn: sqlite3.Connection, now: float) -> None:
            found = conn.execute("SELECT scope, tokens FROM limit_releases WHERE id = ?", (row,)).fetchone()
            if found is not None:  # else it already left the window
                conn.execute("UPDATE limit_releases SET tokens = ? WHERE id = ?", (tokens, row))
                conn.execute(
                    "UPDATE limit_scopes SET tokens = max(0, tokens + ?) WHERE scope = ?",
                    (tokens - found[1], found[0]),
                )

        self._write(body)

    def forget(self, rows: Sequence[int | None]) -> None:
        """Take back releases that were not used (another file of the same request said wait)."""

        def body(conn: sqlite3.Connection, now: float) -> None:
            for row in rows:
                found = conn.execute(
                    "SELECT scope, tokens FROM limit_releases WHERE id = ?", (row,)
                ).fetchone()
                if found is not None:
                    conn.execute("DELETE FROM limit_releases WHERE id = ?", (row,))
                    conn.execute(
                        "UPDATE limit_scopes SET n = max(0, n - 1), tokens = max(0, tokens - ?) WHERE scope = ?",
                        (found[1], found[0]),
                    )

        if any(row is not None for row in rows):
            self._write(body)

    def paused_until(self, scope: str) -> float:
        """The scope's pause (a wall time; 0 if none), read at most every :data:`PAUSE_REFRESH_S`."""
        now = self.wall()
        read_at, until = self._pauses.get(scope, (float("-inf"), 0.0))
        if now - read_at < PAUSE_REFRESH_S or not self.ok:
            return until
        with self._lock:
            try:
                conn = self._connect()
                row = conn.execute(
                    "SELECT paused_until, paused_at FROM limit_scopes WHERE scope = ?", (scope,)
                ).fetchone()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    self._fail(exc)
                return until
            except (sqlite3.Error, OSError) as exc:
                self._fail(exc)
                return until
        if row is not None:
            until, at = row
            if at > now + FUTURE_S:  # set before a clock step back: keep its length, not its end
                until -= at - now
        self._pauses[scope] = (now, until)
        return until

    # ------------------------------------------------------------------ plumbing

    def _scope(
        self, conn: sqlite3.Connection, scope: str, now: float, spacing: float
    ) -> tuple[float, float, int, float]:
        """The scope's spacing slot, pause, release count and token sum; created if new, and corrected
        after a clock step back."""
        row = conn.execute(
            "SELECT next_slot, paused_until, paused_at, n, tokens FROM limit_scopes WHERE scope = ?", (scope,)
        ).fetchone()
        if row is None:
            conn.execute("INSERT INTO limit_scopes (scope) VALUES (?)", (scope,))
            row = (0.0, 0.0, 0.0, 0, 0.0)
        next_slot, paused_until, paused_at, count, total = row
        if next_slot > now + spacing + FUTURE_S:
            next_slot = now
        if paused_at > now + FUTURE_S:
            paused_until -= paused_at - now
            conn.execute(
                "UPDATE limit_scopes SET paused_until = ?, paused_at = ? WHERE scope = ?",
                (paused_until, now, scope),
            )
        self._pauses[scope] = (now, paused_until)
        return next_slot, paused_until, count, total

    def _prune(
        self, conn: sqlite3.Connection, scope: str, now: float, count: int, total: float
    ) -> tuple[int, float]:
        """Drop the scope's releases that left the window; returns the count and token sum that remain."""
        since = now - self.span
        gone, tokens = conn.execute(
            "SELECT COUNT(*), TOTAL(tokens) FROM limit_releases WHERE scope = ? AND t <= ?", (scope, since)
        ).fetchone()
        if gone:
            conn.execute("DELETE FROM limit_releases WHERE scope = ? AND t <= ?", (scope, since))
            count, total = max(0, count - gone), max(0.0, total - tokens)
            conn.execute("UPDATE limit_scopes SET n = ?, tokens = ? WHERE scope = ?", (count, total, scope))
        # a row from before a clock step back counts as released now: it leaves within one window
        conn.execute(
            "UPDATE limit_releases SET t = ? WHERE scope = ? AND t > ?", (now, scope, now + FUTURE_S)
        )
        return count, total

    def _write(self, body: Callable[[sqlite3.Connection, float], Any]) -> None:
        if self._transaction(body, BUSY) is BUSY and self.ok:
            with self._lock:
                self._deferred.append(body)

    def _transaction(self, body: Callable[[sqlite3.Connection, float], Any], busy: Any) -> Any:
        """Run ``body`` in one ``BEGIN IMMEDIATE`` transaction; ``busy`` if locked, :data:`OFF` if broken."""
        if not self.ok:
            return OFF
        with self._lock:
            try:
                conn = self._connect()
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    return self._busy(busy)
                return self._fail(exc)
            except (sqlite3.Error, OSError) as exc:
                return self._fail(exc)
            try:
                deferred, self._deferred = self._deferred, []
                # the time is read holding the lock: the releases of all processes are in time order
                now = self.wall()
                for write in deferred:
                    write(conn, now)
                result = body(conn, now)
                conn.execute("COMMIT")
            except BaseException as exc:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                self._deferred[:0] = deferred
                if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
                    return self._busy(busy)
                if isinstance(exc, (sqlite3.Error, OSError)):
                    return self._fail(exc)
                raise
            self._busy_since = None
            return result

    def _busy(self, busy: Any) -> Any:
        now = time.monotonic()
        if self._busy_since is None:
            self._busy_since = now
        elif now - self._busy_since > GIVE_UP_S:
            return self._fail(sqlite3.OperationalError(f"locked for more than {GIVE_UP_S:.0f} s"))
        return busy

    def _fail(self, exc: BaseException) -> Verdict:
        if self.ok:
            self.ok = False
            log.warning(
                "rate limits are not shared with other processes (%s: %s); each process now enforces "
                "its own limits",
                self.path,
                exc,
            )
        self._deferred.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        return OFF

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        # a connection inherited through fork() must not be used: open our own
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # a short lock timeout even here: a file locked by another process is retried by the caller
        # (asynchronously) and given up on after GIVE_UP_S, never waited for with the event loop blocked
        conn = sqlite3.connect(
            self.path, timeout=LOCK_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            try:
                conn.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
            except sqlite3.OperationalError:
                pass  # a file system without shared memory: the rollback journal works too, slower
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                # a file another version wrote: its rows are a minute of releases, safe to start over
                conn.execute("DROP TABLE IF EXISTS limit_releases")
                conn.execute("DROP TABLE IF EXISTS limit_scopes")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            for stmt in SCHEMA:
                conn.execute(stmt)
            # rows of scopes nobody uses any more, and every count made again from the rows (cheap: a
            # minute's rows), so that nothing a crashed or older process left can drift
            conn.execute("DELETE FROM limit_releases WHERE t <= ?", (self.wall() - self.span,))
            conn.execute(
                "UPDATE limit_scopes SET"
                " n = (SELECT COUNT(*) FROM limit_releases r WHERE r.scope = limit_scopes.scope),"
                " tokens = (SELECT TOTAL(tokens) FROM limit_releases r WHERE r.scope = limit_scopes.scope)"
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text
