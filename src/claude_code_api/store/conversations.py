"""Conversations and stored Responses: survive restarts and a kill -9 between turns.

One row per conversation; its turns are kept as JSON in Anthropic block shape.
A row is written after every completed response, so what was answered is never
lost; a turn in flight when the process dies is simply not there. On a shared
(PostgreSQL) store any replica continues any conversation.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from ..events import Message
from . import Store


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


class ConversationStore(Store):
    def get(self, conversation_id: str) -> Conversation | None:
        return self._one("SELECT * FROM conversations WHERE id = ?", (conversation_id,))

    def find(self, scope: str, fingerprint: str) -> Conversation | None:
        return self._one("SELECT * FROM conversations WHERE scope = ? AND fingerprint = ? "
                         "ORDER BY updated_at DESC LIMIT 1", (scope, fingerprint))

    def save(self, conversation: Conversation) -> None:
        conversation.updated_at = time.time()
        row = (conversation.id, conversation.scope, conversation.fingerprint,
               conversation.system, conversation.model, _dump(conversation.messages),
               conversation.turns, conversation.created_at, conversation.updated_at)
        self.db.run(
            "INSERT INTO conversations (id, scope, fingerprint, system, model, messages, "
            "turns, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET scope = excluded.scope, "
            "fingerprint = excluded.fingerprint, system = excluded.system, "
            "model = excluded.model, messages = excluded.messages, "
            "turns = excluded.turns, updated_at = excluded.updated_at", row)

    def delete(self, conversation_id: str) -> bool:
        return self.db.run("DELETE FROM conversations WHERE id = ?",
                           (conversation_id,)).rowcount > 0

    def holding(self, fingerprint: str) -> Conversation | None:
        """The conversation whose state is this fingerprint, whoever owns it (what a
        worker's live session holds; for the console's live view)."""
        return self._one("SELECT * FROM conversations WHERE fingerprint = ? "
                         "ORDER BY updated_at DESC LIMIT 1", (fingerprint,))

    def recent(self, owner: str | None = None, limit: int = 100) -> list[Conversation]:
        """The latest conversations; with ``owner``, only that owner's (scopes are
        ``<owner>:<end user>``)."""
        if owner is None:
            return self._many("SELECT * FROM conversations ORDER BY updated_at DESC LIMIT ?",
                              (limit,))
        prefix = owner + ":"
        return self._many("SELECT * FROM conversations WHERE "
                          "substr(scope, 1, CAST(? AS INTEGER)) = ? "
                          "ORDER BY updated_at DESC LIMIT ?", (len(prefix), prefix, limit))

    # -- stored Responses (OpenAI Responses API, store=true) ------------------------
    def save_response(self, response_id: str, scope: str, body: dict[str, Any],
                      input_items: list[dict[str, Any]], messages: list[Message]) -> None:
        self.db.run(
            "INSERT INTO responses (id, scope, body, input_items, messages, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "scope = excluded.scope, body = excluded.body, "
            "input_items = excluded.input_items, messages = excluded.messages, "
            "created_at = excluded.created_at",
            (response_id, scope, json.dumps(body), json.dumps(input_items),
             _dump(messages), time.time()))

    def get_response(self, response_id: str) -> StoredResponse | None:
        row = self.db.run("SELECT scope, body, input_items, messages FROM responses "
                          "WHERE id = ?", (response_id,)).first()
        if row is None:
            return None
        return StoredResponse(response_id, row[0], json.loads(row[1]), json.loads(row[2]),
                              _load(row[3]))

    def delete_response(self, response_id: str) -> bool:
        return self.db.run("DELETE FROM responses WHERE id = ?",
                           (response_id,)).rowcount > 0

    def _one(self, sql: str, args: tuple[Any, ...]) -> Conversation | None:
        rows = self._many(sql, args)
        return rows[0] if rows else None

    def _many(self, sql: str, args: tuple[Any, ...]) -> list[Conversation]:
        rows = self.db.run(sql, args).dicts()
        return [Conversation(id=r["id"], scope=r["scope"], fingerprint=r["fingerprint"],
                             system=r["system"], model=r["model"],
                             messages=_load(r["messages"]), turns=r["turns"],
                             created_at=r["created_at"], updated_at=r["updated_at"])
                for r in rows]
