"""The response cache: a SQLite table under ORCHESTRATOR_HOME.

The key is a hash of everything that changes the answer (provider, API model, base URL, messages,
every sampling parameter including the seed, the output schema, the mode version, the repeat index)
and of nothing secret. Errors are never cached.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from .. import fast_json
from ..types import Completion

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL,
    completion TEXT NOT NULL
);
"""


def cache_key(parts: dict[str, Any]) -> str:
    """A stable hash of the request parts (sorted JSON, so dict order never matters)."""
    return hashlib.sha256(fast_json.dumps(parts, sort_keys=True)).hexdigest()


def connect(path: Path) -> sqlite3.Connection:
    """A SQLite connection in WAL mode, usable from any thread (callers hold their own lock).

    Raises :class:`~orchestrator.errors.StorageError` naming the file when the folder cannot be
    created or the database cannot be opened for writing (a read-only ORCHESTRATOR_HOME).
    """
    from ..errors import StorageError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise StorageError(
            f"cannot open {path} for writing: {exc}; set ORCHESTRATOR_HOME to a writable folder"
        ) from None
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.Error as exc:
        conn.close()
        raise StorageError(
            f"cannot open {path} for writing: {exc}; set ORCHESTRATOR_HOME to a writable folder"
        ) from None
    return conn


def connect_readonly(path: Path, schema: str) -> sqlite3.Connection:
    """Open ``path`` without writing anything; a missing file is an empty database with ``schema``.

    A WAL database in a read-only folder cannot create its shared-memory file, so that case is opened
    as immutable (safe: nothing can write a read-only folder meanwhile).
    """
    from ..errors import StorageError

    def empty() -> sqlite3.Connection:
        conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        conn.executescript(schema)
        return conn

    if not path.is_file():
        return empty()
    last: Exception | None = None
    for query in ("mode=ro", "immutable=1"):
        try:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?{query}", uri=True, check_same_thread=False, isolation_level=None
            )
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.Error as exc:
            last = exc
    raise StorageError(f"cannot read {path}: {last}")


class ResponseCache:
    """Get and put completions by key; thread-safe, one connection."""

    def __init__(self, path: Path) -> None:
        from ..errors import StorageError

        self.path = path
        self._conn = connect(path)
        try:
            self._conn.executescript(SCHEMA)
        except sqlite3.Error as exc:
            self._conn.close()
            raise StorageError(f"cannot open the response cache {path}: {exc}") from None
        self._lock = threading.Lock()

    def get(self, key: str) -> Completion | None:
        """The stored completion for ``key``, or None when absent or expired."""
        with self._lock:
            row = self._conn.execute(
                "SELECT completion, expires FROM responses WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        if row[1] is not None and row[1] <= time.time():
            return None
        try:
            return Completion.model_validate_json(row[0])
        except ValueError:  # a row from an incompatible version, or damaged: a miss, not a crash
            return None

    def put(self, key: str, completion: Completion, ttl_s: float | None = None) -> None:
        """Store a successful completion (never an error); ``ttl_s`` None keeps it until cleared."""
        if ttl_s is not None and ttl_s <= 0:
            return
        now = time.time()
        # raw bodies stay out of the cache file; the rest is what a hit returns
        blob = completion.model_dump_json(exclude={"raw"})
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO responses (key, model, created, expires, completion) VALUES (?,?,?,?,?)",
                (key, completion.model, now, now + ttl_s if ttl_s is not None else None, blob),
            )

    def purge_expired(self) -> int:
        """Delete expired rows; returns how many."""
        with self._lock:
            return self._conn.execute(
                "DELETE FROM responses WHERE expires IS NOT NULL AND expires <= ?", (time.time(),)
            ).rowcount

    def count(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def clear(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM responses")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
