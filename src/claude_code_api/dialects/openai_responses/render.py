"""Neutral events rendered as an OpenAI Response and its stream events.

``ResponseWriter`` is a state machine over output items: text opens a message
item (with one ``output_text`` part), a tool call opens a ``function_call`` item;
each item is closed with its ``.done`` events before the next opens. Every event
carries a ``sequence_number``. The final Response is validated with the openai
package's own type.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from openai.types.responses import Response

from ...events import (
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    TurnEnd,
    TurnEvent,
    Usage,
    after_replacement,
)
from .models import ResponsesRequest

Event = dict[str, Any]
# The gateway's codes that have a counterpart among a failed Response's error codes;
# every other failure is a server_error there.
_FAILED_CODES = {"rate_limit_exceeded": "rate_limit_exceeded"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def usage_body(usage: Usage) -> dict[str, Any]:
    prompt = usage.prompt_tokens
    return {"input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": usage.cache_read_input_tokens,
                                     "cache_write_tokens": usage.cache_creation_input_tokens},
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + usage.output_tokens}


class ResponseWriter:
    def __init__(self, request: ResponsesRequest, model: str,
                 previous_response_id: str | None, *, reasoning: bool = False) -> None:
        self.id = new_id("resp")
        # Reasoning as reasoning items with a summary (agent-mode progress); off
        # otherwise, as OpenAI shows no summaries unless asked.
        self.reasoning = reasoning
        self.created_at = int(time.time())
        self.request = request
        self.model = model
        self.previous_response_id = previous_response_id
        self.output: list[dict[str, Any]] = []
        self._sequence = 0
        self._open: dict[str, Any] | None = None
        self._calls: dict[int, dict[str, Any]] = {}

    # -- the Response object ---------------------------------------------------
    def response(self, status: str, end: TurnEnd | None = None,
                 error: dict[str, str] | None = None) -> dict[str, Any]:
        request = self.request
        body: dict[str, Any] = {
            "id": self.id, "object": "response", "created_at": self.created_at,
            "status": status, "model": self.model, "output": self.output,
            "instructions": request.instructions,
            "tools": [t.model_dump(exclude_none=True) for t in request.tools or []],
            "tool_choice": _tool_choice(request),
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "previous_response_id": self.previous_response_id,
            "store": request.store is not False, "metadata": request.metadata or {},
            "max_output_tokens": request.max_output_tokens, "user": request.user,
            "text": (request.text.model_dump(exclude_none=True, by_alias=True)
                     if request.text and request.text.format else {"format": {"type": "text"}}),
            "reasoning": ({"effort": request.reasoning.effort} if request.reasoning
                          else None),
            "incomplete_details": None, "error": error, "usage": None,
        }
        if end is not None:
            body["usage"] = usage_body(end.usage)
            if end.stop_reason == "max_tokens":
                body["status"] = "incomplete"
                body["incomplete_details"] = {"reason": "max_output_tokens"}
        Response.model_validate(body)  # fails loudly in tests if we drift from the type
        return body

    # -- stream events -----------------------------------------------------------
    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def start(self) -> list[Event]:
        snapshot = self.response("in_progress")
        return [self._event("response.created", response=snapshot),
                self._event("response.in_progress", response=snapshot)]

    def feed(self, event: TurnEvent) -> list[Event]:
        if isinstance(event, ReasoningDelta) and self.reasoning:
            out = [] if self._kind() == "reasoning" else \
                [*self._close(), *self._open_reasoning()]
            assert self._open is not None
            self._open["summary"][0]["text"] += event.text
            return [*out, self._event("response.reasoning_summary_text.delta",
                                      item_id=self._open["id"],
                                      output_index=len(self.output) - 1, summary_index=0,
                                      delta=event.text)]
        if isinstance(event, TextDelta):
            out = [] if self._kind() == "message" else [*self._close(), *self._open_message()]
            assert self._open is not None
            self._open["content"][0]["text"] += event.text
            return [*out, self._event("response.output_text.delta", item_id=self._open["id"],
                                      output_index=len(self.output) - 1, content_index=0,
                                      delta=event.text, logprobs=[])]
        if isinstance(event, ToolCallStart):
            return [*self._close(), *self._open_call(event)]
        if isinstance(event, ToolCallDelta):
            call = self._calls[event.index]
            call["arguments"] += event.arguments
            return [self._event("response.function_call_arguments.delta", item_id=call["id"],
                                output_index=self.output.index(call), delta=event.arguments)]
        if isinstance(event, TurnEnd):
            out = self._close()
            final = self.response("completed", event)
            kind = "response.incomplete" if final["status"] == "incomplete" else \
                "response.completed"
            return [*out, self._event(kind, response=final)]
        return []

    def fail(self, code: str | None, message: str, param: str | None) -> list[Event]:
        """The end of a stream that broke after it began.

        An ``error`` event first, carrying the gateway's own code (``worker_timeout``,
        ``upstream_error``...), which ``response.failed`` cannot: the spec limits its
        ``error.code`` to a fixed list. Then ``response.failed``, the terminal event of
        the Response's lifecycle (the spec's, and the openai SDK's stream state, which
        checks its id against ``response.created``): the Response, status ``failed``,
        with what was answered so far (the open item ``incomplete``) and ``error``
        {code, message}.
        """
        if self._open is not None:
            self._open["status"] = "incomplete"
            self._open = None
        failed = self.response("failed", error={
            "code": _FAILED_CODES.get(code or "", "server_error"), "message": message})
        return [self._event("error", code=code, message=message, param=param),
                self._event("response.failed", response=failed)]

    def _kind(self) -> str | None:
        return None if self._open is None else str(self._open["type"])

    def _open_message(self) -> list[Event]:
        item: dict[str, Any] = {"id": new_id("msg"), "type": "message", "role": "assistant",
                                "status": "in_progress", "content": []}
        self.output.append(item)
        self._open = item
        added = self._event("response.output_item.added", output_index=len(self.output) - 1,
                            item=dict(item, content=[]))
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        item["content"].append(part)
        return [added, self._event("response.content_part.added", item_id=item["id"],
                                   output_index=len(self.output) - 1, content_index=0,
                                   part=dict(part))]

    def _open_reasoning(self) -> list[Event]:
        item: dict[str, Any] = {"id": new_id("rs"), "type": "reasoning", "summary": []}
        self.output.append(item)
        self._open = item
        index = len(self.output) - 1
        added = self._event("response.output_item.added", output_index=index,
                            item=dict(item, summary=[]))
        part = {"type": "summary_text", "text": ""}
        item["summary"].append(part)
        return [added, self._event("response.reasoning_summary_part.added", item_id=item["id"],
                                   output_index=index, summary_index=0, part=dict(part))]

    def _open_call(self, start: ToolCallStart) -> list[Event]:
        item: dict[str, Any] = {"id": new_id("fc"), "type": "function_call", "call_id": start.id,
                "name": start.name, "arguments": "", "status": "in_progress"}
        self.output.append(item)
        self._open = item
        self._calls[start.index] = item
        return [self._event("response.output_item.added", output_index=len(self.output) - 1,
                            item=dict(item))]

    def _close(self) -> list[Event]:
        item, self._open = self._open, None
        if item is None:
            return []
        index = self.output.index(item)
        if item["type"] == "reasoning":
            part = item["summary"][0]
            return [self._event("response.reasoning_summary_text.done", item_id=item["id"],
                                output_index=index, summary_index=0, text=part["text"]),
                    self._event("response.reasoning_summary_part.done", item_id=item["id"],
                                output_index=index, summary_index=0, part=dict(part)),
                    self._event("response.output_item.done", output_index=index,
                                item=dict(item))]
        item["status"] = "completed"
        if item["type"] == "function_call":
            return [self._event("response.function_call_arguments.done", item_id=item["id"],
                                output_index=index, name=item["name"],
                                arguments=item["arguments"]),
                    self._event("response.output_item.done", output_index=index,
                                item=dict(item))]
        part = item["content"][0]
        return [self._event("response.output_text.done", item_id=item["id"],
                            output_index=index, content_index=0, text=part["text"],
                            logprobs=[]),
                self._event("response.content_part.done", item_id=item["id"],
                            output_index=index, content_index=0, part=dict(part)),
                self._event("response.output_item.done", output_index=index,
                            item=dict(item))]


def _tool_choice(request: ResponsesRequest) -> Any:
    choice = request.tool_choice
    if choice is None:
        return "auto"
    return choice if isinstance(choice, str) else choice.model_dump()


def collect(writer: ResponseWriter, events: list[TurnEvent]) -> dict[str, Any]:
    """The non-streaming Response: the stream's events folded in."""
    final: dict[str, Any] = {}
    for event in after_replacement(events):
        for frame in writer.feed(event):
            if frame["type"] in ("response.completed", "response.incomplete"):
                final = frame["response"]
    return final

