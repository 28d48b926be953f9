"""The one stream loop (``streams.frames``) as a client reads it, through each
dialect's writer: the frames in order, an error after the first byte inside the
stream, and the turn's events closed however the stream ends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator

from claude_code_api.dialects.anthropic_messages.render import MessageFrames, StreamWriter
from claude_code_api.dialects.openai_chat.render import ChunkWriter
from claude_code_api.dialects.openai_chat.streaming import DataStream
from claude_code_api.dialects.streams import BROKEN_STREAM, NO_RESULT, frames
from claude_code_api.events import TextDelta, TextReplaced, TurnEnd, TurnEvent, Usage


class _Events:
    """A turn's events, remembering whether the loop closed them."""

    def __init__(self, *events: TurnEvent, delay: float = 0) -> None:
        self.events = events
        self.delay = delay
        self.closed = False

    async def stream(self) -> AsyncGenerator[TurnEvent, None]:
        try:
            for event in self.events:
                await asyncio.sleep(self.delay)
                yield event
        finally:
            self.closed = True


async def _read(events: _Events, writer: MessageFrames | DataStream) -> list[bytes]:
    stream = events.stream()
    first = await anext(stream)
    return [frame async for frame in frames(stream, first, writer)]


def _data(sent: list[bytes]) -> list[object]:
    return [json.loads(f[6:]) if f != b"data: [DONE]\n\n" else "[DONE]" for f in sent]


def _names(sent: list[bytes]) -> list[str]:
    return [f.split(b"\n")[0].removeprefix(b"event: ").decode() for f in sent]


async def test_a_data_stream_sends_role_text_finish_usage_then_done() -> None:
    events = _Events(TextDelta("Hi"), TurnEnd("end_turn", Usage(3, 1)))
    sent = _data(await _read(events, DataStream(ChunkWriter("c1", "m", True))))
    assert [c["choices"][0]["delta"] for c in sent[:2]] == [  # type: ignore[index]
        {"role": "assistant", "content": "", "refusal": None}, {"content": "Hi"}]
    assert sent[2]["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]
    assert sent[3]["usage"]["prompt_tokens"] == 3  # type: ignore[index]
    assert sent[4] == "[DONE]" and events.closed


async def test_a_turn_that_ends_without_a_result_ends_the_data_stream_with_an_error() -> None:
    events = _Events(TextDelta("Hi"))
    sent = _data(await _read(events, DataStream(ChunkWriter("c1", "m", False))))
    assert sent[-2] == {"error": {"message": NO_RESULT, "type": "api_error", "param": None,
                                  "code": None}}
    assert sent[-1] == "[DONE]" and events.closed


async def test_replaced_text_after_the_first_byte_is_an_error_event_in_anthropic_shape(
) -> None:
    events = _Events(TextDelta("Hel"), TextReplaced("Hello"), TurnEnd("end_turn"))
    sent = await _read(events, MessageFrames(StreamWriter("m")))
    assert _names(sent) == ["message_start", "ping", "content_block_start",
                            "content_block_delta", "error"]
    error = json.loads(sent[-1].split(b"data: ")[1])
    assert error["error"]["message"] == BROKEN_STREAM and events.closed


async def test_anthropic_pings_while_the_turn_is_silent() -> None:
    writer = MessageFrames(StreamWriter("m"))
    writer.ping_seconds = 0.01
    events = _Events(TextDelta("a"), TurnEnd("end_turn"), delay=0.05)
    sent = _names(await _read(events, writer))
    assert sent[:2] == ["message_start", "ping"]
    assert "ping" in sent[2:-2] and sent[-2:] == ["message_delta", "message_stop"]


async def test_a_client_hanging_up_closes_the_turns_events() -> None:
    events = _Events(TextDelta("a"), TextDelta("b"), TurnEnd("end_turn"))
    stream = events.stream()
    sending = frames(stream, await anext(stream), DataStream(ChunkWriter("c", "m", False)))
    await anext(sending)
    await sending.aclose()
    assert events.closed


async def test_the_turn_is_over_before_its_last_frames_are_written() -> None:
    """``over`` (the key's concurrency slot given back) comes once the turn ended and
    before the frames that say so: a client that sends its next request on reading
    ``[DONE]`` or ``message_stop`` finds the slot free. An error ends the turn too."""
    for events, last in ((_Events(TextDelta("Hi"), TurnEnd("end_turn", Usage(3, 1))),
                          b"data: [DONE]\n\n"),
                         (_Events(TextDelta("Hi")), b"data: [DONE]\n\n")):
        stream = events.stream()
        first = await anext(stream)
        sent: list[bytes] = []
        seen_at: list[int] = []

        async def over(sent: list[bytes] = sent, seen_at: list[int] = seen_at) -> None:
            seen_at.append(len(sent))

        writer = DataStream(ChunkWriter("c1", "m", True))
        async for frame in frames(stream, first, writer, over):
            sent.append(frame)
        assert sent[-1] == last
        # Once, after the text and before the finish (or the error) and [DONE].
        assert seen_at == [2], (seen_at, sent)
