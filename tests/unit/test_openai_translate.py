"""OpenAI chat request -> neutral turn, and the bodies we send back."""

from __future__ import annotations

from typing import Any

import pytest

from claude_code_api.catalog import Catalog
from claude_code_api.dialects.openai_chat.models import ChatCompletionRequest
from claude_code_api.dialects.openai_chat.render import ChunkWriter, completion_body
from claude_code_api.dialects.openai_chat.translate import to_turn
from claude_code_api.errors import InvalidRequest, ModelNotFound, Unsupported
from claude_code_api.events import Answer, TextDelta, ToolCallDelta, ToolCallStart, Usage
from tests.openapi import validate

CATALOG = Catalog({"gpt-4o": "sonnet"})


def turn_of(**body: Any) -> Any:
    body.setdefault("model", "sonnet")
    return to_turn(ChatCompletionRequest.model_validate(body), CATALOG)


def test_system_and_developer_messages_join_into_the_system_prompt() -> None:
    turn = turn_of(messages=[{"role": "system", "content": "A."},
                             {"role": "user", "content": "q1"},
                             {"role": "developer", "content": [{"type": "text", "text": "B."}]},
                             {"role": "user", "content": "q2"}])
    assert turn.system == "A.\n\nB."
    # Consecutive user messages are one user turn (Anthropic turns alternate).
    assert turn.history == ()
    assert turn.prompt == ({"type": "text", "text": "q1"}, {"type": "text", "text": "q2"})


def test_no_system_message_means_no_system_prompt() -> None:
    assert turn_of(messages=[{"role": "user", "content": "hi"}]).system is None


def test_history_keeps_roles_and_drops_empty_assistant_turns() -> None:
    turn = turn_of(messages=[{"role": "user", "content": "a"},
                             {"role": "assistant", "content": None},
                             {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
                             {"role": "user", "content": "c"}])
    assert [m.role for m in turn.history] == ["user", "assistant"]


def test_parameters_map_to_the_turn() -> None:
    turn = turn_of(model="gpt-4o", messages=[{"role": "user", "content": "x"}],
                   max_tokens=10, max_completion_tokens=20, stop="END")
    assert (turn.model, turn.max_tokens, turn.stop) == ("sonnet", 20, ("END",))


@pytest.mark.parametrize(("body", "error", "param"), [
    ({"messages": [{"role": "user", "content": "x"}], "model": "llama-3"}, ModelNotFound,
     "model"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 3}, Unsupported, "n"),
    ({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, Unsupported,
     "top_logprobs"),
    ({"messages": [{"role": "user", "content": "x"}],
      "functions": [{"name": "f"}]}, Unsupported, "functions"),
    ({"messages": [{"role": "tool", "content": "r", "tool_call_id": "c"}]}, InvalidRequest,
     "messages[0].tool_call_id"),
    ({"messages": [{"role": "system", "content": "only system"}]}, InvalidRequest, "messages"),
])
def test_refusals_name_their_param(body: dict[str, Any], error: type[Exception],
                                   param: str) -> None:
    with pytest.raises(error) as caught:
        turn_of(**body)
    assert getattr(caught.value, "param", None) == param


def test_completion_body_matches_the_openapi_schema() -> None:
    answer = Answer()
    answer.feed(TextDelta("hi"))
    body = completion_body("chatcmpl-1", "claude-sonnet-5-5", answer, "max_tokens",
                           Usage(1, 2, 3, 0))
    validate(body, "CreateChatCompletionResponse")
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["prompt_tokens"] == 4
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 3}


def test_chunks_match_the_openapi_schema() -> None:
    writer = ChunkWriter("chatcmpl-1", "m", include_usage=True)
    for chunk in (writer.role(), writer.text("x"), writer.finish("end_turn"),
                  writer.usage(Usage(1, 1))):
        validate(chunk, "CreateChatCompletionStreamResponse")
    assert writer.text("x")["usage"] is None
    assert writer.usage(Usage(1, 1))["choices"] == []


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]


def test_tool_round_trip_history_becomes_tool_use_and_tool_result_blocks() -> None:
    turn = turn_of(tools=TOOLS, messages=[
        {"role": "user", "content": "Weather in Paris and Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rain"}]},
    ])
    assert turn.history[-1].content == (
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Oslo"}})
    assert turn.prompt == (
        {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": "rain"})
    assert [t.name for t in turn.tools] == ["get_weather"]


@pytest.mark.parametrize(("body", "param"), [
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "no-such-type"}}}}}]},
     "tools[0].function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "string"}}}]}, "tools[0].function.parameters"),
    ({"tools": TOOLS + TOOLS}, "tools[1].function.name"),
])
def test_bad_tools_are_400_naming_the_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        turn_of(messages=[{"role": "user", "content": "x"}], **body)
    assert caught.value.param == param


def test_tool_results_must_answer_the_calls() -> None:
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"}}
    with pytest.raises(InvalidRequest) as caught:
        turn_of(tools=TOOLS, messages=[{"role": "user", "content": "x"},
                                       {"role": "assistant", "tool_calls": [call]},
                                       {"role": "user", "content": "where is my answer?"}])
    assert caught.value.param == "messages[1]"
    with pytest.raises(InvalidRequest) as caught:
        turn_of(tools=TOOLS, messages=[{"role": "user", "content": "x"},
                                       {"role": "assistant", "tool_calls": [
                                           {**call, "function": {"name": "get_weather",
                                                                 "arguments": "{oops"}}]},
                                       {"role": "tool", "tool_call_id": "call_1",
                                        "content": "r"}])
    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"


def test_tool_choice_is_kept_for_the_model() -> None:
    named = turn_of(tools=TOOLS, messages=[{"role": "user", "content": "x"}],
                    tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert (named.tool_choice.mode, named.tool_choice.name) == ("named", "get_weather")
    assert named.system is None  # the upstream request carries it as tool_choice
    assert turn_of(tools=TOOLS, messages=[{"role": "user", "content": "x"}],
                   tool_choice="none").tool_choice.mode == "none"


def test_tool_call_body_matches_the_openapi_schema() -> None:
    answer = Answer()
    for event in (ToolCallStart(0, "call_1", "get_weather"), ToolCallDelta(0, '{"city":'),
                  ToolCallDelta(0, ' "Oslo"}')):
        answer.feed(event)
    body = completion_body("chatcmpl-2", "m", answer, "tool_use", Usage(1, 1))
    validate(body, "CreateChatCompletionResponse")
    message = body["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [{"id": "call_1", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city": "Oslo"}'}}]
    assert body["choices"][0]["finish_reason"] == "tool_calls"
