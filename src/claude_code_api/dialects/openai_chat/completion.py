"""A whole (non-streaming) chat completion from a validated request: what the
route answers with, and what a batch runs for each of its chat items."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any

from ...access.caller import Caller
from ...agent import select
from ...conversations.service import valid_id
from ...errors import GatewayError, InvalidRequest
from ...events import Answer, ReasoningDelta, TurnEnd, TurnEvent
from .models import ChatCompletionRequest
from .render import completion_body, new_id
from .translate import to_turn

if TYPE_CHECKING:  # the gateway imports the batch runner, which imports this module
    from ...gateway import Gateway


async def complete(gateway: Gateway, body: ChatCompletionRequest, caller: Caller,
                   explicit: str | None = None, headers: Mapping[str, str] | None = None
                   ) -> dict[str, Any]:
    """The ``chat.completion`` body (with ``conversation_id``) for one request; agent
    mode when the model, an ``agent`` object or the headers select it."""
    body.model, agent = select(body.model, body.model_extra, headers or {},
                               gateway.settings.claude.default_model)
    run = await gateway.run(to_turn(body, gateway.catalog), caller, body.user, explicit,
                            agent)
    answer, end = await collect(shown(gateway, run.events))
    completion = completion_body(new_id(), run.model, answer, end.stop_reason, end.usage)
    completion["conversation_id"] = run.located.conversation.id
    return completion


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


def shown(gateway: Gateway, events: AsyncGenerator[TurnEvent, None]
          ) -> AsyncGenerator[TurnEvent, None]:
    """The events a client sees: without thinking unless ``chat.reasoning_content``."""
    if gateway.settings.chat.reasoning_content:
        return events
    return _without_reasoning(events)


async def _without_reasoning(events: AsyncGenerator[TurnEvent, None]
                             ) -> AsyncGenerator[TurnEvent, None]:
    try:
        async for event in events:
            if not isinstance(event, ReasoningDelta):
                yield event
    finally:
        await events.aclose()


async def collect(events: AsyncGenerator[TurnEvent, None]) -> tuple[Answer, TurnEnd]:
    answer = Answer()
    try:
        async for event in events:
            answer.feed(event)
            if isinstance(event, TurnEnd):
                return answer, event
    finally:
        await events.aclose()
    raise GatewayError("Claude Code ended the turn without a result")
