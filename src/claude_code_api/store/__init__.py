"""Durable state: keys, the usage ledger, conversations, stored Responses, files and
batches, each a store over one ``Database`` (``database.py``): SQLite by default,
PostgreSQL (``store.url``) when replicas share it."""

from __future__ import annotations

from pathlib import Path

from .database import Database, is_postgres, sqlite_path


def open_database(target: str | Path, *, pool_size: int = 8, timeout: float = 10.0,
                  migrate: bool = True) -> Database:
    """The database at ``target``: a ``sqlite:///…`` or ``postgresql://…`` URL, or the
    path of a SQLite file; brought to the latest schema unless ``migrate`` is false."""
    from . import migrations

    db = _connect(str(target), pool_size, timeout)
    if migrate:
        try:
            migrations.migrate(db)
        except BaseException:
            db.close()
            raise
    return db


def _connect(target: str, pool_size: int, timeout: float) -> Database:
    if is_postgres(target):
        from .postgres import PostgresDatabase

        return PostgresDatabase(target, pool_size=pool_size, timeout=timeout)
    from .sqlite import SQLiteDatabase

    return SQLiteDatabase(sqlite_path(target))


class Store:
    """A store over a ``Database``: the app's shared one, or (given a path or URL, as
    tests and the ``keys`` command do) one of its own, closed with the store."""

    def __init__(self, db: Database | Path | str) -> None:
        self._owns = not isinstance(db, Database)
        self.db = db if isinstance(db, Database) else open_database(db)

    def close(self) -> None:
        if self._owns:
            self.db.close()
