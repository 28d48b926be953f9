"""The pure translation from the CLI's messages to neutral events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import AssistantMessage, ResultMessage, StreamEvent, TextBlock

from claude_code_api.engine.turns import StopScanner, TurnTranslator
from claude_code_api.errors import (
    UpstreamAuthFailed,
    UpstreamOverloaded,
    UpstreamRateLimited,
    UpstreamRejected,
)
from claude_code_api.events import ReasoningDelta, TextDelta, TextReplaced, TurnEnd, Usage

RECORDED = Path(__file__).resolve().parents[1] / "fixtures"


def stream_event(event: dict[str, Any]) -> StreamEvent:
    return StreamEvent(uuid="u", session_id="s", event=event)


def result(**kw: Any) -> ResultMessage:
    base: dict[str, Any] = {"subtype": "success", "duration_ms": 1, "duration_api_ms": 1,
                            "is_error": False, "num_turns": 1, "session_id": "s",
                            "stop_reason": "end_turn"}
    return ResultMessage(**{**base, **kw})


def recorded_events(name: str) -> list[dict[str, Any]]:
    lines = (RECORDED / "anthropic-messages" / name).read_text().splitlines()
    return [json.loads(line[len("data: "):]) for line in lines if line.startswith("data: ")]


def test_recorded_basic_stream_becomes_text_deltas() -> None:
    translator = TurnTranslator()
    events = [e for raw in recorded_events("basic_response.sse")
              for e in translator.feed(stream_event(raw))]
    assert events == [TextDelta("Hello"), TextDelta(" there"), TextDelta("!")]
    assert translator.model == "claude-3-opus-latest"
    assert not translator.done


def test_recorded_tool_use_stream_yields_only_its_text() -> None:
    translator = TurnTranslator()
    events = [e for raw in recorded_events("tool_use_response.sse")
              for e in translator.feed(stream_event(raw))]
    assert all(isinstance(e, TextDelta) for e in events)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)).strip()


def test_thinking_deltas_are_reasoning() -> None:
    translator = TurnTranslator()
    events = list(translator.feed(stream_event({
        "type": "content_block_delta", "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "Let me think"}})))
    assert events == [ReasoningDelta("Let me think")]


def test_result_ends_the_turn_with_usage_and_cost() -> None:
    translator = TurnTranslator()
    [end] = translator.feed(result(total_cost_usd=0.25, usage={
        "input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 5,
        "cache_creation_input_tokens": 6}))
    assert end == TurnEnd("end_turn", Usage(3, 4, 5, 6), "", 0.25)
    assert end.usage.prompt_tokens == 14
    assert translator.done


def test_max_tokens_ends_the_turn_before_the_cli_resumes() -> None:
    translator = TurnTranslator()
    list(translator.feed(stream_event({"type": "message_start", "message": {
        "model": "m", "usage": {"input_tokens": 9, "output_tokens": 1}}})))
    [end] = translator.feed(stream_event({"type": "message_delta", "delta": {
        "stop_reason": "max_tokens"}, "usage": {"output_tokens": 7}}))
    assert end == TurnEnd("max_tokens", Usage(9, 7), "m")
    assert not translator.done  # the CLI is still running: the engine interrupts it


def test_unstreamed_assistant_message_is_emitted_whole() -> None:
    translator = TurnTranslator()
    events = list(translator.feed(AssistantMessage([TextBlock("whole answer")], "m")))
    assert events == [TextDelta("whole answer")]


def test_streamed_then_final_message_is_not_emitted_twice() -> None:
    translator = TurnTranslator()
    list(translator.feed(stream_event({"type": "content_block_delta", "delta": {
        "type": "text_delta", "text": "abc"}})))
    assert list(translator.feed(AssistantMessage([TextBlock("abc")], "m"))) == []


def test_a_retried_answer_that_differs_replaces_the_text() -> None:
    translator = TurnTranslator()
    list(translator.feed(stream_event({"type": "content_block_delta", "delta": {
        "type": "text_delta", "text": "partial"}})))
    events = list(translator.feed(AssistantMessage([TextBlock("other answer")], "m")))
    assert events == [TextReplaced("other answer")]


def test_cli_error_prose_is_never_model_output() -> None:
    translator = TurnTranslator(retry_after=9)
    error_message = AssistantMessage([TextBlock("API Error: Request rejected (429)")], "m",
                                     error="rate_limit")
    assert list(translator.feed(error_message)) == []
    with pytest.raises(UpstreamRateLimited) as caught:
        list(translator.feed(result(is_error=True, api_error_status=429)))
    assert caught.value.retry_after == 9


@pytest.mark.parametrize(("status", "error", "expected"), [
    (401, None, UpstreamAuthFailed), (403, None, UpstreamAuthFailed),
    (None, "authentication_failed", UpstreamAuthFailed), (529, None, UpstreamOverloaded),
    (500, None, UpstreamOverloaded), (400, None, UpstreamRejected),
    (413, None, UpstreamRejected),
])
def test_error_results_map_by_status(status: int | None, error: str | None,
                                     expected: type[Exception]) -> None:
    translator = TurnTranslator()
    if error:
        list(translator.feed(AssistantMessage([TextBlock("x")], "m", error=error)))  # type: ignore[arg-type]
    with pytest.raises(expected):
        list(translator.feed(result(is_error=True, api_error_status=status)))


def feed_all(scanner: StopScanner, pieces: list[str]) -> str:
    out = "".join(scanner.feed(p) for p in pieces)
    return out + scanner.flush()


def test_stop_scanner_without_stops_passes_everything() -> None:
    assert feed_all(StopScanner(()), ["a", "b"]) == "ab"


def test_stop_scanner_cuts_at_the_first_stop() -> None:
    scanner = StopScanner(("END", "X"))
    assert feed_all(scanner, ["one two END three X"]) == "one two "
    assert scanner.matched == "END"


def test_stop_scanner_holds_back_a_split_stop() -> None:
    scanner = StopScanner(("</answer>",))
    assert scanner.feed("the result</ans") == "the result"
    assert scanner.feed("wer> more") == ""
    assert scanner.matched == "</answer>"


def test_stop_scanner_releases_a_false_alarm() -> None:
    scanner = StopScanner(("</answer>",))
    assert scanner.feed("a </an") == "a "
    assert scanner.feed("d b") == "</and b"
    assert scanner.flush() == ""
    assert scanner.feed("x </") == "x "
    assert scanner.flush() == "</"
    assert scanner.matched is None
