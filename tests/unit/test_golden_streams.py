"""Golden files: the exact SSE each dialect sends for real upstream streams.

Each recorded Anthropic stream of ``tests/fixtures/anthropic-messages/`` is fed, event by
event, to the turn translator as the relay passes it in chat mode (then the CLI's
result), and the neutral events go through each dialect's stream writer and the one
stream loop (``dialects/streams.py``). The bytes must equal
``tests/fixtures/golden/<stream>.<dialect>.sse`` once ids and clocks are replaced by
placeholders. So any change to what a client receives shows up here as a diff, without
a CLI or a gateway.

After a change meant to alter the wire format: ``CCA_GOLDEN=update pytest
tests/unit/test_golden_streams.py`` rewrites the files; read their diff before committing.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

from claude_code_api.dialects.anthropic_messages.render import MessageFrames, StreamWriter
from claude_code_api.dialects.openai_chat.render import ChunkWriter
from claude_code_api.dialects.openai_chat.streaming import DataStream
from claude_code_api.dialects.openai_completions.render import CompletionChunkWriter
from claude_code_api.dialects.openai_responses.models import ResponsesRequest
from claude_code_api.dialects.openai_responses.render import ResponseFrames, ResponseWriter
from claude_code_api.dialects.streams import Writer, first_event, frames
from claude_code_api.engine.turns import TurnTranslator
from claude_code_api.events import TurnEvent
from tests.unit.test_turns import recorded_events, result, stream_event

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RECORDED = FIXTURES / "anthropic-messages"
GOLDEN = FIXTURES / "golden"
MODEL = "claude-sonnet-4-5"
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                          "required": ["location"]}}
STREAMS = sorted(path.stem.removesuffix("_response") for path in RECORDED.glob("*.sse"))
# Ids and clocks differ on every run: each distinct one becomes a numbered placeholder.
VOLATILE = re.compile(r'"(id|item_id|call_id|created|created_at|completed_at)": ?("[^"]*"|\d+)')


def turn_events(stream: str) -> list[TurnEvent]:
    """What the engine makes of the stream in chat mode: the relay's events, then the
    CLI's result for the turn."""
    translator = TurnTranslator(relayed=True, client_tools=frozenset({"get_weather"}))
    events: list[TurnEvent] = []
    for raw in recorded_events(f"{stream}_response.sse"):
        events += translator.feed(stream_event(raw))
    if not translator.done:
        events += translator.feed(result(total_cost_usd=0.001,
                                         usage={"input_tokens": 10, "output_tokens": 5}))
    return events


def responses_writer() -> Writer:
    request = ResponsesRequest.model_validate({
        "model": MODEL, "input": "What is the weather in Paris?", "tools": [WEATHER],
        "stream": True})
    return ResponseFrames(ResponseWriter(request, MODEL, None), lambda final, seen: None)


WRITERS = {
    "messages": lambda: MessageFrames(StreamWriter(MODEL)),
    "chat": lambda: DataStream(ChunkWriter("chatcmpl-golden", MODEL, True)),
    "completions": lambda: DataStream(CompletionChunkWriter("cmpl-golden", MODEL, True, None)),
    "responses": responses_writer,
}


async def sent(events: list[TurnEvent], writer: Writer) -> str:
    async def source() -> AsyncGenerator[TurnEvent, None]:
        for event in events:
            yield event

    stream = source()
    first = await first_event(stream)
    return b"".join([frame async for frame in frames(stream, first, writer)]).decode()


def stable(text: str) -> str:
    """Each distinct id or clock value numbered in order of appearance, the same value
    the same number whatever field holds it (an ``item_id`` names its item's ``id``): a
    string becomes ``"<key-N>"`` (the key where it first appeared), a number ``N`` (so
    its type is still checked)."""
    seen: dict[str, str] = {}

    def placeholder(match: re.Match[str]) -> str:
        key, value = match.group(1), match.group(2)
        number = seen.setdefault(value, f"{key}-{len(seen) + 1}")
        shown = f'"<{number}>"' if value.startswith('"') else number.rsplit("-", 1)[1]
        return match.group(0)[:match.start(2) - match.start(0)] + shown

    return VOLATILE.sub(placeholder, text)


CASES = [(stream, dialect) for stream in STREAMS for dialect in WRITERS
         # Completions have no tools: a stream that calls one is not theirs.
         if not (dialect == "completions" and stream == "tool_use")]


def test_every_recorded_stream_has_its_golden_files() -> None:
    assert len(STREAMS) == 4
    wanted = {f"{stream}.{dialect}.sse" for stream, dialect in CASES}
    assert {p.name for p in GOLDEN.glob("*.sse")} == wanted


@pytest.mark.parametrize(("stream", "dialect"), CASES)
async def test_what_each_dialect_sends_is_its_golden_file(stream: str, dialect: str) -> None:
    text = stable(await sent(turn_events(stream), WRITERS[dialect]()))
    golden = GOLDEN / f"{stream}.{dialect}.sse"
    if os.environ.get("CCA_GOLDEN") == "update":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()
