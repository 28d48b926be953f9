"""The legacy Completions route (``POST /v1/completions``): autocomplete clients,
editor plugins and LangChain's ``OpenAI`` LLM class still call it.

It runs on the same turn service as chat: the access layer (keys, limits, budgets,
cache, metrics) sees it as a model call, and each prompt is one turn. A completion
stands alone: it is not stored as a conversation nor kept loaded in its worker.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ...access.caller import Caller, caller_of
from ...events import Answer, TurnEnd, TurnRequest, Usage
from ...gateway import Gateway
from ...openapi import OPENAI_TURN, STREAMED, openai_errors
from ..openai_chat.completion import collect
from ..openai_chat.streaming import chunks
from ..streams import first_event, unless_disconnected
from .models import CompletionRequest
from .render import CompletionChunkWriter, completion_body, new_id
from .translate import prompts, to_turns

log = logging.getLogger(__name__)
router = APIRouter(tags=["OpenAI"])
# No conversation ids here, so no 409.
_STATUSES = tuple(s for s in OPENAI_TURN if s != 409)


@router.post("/v1/completions", response_model=None,
             responses={**STREAMED, **openai_errors(*_STATUSES)})
async def completions(body: CompletionRequest, request: Request) -> Response:
    if body.model_extra:
        log.info("completions: unknown fields %s", sorted(body.model_extra))
    gateway: Gateway = request.app.state.gateway
    caller = caller_of(request)
    turns = to_turns(body, gateway.catalog, request.headers)
    if not body.stream:
        completion = await unless_disconnected(request, _complete(gateway, body, caller,
                                                                  turns))
        if completion is None:
            return Response(status_code=499)
        return JSONResponse(completion)
    run = await gateway.run(turns[0], caller, body.user, remember=False)
    first = await first_event(run.events)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    echo = prompts(body)[0] if body.echo else None
    writer = CompletionChunkWriter(new_id(), run.model, include_usage, echo)
    return StreamingResponse(chunks(run.events, first, writer),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


async def _complete(gateway: Gateway, body: CompletionRequest, caller: Caller,
                    turns: tuple[TurnRequest, ...]) -> dict[str, Any]:
    """Every prompt's turn, at most a pool's worth at once; the first error fails the
    request (and cancels the other turns)."""
    room = asyncio.Semaphore(gateway.settings.claude.max_concurrent_sessions)

    async def one(turn: TurnRequest) -> tuple[str, Answer, TurnEnd]:
        async with room:
            run = await gateway.run(turn, caller, body.user, remember=False)
            return (run.model, *await collect(run.events))

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(turn)) for turn in turns]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    results = [task.result() for task in tasks]
    echoed = prompts(body) if body.echo else ("",) * len(results)
    choices = [(prefix + answer.text, end.stop_reason)
               for prefix, (_, answer, end) in zip(echoed, results, strict=True)]
    usage = sum((end.usage for _, _, end in results), Usage())
    return completion_body(new_id(), results[0][0], choices, usage)
