"""Client tools as real tool calls: the response ends at the calls; the results come
with the next request, which any worker answers with the whole conversation."""

from __future__ import annotations

import json
import time
from typing import Any

import openai
import pydantic
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Text, ToolUse
from tests.conftest import ONE_WORKER, Gateway, Gateways, ready

pytestmark = pytest.mark.e2e

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
CLOCK = {"type": "function", "function": {
    "name": "get_time", "description": "Local time in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
ASK = [{"role": "user", "content": "Weather in Paris?"}]


def calls(*uses: tuple[str, dict[str, Any], str], text: str = "") -> Reply:
    blocks: list[Any] = [Text(text)] if text else []
    blocks += [ToolUse(f"{name}", args, id=cid) for name, args, cid in uses]
    return Reply(blocks=blocks, stop_reason="tool_use")


def tool_results(upstream: FakeUpstream) -> list[dict[str, Any]]:
    last_user = [m for m in upstream.message_requests()[-1].messages if m["role"] == "user"][-1]
    return [{k: v for k, v in b.items() if k != "cache_control"}
            for b in last_user["content"] if b.get("type") == "tool_result"]


def started(gateway: Gateway) -> int:
    return int(gateway.health()["pool"]["started"])


def test_tools_are_offered_exactly_as_defined(client: openai.OpenAI,
                                              upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("no tools needed"))
    client.chat.completions.create(model="sonnet", messages=ASK, tools=[WEATHER, CLOCK])
    offered = upstream.message_requests()[-1].body["tools"]
    assert sorted(t["name"] for t in offered) == ["get_time", "get_weather"]
    weather = next(t for t in offered if t["name"].endswith("get_weather"))
    assert weather["input_schema"] == WEATHER["function"]["parameters"]  # type: ignore[index]
    assert weather["description"] == "Current weather for a city"


def test_tool_round_trip(client: openai.OpenAI, gateway: Gateway,
                         upstream: FakeUpstream) -> None:
    upstream.script(calls(("get_weather", {"city": "Paris"}, "toolu_p1"), text="Checking."),
                    Reply.text("It is sunny in Paris."))
    before = started(gateway)
    first = client.chat.completions.create(model="sonnet", messages=ASK, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Checking."
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.id == "toolu_p1"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    # The CLI's own answer to a tool it does not have never reaches the upstream.
    assert len(upstream.message_requests()) == 1

    second = client.chat.completions.create(model="sonnet", tools=[WEATHER], messages=[
        *ASK, choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}])
    assert second.choices[0].message.content == "It is sunny in Paris."
    assert second.choices[0].finish_reason == "stop"
    assert tool_results(upstream) == [{"type": "tool_result", "tool_use_id": "toolu_p1",
                                       "content": "sunny, 21C"}]
    # The whole conversation, as the client sent it, in one upstream call.
    [_, seen] = upstream.message_requests()
    assert [(m["role"], [b["type"] for b in m["content"]]) for m in seen.messages] == [
        ("user", ["text"]), ("assistant", ["text", "tool_use"]), ("user", ["tool_result"])]
    assert seen.messages[1]["content"][1] == {"type": "tool_use", "id": "toolu_p1",
                                              "name": "get_weather",
                                              "input": {"city": "Paris"}}
    gateway.wait_idle()
    assert started(gateway) == before  # served by warm workers


def test_parallel_calls_stream_and_complete(client: openai.OpenAI, gateway: Gateway,
                                            upstream: FakeUpstream) -> None:
    upstream.script(calls(("get_weather", {"city": "Paris"}, "toolu_a"),
                          ("get_time", {"city": "Oslo"}, "toolu_b")),
                    Reply.text("Paris is sunny; it is 10:00 in Oslo."))
    chunks = list(client.chat.completions.create(model="sonnet", messages=ASK,
                                                 tools=[WEATHER, CLOCK], stream=True))
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    starts = [d for d in deltas if d.id]
    assert [(d.index, d.id, d.type, d.function.name if d.function else None)
            for d in starts] == [(0, "toolu_a", "function", "get_weather"),
                                 (1, "toolu_b", "function", "get_time")]
    arguments = {i: "".join(d.function.arguments or "" for d in deltas
                            if d.index == i and d.function) for i in (0, 1)}
    assert json.loads(arguments[0]) == {"city": "Paris"}
    assert json.loads(arguments[1]) == {"city": "Oslo"}
    assert len([d for d in deltas if not d.id]) > 2  # arguments arrive in fragments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    assistant = {"role": "assistant", "content": None, "tool_calls": [
        {"id": d.id, "type": "function",
         "function": {"name": d.function.name, "arguments": arguments[d.index]}}
        for d in starts if d.function]}
    answer = list(client.chat.completions.create(model="sonnet", stream=True,
                                                 tools=[WEATHER, CLOCK], messages=[
        *ASK, assistant, {"role": "tool", "tool_call_id": "toolu_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_b", "content": "10:00"}]))
    text = "".join(c.choices[0].delta.content or "" for c in answer if c.choices)
    assert text == "Paris is sunny; it is 10:00 in Oslo."
    assert [r["tool_use_id"] for r in tool_results(upstream)] == ["toolu_a", "toolu_b"]


def test_tool_choice_none_reaches_the_model(client: openai.OpenAI,
                                            upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("I will answer without tools."))
    completion = client.chat.completions.create(model="sonnet", messages=ASK, tools=[WEATHER],
                                                tool_choice="none")
    assert completion.choices[0].message.content == "I will answer without tools."
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].finish_reason == "stop"
    [seen] = upstream.message_requests()
    assert seen.body["tool_choice"] == {"type": "none"}
    assert [t["name"] for t in seen.body["tools"]] == ["get_weather"]
    assert seen.system_text.endswith("Agent SDK.")  # the client's system prompt: none


def test_a_call_made_despite_tool_choice_none_is_not_shown(client: openai.OpenAI,
                                                         upstream: FakeUpstream) -> None:
    upstream.script(calls(("get_weather", {"city": "Paris"}, "toolu_x")),
                    Reply.text("I will answer without tools."))
    completion = client.chat.completions.create(model="sonnet", messages=ASK, tools=[WEATHER],
                                                tool_choice="none")
    assert completion.choices[0].message.content == "I will answer without tools."
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].finish_reason == "stop"
    [refusal] = tool_results(upstream)  # the CLI's own answer: it has no such tool
    assert refusal["is_error"] is True


@pytest.mark.parametrize(("choice", "sent"), [
    ("required", {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}},
     {"type": "tool", "name": "get_weather"}),
])
def test_tool_choice_required_and_named_reach_the_model(client: openai.OpenAI,
                                                        upstream: FakeUpstream,
                                                        choice: Any, sent: Any) -> None:
    upstream.script(calls(("get_weather", {"city": "Paris"}, f"toolu_{time.time_ns()}")))
    completion = client.chat.completions.create(model="sonnet", messages=ASK, tools=[WEATHER],
                                                tool_choice=choice)
    assert completion.choices[0].finish_reason == "tool_calls"
    body = upstream.message_requests()[-1].body
    assert body["tool_choice"] == sent
    # The API takes a forced tool call only with thinking off.
    assert body["thinking"] == {"type": "disabled"}


def test_unknown_tool_choice_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="sonnet", messages=ASK, tools=[WEATHER],
                                       tool_choice={"type": "function",
                                                    "function": {"name": "launch_rockets"}})
    assert caught.value.param == "tool_choice"


class Weather(pydantic.BaseModel):
    city: str


def test_openai_sdk_parse_helper_with_a_pydantic_tool(client: openai.OpenAI,
                                                      upstream: FakeUpstream) -> None:
    upstream.script(calls(("Weather", {"city": "Lyon"}, "toolu_lyon")))
    completion = client.chat.completions.parse(
        model="sonnet", messages=ASK, tools=[openai.pydantic_function_tool(Weather)])
    [call] = completion.choices[0].message.tool_calls or []
    assert call.function.parsed_arguments == Weather(city="Lyon")  # type: ignore[union-attr]


def test_openai_sdk_stream_helper_with_tools(client: openai.OpenAI,
                                             upstream: FakeUpstream) -> None:
    upstream.script(calls(("get_weather", {"city": "Nice"}, "toolu_nice")))
    done = []
    with client.chat.completions.stream(model="sonnet", messages=ASK, tools=[WEATHER]) as s:
        for event in s:
            if event.type == "tool_calls.function.arguments.done":
                done.append((event.name, event.arguments))
        final = s.get_final_completion()
    assert done == [("get_weather", '{"city": "Nice"}')]
    assert final.choices[0].finish_reason == "tool_calls"


def test_a_tool_call_holds_no_worker(upstream: FakeUpstream, gateways: Gateways) -> None:
    """One worker: while a client runs its tool, another caller is served by it, and the
    results are then answered by it too."""
    gateway = ready(gateways.get(**ONE_WORKER), upstream)
    before = started(gateway)
    try:
        client = gateway.client()
        upstream.script(calls(("get_weather", {"city": "Paris"}, "toolu_held")))
        first = client.chat.completions.create(model="sonnet", messages=ASK, tools=[WEATHER])
        assert first.choices[0].finish_reason == "tool_calls"
        upstream.script(Reply.text("other caller served"))
        other = client.chat.completions.create(model="sonnet", messages=[
            {"role": "user", "content": "unrelated"}])
        assert other.choices[0].message.content == "other caller served"
        upstream.script(Reply.text("sunny"))
        second = client.chat.completions.create(model="sonnet", tools=[WEATHER], messages=[
            *ASK, first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": "toolu_held", "content": "sunny"}])
        assert second.choices[0].message.content == "sunny"
        assert len(gateway.cli_processes()) == 1
        assert started(gateway) == before  # no process was started for the other caller
    finally:
        gateway.close_clients()


def test_completed_tool_rounds_in_the_history_are_replayed_as_real_turns(
        client: openai.OpenAI, upstream: FakeUpstream) -> None:
    def call(cid: str, city: str) -> dict[str, Any]:
        return {"id": cid, "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}

    upstream.script(Reply.text("Both were sunny."))
    completion = client.chat.completions.create(model="sonnet", tools=[WEATHER], messages=[
        {"role": "user", "content": "Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call("c1", "Paris")]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "assistant", "content": "Sunny in Paris."},
        {"role": "user", "content": "And Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [call("c2", "Rome")]},
        {"role": "tool", "tool_call_id": "c2", "content": "sunny too"},
        {"role": "assistant", "content": "Sunny in Rome."},
        {"role": "user", "content": "Summarise."}])
    assert completion.choices[0].message.content == "Both were sunny."
    seen = [m for m in upstream.message_requests()[-1].messages if m["role"] != "system"]
    shape = [(m["role"], [b.get("type") for b in m["content"]] if isinstance(m["content"], list)
              else ["text"]) for m in seen]
    assert shape == [("user", ["text"]), ("assistant", ["tool_use"]), ("user", ["tool_result"]),
                     ("assistant", ["text"]), ("user", ["text"]), ("assistant", ["tool_use"]),
                     ("user", ["tool_result"]), ("assistant", ["text"]), ("user", ["text"])]
