"""Which replica holds which conversation warm: the registry behind
``GET /v1/conversations/{id}/replica`` and a balancer's affinity.

A row says "replica R had a worker holding the conversation state F at time T".
F is the state fingerprint a worker holds after a turn (the engine's ``held``),
the same value the conversations table keeps for a conversation's latest state, so
a conversation id finds its holder with one join. Each replica rewrites its own
rows (``sync``) from what its workers hold, so a row goes when the worker lets the
conversation go; a replica that dies stops refreshing its rows, and they count as
gone once older than ``stale_seconds`` (and are deleted by the next sync of any
replica).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from . import Store


class WarmStore(Store):
    def sync(self, replica: str, held: Iterable[str], stale_seconds: float,
             now: float | None = None) -> None:
        """Record exactly ``held`` as what ``replica`` holds now; drop stale rows."""
        now = time.time() if now is None else now
        held = sorted(set(held))
        with self.db.transaction() as tx:
            for fingerprint in held:
                tx.run("INSERT INTO warm_conversations (fingerprint, replica, seen_at) "
                       "VALUES (?, ?, ?) ON CONFLICT (fingerprint, replica) "
                       "DO UPDATE SET seen_at = excluded.seen_at", (fingerprint, replica, now))
            tx.run("DELETE FROM warm_conversations WHERE (replica = ? AND seen_at < ?) "
                   "OR seen_at < ?", (replica, now, now - stale_seconds))

    def hold(self, fingerprint: str, replica: str) -> None:
        """One state held now (for a hook at the moment a worker keeps it)."""
        self.db.run("INSERT INTO warm_conversations (fingerprint, replica, seen_at) "
                    "VALUES (?, ?, ?) ON CONFLICT (fingerprint, replica) "
                    "DO UPDATE SET seen_at = excluded.seen_at",
                    (fingerprint, replica, time.time()))

    def let_go(self, replica: str, fingerprint: str | None = None) -> None:
        """``replica`` holds ``fingerprint`` no more (with none: holds nothing)."""
        if fingerprint is None:
            self.db.run("DELETE FROM warm_conversations WHERE replica = ?", (replica,))
        else:
            self.db.run("DELETE FROM warm_conversations WHERE replica = ? AND fingerprint = ?",
                        (replica, fingerprint))

    def holder(self, conversation_id: str, stale_seconds: float,
               now: float | None = None) -> str | None:
        """The replica holding the conversation's latest state warm, if one does."""
        now = time.time() if now is None else now
        row = self.db.run(
            "SELECT w.replica FROM warm_conversations w JOIN conversations c "
            "ON c.fingerprint = w.fingerprint WHERE c.id = ? AND w.seen_at >= ? "
            "ORDER BY w.seen_at DESC LIMIT 1", (conversation_id, now - stale_seconds)).first()
        return str(row[0]) if row else None

    def holders(self, stale_seconds: float, now: float | None = None) -> dict[str, int]:
        """How many conversation states each live replica holds warm."""
        now = time.time() if now is None else now
        rows = self.db.run("SELECT replica, COUNT(*) FROM warm_conversations "
                           "WHERE seen_at >= ? GROUP BY replica ORDER BY replica",
                           (now - stale_seconds,)).rows
        return {str(r[0]): int(r[1]) for r in rows}
