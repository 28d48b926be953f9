"""Anthropic Messages: structured output, effort, thinking display, refused fields, and
tool results reaching Claude as the client sent them (in every dialect)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pydantic
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Text, Thinking, ToolUse
from tests.conftest import Gateway, lazy_import, offered_schema, structured

if TYPE_CHECKING:
    import anthropic
else:
    anthropic = lazy_import("anthropic")

pytestmark = pytest.mark.e2e

ASK = [{"role": "user", "content": "Ann is 31. Extract the person."}]
PERSON = {"type": "object", "properties": {"name": {"type": "string"},
                                           "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}


class Person(pydantic.BaseModel):
    name: str
    age: int


@pytest.fixture
def claude(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key="sk-any", max_retries=0,
                             timeout=60) as client:
        yield client


def test_parse_returns_the_pydantic_object(claude: anthropic.Anthropic,
                                           upstream: FakeUpstream) -> None:
    upstream.script(structured({"name": "Ann", "age": 31}, preamble="Let me extract that."))
    message = claude.messages.parse(model="sonnet", max_tokens=512, messages=ASK,  # type: ignore[arg-type]
                                    output_format=Person)
    assert message.parsed_output == Person(name="Ann", age=31)
    assert [b.type for b in message.content] == ["text"]  # the preamble is not the answer
    assert message.stop_reason == "end_turn"
    assert offered_schema(upstream)["required"] == ["name", "age"]


def test_stream_helper_streams_the_document(claude: anthropic.Anthropic,
                                            upstream: FakeUpstream) -> None:
    upstream.script(structured({"name": "Bo", "age": 7}))
    with claude.messages.stream(model="sonnet", max_tokens=512, messages=ASK,  # type: ignore[arg-type]
                                output_format=Person) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1
    assert json.loads("".join(pieces)) == {"name": "Bo", "age": 7}
    assert final.parsed_output == Person(name="Bo", age=7)
    assert final.stop_reason == "end_turn"


@pytest.mark.parametrize("body", [
    {"output_format": {"type": "json_schema", "schema": PERSON}},  # LiteLLM's anthropic/
    {"output_config": {"format": {"type": "json_schema", "schema": PERSON}}},
])
def test_raw_bodies_get_a_text_block_of_json(gateway: Gateway, upstream: FakeUpstream,
                                             body: dict[str, Any]) -> None:
    upstream.script(structured({"name": "Cy", "age": 44}))
    response = httpx.post(gateway.url + "/v1/messages", timeout=60, json={
        "model": "sonnet", "max_tokens": 512, "messages": ASK, **body})
    assert response.status_code == 200, response.text
    [block] = response.json()["content"]
    assert block["type"] == "text"
    assert json.loads(block["text"]) == {"name": "Cy", "age": 44}
    assert offered_schema(upstream) == PERSON


@pytest.mark.parametrize("effort", ["low", "max"])
def test_output_config_effort_reaches_claude(claude: anthropic.Anthropic,
                                             upstream: FakeUpstream, effort: str) -> None:
    upstream.script(Reply.text("Done."))
    claude.messages.create(model="claude-opus-4-6", max_tokens=64, messages=ASK,  # type: ignore[arg-type]
                           output_config={"effort": effort})  # type: ignore[typeddict-item]
    assert upstream.message_requests()[-1].body["output_config"]["effort"] == effort


def test_omitted_thinking_comes_back_as_its_signature(claude: anthropic.Anthropic,
                                                      upstream: FakeUpstream) -> None:
    upstream.script(Reply(blocks=[Thinking("private steps", signature="sig-1"), Text("4")]))
    message = claude.messages.create(model="sonnet", max_tokens=2048, messages=ASK,  # type: ignore[arg-type]
                                     thinking={"type": "adaptive", "display": "omitted"})
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == ""  # type: ignore[union-attr]
    assert message.content[0].signature == "sig-1"  # type: ignore[union-attr]


def error_of(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    return str(body["error"]["message"])


@pytest.mark.parametrize(("extra", "field"), [
    ({"mcp_servers": [{"type": "url", "url": "https://mcp.example.com/sse", "name": "x"}]},
     "mcp_servers"),
    ({"container": "container_011"}, "container"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]},
     "tools[0].type"),
    ({"output_config": {"task_budget": {"type": "tokens", "total": 50000}}},
     "output_config.task_budget"),
    ({"output_config": {"format": {"type": "json_object"}}}, "output_config.format.type"),
    ({"output_config": {"format": {"type": "json_schema"}}}, "output_config.format.schema"),
    ({"output_config": {"format": {"type": "json_schema", "schema": {"type": "array"}}}},
     "output_config.format.schema"),
    ({"output_format": {"type": "json_schema",
                        "schema": {"type": "object", "properties": {"a": {"type": 5}}}}},
     "output_format.schema"),
    ({"output_config": {"effort": "extreme"}}, "output_config.effort"),
])
def test_what_cannot_be_honoured_is_a_400_naming_the_field(
        gateway: Gateway, upstream: FakeUpstream, extra: dict[str, Any], field: str) -> None:
    response = httpx.post(gateway.url + "/v1/messages", timeout=30, json={
        "model": "sonnet", "max_tokens": 64, "messages": ASK, **extra})
    assert field in error_of(response)
    assert not upstream.message_requests()


WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}},
                  "required": ["city"]}


def call_then_answer(upstream: FakeUpstream, call_id: str) -> None:
    upstream.script(Reply(blocks=[ToolUse("get_weather", {"city": "Oslo"},
                                          id=call_id)], stop_reason="tool_use"),
                    Reply.text("Oslo is cold."))


def messages_round_trip(gateway: Gateway) -> None:
    tools = [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]
    with anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0) as claude:
        first = claude.messages.create(model="haiku", max_tokens=256, tools=tools,  # type: ignore[arg-type]
                                       messages=[{"role": "user", "content": "Oslo?"}])
        claude.messages.create(model="haiku", max_tokens=256, tools=tools, messages=[  # type: ignore[arg-type]
            {"role": "user", "content": "Oslo?"},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True)  # type: ignore[misc]
                                              for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_w",
                                          "content": "-3C"}]}])


def messages_replayed(gateway: Gateway) -> None:
    """The results for a call this gateway never paused at: the history is replayed."""
    tools = [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]
    with anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0) as claude:
        claude.messages.create(model="haiku", max_tokens=256, tools=tools, messages=[  # type: ignore[arg-type]
            {"role": "user", "content": "Oslo?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_w",
                                               "name": "get_weather",
                                               "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_w",
                                          "content": "-3C"}]}])


def chat_round_trip(gateway: Gateway) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather",
                                               "parameters": WEATHER_SCHEMA}}]
    client = gateway.client()
    asked: list[Any] = [{"role": "user", "content": "Oslo?"}]
    first = client.chat.completions.create(model="haiku", tools=tools, messages=asked)  # type: ignore[arg-type]
    client.chat.completions.create(model="haiku", tools=tools, messages=[  # type: ignore[arg-type]
        *asked, first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "toolu_w", "content": "-3C"}])


def responses_round_trip(gateway: Gateway) -> None:
    tools = [{"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA}]
    client: openai.OpenAI = gateway.client()
    first = client.responses.create(model="haiku", tools=tools, input="Oslo?")  # type: ignore[arg-type]
    client.responses.create(model="haiku", tools=tools, previous_response_id=first.id,  # type: ignore[arg-type]
                            input=[{"type": "function_call_output", "call_id": "toolu_w",
                                    "output": "-3C"}])


@pytest.mark.parametrize("round_trip", [messages_round_trip, messages_replayed,
                                        chat_round_trip, responses_round_trip])
def test_tool_results_reach_claude_as_sent(gateway: Gateway, upstream: FakeUpstream,
                                           round_trip: Any) -> None:
    # claude-haiku-5-5 is one of the models the CLI would add a "<total_tokens>" note for.
    if round_trip is messages_replayed:
        upstream.script(Reply.text("Oslo is cold."))
    else:
        call_then_answer(upstream, "toolu_w")
    round_trip(gateway)
    messages = upstream.message_requests()[-1].messages
    assert "total_tokens" not in json.dumps(messages)
    # The CLI may follow the turn with its environment note (a system message), never
    # with text of its own inside the user's turn.
    last = [m for m in messages if m["role"] == "user"][-1]
    assert all(m["role"] == "system" for m in messages[messages.index(last) + 1:])
    assert [(b["type"], b["tool_use_id"], result_text(b["content"]))
            for b in last["content"]] == [("tool_result", "toolu_w", "-3C")]


def result_text(content: str | list[dict[str, Any]]) -> str:
    return content if isinstance(content, str) else "".join(c["text"] for c in content)
