"""Thin routes of the Anthropic dialect: /v1/messages and /v1/messages/count_tokens."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...deps import CallerDep, CatalogDep, TurnsDep
from ...openapi import ANTHROPIC_TURN, BODY, STREAMED, anthropic_errors
from ..prelude import Call, agent_mode, answer, conversation_header, unknown_fields
from .models import CountTokensRequest, MessagesRequest
from .render import MessageFrames, StreamWriter, message_body
from .translate import estimate_tokens, thinking_omitted, to_turn

router = APIRouter(tags=["Anthropic"])


@router.post("/v1/messages", response_model=None,
             responses={**STREAMED, **anthropic_errors(*ANTHROPIC_TURN)})
async def messages(body: MessagesRequest, request: Request, turns: TurnsDep,
                   caller: CallerDep) -> Response:
    unknown_fields("messages", body)
    user = (body.metadata or {}).get("user_id")
    agent = agent_mode(turns, body, request.headers)
    turn = to_turn(body, turns.catalog)
    call = Call(turn, str(user) if user else None, conversation_header(request.headers), agent)
    omit = thinking_omitted(body)
    return await answer(
        request, turns, caller, call, bool(body.stream),
        lambda run: MessageFrames(StreamWriter(run.model, omit_thinking=omit)),
        lambda run, events: message_body(run.model, events, omit_thinking=omit))


# A model call: the key's limits and budget apply before the model is looked up.
@router.post("/v1/messages/count_tokens",
             responses=anthropic_errors(*BODY, 401, 402, 404, 429))
async def count_tokens(body: CountTokensRequest, catalog: CatalogDep) -> dict[str, Any]:
    catalog.resolve(body.model)
    return {"input_tokens": estimate_tokens(body)}
