"""The route prelude every dialect shares: log the fields it does not know, select
agent mode, run the translated turn on the turn service, then answer it streamed
(the one stream loop, ``streams.frames``) or whole (the one collecting loop,
``streams.collect_events``). A dialect supplies its translation and its writers."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel

from ..access.caller import Caller
from ..agent import AgentRequest, select
from ..conversations.service import valid_id
from ..events import ReasoningDelta, TurnEvent, TurnRequest
from ..gateway import Run, Turns
from .streams import Writer, collect_events, first_event, frames, unless_disconnected

log = logging.getLogger(__name__)

B = TypeVar("B")
Body = Callable[[Run, list[TurnEvent]], dict[str, Any]]  # the whole answer's body
Streamed = Callable[[Run], Writer]  # the writer of the streamed answer


@dataclass
class Call:
    """One turn a route asks for: the translated turn and how it runs."""

    turn: TurnRequest
    user: str | None = None
    explicit: str | None = None  # the conversation the client named
    agent: AgentRequest | None = None
    remember: bool = True  # stored as a conversation (see ``Turns.run``)
    # False: thinking is dropped before anything is answered (it never decides
    # when the first byte goes out, nor shows in a whole answer).
    reasoning: bool = True
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers


def unknown_fields(route: str, body: BaseModel) -> None:
    """Requests accept fields we do not know (clients run ahead of any gateway)."""
    if body.model_extra:
        log.info("%s: unknown fields %s", route, sorted(body.model_extra))


class _Selecting(Protocol):
    model: str

    @property
    def model_extra(self) -> dict[str, Any] | None: ...


def agent_mode(turns: Turns, body: _Selecting, headers: Mapping[str, str]
               ) -> AgentRequest | None:
    """Agent mode if the model, an ``agent`` object or the headers select it; the
    model name (``claude-code/opus`` → ``opus``) is left in ``body.model``."""
    body.model, agent = select(body.model, body.model_extra, headers,
                               turns.settings.claude.default_model)
    return agent


def conversation_header(headers: Mapping[str, str]) -> str | None:
    explicit = headers.get("x-conversation-id")
    return valid_id(explicit, "X-Conversation-ID") if explicit else None


async def run(turns: Turns, caller: Caller, call: Call) -> Run:
    started = await turns.run(call.turn, caller, call.user, call.explicit, call.agent,
                              call.remember)
    if not call.reasoning:
        started.events = _without_reasoning(started.events)
    return started


async def _without_reasoning(events: AsyncGenerator[TurnEvent, None]
                             ) -> AsyncGenerator[TurnEvent, None]:
    try:
        async for event in events:
            if not isinstance(event, ReasoningDelta):
                yield event
    finally:
        await events.aclose()


async def whole(turns: Turns, caller: Caller, call: Call,
                body: Callable[[Run, list[TurnEvent]], B]) -> tuple[B, dict[str, str]]:
    """The whole answer (what ``body`` folds the events into) and its headers."""
    started = await run(turns, caller, call)
    events = await collect_events(started.events)
    return body(started, events), _headers(call, started)


async def streamed(turns: Turns, caller: Caller, call: Call, writer: Streamed
                   ) -> StreamingResponse:
    """The streamed answer, once its first event came: an error before it still gets
    a real status."""
    started = await run(turns, caller, call)
    first = await first_event(started.events)
    return StreamingResponse(frames(started.events, first, writer(started), caller.released),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache",
                                      **_headers(call, started)})


async def answer(request: Request, turns: Turns, caller: Caller, call: Call, stream: bool,
                 writer: Streamed, body: Body) -> Response:
    """Streamed or whole; a whole answer is given up (499) when the client hangs up."""
    if stream:
        return await streamed(turns, caller, call, writer)
    done = await unless_disconnected(request, whole(turns, caller, call, body))
    if done is None:
        return Response(status_code=499)
    return JSONResponse(done[0], headers=done[1])


def _headers(call: Call, started: Run) -> dict[str, str]:
    if not call.remember:
        return dict(call.headers)
    return {"X-Conversation-ID": started.located.conversation.id, **call.headers}
