"""Thin routes of the OpenAI dialect: chat completions and models."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from openai.types import Model

from ...access.caller import caller_of
from ...agent import AGENT_MODEL, select
from ...catalog import ModelEntry
from ...errors import NotFound
from ...gateway import Gateway
from ...openapi import OPENAI_TURN, STREAMED, openai_errors
from ..streams import first_event, unless_disconnected
from .completion import complete, conversation_id, shown
from .models import ChatCompletionRequest
from .render import ChunkWriter, new_id
from .streaming import chunks
from .translate import to_turn

log = logging.getLogger(__name__)
router = APIRouter(tags=["OpenAI"])


@router.post("/v1/chat/completions", response_model=None,
             responses={**STREAMED, **openai_errors(*OPENAI_TURN)})
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    if body.model_extra:
        log.info("chat.completions: unknown fields %s", sorted(body.model_extra))
    gateway: Gateway = request.app.state.gateway
    caller = caller_of(request)
    explicit = conversation_id(body, request.headers.get("x-conversation-id"))
    if not body.stream:
        completion = await unless_disconnected(request, complete(gateway, body, caller,
                                                                 explicit, request.headers))
        if completion is None:
            return Response(status_code=499)
        return JSONResponse(completion,
                            headers={"X-Conversation-ID": completion["conversation_id"]})
    body.model, agent = select(body.model, body.model_extra, request.headers,
                               gateway.settings.claude.default_model)
    run = await gateway.run(to_turn(body, gateway.catalog), caller, body.user, explicit, agent)
    events = shown(gateway, run.events)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    first = await first_event(events)
    writer = ChunkWriter(new_id(), run.model, include_usage)
    return StreamingResponse(chunks(events, first, writer), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache",
                                      "X-Conversation-ID": run.located.conversation.id})


@router.get("/v1/models", responses=openai_errors(401))
async def list_models(request: Request) -> dict[str, Any]:
    gateway: Gateway = request.app.state.gateway
    key = caller_of(request).key
    entries = [e for e in gateway.catalog.entries()
               if key is None or key.allows_model(*gateway.catalog.names_for(e.id))]
    if gateway.agents.usable_by(caller_of(request)):
        entries.append(ModelEntry(AGENT_MODEL, "agent mode: Claude Code with its own tools "
                                               "in a workspace"))
    if "anthropic-version" in request.headers:
        # Anthropic's SDKs (and Claude Code) list models in their own shape.
        data = [{"type": "model", "id": e.id, "display_name": e.description or e.id,
                 "created_at": _rfc3339(gateway.started_at)} for e in entries]
        return {"data": data, "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None}
    return {"object": "list", "data": [_model(entry.id, gateway) for entry in entries]}


def _rfc3339(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


@router.get("/v1/models/{model_id:path}", responses=openai_errors(401, 404))
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    gateway: Gateway = request.app.state.gateway
    if model_id == AGENT_MODEL and gateway.agents.usable_by(caller_of(request)):
        return _model(model_id, gateway)
    if not gateway.catalog.known(model_id):
        gateway.catalog.resolve(model_id)  # 404 model_not_found for unknown names
        if not model_id.startswith("claude-"):
            raise NotFound(f"model `{model_id}` not found", param="model")
    return _model(model_id, gateway)


def _model(model_id: str, gateway: Gateway) -> dict[str, Any]:
    return Model(id=model_id, object="model", created=gateway.started_at,
                 owned_by="anthropic").model_dump(mode="json", exclude_none=True)

