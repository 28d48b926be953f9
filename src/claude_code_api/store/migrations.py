"""Versioned schema migrations, the same numbers on SQLite and PostgreSQL.

``schema_version`` holds one row per migration applied. ``migrate`` runs the ones
a database lacks, in order, each in one transaction with the row that records it,
under a lock (PostgreSQL: an advisory lock, so replicas starting together migrate
once; SQLite: the file's write lock). A new migration is appended to
``MIGRATIONS`` with the next number, never edited once released.

Version 1 is the schema as it was before versions were kept: a file made by an
older release gets its missing tables and columns, and nothing is removed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .database import Database, Executor, StoreError

# Column types by engine: SQLite's are today's; PostgreSQL's hold the same values.
_TYPES = {
    "sqlite": {"real": "REAL", "bigint": "INTEGER", "blob": "BLOB", "seq": ""},
    "postgresql": {"real": "DOUBLE PRECISION", "bigint": "BIGINT", "blob": "BYTEA",
                   "seq": ",\n    seq BIGSERIAL"},
}

_V1 = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    system TEXT,
    model TEXT NOT NULL DEFAULT '',
    messages TEXT NOT NULL,
    turns INTEGER NOT NULL DEFAULT 0,
    created_at {real} NOT NULL,
    updated_at {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_scope_fp ON conversations (scope, fingerprint);
CREATE INDEX IF NOT EXISTS conversations_updated ON conversations (updated_at);
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    body TEXT NOT NULL,
    input_items TEXT NOT NULL,
    messages TEXT NOT NULL,
    created_at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    rpm INTEGER,
    concurrency INTEGER,
    budget_usd {real},
    models TEXT,
    agent INTEGER NOT NULL DEFAULT 0,
    max_turns INTEGER,
    spent_usd {real} NOT NULL DEFAULT 0,
    created_at {real} NOT NULL,
    last_used_at {real},
    revoked_at {real}
);
CREATE TABLE IF NOT EXISTS usage (
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    day TEXT NOT NULL,
    requests {bigint} NOT NULL DEFAULT 0,
    cached_requests {bigint} NOT NULL DEFAULT 0,
    input_tokens {bigint} NOT NULL DEFAULT 0,
    output_tokens {bigint} NOT NULL DEFAULT 0,
    cache_read_tokens {bigint} NOT NULL DEFAULT 0,
    cache_creation_tokens {bigint} NOT NULL DEFAULT 0,
    cost_usd {real} NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, model, day)
);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    bytes {bigint} NOT NULL,
    created_at {bigint} NOT NULL,
    content {blob} NOT NULL{seq}
);
CREATE INDEX IF NOT EXISTS files_owner ON files (owner, created_at);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at {bigint} NOT NULL,
    body TEXT NOT NULL{seq}
);
CREATE INDEX IF NOT EXISTS batches_owner ON batches (owner, created_at);
CREATE TABLE IF NOT EXISTS batch_results (
    batch_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (batch_id, idx)
)
"""

# v2: each batch item not yet answered, and which replica holds it until when.
_V2 = """
CREATE TABLE batch_items (
    batch_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    holder TEXT,
    lease_until {real},
    PRIMARY KEY (batch_id, idx)
);
CREATE INDEX batch_items_holder ON batch_items (holder)
"""

# v4: which replica holds which conversation state warm (store/warm.py): one row per
# (state fingerprint, replica), refreshed while held; rows not seen lately are stale.
_V4 = """
CREATE TABLE warm_conversations (
    fingerprint TEXT NOT NULL,
    replica TEXT NOT NULL,
    seen_at {real} NOT NULL,
    PRIMARY KEY (fingerprint, replica)
);
CREATE INDEX warm_conversations_replica ON warm_conversations (replica)
"""


def _old_key_columns(db: Database, tx: Executor) -> None:
    """Key columns added before versions were kept, for files made before them."""
    have = {row[1] for row in tx.run("PRAGMA table_info(api_keys)").rows}
    for name, kind in (("agent", "INTEGER NOT NULL DEFAULT 0"), ("max_turns", "INTEGER")):
        if name not in have:
            tx.run(f"ALTER TABLE api_keys ADD COLUMN {name} {kind}")


def _admin_column(db: Database, tx: Executor) -> None:
    """v3: keys that may use the web console's admin API (/ui/api). (A development
    build of the console added the column before versions were kept: kept if there.)"""
    if db.kind == "sqlite":
        have = {row[1] for row in tx.run("PRAGMA table_info(api_keys)").rows}
        if "admin" not in have:
            tx.run("ALTER TABLE api_keys ADD COLUMN admin INTEGER NOT NULL DEFAULT 0")
    else:
        tx.run("ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS admin INTEGER NOT NULL "
               "DEFAULT 0")


Step = str | Callable[[Database, Executor], None]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    template: str  # statements separated by ';', column types as {real}, {blob}...
    sqlite_only: tuple[Step, ...] = ()
    always: tuple[Step, ...] = ()  # steps of their own on every backend

    def steps(self, db: Database) -> list[Step]:
        text = self.template.format(**_TYPES[db.kind])
        steps: list[Step] = [s.strip() for s in text.split(";") if s.strip()]
        return steps + list(self.always) + list(self.sqlite_only if db.kind == "sqlite"
                                                 else ())


MIGRATIONS = (
    Migration(1, "conversations, responses, keys, usage, files, batches", _V1,
              (_old_key_columns,)),
    Migration(2, "batch item leases", _V2),
    Migration(3, "admin keys", "", always=(_admin_column,)),
    Migration(4, "warm conversation registry", _V4),
)
LATEST = MIGRATIONS[-1].version

_VERSION_TABLE = ("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                  "name TEXT NOT NULL, applied_at {real} NOT NULL)")


def version(db: Database) -> int:
    """The schema version of ``db`` (0: none recorded yet)."""
    if "schema_version" not in db.tables():
        return 0
    row = db.run("SELECT COALESCE(MAX(version), 0) FROM schema_version").first()
    return int(row[0]) if row else 0


def migrate(db: Database) -> tuple[int, int]:
    """Bring ``db`` to ``LATEST``; (version before, version after)."""
    with db.transaction() as tx:
        db.lock_schema(tx)
        tx.run(_VERSION_TABLE.format(**_TYPES[db.kind]))
        row = tx.run("SELECT COALESCE(MAX(version), 0) FROM schema_version").first()
        before = int(row[0]) if row else 0
        if before > LATEST:
            raise StoreError(f"the store at {db.describe()} has schema version {before}, "
                             f"newer than this claude-code-api knows ({LATEST}): "
                             "upgrade claude-code-api")
        for migration in MIGRATIONS[before:]:
            for step in migration.steps(db):
                if isinstance(step, str):
                    tx.run(step)
                else:
                    step(db, tx)
            tx.run("INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                   (migration.version, migration.name, time.time()))
    return before, LATEST
