"""The PostgreSQL database: the durable state several replicas share.

psycopg 3's blocking API with its connection pool: the stores are called
synchronously (see ``database.py``), each call borrows a connection for one
transaction and gives it back. Statements are written with ``?`` placeholders
for both engines and rewritten to psycopg's ``%s`` here.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from .database import Database, Executor, Result, StoreError, masked

# Any constant both replicas agree on: migrations run one process at a time.
_SCHEMA_LOCK = 0x63636101


@functools.lru_cache(maxsize=512)
def _translate(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


def _result(cursor: psycopg.Cursor[Any]) -> Result:
    if cursor.description is None:
        return Result(rowcount=cursor.rowcount)
    names = [d.name for d in cursor.description]
    return Result(cursor.fetchall(), names, cursor.rowcount)


class _Held(Executor):
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def run(self, sql: str, args: Sequence[Any] = ()) -> Result:
        return _result(self._conn.execute(_translate(sql), tuple(args)))


class PostgresDatabase(Database):
    kind = "postgresql"
    rowid = "seq"  # a BIGSERIAL column: PostgreSQL has no rowid
    skip_locked = " FOR UPDATE SKIP LOCKED"  # replicas claim different rows, never wait

    def __init__(self, url: str, *, pool_size: int = 8, timeout: float = 10.0) -> None:
        self.url = url
        _probe(url, timeout)  # a clear error now, rather than a pool timeout later
        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, timeout=timeout,
                                    open=False, name="claude-code-api")
        try:
            self._pool.open(wait=True, timeout=timeout)
        except PoolTimeout as exc:
            self._pool.close()
            raise StoreError(f"PostgreSQL at {masked(url)}: no connection within "
                             f"{timeout:g} s") from exc
        self._closed = False

    def run(self, sql: str, args: Sequence[Any] = ()) -> Result:
        with self.transaction() as tx:
            return tx.run(sql, args)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Executor]:
        # The pool's block commits at its end and rolls back on an exception.
        with self._pool.connection() as conn:
            yield _Held(conn)

    def lock_schema(self, tx: Executor) -> None:
        tx.run("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))

    def tables(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for table, column in self.run(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema()").rows:
            found.setdefault(table, set()).add(column)
        return found

    def describe(self) -> str:
        return masked(self.url)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.close()


def _probe(url: str, timeout: float) -> None:
    try:
        psycopg.connect(url, connect_timeout=max(1, int(timeout))).close()
    except psycopg.Error as exc:
        # libpq's message names the host and what failed, never the password.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(f"PostgreSQL at {masked(url)}: {reason}") from exc
