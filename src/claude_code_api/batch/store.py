"""Files, batches and each batch item's result, in the gateway's SQLite file.

A batch is kept as its OpenAI ``Batch`` object (JSON) plus the columns it is
looked up by; each finished item is one row as soon as it finishes, so a batch
interrupted by a restart resumes with the items that were not done.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..store.sqlite import SQLiteStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    content BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS files_owner ON files (owner, created_at);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_owner ON batches (owner, created_at);
CREATE TABLE IF NOT EXISTS batch_results (
    batch_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (batch_id, idx)
);
"""

_INSERT_FILE = ("INSERT INTO files (id, owner, filename, purpose, bytes, created_at, content) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)")


@dataclass(frozen=True)
class StoredFile:
    id: str
    owner: str
    filename: str
    purpose: str
    bytes: int
    created_at: int

    def wire(self) -> dict[str, Any]:
        """OpenAI's ``FileObject``."""
        return {"id": self.id, "object": "file", "bytes": self.bytes,
                "created_at": self.created_at, "filename": self.filename,
                "purpose": self.purpose, "status": "processed"}


def _row(file: StoredFile) -> tuple[Any, ...]:
    return (file.id, file.owner, file.filename, file.purpose, file.bytes, file.created_at)


class BatchStore(SQLiteStore):
    schema = _SCHEMA

    # -- files ----------------------------------------------------------------------
    def add_file(self, file: StoredFile, content: bytes) -> None:
        with self._lock:
            self._db.execute(_INSERT_FILE, (*_row(file), content))

    def file(self, file_id: str) -> StoredFile | None:
        files = self._files("WHERE id = ?", (file_id,))
        return files[0] if files else None

    def files(self, owner: str, purpose: str | None = None) -> list[StoredFile]:
        """An owner's files, newest first."""
        if purpose is None:
            return self._files("WHERE owner = ? ORDER BY created_at DESC, rowid DESC",
                               (owner,))
        return self._files("WHERE owner = ? AND purpose = ? ORDER BY created_at DESC, "
                           "rowid DESC", (owner, purpose))

    def content(self, file_id: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT content FROM files WHERE id = ?",
                                   (file_id,)).fetchone()
        return bytes(row[0]) if row else None

    def delete_file(self, file_id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM files WHERE id = ?", (file_id,)).rowcount > 0

    def _files(self, where: str, args: tuple[Any, ...]) -> list[StoredFile]:
        with self._lock:
            rows = self._db.execute("SELECT id, owner, filename, purpose, bytes, created_at "
                                    f"FROM files {where}", args).fetchall()
        return [StoredFile(*row) for row in rows]

    # -- batches ----------------------------------------------------------------------
    def save_batch(self, owner: str, body: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO batches (id, owner, status, created_at, body) VALUES "
                "(?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET status = excluded.status, "
                "body = excluded.body",
                (body["id"], owner, body["status"], body["created_at"], json.dumps(body)))

    def batch(self, batch_id: str) -> tuple[str, dict[str, Any]] | None:
        """The batch's owner and ``Batch`` object."""
        with self._lock:
            row = self._db.execute("SELECT owner, body FROM batches WHERE id = ?",
                                   (batch_id,)).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def batches(self, owner: str) -> list[dict[str, Any]]:
        """An owner's batches, newest first."""
        with self._lock:
            rows = self._db.execute("SELECT body FROM batches WHERE owner = ? "
                                    "ORDER BY created_at DESC, rowid DESC", (owner,)).fetchall()
        return [json.loads(row[0]) for row in rows]

    def recent(self, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Everyone's latest batches, newest first: (owner, batch)."""
        with self._lock:
            rows = self._db.execute("SELECT owner, body FROM batches ORDER BY created_at DESC, "
                                    "rowid DESC LIMIT ?", (limit,)).fetchall()
        return [(row[0], json.loads(row[1])) for row in rows]

    def unfinished(self) -> list[tuple[str, dict[str, Any]]]:
        """Batches a stopped server left running: (owner, batch)."""
        with self._lock:
            rows = self._db.execute("SELECT owner, body FROM batches WHERE status IN "
                                    "('validating', 'in_progress', 'finalizing', "
                                    "'cancelling') ORDER BY created_at").fetchall()
        return [(row[0], json.loads(row[1])) for row in rows]

    # -- item results -------------------------------------------------------------------
    def add_result(self, batch_id: str, index: int, ok: bool, line: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO batch_results (batch_id, idx, ok, line) "
                             "VALUES (?, ?, ?, ?)", (batch_id, index, int(ok), json.dumps(line)))

    def done(self, batch_id: str) -> set[int]:
        with self._lock:
            rows = self._db.execute("SELECT idx FROM batch_results WHERE batch_id = ?",
                                    (batch_id,)).fetchall()
        return {row[0] for row in rows}

    def counts(self, batch_id: str) -> tuple[int, int]:
        """(completed, failed) items so far."""
        with self._lock:
            row = self._db.execute("SELECT COALESCE(SUM(ok), 0), COUNT(*) - COALESCE(SUM(ok), 0) "
                                   "FROM batch_results WHERE batch_id = ?",
                                   (batch_id,)).fetchone()
        return int(row[0]), int(row[1])

    def results(self, batch_id: str) -> list[tuple[bool, str]]:
        """(ok, JSON line) of each finished item, in input order."""
        with self._lock:
            rows = self._db.execute("SELECT ok, line FROM batch_results WHERE batch_id = ? "
                                    "ORDER BY idx", (batch_id,)).fetchall()
        return [(bool(row[0]), row[1]) for row in rows]

    def finish(self, body: dict[str, Any], files: list[tuple[StoredFile, bytes]]) -> None:
        """In one transaction: store the output files, the batch's final state, and drop
        its per-item rows (the files hold them now)."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for file, content in files:
                    self._db.execute(_INSERT_FILE, (*_row(file), content))
                self._db.execute("UPDATE batches SET status = ?, body = ? WHERE id = ?",
                                 (body["status"], json.dumps(body), body["id"]))
                self._db.execute("DELETE FROM batch_results WHERE batch_id = ?", (body["id"],))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
