"""Thin routes of the Anthropic dialect: /v1/messages and /v1/messages/count_tokens."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ... import sse
from ...access.caller import caller_of
from ...agent import select
from ...conversations.service import valid_id
from ...errors import GatewayError, UpstreamError
from ...events import TextReplaced, TurnEnd, TurnEvent
from ...gateway import Gateway
from ...openapi import ANTHROPIC_TURN, BODY, STREAMED, anthropic_errors
from ..streams import BROKEN_STREAM, collect_events, first_event, unless_disconnected, with_pings
from .models import CountTokensRequest, MessagesRequest
from .render import StreamWriter, error_body, error_status, message_body
from .translate import estimate_tokens, thinking_omitted, to_turn

log = logging.getLogger(__name__)
router = APIRouter(tags=["Anthropic"])

PING_SECONDS = 10.0


@router.post("/v1/messages", response_model=None,
             responses={**STREAMED, **anthropic_errors(*ANTHROPIC_TURN)})
async def messages(body: MessagesRequest, request: Request) -> Response:
    if body.model_extra:
        log.info("messages: unknown fields %s", sorted(body.model_extra))
    gateway: Gateway = request.app.state.gateway
    user = (body.metadata or {}).get("user_id")
    explicit = request.headers.get("x-conversation-id")
    body.model, agent = select(body.model, body.model_extra, request.headers,
                               gateway.settings.claude.default_model)
    run = await gateway.run(to_turn(body, gateway.catalog), caller_of(request),
                            str(user) if user else None,
                            valid_id(explicit, "X-Conversation-ID") if explicit else None, agent)
    located, model, events = run.located, run.model, run.events
    headers = {"X-Conversation-ID": located.conversation.id}
    omit = thinking_omitted(body)
    if body.stream:
        first = await first_event(events)
        return StreamingResponse(_frames(events, first, StreamWriter(model, omit_thinking=omit)),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", **headers})
    collected = await unless_disconnected(request, collect_events(events))
    if collected is None:
        return Response(status_code=499)
    return JSONResponse(message_body(model, collected, omit_thinking=omit), headers=headers)


# A model call: the key's limits and budget apply before the model is looked up.
@router.post("/v1/messages/count_tokens",
             responses=anthropic_errors(*BODY, 401, 402, 404, 429))
async def count_tokens(body: CountTokensRequest, request: Request) -> dict[str, Any]:
    gateway: Gateway = request.app.state.gateway
    gateway.catalog.resolve(body.model)
    return {"input_tokens": estimate_tokens(body)}


async def _frames(events: AsyncGenerator[TurnEvent, None], first: TurnEvent,
                  writer: StreamWriter) -> AsyncIterator[bytes]:
    try:
        for name, data in writer.start():
            yield sse.event(name, data)
        async for event in _chain(first, events):
            if event is None:
                yield sse.event("ping", {"type": "ping"})
                continue
            if isinstance(event, TextReplaced):
                raise UpstreamError(BROKEN_STREAM)
            for name, data in writer.feed(event):
                yield sse.event(name, data)
            if isinstance(event, TurnEnd):
                return
        raise GatewayError("Claude Code ended the turn without a result")
    except GatewayError as exc:
        # After the first byte the status is sent: the error travels as an event.
        yield sse.event("error", error_body(error_status(exc.status), exc.message))
    finally:
        await events.aclose()


async def _chain(first: TurnEvent, events: AsyncGenerator[TurnEvent, None]
                 ) -> AsyncIterator[TurnEvent | None]:
    yield first
    async for event in with_pings(events, PING_SECONDS):
        yield event
