"""Stored Responses (OpenAI Responses API, ``store`` not false): a finished Response,
its input items and the conversation after it, kept so that ``GET /v1/responses/{id}``
can show it and ``previous_response_id`` can continue it. Each belongs to the scope
of the caller that made it; to anyone else it does not exist."""

from __future__ import annotations

from typing import Any

from ..access.caller import Caller
from ..errors import NotFound
from ..events import Message
from ..store.conversations import ConversationStore, StoredResponse


class Responses:
    def __init__(self, store: ConversationStore) -> None:
        self.store = store

    def get(self, caller: Caller, response_id: str) -> StoredResponse:
        stored = self.store.get_response(response_id)
        if stored is None or not caller.owns(stored.scope):
            raise NotFound(f"Response with id '{response_id}' not found.")
        return stored

    def previous(self, caller: Caller, response_id: str | None) -> list[Message]:
        """The conversation a new Response continues (none without an id)."""
        if response_id is None:
            return []
        stored = self.store.get_response(response_id)
        if stored is None or not caller.owns(stored.scope):
            raise NotFound(f"Previous response with id '{response_id}' not found.",
                           param="previous_response_id")
        return stored.messages

    def save(self, scope: str, body: dict[str, Any], input_items: list[dict[str, Any]],
             messages: list[Message]) -> None:
        self.store.save_response(body["id"], scope, body, input_items, messages)

    def delete(self, caller: Caller, response_id: str) -> None:
        self.get(caller, response_id)
        self.store.delete_response(response_id)
