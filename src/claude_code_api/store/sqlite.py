"""The SQLite database: one file (WAL) for one gateway process, the default.

Survives restarts and a kill -9: every statement is its own transaction unless a
``transaction`` holds one open. The ``keys`` command may write while the server
runs (WAL, a 10 s wait for the lock).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .database import Database, Executor, Result

_LOCK_WAIT = 10.0  # seconds a statement waits for another connection's lock


def _wal(db: sqlite3.Connection, wait: float) -> None:
    """Switch the file to WAL. Connections opening a new file together (replicas,
    the ``keys`` command) race for it, and SQLite answers the losers "database is
    locked" at once, without the busy wait statements get: they try again."""
    deadline = time.monotonic() + wait
    pause = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _result(cursor: sqlite3.Cursor) -> Result:
    if cursor.description is None:
        return Result(rowcount=cursor.rowcount)
    names = [d[0] for d in cursor.description]
    return Result(cursor.fetchall(), names, cursor.rowcount)


class _Held(Executor):
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def run(self, sql: str, args: Sequence[Any] = ()) -> Result:
        return _result(self._db.execute(sql, tuple(args)))


class SQLiteDatabase(Database):
    kind = "sqlite"
    rowid = "rowid"
    skip_locked = ""  # one writer at a time: a transaction is the whole file's lock

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # Shared between threads under a lock; autocommit unless BEGIN says otherwise.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=_LOCK_WAIT)
        self._lock = threading.Lock()
        self._closed = False
        _wal(self._db, _LOCK_WAIT)
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash

    def run(self, sql: str, args: Sequence[Any] = ()) -> Result:
        with self._lock:
            return _result(self._db.execute(sql, tuple(args)))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Executor]:
        with self._lock:
            # IMMEDIATE: take the write lock now (waiting for it), rather than fail
            # with "database is locked" when a read turns into a write.
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield _Held(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def lock_schema(self, tx: Executor) -> None:
        pass  # BEGIN IMMEDIATE holds the file's write lock already

    def tables(self) -> dict[str, set[str]]:
        names = [row[0] for row in self.run(
            "SELECT name FROM sqlite_master WHERE type = 'table'").rows]
        return {t: {row[0] for row in self.run("SELECT name FROM pragma_table_info(?)",
                                               (t,)).rows} for t in names}

    def describe(self) -> str:
        return self.path

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
