"""One process per run: a lease row in the results database, kept alive by a heartbeat.

Two processes resuming the same ``run_id`` at once each bill every cell (each sees it not done), and the
ledger of each records only its own half. So a run is leased: ``run_locks`` holds one row per run being
run (holder pid, host, since, last heartbeat, a random token), taken in a ``BEGIN IMMEDIATE`` transaction
so that two processes cannot both take it. A second process is refused with a message naming the holder.

A lease whose holder died is taken over safely: on the same host, when the holder's pid no longer exists;
from another host (a shared network folder), when its heartbeat is older than ``stale_after_s``. A holder
on this host whose pid is alive keeps the lease however old its heartbeat (it may be stopped under a
debugger), up to ``HOST_STALE_S``, after which the pid is assumed reused. The heartbeat thread notices a
lease it has lost (taken over while this process was frozen) and sets :attr:`RunLock.lost`.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from ..errors import RunLockedError, StorageError

log = logging.getLogger("orchestrator")

SCHEMA = """
CREATE TABLE IF NOT EXISTS run_locks (
    run_id TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    since TEXT NOT NULL,
    heartbeat REAL NOT NULL
);
"""
HEARTBEAT_S = 5.0
STALE_AFTER_S = 30.0
HOST_STALE_S = 600.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """The lease on one run; use as a context manager or call :meth:`acquire` and :meth:`release`."""

    def __init__(
        self,
        db_path: Path,
        run_id: str,
        *,
        heartbeat_s: float = HEARTBEAT_S,
        stale_after_s: float = STALE_AFTER_S,
    ) -> None:
        self.db_path = Path(db_path)
        self.run_id = run_id
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.token = secrets.token_hex(8)
        self.host = socket.gethostname()
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot take the run lock in {self.db_path}: {exc}") from None
        return conn

    def acquire(self) -> None:
        """Take the lease, or raise :class:`~orchestrator.errors.RunLockedError` naming its holder."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "SELECT token, pid, host, since, heartbeat FROM run_locks WHERE run_id = ?", (self.run_id,)
            ).fetchone()
            if row is not None:
                reason = self._stale_reason(row)
                if reason is None:
                    conn.execute("ROLLBACK")
                    _, pid, host, since, beat = row
                    raise RunLockedError(
                        f"run {self.run_id!r} is being run by another process: pid {pid} on {host}, "
                        f"since {since} (last heartbeat {time.time() - beat:.0f} s ago). Wait for it to "
                        "finish or stop it; the lease of a process that died is taken over "
                        "automatically."
                    )
                log.warning(
                    "run %s: taking over the lease of pid %s on %s (%s)", self.run_id, row[1], row[2], reason
                )
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            conn.execute(
                "INSERT OR REPLACE INTO run_locks (run_id, token, pid, host, since, heartbeat) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (self.run_id, self.token, os.getpid(), self.host, now, time.time()),
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot take the run lock in {self.db_path}: {exc}") from None
        finally:
            conn.close()
        self._thread = threading.Thread(target=self._beat, name=f"run-lock-{self.run_id}", daemon=True)
        self._thread.start()

    def _stale_reason(self, row: tuple) -> str | None:
        """Why the lease in ``row`` may be taken over, or None while its holder lives."""
        token, pid, host, _since, beat = row
        age = time.time() - beat
        if host == self.host:
            if pid != os.getpid() and not _pid_alive(pid):
                return f"pid {pid} is gone"
            if age > HOST_STALE_S:
                return f"no heartbeat for {age:.0f} s"
            return None
        if age > self.stale_after_s:
            return f"no heartbeat for {age:.0f} s"
        return None

    def _beat(self) -> None:
        conn: sqlite3.Connection | None = None
        while not self._stop.wait(self.heartbeat_s):
            try:
                conn = conn or self._connect()
                cur = conn.execute(
                    "UPDATE run_locks SET heartbeat = ? WHERE run_id = ? AND token = ?",
                    (time.time(), self.run_id, self.token),
                )
                if cur.rowcount == 0:
                    self.lost = True
                    log.error("run %s: the run lock was taken over by another process", self.run_id)
                    break
            except (sqlite3.Error, StorageError) as exc:  # a full disk: keep running, try again
                log.warning("run %s: heartbeat not written: %s", self.run_id, exc)
        if conn is not None:
            conn.close()

    def release(self) -> None:
        """Give the lease back (only if it is still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_s + 5)
            self._thread = None
        try:
            conn = self._connect()
            try:
                conn.execute(
                    "DELETE FROM run_locks WHERE run_id = ? AND token = ?", (self.run_id, self.token)
                )
            finally:
                conn.close()
        except (sqlite3.Error, StorageError) as exc:
            log.warning("run %s: could not release the run lock: %s", self.run_id, exc)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
