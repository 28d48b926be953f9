"""The stream of OpenAI's ``data:`` dialects (Chat Completions and the legacy
Completions): one chunk per event, a last usage chunk if asked, an error after the
first byte as a final ``{"error": ...}`` chunk, then ``data: [DONE]``."""

from __future__ import annotations

from typing import Any, Protocol

from ... import sse
from ...errors import GatewayError
from ...events import (
    ReasoningDelta,
    StopReason,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    TurnEnd,
    TurnEvent,
    Usage,
)
from .render import error_body

Chunk = dict[str, Any] | None  # None: nothing to send for this event


class ChunkRenderer(Protocol):
    """Renders one stream's chunks; ``include_usage`` adds a last usage chunk."""

    include_usage: bool

    def role(self) -> Chunk: ...
    def text(self, text: str) -> Chunk: ...
    def reasoning(self, text: str) -> Chunk: ...
    def tool_start(self, index: int, call_id: str, name: str) -> Chunk: ...
    def tool_arguments(self, index: int, fragment: str) -> Chunk: ...
    def finish(self, stop: StopReason) -> Chunk: ...
    def usage(self, usage: Usage) -> Chunk: ...


class DataStream:
    """A ``streams.Writer`` of ``data:`` frames over a dialect's chunk renderer."""

    ping_seconds: float | None = None

    def __init__(self, chunks: ChunkRenderer) -> None:
        self.chunks = chunks

    def start(self) -> list[bytes]:
        return _frames(self.chunks.role())

    def feed(self, event: TurnEvent) -> list[bytes]:
        out = _frames(_render(self.chunks, event))
        if isinstance(event, TurnEnd) and self.chunks.include_usage:
            out += _frames(self.chunks.usage(event.usage))
        return out

    def ping(self) -> list[bytes]:
        return []

    def fail(self, error: GatewayError) -> list[bytes]:
        return [sse.data(error_body(error.message, error.type, error.param, error.code))]

    def end(self) -> list[bytes]:
        return [sse.DONE]


def _render(chunks: ChunkRenderer, event: TurnEvent) -> Chunk:
    if isinstance(event, TextDelta):
        return chunks.text(event.text)
    if isinstance(event, ReasoningDelta):
        return chunks.reasoning(event.text)
    if isinstance(event, ToolCallStart):
        return chunks.tool_start(event.index, event.id, event.name)
    if isinstance(event, ToolCallDelta):
        return chunks.tool_arguments(event.index, event.arguments)
    if isinstance(event, TurnEnd):
        return chunks.finish(event.stop_reason)
    return None


def _frames(chunk: Chunk) -> list[bytes]:
    return [] if chunk is None else [sse.data(chunk)]
