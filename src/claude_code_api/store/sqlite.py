"""Conversations in SQLite (WAL): survives restarts and a kill -9 between turns.

One row per conversation; its turns are kept as JSON in Anthropic block shape.
A row is written after every completed response, so what was answered is never
lost; a turn in flight when the process dies is simply not there.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..events import Message

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    system TEXT,
    model TEXT NOT NULL DEFAULT '',
    messages TEXT NOT NULL,
    turns INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_scope_fp ON conversations (scope, fingerprint);
CREATE INDEX IF NOT EXISTS conversations_updated ON conversations (updated_at);
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    body TEXT NOT NULL,
    input_items TEXT NOT NULL,
    messages TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


@dataclass
class Conversation:
    id: str
    scope: str
    fingerprint: str = ""
    system: str | None = None
    model: str = ""
    messages: list[Message] = field(default_factory=list)
    turns: int = 0
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)


@dataclass
class StoredResponse:
    id: str
    scope: str
    body: dict[str, Any]
    input_items: list[dict[str, Any]]
    messages: list[Message]  # the whole conversation after this response


def _dump(messages: list[Message]) -> str:
    return json.dumps([{"role": m.role, "content": list(m.content)} for m in messages],
                      separators=(",", ":"))


def _load(text: str) -> list[Message]:
    return [Message(m["role"], tuple(m["content"])) for m in json.loads(text)]


def connect(path: Path | str, schema: str) -> sqlite3.Connection:
    """The gateway's SQLite file (made if missing) with ``schema`` applied. Autocommit
    (every statement its own transaction unless BEGIN says otherwise), WAL so the
    ``keys`` command can write while the server runs, a 10 s wait for a lock."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None,
                         timeout=10)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash
    db.executescript(schema)
    return db


class SQLiteStore:
    """A small synchronous store on the gateway's SQLite file: every call is one short
    transaction under a lock (the connection is shared between threads)."""

    schema: ClassVar[str] = ""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._db = connect(path, self.schema)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()


class ConversationStore(SQLiteStore):
    schema = _SCHEMA

    def get(self, conversation_id: str) -> Conversation | None:
        return self._one("SELECT * FROM conversations WHERE id = ?", (conversation_id,))

    def find(self, scope: str, fingerprint: str) -> Conversation | None:
        return self._one("SELECT * FROM conversations WHERE scope = ? AND fingerprint = ? "
                         "ORDER BY updated_at DESC LIMIT 1", (scope, fingerprint))

    def holding(self, fingerprint: str) -> Conversation | None:
        """The conversation whose state is this fingerprint, whoever owns it (what a
        worker's live session holds; for the console's live view)."""
        return self._one("SELECT * FROM conversations WHERE fingerprint = ? "
                         "ORDER BY updated_at DESC LIMIT 1", (fingerprint,))

    def save(self, conversation: Conversation) -> None:
        conversation.updated_at = time.time()
        row = (conversation.id, conversation.scope, conversation.fingerprint,
               conversation.system, conversation.model, _dump(conversation.messages),
               conversation.turns, conversation.created_at, conversation.updated_at)
        with self._lock:
            self._db.execute(
                "INSERT INTO conversations (id, scope, fingerprint, system, model, messages, "
                "turns, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET scope = excluded.scope, "
                "fingerprint = excluded.fingerprint, system = excluded.system, "
                "model = excluded.model, messages = excluded.messages, "
                "turns = excluded.turns, updated_at = excluded.updated_at", row)

    def delete(self, conversation_id: str) -> bool:
        with self._lock:
            cursor = self._db.execute("DELETE FROM conversations WHERE id = ?",
                                      (conversation_id,))
        return cursor.rowcount > 0

    def recent(self, owner: str | None = None, limit: int = 100) -> list[Conversation]:
        """The latest conversations; with ``owner``, only that owner's (scopes are
        ``<owner>:<end user>``)."""
        if owner is None:
            return self._many("SELECT * FROM conversations ORDER BY updated_at DESC LIMIT ?",
                              (limit,))
        prefix = owner + ":"
        return self._many("SELECT * FROM conversations WHERE substr(scope, 1, ?) = ? "
                          "ORDER BY updated_at DESC LIMIT ?", (len(prefix), prefix, limit))

    # -- stored Responses (OpenAI Responses API, store=true) ------------------------
    def save_response(self, response_id: str, scope: str, body: dict[str, Any],
                      input_items: list[dict[str, Any]], messages: list[Message]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (id, scope, body, input_items, messages, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (response_id, scope, json.dumps(body), json.dumps(input_items),
                 _dump(messages), time.time()))

    def get_response(self, response_id: str) -> StoredResponse | None:
        with self._lock:
            row = self._db.execute("SELECT scope, body, input_items, messages FROM responses "
                                   "WHERE id = ?", (response_id,)).fetchone()
        if row is None:
            return None
        return StoredResponse(response_id, row[0], json.loads(row[1]), json.loads(row[2]),
                              _load(row[3]))

    def delete_response(self, response_id: str) -> bool:
        with self._lock:
            cursor = self._db.execute("DELETE FROM responses WHERE id = ?", (response_id,))
        return cursor.rowcount > 0

    def _one(self, sql: str, args: tuple[Any, ...]) -> Conversation | None:
        rows = self._many(sql, args)
        return rows[0] if rows else None

    def _many(self, sql: str, args: tuple[Any, ...]) -> list[Conversation]:
        with self._lock:
            cursor = self._db.execute(sql, args)
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        return [Conversation(id=r["id"], scope=r["scope"], fingerprint=r["fingerprint"],
                             system=r["system"], model=r["model"],
                             messages=_load(r["messages"]), turns=r["turns"],
                             created_at=r["created_at"], updated_at=r["updated_at"])
                for r in rows]
