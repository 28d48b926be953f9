"""Anthropic dialect: recorded real streams through our translators, and request mapping."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import StreamEvent

from claude_code_api.catalog import Catalog
from claude_code_api.dialects.anthropic_messages.models import MessagesRequest
from claude_code_api.dialects.anthropic_messages.render import StreamWriter, message_body
from claude_code_api.dialects.anthropic_messages.translate import to_turn
from claude_code_api.engine.turns import TurnTranslator
from claude_code_api.errors import InvalidRequest
from claude_code_api.events import (
    ReasoningDelta,
    ReasoningSignature,
    TextDelta,
    TurnEnd,
    TurnEvent,
    Usage,
)

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "anthropic-messages"


def recorded(name: str) -> list[dict[str, Any]]:
    lines = (RECORDED / name).read_text().splitlines()
    return [json.loads(line[6:]) for line in lines if line.startswith("data: ")]


def replay(name: str) -> list[TurnEvent]:
    """A recorded upstream stream through the CLI-side translator (every tool it calls
    is one of the client's)."""
    stream = [copy.deepcopy(raw) for raw in recorded(name)]
    names = frozenset(str(raw["content_block"]["name"]) for raw in stream
                      if raw.get("content_block", {}).get("type") == "tool_use")
    translator = TurnTranslator(client_tools=names)
    events: list[TurnEvent] = []
    for raw in stream:
        events += translator.feed(StreamEvent(uuid="u", session_id="s", event=raw))
    return events


def final_recorded(name: str) -> dict[str, Any]:
    """What the recorded stream adds up to (the reference)."""
    blocks: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    for raw in recorded(name):
        if raw["type"] == "content_block_start":
            blocks.append(dict(raw["content_block"]))
        elif raw["type"] == "content_block_delta":
            delta = raw["delta"]
            if delta["type"] == "text_delta":
                blocks[raw["index"]]["text"] += delta["text"]
            elif delta["type"] == "input_json_delta":
                partial[raw["index"]] = partial.get(raw["index"], "") + delta["partial_json"]
    for index, text in partial.items():
        try:
            blocks[index]["input"] = json.loads(text)
        except json.JSONDecodeError:
            blocks[index]["input"] = {}
    return {"content": blocks}


def test_basic_stream_round_trips() -> None:
    events = [*replay("basic_response.sse"), TurnEnd("end_turn", Usage(11, 6))]
    body = message_body("claude-x", events)
    assert body["content"] == [{"type": "text", "text": "Hello there!"}]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"]["input_tokens"] == 11


def test_tool_use_stream_round_trips() -> None:
    events = replay("tool_use_response.sse")
    assert isinstance(events[-1], TurnEnd) and events[-1].stop_reason == "tool_use"
    body = message_body("claude-x", events)
    reference = final_recorded("tool_use_response.sse")["content"]
    assert [b["type"] for b in body["content"]] == [b["type"] for b in reference]
    ours, theirs = body["content"][-1], reference[-1]
    assert (ours["id"], ours["name"], ours["input"]) == (theirs["id"], theirs["name"],
                                                         theirs["input"])
    assert body["content"][0]["text"] == reference[0]["text"]


def test_max_tokens_mid_tool_input_ends_cleanly() -> None:
    events = replay("incomplete_partial_json_response.sse")
    assert isinstance(events[-1], TurnEnd) and events[-1].stop_reason == "max_tokens"
    body = message_body("claude-x", events)
    assert body["stop_reason"] == "max_tokens"
    assert body["content"][-1]["type"] == "tool_use"


def test_refusal_keeps_its_stop_reason() -> None:
    events = [*replay("refusal_response.sse"), TurnEnd("refusal")]
    assert message_body("claude-x", events)["stop_reason"] == "refusal"


def test_stream_writer_orders_blocks_and_closes_each() -> None:
    writer = StreamWriter("m")
    frames = writer.start()
    for event in replay("tool_use_response.sse"):
        frames += writer.feed(event)
    names = [name for name, _ in frames]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop")
    indexes = [d["index"] for n, d in frames if n == "content_block_start"]
    assert indexes == list(range(len(indexes)))


def turn(**body: Any) -> Any:
    body.setdefault("model", "sonnet")
    body.setdefault("max_tokens", 100)
    return to_turn(MessagesRequest.model_validate(body), Catalog({}))


def test_system_blocks_and_system_role_messages_form_the_system_prompt() -> None:
    result = turn(system=[{"type": "text", "text": "A."}, {"type": "text", "text": "B."}],
                  messages=[{"role": "user", "content": "hi"},
                            {"role": "system", "content": "Env: linux."},
                            {"role": "user", "content": "there"}])
    assert result.system == "A.\n\nB.\n\nEnv: linux."
    assert result.history == ()
    assert [b["text"] for b in result.prompt] == ["hi", "there"]


def test_thinking_in_history_is_kept_with_its_signature() -> None:
    result = turn(messages=[
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "a"}]},
        {"role": "user", "content": "q2"}])
    assert result.history[1].content[0] == {"type": "thinking", "thinking": "hmm",
                                            "signature": "sig"}


@pytest.mark.parametrize(("thinking", "effort"), [
    ({"type": "enabled", "budget_tokens": 32000}, "high"),
    ({"type": "enabled", "budget_tokens": 8000}, "medium"),
    ({"type": "enabled", "budget_tokens": 1024}, "low"),
    ({"type": "disabled"}, "low"), ({"type": "adaptive"}, None)])
def test_thinking_maps_to_effort(thinking: dict[str, Any], effort: str | None) -> None:
    assert turn(thinking=thinking, messages=[{"role": "user", "content": "x"}]).effort == effort


def test_tool_choice_any_and_named() -> None:
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    assert turn(tools=tools, tool_choice={"type": "any"},
                messages=[{"role": "user", "content": "x"}]).tool_choice.mode == "required"
    with pytest.raises(InvalidRequest) as caught:
        turn(tools=tools, tool_choice={"type": "tool", "name": "g"},
             messages=[{"role": "user", "content": "x"}])
    assert caught.value.param == "tool_choice.name"


ASK = [{"role": "user", "content": "x"}]
PERSON = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


@pytest.mark.parametrize("effort", ["low", "medium", "high", "xhigh", "max"])
def test_output_config_effort_is_the_effort(effort: str) -> None:
    # Explicit effort wins over what a thinking budget would map to.
    assert turn(output_config={"effort": effort}, messages=ASK,
                thinking={"type": "enabled", "budget_tokens": 1024}).effort == effort


@pytest.mark.parametrize("body", [{"output_config": {"format": {"type": "json_schema",
                                                               "schema": PERSON}}},
                                  {"output_format": {"type": "json_schema", "schema": PERSON}}])
def test_both_format_spellings_ask_for_the_schema(body: dict[str, Any]) -> None:
    assert json.loads(turn(messages=ASK, **body).output_schema) == PERSON


@pytest.mark.parametrize(("body", "param"), [
    ({"output_config": {"format": {"type": "json_schema",
                                   "schema": {"type": "array"}}}}, "output_config.format.schema"),
    ({"output_format": {"type": "json_schema", "schema": {"type": 5}}}, "output_format.schema"),
    ({"output_config": {"format": {"type": "json_schema", "schema": PERSON}},
      "output_format": {"type": "json_schema", "schema": PERSON}}, "output_format"),
    ({"mcp_servers": [{"type": "url", "url": "https://mcp.example", "name": "x"}]},
     "mcp_servers"),
    ({"container": "container_1"}, "container"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
    ({"tools": [{"name": "f"}]}, "tools[0].input_schema"),
    ({"output_config": {"task_budget": {"type": "tokens", "total": 20000}}},
     "output_config.task_budget"),
])
def test_fields_we_cannot_honour_are_refused(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        turn(messages=ASK, **body)
    assert caught.value.param == param


def test_advisory_fields_change_nothing() -> None:
    plain = turn(messages=ASK)
    advised = turn(messages=ASK, metadata={"user_id": "u"}, service_tier="auto",
                   context_management={"edits": [{"type": "clear_thinking_20251015",
                                                  "keep": "all"}]},
                   cache_control={"type": "ephemeral"}, inference_geo="us", speed="fast",
                   user_profile_id="p")
    assert advised == plain


def test_sampling_parameters_are_kept_for_the_model() -> None:
    sampled = turn(messages=ASK, temperature=0.2, top_p=0.9, top_k=5)
    assert (sampled.temperature, sampled.top_p, sampled.top_k) == (0.2, 0.9, 5)


def test_disable_parallel_tool_use_asks_for_one_call() -> None:
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    one = turn(tools=tools, messages=ASK,
               tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    many = turn(tools=tools, messages=ASK, tool_choice={"type": "auto"})
    assert one.parallel_tools is False and many.parallel_tools is True
    assert one.system is None  # the upstream request says it: tool_choice


def test_omitted_thinking_keeps_only_the_signature() -> None:
    events: list[TurnEvent] = [ReasoningDelta("secret"), ReasoningSignature("sig"),
                               TextDelta("hi"), TurnEnd("end_turn", Usage())]
    assert message_body("m", events, omit_thinking=True)["content"] == [
        {"type": "thinking", "thinking": "", "signature": "sig"},
        {"type": "text", "text": "hi"}]
    assert message_body("m", events)["content"][0]["thinking"] == "secret"
