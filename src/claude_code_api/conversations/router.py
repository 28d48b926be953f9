"""GET /v1/conversations[/{id}], DELETE /v1/conversations/{id}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ..deps import CallerDep, ConversationsDep, EngineDep, ReplicaDep
from ..openapi import openai_errors
from ..store.conversations import Conversation

router = APIRouter(tags=["Conversations"])


def _summary(conversation: Conversation) -> dict[str, Any]:
    return {"id": conversation.id, "object": "conversation",
            "created_at": int(conversation.created_at),
            "updated_at": int(conversation.updated_at), "model": conversation.model,
            "turns": conversation.turns, "message_count": len(conversation.messages)}


@router.get("/v1/conversations", responses=openai_errors(400, 401))
async def list_conversations(conversations: ConversationsDep, caller: CallerDep,
                             limit: int = 100) -> dict[str, Any]:
    found = conversations.recent(caller.owner, max(1, min(limit, 1000)))
    return {"object": "list", "data": [_summary(c) for c in found]}


@router.get("/v1/conversations/{conversation_id}", responses=openai_errors(401, 404))
async def get_conversation(conversation_id: str, conversations: ConversationsDep,
                           caller: CallerDep) -> dict[str, Any]:
    conversation = conversations.get(conversation_id, caller.owner)
    return {**_summary(conversation), "system": conversation.system,
            "messages": [{"role": m.role, "content": list(m.content)}
                         for m in conversation.messages]}


@router.get("/v1/conversations/{conversation_id}/replica", responses=openai_errors(401, 404))
async def conversation_replica(conversation_id: str, conversations: ConversationsDep,
                               replica: ReplicaDep, caller: CallerDep) -> dict[str, Any]:
    """Which replica holds the conversation warm (null: none; any replica continues it,
    rebuilt from the store), and which replica answered this request."""
    conversation = conversations.get(conversation_id, caller.owner)
    return {"id": conversation.id, "object": "conversation.replica",
            "replica": replica.holder(conversation.id), "answered_by": replica.id}


@router.delete("/v1/conversations/{conversation_id}",
               responses=openai_errors(401, 404))
async def delete_conversation(conversation_id: str, conversations: ConversationsDep,
                              engine: EngineDep, caller: CallerDep) -> dict[str, Any]:
    conversation = conversations.delete(conversation_id, caller.owner)
    engine.forget(conversation.fingerprint)  # its live session ends too
    return {"id": conversation.id, "object": "conversation.deleted", "deleted": True}
