"""Neutral events rendered as Anthropic Messages: the stream events and the body.

``StreamWriter`` is a small state machine: each neutral event opens, feeds or
closes a content block (thinking, text, tool_use) in Anthropic's event order.
The non-streaming body is built by replaying the same events into blocks, so
both modes always agree.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from anthropic.types import Message

# Imported on first use, and ahead of it once the server has started (``app.warm``):
# the anthropic package is about 3,700 modules, 1.5 s of a gateway's 3.1 s of imports.
LAZY_IMPORTS = ("anthropic.types",)


def _message_model() -> type[Message]:
    from anthropic.types import Message

    return Message


Event = tuple[str, dict[str, Any]]
PING_SECONDS = 10.0

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               402: "billing_error", 403: "permission_error", 404: "not_found_error",
               409: "invalid_request_error",
               413: "request_too_large", 429: "rate_limit_error", 502: "api_error",
               503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error"}


def error_status(status: int) -> int:
    """Anthropic says 529 for overload where OpenAI says 503."""
    return 529 if status == 503 else status


def error_body(status: int, message: str) -> dict[str, Any]:
    error_type = ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": error_type, "message": message}}


def usage_body(usage: Usage) -> dict[str, int]:
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens}


class StreamWriter:
    def __init__(self, model: str, *, omit_thinking: bool = False) -> None:
        self.id = "msg_" + uuid.uuid4().hex[:24]
        self.model = model
        # thinking.display "omitted": thinking blocks carry only their signature.
        self.omit_thinking = omit_thinking
        self._index = -1
        self._open: str | None = None  # "thinking" | "text" | "tool_use"
        self._tools: dict[int, int] = {}  # neutral tool call index -> block index

    def start(self) -> list[Event]:
        message: dict[str, Any] = {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": usage_body(Usage())}
        return [("message_start", {"type": "message_start", "message": message}),
                ("ping", {"type": "ping"})]

    def feed(self, event: TurnEvent) -> list[Event]:
        if isinstance(event, ReasoningDelta):
            if self.omit_thinking:
                return []
            return self._delta("thinking", {"type": "thinking", "thinking": "",
                                            "signature": ""},
                               {"type": "thinking_delta", "thinking": event.text})
        if isinstance(event, ReasoningSignature):
            return self._delta("thinking", {"type": "thinking", "thinking": "",
                                            "signature": ""},
                               {"type": "signature_delta", "signature": event.signature})
        if isinstance(event, TextDelta):
            return self._delta("text", {"type": "text", "text": ""},
                               {"type": "text_delta", "text": event.text})
        if isinstance(event, ToolCallStart):
            out = self._close()
            out += self._open_block("tool_use", {"type": "tool_use", "id": event.id,
                                                 "name": event.name, "input": {}})
            self._tools[event.index] = self._index
            return out
        if isinstance(event, ToolCallDelta):
            return [("content_block_delta", {
                "type": "content_block_delta", "index": self._tools[event.index],
                "delta": {"type": "input_json_delta", "partial_json": event.arguments}})]
        if isinstance(event, TurnEnd):
            return self._finish(event)
        return []

    def _delta(self, kind: str, start: dict[str, Any], delta: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        if self._open != kind:
            out += self._close()
            out += self._open_block(kind, start)
        out.append(("content_block_delta", {"type": "content_block_delta",
                                             "index": self._index, "delta": delta}))
        return out

    def _open_block(self, kind: str, block: dict[str, Any]) -> list[Event]:
        self._index += 1
        self._open = kind
        return [("content_block_start", {"type": "content_block_start", "index": self._index,
                                         "content_block": block})]

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        self._open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self._index})]

    def _finish(self, end: TurnEnd) -> list[Event]:
        delta = {"stop_reason": end.stop_reason, "stop_sequence": end.stop_sequence}
        return [*self._close(),
                ("message_delta", {"type": "message_delta", "delta": delta,
                                   "usage": usage_body(end.usage)}),
                ("message_stop", {"type": "message_stop"})]


class MessageFrames:
    """A ``streams.Writer`` of a Message's named events, with a ``ping`` after
    ``PING_SECONDS`` of silence (Anthropic's keep-alive, which its clients expect)."""

    ping_seconds: float | None = PING_SECONDS

    def __init__(self, writer: StreamWriter) -> None:
        self.writer = writer

    def start(self) -> list[bytes]:
        return [sse.event(name, data) for name, data in self.writer.start()]

    def feed(self, event: TurnEvent) -> list[bytes]:
        return [sse.event(name, data) for name, data in self.writer.feed(event)]

    def ping(self) -> list[bytes]:
        return [sse.event("ping", {"type": "ping"})]

    def fail(self, error: GatewayError) -> list[bytes]:
        return [sse.event("error", error_body(error_status(error.status), error.message))]

    def end(self) -> list[bytes]:
        return []


def message_body(model: str, events: list[TurnEvent], *,
                 omit_thinking: bool = False) -> dict[str, Any]:
    """The non-streaming Message: the stream's events folded into blocks."""
    events = after_replacement(events)
    writer = StreamWriter(model, omit_thinking=omit_thinking)
    blocks: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    end = next(e for e in events if isinstance(e, TurnEnd))
    for event in events:
        for name, data in writer.feed(event):
            if name == "content_block_start":
                blocks.append(dict(data["content_block"]))
            elif name == "content_block_delta":
                _apply(blocks[data["index"]], data["delta"], partial, data["index"])
    for index, text in partial.items():
        try:
            blocks[index]["input"] = json.loads(text or "{}")
        except json.JSONDecodeError:  # cut off by max_tokens mid-input
            blocks[index]["input"] = {}
    message = _message_model().model_validate({
        "id": writer.id, "type": "message", "role": "assistant", "model": model,
        "content": blocks, "stop_reason": end.stop_reason,
        "stop_sequence": end.stop_sequence, "usage": usage_body(end.usage)})
    body = message.model_dump(mode="json", exclude_none=True)
    body["stop_sequence"] = end.stop_sequence
    return body


def _apply(block: dict[str, Any], delta: dict[str, Any], partial: dict[int, str],
           index: int) -> None:
    kind = delta["type"]
    if kind == "text_delta":
        block["text"] += delta["text"]
    elif kind == "thinking_delta":
        block["thinking"] += delta["thinking"]
    elif kind == "signature_delta":
        block["signature"] = delta["signature"]
    elif kind == "input_json_delta":
        partial[index] = partial.get(index, "") + delta["partial_json"]
