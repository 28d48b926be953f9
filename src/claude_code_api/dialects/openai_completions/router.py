"""The legacy Completions route (``POST /v1/completions``): autocomplete clients,
editor plugins and LangChain's ``OpenAI`` LLM class still call it.

It runs on the same turn service as chat: the access layer (keys, limits, budgets,
cache, metrics) sees it as a model call, and each prompt is one turn. A completion
stands alone: it is not stored as a conversation nor kept loaded in its worker.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ...access.caller import Caller
from ...deps import CallerDep, TurnsDep
from ...events import Answer, TurnEnd, Usage
from ...gateway import Turns
from ...openapi import OPENAI_TURN, STREAMED, openai_errors
from ..openai_chat.completion import answer_of
from ..openai_chat.streaming import DataStream
from ..prelude import Call, streamed, unknown_fields, whole
from ..streams import unless_disconnected
from .models import CompletionRequest
from .render import CompletionChunkWriter, completion_body, new_id
from .translate import prompts, to_turns

router = APIRouter(tags=["OpenAI"])
# No conversation ids here, so no 409.
_STATUSES = tuple(s for s in OPENAI_TURN if s != 409)


@router.post("/v1/completions", response_model=None,
             responses={**STREAMED, **openai_errors(*_STATUSES)})
async def completions(body: CompletionRequest, request: Request, turns: TurnsDep,
                      caller: CallerDep) -> Response:
    unknown_fields("completions", body)
    calls = [Call(turn, body.user, remember=False)
             for turn in to_turns(body, turns.catalog, request.headers)]
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        echo = prompts(body)[0] if body.echo else None
        return await streamed(turns, caller, calls[0], lambda run: DataStream(
            CompletionChunkWriter(new_id(), run.model, include_usage, echo)))
    completion = await unless_disconnected(request, _complete(turns, body, caller, calls))
    if completion is None:
        return Response(status_code=499)
    return JSONResponse(completion)


async def _complete(turns: Turns, body: CompletionRequest, caller: Caller,
                    calls: list[Call]) -> dict[str, Any]:
    """Every prompt's turn, at most a pool's worth at once; the first error fails the
    request (and cancels the other turns)."""
    room = asyncio.Semaphore(turns.settings.claude.max_concurrent_sessions)

    async def one(call: Call) -> tuple[str, Answer, TurnEnd]:
        async with room:
            result, _ = await whole(turns, caller, call,
                                    lambda run, events: (run.model, *answer_of(events)))
            return result

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(call)) for call in calls]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    results = [task.result() for task in tasks]
    echoed = prompts(body) if body.echo else ("",) * len(results)
    choices = [(prefix + answer.text, end.stop_reason)
               for prefix, (_, answer, end) in zip(echoed, results, strict=True)]
    usage = sum((end.usage for _, _, end in results), Usage())
    return completion_body(new_id(), results[0][0], choices, usage)
