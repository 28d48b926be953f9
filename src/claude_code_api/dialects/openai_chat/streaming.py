"""The stream loop of OpenAI's ``data:`` dialects (Chat Completions and the legacy
Completions): neutral events in, one chunk per event out, errors after the first
byte as a final ``{"error": ...}`` chunk, then ``data: [DONE]``."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Protocol

from ... import sse
from ...errors import GatewayError, UpstreamError
from ...events import (
    ReasoningDelta,
    StopReason,
    TextDelta,
    TextReplaced,
    ToolCallDelta,
    ToolCallStart,
    TurnEnd,
    TurnEvent,
    Usage,
)
from ..streams import BROKEN_STREAM
from .render import error_body

Chunk = dict[str, Any] | None  # None: nothing to send for this event


class StreamWriter(Protocol):
    """Renders one stream's chunks; ``include_usage`` adds a last usage chunk."""

    include_usage: bool

    def role(self) -> Chunk: ...
    def text(self, text: str) -> Chunk: ...
    def reasoning(self, text: str) -> Chunk: ...
    def tool_start(self, index: int, call_id: str, name: str) -> Chunk: ...
    def tool_arguments(self, index: int, fragment: str) -> Chunk: ...
    def finish(self, stop: StopReason) -> Chunk: ...
    def usage(self, usage: Usage) -> Chunk: ...


async def chunks(events: AsyncGenerator[TurnEvent, None], first: TurnEvent,
                 writer: StreamWriter) -> AsyncIterator[bytes]:
    try:
        if frame := _frame(writer.role()):
            yield frame
        event = first
        while True:
            if frame := _frame(_render(writer, event)):
                yield frame
            if isinstance(event, TurnEnd):
                if writer.include_usage and (frame := _frame(writer.usage(event.usage))):
                    yield frame
                break
            event = await anext(events)
    except GatewayError as exc:
        # After the first byte the status is sent: the error travels in the stream.
        yield sse.data(error_body(exc.message, exc.type, exc.param, exc.code))
    except StopAsyncIteration:
        yield sse.data(error_body("Claude Code ended the turn without a result",
                                  "api_error", None, None))
    finally:
        await events.aclose()
    yield sse.DONE


def _render(writer: StreamWriter, event: TurnEvent) -> Chunk:
    if isinstance(event, TextDelta):
        return writer.text(event.text)
    if isinstance(event, ReasoningDelta):
        return writer.reasoning(event.text)
    if isinstance(event, ToolCallStart):
        return writer.tool_start(event.index, event.id, event.name)
    if isinstance(event, ToolCallDelta):
        return writer.tool_arguments(event.index, event.arguments)
    if isinstance(event, TextReplaced):
        raise UpstreamError(BROKEN_STREAM)
    if isinstance(event, TurnEnd):
        return writer.finish(event.stop_reason)
    return None


def _frame(chunk: Chunk) -> bytes:
    return b"" if chunk is None else sse.data(chunk)
