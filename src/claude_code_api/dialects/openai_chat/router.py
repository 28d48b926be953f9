"""Thin routes of the OpenAI dialect: chat completions and models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from openai.types import Model

from ...agent import AGENT_MODEL
from ...catalog import ModelEntry
from ...deps import AgentsDep, CallerDep, CatalogDep, TurnsDep
from ...errors import NotFound
from ...openapi import OPENAI_TURN, STREAMED, openai_errors
from ..prelude import answer, unknown_fields
from .completion import chat_call, chunks_of, completion_of, conversation_id
from .models import ChatCompletionRequest

router = APIRouter(tags=["OpenAI"])


@router.post("/v1/chat/completions", response_model=None,
             responses={**STREAMED, **openai_errors(*OPENAI_TURN)})
async def chat_completions(body: ChatCompletionRequest, request: Request, turns: TurnsDep,
                           caller: CallerDep) -> Response:
    unknown_fields("chat.completions", body)
    explicit = conversation_id(body, request.headers.get("x-conversation-id"))
    call = chat_call(turns, body, explicit, request.headers)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return await answer(request, turns, caller, call, bool(body.stream),
                        chunks_of(include_usage), completion_of)


@router.get("/v1/models", responses=openai_errors(401))
async def list_models(request: Request, catalog: CatalogDep, agents: AgentsDep,
                      caller: CallerDep) -> dict[str, Any]:
    key = caller.key
    entries = [e for e in catalog.entries()
               if key is None or key.allows_model(*catalog.names_for(e.id))]
    if agents.usable_by(caller):
        entries.append(ModelEntry(AGENT_MODEL, "agent mode: Claude Code with its own tools "
                                               "in a workspace"))
    if "anthropic-version" in request.headers:
        # Anthropic's SDKs (and Claude Code) list models in their own shape.
        data = [{"type": "model", "id": e.id, "display_name": e.description or e.id,
                 "created_at": _rfc3339(catalog.created)} for e in entries]
        return {"data": data, "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None}
    return {"object": "list", "data": [_model(entry.id, catalog.created)
                                       for entry in entries]}


def _rfc3339(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


@router.get("/v1/models/{model_id:path}", responses=openai_errors(401, 404))
async def get_model(model_id: str, catalog: CatalogDep, agents: AgentsDep,
                    caller: CallerDep) -> dict[str, Any]:
    if model_id == AGENT_MODEL and agents.usable_by(caller):
        return _model(model_id, catalog.created)
    if not catalog.known(model_id):
        catalog.resolve(model_id)  # 404 model_not_found for unknown names
        if not model_id.startswith("claude-"):
            raise NotFound(f"model `{model_id}` not found", param="model")
    return _model(model_id, catalog.created)


def _model(model_id: str, created: int) -> dict[str, Any]:
    return Model(id=model_id, object="model", created=created,
                 owned_by="anthropic").model_dump(mode="json", exclude_none=True)

