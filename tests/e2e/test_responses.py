"""OpenAI Responses end to end with the official openai client's own helpers."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pydantic
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Text, Thinking, ToolUse
from tests.conftest import Gateway

pytestmark = pytest.mark.e2e

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}


def test_create_with_string_input_and_instructions(client: openai.OpenAI,
                                                   upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("Bonjour!", input_tokens=9, output_tokens=2))
    response = client.responses.create(model="sonnet", instructions="Answer in French.",
                                       input="Say hello")
    assert response.output_text == "Bonjour!"
    assert response.status == "completed"
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.model == "claude-sonnet-5-5"
    assert response.usage is not None and response.usage.input_tokens == 9
    seen = upstream.message_requests()[-1]
    assert "Answer in French." in seen.system_text
    assert seen.last_user_text().endswith("Say hello") or "Say hello" in seen.last_user_text()


def test_stream_helper_gets_the_full_event_sequence(client: openai.OpenAI,
                                                    upstream: FakeUpstream) -> None:
    upstream.script(Reply(blocks=[Thinking("hm"), Text("Streaming answer here")]))
    kinds: list[str] = []
    numbers: list[int] = []
    with client.responses.stream(model="sonnet", input="Go") as stream:
        for event in stream:
            kinds.append(event.type)
            numbers.append(event.sequence_number)
        final = stream.get_final_response()
    assert final.output_text == "Streaming answer here"
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert kinds.count("response.output_text.delta") >= 3
    assert numbers == list(range(len(numbers)))


def test_previous_response_id_continues_the_conversation(client: openai.OpenAI,
                                                         gateway: Gateway,
                                                         upstream: FakeUpstream) -> None:
    upstream.script(Reply(blocks=[Thinking("noting", signature="sig-r1"), Text("Noted: Kai.")]),
                    Reply.text("Your name is Kai."))
    first = client.responses.create(model="sonnet", input="My name is Kai.")
    second = client.responses.create(model="sonnet", input="What is my name?",
                                     previous_response_id=first.id)
    assert second.output_text == "Your name is Kai."
    assert second.previous_response_id == first.id
    seen = upstream.message_requests()[-1]
    roles = [m["role"] for m in seen.messages if m["role"] in ("user", "assistant")]
    assert roles == ["user", "assistant", "user"]
    # Continued in the live session: the first answer's thinking is still there.
    assert any(b.get("signature") == "sig-r1" for m in seen.messages
               if m["role"] == "assistant" for b in m["content"])


def test_function_tool_round_trip(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply(blocks=[ToolUse("get_weather", {"city": "Lima"},
                                          id="toolu_lima")], stop_reason="tool_use"),
                    Reply.text("Lima is mild."))
    first = client.responses.create(model="sonnet", input="Weather in Lima?",
                                    tools=[WEATHER])  # type: ignore[list-item]
    [call] = [item for item in first.output if item.type == "function_call"]
    assert (call.name, json.loads(call.arguments), call.call_id) == (
        "get_weather", {"city": "Lima"}, "toolu_lima")
    second = client.responses.create(
        model="sonnet", previous_response_id=first.id, tools=[WEATHER],  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": "toolu_lima", "output": "18C"}])
    assert second.output_text == "Lima is mild."
    results = [b for m in upstream.message_requests()[-1].messages if m["role"] == "user"
               for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]
    assert results and results[-1]["tool_use_id"] == "toolu_lima"


def test_streamed_function_call_events(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply(blocks=[ToolUse("get_weather", {"city": "Quito, EC"},
                                          id="toolu_q")], stop_reason="tool_use"))
    kinds: list[str] = []
    with client.responses.stream(model="sonnet", input="Quito?",
                                 tools=[WEATHER]) as stream:  # type: ignore[list-item]
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    [call] = final.output
    assert call.type == "function_call"
    assert json.loads(call.arguments) == {"city": "Quito, EC"}


class Person(pydantic.BaseModel):
    name: str
    age: int


def test_json_schema_text_format_with_the_parse_helper(client: openai.OpenAI,
                                                       upstream: FakeUpstream) -> None:
    upstream.script(Reply(blocks=[ToolUse("StructuredOutput", {"name": "Ida", "age": 5},
                                          id="toolu_so")], stop_reason="tool_use"))
    parsed = client.responses.parse(model="sonnet", input="Ida is 5", text_format=Person)
    assert parsed.output_parsed == Person(name="Ida", age=5)


def test_reasoning_effort_reaches_the_cli(client: openai.OpenAI,
                                          upstream: FakeUpstream) -> None:
    client.responses.create(model="sonnet", input="think hard", reasoning={"effort": "high"})
    assert upstream.message_requests()[-1].body["output_config"]["effort"] == "high"


def test_stored_responses_get_list_inputs_and_delete(client: openai.OpenAI,
                                                     upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("kept"))
    created = client.responses.create(model="sonnet", input=[
        {"role": "user", "content": [{"type": "input_text", "text": "remember me"}]}])
    fetched = client.responses.retrieve(created.id)
    assert fetched.output_text == "kept" and fetched.id == created.id
    items = client.responses.input_items.list(created.id)
    assert [i.type for i in items.data] == ["message"]
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_store_false_is_not_retrievable(client: openai.OpenAI) -> None:
    created = client.responses.create(model="sonnet", input="ephemeral", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_unknown_previous_response_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="sonnet", input="x", previous_response_id="resp_nope")
    assert caught.value.param == "previous_response_id"


@pytest.mark.parametrize(("body", "param"), [
    ({"input": "x"}, "model"),
    ({"model": "sonnet", "input": "x", "tool_choice": {"type": "function", "name": "zz"},
      "tools": [WEATHER]}, "tool_choice"),
    ({"model": "sonnet", "input": "x", "text": {"format": {
        "type": "json_schema", "name": "s", "schema": {"type": "object", "properties": {
            "a": {"type": 7}}}}}}, "text.format.schema"),
])
def test_bad_requests_name_the_param(gateway: Gateway, body: dict[str, Any],
                                     param: str) -> None:
    response = httpx.post(gateway.base_url + "/responses", json=body, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
