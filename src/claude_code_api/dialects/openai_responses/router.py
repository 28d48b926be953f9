"""Thin routes of the OpenAI Responses dialect."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...conversations.responses import Responses
from ...deps import CallerDep, ResponsesDep, TurnsDep
from ...events import Answer, Message, TurnEvent
from ...gateway import Run
from ...openapi import OPENAI_TURN, STREAMED, openai_errors
from ..prelude import Call, agent_mode, answer, conversation_header, unknown_fields
from .models import ResponsesRequest
from .render import ResponseFrames, ResponseWriter, collect, new_id
from .tools import ClientTools, client_tools
from .translate import to_turn

log = logging.getLogger(__name__)
router = APIRouter(tags=["OpenAI Responses"])
_STORED = openai_errors(401, 404)


@router.post("/v1/responses", response_model=None,
             responses={**STREAMED, **openai_errors(*OPENAI_TURN)})
async def create_response(body: ResponsesRequest, request: Request, turns: TurnsDep,
                          responses: ResponsesDep, caller: CallerDep) -> Response:
    unknown_fields("responses", body)
    previous = responses.previous(caller, body.previous_response_id)
    agent = agent_mode(turns, body, request.headers)
    tools = client_tools(body)
    headers = {}
    if tools.ignored:
        log.info("responses: hosted tools left out (the gateway cannot run them): %s",
                 ", ".join(tools.ignored))
        headers["X-Tools-Ignored"] = ",".join(tools.ignored)
    turn = to_turn(body, turns.catalog, previous, tools)
    call = Call(turn, body.user, conversation_header(request.headers), agent, headers=headers)
    out = _Output(body, tools, agent is not None, responses, caller.scope(body.user))
    return await answer(request, turns, caller, call, bool(body.stream), out.frames,
                        out.whole)


@router.get("/v1/responses/{response_id}", responses=_STORED)
async def get_response(response_id: str, responses: ResponsesDep,
                       caller: CallerDep) -> dict[str, Any]:
    return dict(responses.get(caller, response_id).body)


@router.delete("/v1/responses/{response_id}", responses=_STORED)
async def delete_response(response_id: str, responses: ResponsesDep,
                          caller: CallerDep) -> dict[str, Any]:
    responses.delete(caller, response_id)
    return {"id": response_id, "object": "response.deleted", "deleted": True}


@router.get("/v1/responses/{response_id}/input_items", responses=_STORED)
async def input_items(response_id: str, responses: ResponsesDep,
                      caller: CallerDep) -> dict[str, Any]:
    items = responses.get(caller, response_id).input_items
    return {"object": "list", "data": items, "has_more": False,
            "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None}


class _Output:
    """The Response of one request, streamed or whole; a finished one is stored
    (unless ``store`` is false) with its input items and conversation."""

    def __init__(self, body: ResponsesRequest, tools: ClientTools, agent: bool,
                 responses: Responses, scope: str) -> None:
        self.body = body
        self.tools = tools
        self.agent = agent
        self.responses = responses
        self.scope = scope

    def _writer(self, run: Run) -> ResponseWriter:
        return ResponseWriter(self.body, run.model, self.body.previous_response_id,
                              reasoning=self.agent, tools=self.tools)

    def frames(self, run: Run) -> ResponseFrames:
        return ResponseFrames(self._writer(run),
                              lambda final, seen: self._save(run, final, seen))

    def whole(self, run: Run, events: list[TurnEvent]) -> dict[str, Any]:
        final = collect(self._writer(run), events)
        self._save(run, final, events)
        return final

    def _save(self, run: Run, final: dict[str, Any], events: list[TurnEvent]) -> None:
        if self.body.store is False or not final:
            return
        answer = Answer()
        for event in events:
            answer.feed(event)
        turn = run.located.turn
        messages = [*turn.history, Message("user", turn.prompt), answer.message()]
        self.responses.save(self.scope, final, _items(self.body), messages)


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
