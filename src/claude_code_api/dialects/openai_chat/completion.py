"""A chat completion from a validated request, streamed or whole: what the route
answers with, and (whole) what a batch runs for each of its chat items."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...access.caller import Caller
from ...conversations.service import valid_id
from ...errors import InvalidRequest
from ...events import Answer, TurnEnd, TurnEvent
from ...gateway import Run, Turns
from ..prelude import Call, Streamed, agent_mode, whole
from .models import ChatCompletionRequest
from .render import ChunkWriter, completion_body, new_id
from .streaming import DataStream
from .translate import to_turn


def chat_call(turns: Turns, body: ChatCompletionRequest, explicit: str | None,
              headers: Mapping[str, str]) -> Call:
    """The turn of a request; agent mode when the model, an ``agent`` object or the
    headers select it."""
    agent = agent_mode(turns, body, headers)
    return Call(to_turn(body, turns.catalog), body.user, explicit, agent,
                reasoning=turns.settings.chat.reasoning_content)


async def complete(turns: Turns, body: ChatCompletionRequest, caller: Caller,
                   explicit: str | None = None, headers: Mapping[str, str] | None = None
                   ) -> dict[str, Any]:
    """The ``chat.completion`` body (with ``conversation_id``) for one request."""
    completion, _ = await whole(turns, caller, chat_call(turns, body, explicit, headers or {}),
                                completion_of)
    return completion


def completion_of(run: Run, events: list[TurnEvent]) -> dict[str, Any]:
    answer, end = answer_of(events)
    completion = completion_body(new_id(), run.model, answer, end.stop_reason, end.usage)
    completion["conversation_id"] = run.located.conversation.id
    return completion


def chunks_of(include_usage: bool) -> Streamed:
    """The writer of a streamed completion, for its run."""
    return lambda run: DataStream(ChunkWriter(new_id(), run.model, include_usage))


def answer_of(events: list[TurnEvent]) -> tuple[Answer, TurnEnd]:
    """The answer the events make up, and how the turn ended (the last event)."""
    answer = Answer()
    for event in events:
        answer.feed(event)
    end = events[-1]
    assert isinstance(end, TurnEnd)  # collect_events ends at TurnEnd or raises
    return answer, end


def conversation_id(body: ChatCompletionRequest, header: str | None) -> str | None:
    """An explicit conversation id: body field, header, or model suffix (`sonnet:my-conv`).
    A model suffix is taken off ``body.model``."""
    candidates: list[tuple[str, str]] = []
    extra = (body.model_extra or {}).get("conversation_id")
    if extra is not None:
        candidates.append((str(extra), "conversation_id"))
    if header:
        candidates.append((header, "X-Conversation-ID"))
    model, sep, suffix = body.model.partition(":")
    if sep:
        body.model = model
        candidates.append((suffix, "model"))
    ids = {valid_id(value, param) for value, param in candidates}
    if len(ids) > 1:
        raise InvalidRequest("the request names two different conversations",
                             param=candidates[1][1])
    return ids.pop() if ids else None
