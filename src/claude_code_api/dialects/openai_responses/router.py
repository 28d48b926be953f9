"""Thin routes of the OpenAI Responses dialect."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ... import sse
from ...access.caller import Caller, caller_of
from ...agent import select
from ...conversations.service import Located, valid_id
from ...errors import GatewayError, NotFound, UpstreamError
from ...events import Answer, Message, TextReplaced, TurnEnd, TurnEvent
from ...gateway import Gateway
from ...openapi import OPENAI_TURN, STREAMED, openai_errors
from ..streams import BROKEN_STREAM, collect_events, first_event, unless_disconnected
from .models import ResponsesRequest
from .render import ResponseWriter, collect, new_id
from .tools import client_tools
from .translate import to_turn

log = logging.getLogger(__name__)
router = APIRouter(tags=["OpenAI Responses"])
_STORED = openai_errors(401, 404)


@router.post("/v1/responses", response_model=None,
             responses={**STREAMED, **openai_errors(*OPENAI_TURN)})
async def create_response(body: ResponsesRequest, request: Request) -> Response:
    if body.model_extra:
        log.info("responses: unknown fields %s", sorted(body.model_extra))
    gateway: Gateway = request.app.state.gateway
    caller = caller_of(request)
    scope = caller.scope(body.user)
    previous = _previous(gateway, caller, body.previous_response_id)
    body.model, agent = select(body.model, body.model_extra, request.headers,
                               gateway.settings.claude.default_model)
    explicit = request.headers.get("x-conversation-id")
    tools = client_tools(body)
    if tools.ignored:
        log.info("responses: hosted tools left out (the gateway cannot run them): %s",
                 ", ".join(tools.ignored))
    run = await gateway.run(to_turn(body, gateway.catalog, previous, tools), caller, body.user,
                            valid_id(explicit, "X-Conversation-ID") if explicit else None,
                            agent)
    located, model, events = run.located, run.model, run.events
    headers = {"X-Conversation-ID": located.conversation.id}
    if tools.ignored:
        headers["X-Tools-Ignored"] = ",".join(tools.ignored)
    writer = ResponseWriter(body, model, body.previous_response_id,
                            reasoning=agent is not None, tools=tools)
    saver = _Saver(gateway, body, located, scope)
    if body.stream:
        first = await first_event(events)
        return StreamingResponse(_frames(events, first, writer, saver),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", **headers})
    seen = await unless_disconnected(request, collect_events(events))
    if seen is None:
        return Response(status_code=499)
    final = collect(writer, seen)
    saver.save(final, seen)
    return JSONResponse(final, headers=headers)


@router.get("/v1/responses/{response_id}", responses=_STORED)
async def get_response(response_id: str, request: Request) -> dict[str, Any]:
    return dict(_stored(request, response_id).body)


@router.delete("/v1/responses/{response_id}", responses=_STORED)
async def delete_response(response_id: str, request: Request) -> dict[str, Any]:
    gateway: Gateway = request.app.state.gateway
    _stored(request, response_id)
    gateway.conversations.store.delete_response(response_id)
    return {"id": response_id, "object": "response.deleted", "deleted": True}


@router.get("/v1/responses/{response_id}/input_items", responses=_STORED)
async def input_items(response_id: str, request: Request) -> dict[str, Any]:
    items = _stored(request, response_id).input_items
    return {"object": "list", "data": items, "has_more": False,
            "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None}


def _stored(request: Request, response_id: str) -> Any:
    gateway: Gateway = request.app.state.gateway
    stored = gateway.conversations.store.get_response(response_id)
    if stored is None or not caller_of(request).owns(stored.scope):
        raise NotFound(f"Response with id '{response_id}' not found.")
    return stored


def _previous(gateway: Gateway, caller: Caller, response_id: str | None) -> list[Message]:
    if response_id is None:
        return []
    stored = gateway.conversations.store.get_response(response_id)
    if stored is None or not caller.owns(stored.scope):
        raise NotFound(f"Previous response with id '{response_id}' not found.",
                       param="previous_response_id")
    return stored.messages


class _Saver:
    """Stores a finished Response (store=true) with its input items and conversation."""

    def __init__(self, gateway: Gateway, body: ResponsesRequest, located: Located,
                 scope: str) -> None:
        self.gateway = gateway
        self.body = body
        self.located = located
        self.scope = scope

    def save(self, final: dict[str, Any], events: list[TurnEvent]) -> None:
        if self.body.store is False or not final:
            return
        answer = Answer()
        for event in events:
            answer.feed(event)
        turn = self.located.turn
        messages = [*turn.history, Message("user", turn.prompt), answer.message()]
        self.gateway.conversations.store.save_response(
            final["id"], self.scope, final, _items(self.body), messages)


def _items(body: ResponsesRequest) -> list[dict[str, Any]]:
    if isinstance(body.input, str):
        return [{"id": new_id("msg"), "type": "message", "role": "user", "status": "completed",
                 "content": [{"type": "input_text", "text": body.input}]}]
    out = []
    for item in body.input:
        data = item.model_dump(exclude_none=True)
        data.setdefault("id", new_id("msg" if data.get("type") == "message" else "item"))
        out.append(data)
    return out


async def _frames(events: AsyncGenerator[TurnEvent, None], first: TurnEvent,
                  writer: ResponseWriter, saver: _Saver) -> AsyncIterator[bytes]:
    seen: list[TurnEvent] = []
    try:
        for frame in writer.start():
            yield sse.event(frame["type"], frame)
        event = first
        while True:
            if isinstance(event, TextReplaced):
                raise UpstreamError(BROKEN_STREAM)
            seen.append(event)
            for frame in writer.feed(event):
                if frame["type"] in ("response.completed", "response.incomplete"):
                    saver.save(frame["response"], seen)
                yield sse.event(frame["type"], frame)
            if isinstance(event, TurnEnd):
                return
            following = await anext(events, None)
            if following is None:
                raise GatewayError("Claude Code ended the turn without a result")
            event = following
    except GatewayError as exc:
        # After the first byte the status is sent: the failure ends the stream.
        for frame in writer.fail(exc.code, exc.message, exc.param):
            yield sse.event(frame["type"], frame)
    finally:
        await events.aclose()
