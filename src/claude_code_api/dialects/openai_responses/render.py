"""Neutral events rendered as an OpenAI Response and its stream events.

``ResponseWriter`` is a state machine over output items: text opens a message
item (with one ``output_text`` part), a tool call opens a ``function_call`` item
(with the ``namespace`` of a namespaced function) or a ``custom_tool_call`` item
(whose ``input`` text is decoded from Claude's ``{"input": ...}`` as it streams);
thinking opens a ``reasoning`` item when the client shows summaries or asked for
``reasoning.encrypted_content``. Each item is closed with its ``.done`` events
before the next opens. Every event carries a ``sequence_number``. The final
Response is validated with the openai package's own type.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from openai.types.responses import Response

from ... import sse
from ...errors import GatewayError
from ...events import (
    ReasoningDelta,
    ReasoningSignature,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    TurnEnd,
    TurnEvent,
    Usage,
    after_replacement,
)
from .models import ResponsesRequest
from .reasoning import seal
from .tools import ClientTools, client_tools

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
                 previous_response_id: str | None, *, reasoning: bool = False,
                 tools: ClientTools | None = None) -> None:
        self.id = new_id("resp")
        # Reasoning as reasoning items with a summary: agent-mode progress, or Claude's
        # thinking when the request asks for summaries (OpenAI shows none unless asked).
        asked = request.reasoning.summary if request.reasoning else None
        self.summary = reasoning or asked not in (None, "none")
        # Sealed thinking for a stateless client to send back; not in agent mode,
        # whose reasoning text also holds the gateway's own progress lines.
        self.sealed = not reasoning and "reasoning.encrypted_content" in (request.include or [])
        self.tools = tools if tools is not None else client_tools(request)
        self._thinking = ""
        self._raw: dict[int, str] = {}  # custom calls: Claude's JSON arguments so far
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
            "reasoning": (request.reasoning.model_dump(include={"effort", "summary"})
                          if request.reasoning else None),
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
        if isinstance(event, ReasoningDelta) and (self.summary or self.sealed):
            out = [] if self._kind() == "reasoning" else \
                [*self._close(), *self._open_reasoning()]
            assert self._open is not None
            self._thinking += event.text
            if not self.summary:
                return out
            self._open["summary"][0]["text"] += event.text
            return [*out, self._event("response.reasoning_summary_text.delta",
                                      item_id=self._open["id"],
                                      output_index=len(self.output) - 1, summary_index=0,
                                      delta=event.text)]
        if isinstance(event, ReasoningSignature) and self.sealed and \
                self._kind() == "reasoning":
            # One signed thinking block per reasoning item: the next thinking opens another.
            assert self._open is not None
            self._open["encrypted_content"] = seal(self._thinking, event.signature)
            return self._close()
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
            if call["type"] == "custom_tool_call":
                return self._custom_delta(event, call)
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
        self._thinking = ""
        index = len(self.output) - 1
        added = self._event("response.output_item.added", output_index=index,
                            item=dict(item, summary=[]))
        if not self.summary:
            return [added]
        part = {"type": "summary_text", "text": ""}
        item["summary"].append(part)
        return [added, self._event("response.reasoning_summary_part.added", item_id=item["id"],
                                   output_index=index, summary_index=0, part=dict(part))]

    def _open_call(self, start: ToolCallStart) -> list[Event]:
        target = self.tools.target(start.name)
        item: dict[str, Any]
        if target.kind == "custom":
            item = {"id": new_id("ctc"), "type": "custom_tool_call", "call_id": start.id,
                    "name": target.name, "input": ""}
            self._raw[start.index] = ""
        else:
            item = {"id": new_id("fc"), "type": "function_call", "call_id": start.id,
                    "name": target.name, "arguments": "", "status": "in_progress"}
        if target.namespace is not None:
            item["namespace"] = target.namespace
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
            if not item["summary"]:
                return [self._event("response.output_item.done", output_index=index,
                                    item=dict(item))]
            part = item["summary"][0]
            return [self._event("response.reasoning_summary_text.done", item_id=item["id"],
                                output_index=index, summary_index=0, text=part["text"]),
                    self._event("response.reasoning_summary_part.done", item_id=item["id"],
                                output_index=index, summary_index=0, part=dict(part)),
                    self._event("response.output_item.done", output_index=index,
                                item=dict(item))]
        if item["type"] == "custom_tool_call":
            call = next(i for i, c in self._calls.items() if c is item)
            item["input"] = custom_input(self._raw[call])
            return [self._event("response.custom_tool_call_input.done", item_id=item["id"],
                                output_index=index, input=item["input"]),
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


    def _custom_delta(self, event: ToolCallDelta, call: dict[str, Any]) -> list[Event]:
        self._raw[event.index] += event.arguments
        text = partial_input(self._raw[event.index])
        if text is None or len(text) <= len(call["input"]) or not text.startswith(call["input"]):
            return []
        delta, call["input"] = text[len(call["input"]):], text
        return [self._event("response.custom_tool_call_input.delta", item_id=call["id"],
                            output_index=self.output.index(call), delta=delta)]


_INPUT_KEY = re.compile(r'^\s*\{\s*"input"\s*:\s*"')


def partial_input(raw: str) -> str | None:
    """The decoded part of the ``input`` string so far in Claude's partial JSON
    arguments of a custom tool (``{"input": "...``); None until it begins."""
    start = _INPUT_KEY.match(raw)
    if start is None:
        return None
    body = raw[start.end():]
    at = 0
    while at < len(body):  # the closing quote, if it came
        if body[at] == "\\":
            at += 2
            continue
        if body[at] == '"':
            body = body[:at]
            break
        at += 1
    for cut in range(7):  # an escape sequence may be cut off at the end
        try:
            text = str(json.loads(f'"{body[:len(body) - cut]}"'))
        except ValueError:
            continue
        # Half a surrogate pair waits for its other half.
        return text[:-1] if text and "\ud800" <= text[-1] <= "\udbff" else text
    return None


def custom_input(raw: str) -> str:
    """A custom tool call's input: the ``input`` string of Claude's arguments (or,
    should Claude have sent another shape, those arguments as they came)."""
    try:
        data = json.loads(raw or "{}")
    except ValueError:
        return raw
    if isinstance(data, dict) and isinstance(data.get("input"), str):
        return str(data["input"])
    return raw


def _tool_choice(request: ResponsesRequest) -> Any:
    choice = request.tool_choice
    if choice is None:
        return "auto"
    return choice if isinstance(choice, str) else choice.model_dump()


class ResponseFrames:
    """A ``streams.Writer`` of a Response's named events; ``finished`` hears of the
    final Response (completed or incomplete) and the events it was made of, before
    its last event is sent."""

    ping_seconds: float | None = None

    def __init__(self, writer: ResponseWriter,
                 finished: Callable[[dict[str, Any], list[TurnEvent]], None]) -> None:
        self.writer = writer
        self.finished = finished
        self.seen: list[TurnEvent] = []

    def start(self) -> list[bytes]:
        return [sse.event(frame["type"], frame) for frame in self.writer.start()]

    def feed(self, event: TurnEvent) -> list[bytes]:
        self.seen.append(event)
        frames = self.writer.feed(event)
        for frame in frames:
            if frame["type"] in ("response.completed", "response.incomplete"):
                self.finished(frame["response"], self.seen)
        return [sse.event(frame["type"], frame) for frame in frames]

    def ping(self) -> list[bytes]:
        return []

    def fail(self, error: GatewayError) -> list[bytes]:
        return [sse.event(frame["type"], frame)
                for frame in self.writer.fail(error.code, error.message, error.param)]

    def end(self) -> list[bytes]:
        return []


def collect(writer: ResponseWriter, events: list[TurnEvent]) -> dict[str, Any]:
    """The non-streaming Response: the stream's events folded in."""
    final: dict[str, Any] = {}
    for event in after_replacement(events):
        for frame in writer.feed(event):
            if frame["type"] in ("response.completed", "response.incomplete"):
                final = frame["response"]
    return final

