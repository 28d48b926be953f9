"""Files, batches and each batch item's result, in the gateway's store.

A batch is kept as its OpenAI ``Batch`` object (JSON) plus the columns it is
looked up by. Each item not yet answered is a row of ``batch_items``, which a
process claims with a lease before it runs the item and renews while it runs;
the item's result replaces that row in one transaction. So a batch interrupted
by a restart, or by a replica killed mid-batch, goes on with the items not done
(once their leases end), and an item's result is stored once, by whichever
process finished it first.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from ..store import Store

RUNNING = ("validating", "in_progress", "finalizing", "cancelling")
_RUNNING_SQL = ", ".join(f"'{s}'" for s in RUNNING)

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


class BatchStore(Store):
    # -- files ----------------------------------------------------------------------
    def add_file(self, file: StoredFile, content: bytes) -> None:
        self.db.run(_INSERT_FILE, (*_row(file), content))

    def file(self, file_id: str) -> StoredFile | None:
        files = self._files("WHERE id = ?", (file_id,))
        return files[0] if files else None

    def files(self, owner: str, purpose: str | None = None) -> list[StoredFile]:
        """An owner's files, newest first."""
        order = f"ORDER BY created_at DESC, {self.db.rowid} DESC"
        if purpose is None:
            return self._files(f"WHERE owner = ? {order}", (owner,))
        return self._files(f"WHERE owner = ? AND purpose = ? {order}", (owner, purpose))

    def content(self, file_id: str) -> bytes | None:
        row = self.db.run("SELECT content FROM files WHERE id = ?", (file_id,)).first()
        return bytes(row[0]) if row else None

    def delete_file(self, file_id: str) -> bool:
        return self.db.run("DELETE FROM files WHERE id = ?", (file_id,)).rowcount > 0

    def _files(self, where: str, args: tuple[Any, ...]) -> list[StoredFile]:
        rows = self.db.run("SELECT id, owner, filename, purpose, bytes, created_at "
                           f"FROM files {where}", args).rows
        return [StoredFile(*row) for row in rows]

    # -- batches ----------------------------------------------------------------------
    def save_batch(self, owner: str, body: dict[str, Any]) -> None:
        self.db.run(
            "INSERT INTO batches (id, owner, status, created_at, body) VALUES "
            "(?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET status = excluded.status, "
            "body = excluded.body",
            (body["id"], owner, body["status"], body["created_at"], json.dumps(body)))

    def update_batch(self, body: dict[str, Any], was: tuple[str, ...]) -> bool:
        """Store the batch's new state if its status is still one of ``was`` (another
        process may have moved it on meanwhile); whether it was."""
        marks = ", ".join("?" for _ in was)
        return self.db.run(f"UPDATE batches SET status = ?, body = ? WHERE id = ? AND "
                           f"status IN ({marks})",
                           (body["status"], json.dumps(body), body["id"], *was)).rowcount > 0

    def batch(self, batch_id: str) -> tuple[str, dict[str, Any]] | None:
        """The batch's owner and ``Batch`` object."""
        row = self.db.run("SELECT owner, body FROM batches WHERE id = ?", (batch_id,)).first()
        return (row[0], json.loads(row[1])) if row else None

    def batches(self, owner: str) -> list[dict[str, Any]]:
        """An owner's batches, newest first."""
        rows = self.db.run("SELECT body FROM batches WHERE owner = ? "
                           f"ORDER BY created_at DESC, {self.db.rowid} DESC", (owner,)).rows
        return [json.loads(row[0]) for row in rows]

    def recent(self, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Everyone's latest batches, newest first: (owner, batch)."""
        rows = self.db.run("SELECT owner, body FROM batches ORDER BY created_at DESC, "
                           f"{self.db.rowid} DESC LIMIT ?", (limit,)).rows
        return [(row[0], json.loads(row[1])) for row in rows]

    def unfinished(self) -> list[tuple[str, dict[str, Any]]]:
        """Batches a stopped server left running: (owner, batch)."""
        rows = self.db.run(f"SELECT owner, body FROM batches WHERE status IN ({_RUNNING_SQL}) "
                           "ORDER BY created_at").rows
        return [(row[0], json.loads(row[1])) for row in rows]


    # -- items: claims and results --------------------------------------------------------
    def open_items(self, batch_id: str, total: int) -> int:
        """Make the rows of the items without a result, once, while the batch is in
        progress (a batch from before leases has none yet); how many were made."""
        with self.db.transaction() as tx:
            # Touching the batch's row locks it: one process makes the items.
            if tx.run("UPDATE batches SET status = status WHERE id = ? AND "
                      "status = 'in_progress'", (batch_id,)).rowcount == 0:
                return 0
            if tx.run("SELECT 1 FROM batch_items WHERE batch_id = ? LIMIT 1",
                      (batch_id,)).rows:
                return 0
            done = {row[0] for row in tx.run("SELECT idx FROM batch_results WHERE "
                                             "batch_id = ?", (batch_id,)).rows}
            missing = [i for i in range(total) if i not in done]
            for index in missing:
                tx.run("INSERT INTO batch_items (batch_id, idx) VALUES (?, ?)",
                       (batch_id, index))
        return len(missing)

    def claim(self, batch_id: str, holder: str, lease_seconds: float) -> int | None:
        """The next item of a running batch that nobody holds (or whose holder's lease
        ended), now held by ``holder`` for ``lease_seconds``; None when there is none."""
        now = time.time()
        row = self.db.run(
            "UPDATE batch_items SET holder = ?, lease_until = ? WHERE batch_id = ? AND "
            "idx = (SELECT idx FROM batch_items WHERE batch_id = ? AND "
            "(lease_until IS NULL OR lease_until < ?) AND EXISTS (SELECT 1 FROM batches "
            "WHERE id = ? AND status = 'in_progress') "
            f"ORDER BY idx LIMIT 1{self.db.skip_locked}) RETURNING idx",
            (holder, now + lease_seconds, batch_id, batch_id, now, batch_id)).first()
        return None if row is None else int(row[0])

    def renew(self, holder: str, lease_seconds: float) -> int:
        """Extend every lease ``holder`` has; how many it has."""
        return self.db.run("UPDATE batch_items SET lease_until = ? WHERE holder = ?",
                           (time.time() + lease_seconds, holder)).rowcount

    def release(self, holder: str | None = None) -> None:
        """Give up ``holder``'s leases (every lease: None), so the items run again at once."""
        if holder is None:
            self.db.run("UPDATE batch_items SET holder = NULL, lease_until = NULL")
        else:
            self.db.run("UPDATE batch_items SET holder = NULL, lease_until = NULL "
                        "WHERE holder = ?", (holder,))

    def claimable(self, batch_id: str) -> int:
        """Items without a result that nobody holds now."""
        row = self.db.run("SELECT COUNT(*) FROM batch_items WHERE batch_id = ? AND "
                          "(lease_until IS NULL OR lease_until < ?)",
                          (batch_id, time.time())).first()
        return int(row[0]) if row else 0

    def pending(self, batch_id: str) -> int:
        """Items without a result."""
        row = self.db.run("SELECT COUNT(*) FROM batch_items WHERE batch_id = ?",
                          (batch_id,)).first()
        return int(row[0]) if row else 0

    def add_result(self, batch_id: str, index: int, ok: bool, line: dict[str, Any]) -> bool:
        """Store a claimed item's result in place of its claim; False (nothing stored)
        when the item has a result already or its batch has ended."""
        with self.db.transaction() as tx:
            if tx.run("DELETE FROM batch_items WHERE batch_id = ? AND idx = ?",
                      (batch_id, index)).rowcount == 0:
                return False
            tx.run("INSERT INTO batch_results (batch_id, idx, ok, line) VALUES (?, ?, ?, ?)",
                   (batch_id, index, int(ok), json.dumps(line)))
        return True

    def done(self, batch_id: str) -> set[int]:
        rows = self.db.run("SELECT idx FROM batch_results WHERE batch_id = ?",
                           (batch_id,)).rows
        return {row[0] for row in rows}

    def counts(self, batch_id: str) -> tuple[int, int]:
        """(completed, failed) items so far."""
        row = self.db.run("SELECT COALESCE(SUM(ok), 0), COUNT(*) - COALESCE(SUM(ok), 0) "
                          "FROM batch_results WHERE batch_id = ?", (batch_id,)).first()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def results(self, batch_id: str) -> list[tuple[bool, str]]:
        """(ok, JSON line) of each finished item, in input order."""
        rows = self.db.run("SELECT ok, line FROM batch_results WHERE batch_id = ? "
                           "ORDER BY idx", (batch_id,)).rows
        return [(bool(row[0]), row[1]) for row in rows]

    def finish(self, body: dict[str, Any], files: list[tuple[StoredFile, bytes]]) -> bool:
        """In one transaction: the batch's final state, its output files, and its item
        rows dropped (the files hold them now). Only a running batch is finished, so
        of several processes finishing one batch, one does; False for the others."""
        with self.db.transaction() as tx:
            if tx.run(f"UPDATE batches SET status = ?, body = ? WHERE id = ? AND status IN "
                      f"({_RUNNING_SQL})", (body["status"], json.dumps(body),
                                            body["id"])).rowcount == 0:
                return False
            for file, content in files:
                tx.run(_INSERT_FILE, (*_row(file), content))
            tx.run("DELETE FROM batch_results WHERE batch_id = ?", (body["id"],))
            tx.run("DELETE FROM batch_items WHERE batch_id = ?", (body["id"],))
        return True
