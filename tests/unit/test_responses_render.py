"""How a Responses stream ends when it fails, checked against OpenAI's types."""

from __future__ import annotations

import pytest
from openai.types.responses import ResponseFailedEvent

from claude_code_api.dialects.openai_responses.models import ResponsesRequest
from claude_code_api.dialects.openai_responses.render import ResponseWriter
from claude_code_api.events import ReasoningDelta, TextDelta, ToolCallDelta, ToolCallStart
from tests.openapi import validate


@pytest.mark.parametrize(("events", "kind"), [
    ([TextDelta("half an ans")], "message"),
    ([ToolCallStart(0, "call_1", "get_weather"), ToolCallDelta(0, '{"ci')], "function_call"),
    ([ReasoningDelta("thinking about")], "reasoning"),
])
def test_a_failure_ends_with_error_then_response_failed(events: list[object],
                                                        kind: str) -> None:
    writer = ResponseWriter(ResponsesRequest(model="sonnet", input="hi"), "claude-sonnet-5-5",
                            None, reasoning=True)
    frames = writer.start()
    for event in events:
        frames += writer.feed(event)  # type: ignore[arg-type]
    frames += writer.fail("worker_timeout", "Claude Code produced nothing for 3 seconds", None)
    assert [f["sequence_number"] for f in frames] == list(range(len(frames)))
    error, failed = frames[-2:]
    validate(error, "ResponseErrorEvent")
    ResponseFailedEvent.model_validate(failed)  # the openai SDK's own type
    assert error["code"] == "worker_timeout"
    response = failed["response"]
    assert response["status"] == "failed" and response["id"] == frames[0]["response"]["id"]
    assert response["error"] == {"code": "server_error",
                                 "message": "Claude Code produced nothing for 3 seconds"}
    [item] = response["output"]
    assert item["type"] == kind and item["status"] == "incomplete"


def test_an_upstream_rate_limit_keeps_its_code_in_the_failed_response() -> None:
    writer = ResponseWriter(ResponsesRequest(model="sonnet", input="hi"), "m", None)
    writer.start()
    *_, failed = writer.fail("rate_limit_exceeded", "slow down", None)
    assert failed["response"]["error"]["code"] == "rate_limit_exceeded"
    assert failed["response"]["output"] == []
