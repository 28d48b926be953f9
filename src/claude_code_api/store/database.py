"""The one interface every durable store is written against (``open_database`` in
the package opens one).

A ``Database`` runs SQL written once for both engines: ``?`` placeholders, upserts
as ``INSERT … ON CONFLICT … DO UPDATE``, ``RETURNING``. What differs is named here:
the column a table's insertion order is read from (``rowid``), the row lock of a
claim (``skip_locked``) and the column types of the migrations. Two
implementations: ``sqlite.SQLiteDatabase`` (one process, the default) and
``postgres.PostgresDatabase`` (shared by replicas).

The calls are synchronous, as the stores' callers are (the access middleware, the
accounting at a turn's end, the batch runner's callbacks): a statement on the
local SQLite file or on a PostgreSQL server nearby takes well under a millisecond,
and a pool of connections lets threads run several at once.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit


class StoreError(Exception):
    """The store cannot be opened or used as configured (a clear message, no secret)."""


@dataclass
class Result:
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    rowcount: int = 0

    def first(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.names, row, strict=True)) for row in self.rows]


class Executor(ABC):
    """Runs one statement; the rows are read before it returns."""

    @abstractmethod
    def run(self, sql: str, args: Sequence[Any] = ()) -> Result: ...


class Database(Executor):
    """A store's engine. ``run`` is a transaction of its own; ``transaction`` holds one
    open for several statements (committed at the end, rolled back on an error)."""

    kind: str  # "sqlite" or "postgresql": which steps of a migration apply
    rowid: str  # a column that grows with each insert (ties of created_at)
    skip_locked: str  # appended to a claim's SELECT

    @abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[Executor]: ...

    @abstractmethod
    def lock_schema(self, tx: Executor) -> None:
        """Serialise migrations between processes, inside ``tx``."""

    @abstractmethod
    def tables(self) -> dict[str, set[str]]:
        """Each table and its columns (for doctor's report of what a migration added)."""

    @abstractmethod
    def describe(self) -> str:
        """Where the store is, without a password."""

    @abstractmethod
    def close(self) -> None:
        """Idempotent."""


def is_postgres(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def sqlite_path(target: str) -> str:
    """``sqlite:///abs/path`` → ``/abs/path``; ``sqlite://:memory:`` (or
    ``sqlite:///:memory:``) → ``:memory:``; anything else is a path already."""
    if not target.startswith("sqlite://"):
        return target
    rest = target.removeprefix("sqlite://")
    return ":memory:" if rest in (":memory:", "/:memory:") else rest


def masked(url: str) -> str:
    """A URL with its password (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
