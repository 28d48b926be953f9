"""Responses tools of every type: what Claude is offered, and what the client gets back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from claude_code_api.catalog import Catalog
from claude_code_api.dialects.openai_responses.models import ResponsesRequest
from claude_code_api.dialects.openai_responses.reasoning import seal, unseal
from claude_code_api.dialects.openai_responses.render import ResponseWriter, collect
from claude_code_api.dialects.openai_responses.tools import client_tools
from claude_code_api.dialects.openai_responses.translate import to_turn
from claude_code_api.errors import InvalidRequest, Unsupported
from claude_code_api.events import (
    ReasoningDelta,
    ReasoningSignature,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    TurnEnd,
    TurnEvent,
)
from claude_code_api.schemas import MAX_TOOL_NAME
from tests.openapi import validate

CODEX = json.loads((Path(__file__).parent.parent / "fixtures" / "codex" / "request.json")
                   .read_text())
CATALOG = Catalog({"gpt-5.3-codex": "sonnet"})
STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


def request(**body: Any) -> ResponsesRequest:
    body.setdefault("model", "sonnet")
    body.setdefault("input", "hi")
    return ResponsesRequest.model_validate(body)


def fn(name: str, **kw: Any) -> dict[str, Any]:
    return {"type": "function", "name": name,
            "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}, **kw}


def space(name: str, *tools: dict[str, Any]) -> dict[str, Any]:
    return {"type": "namespace", "name": name, "description": f"{name} tools",
            "tools": list(tools)}


def write(req: ResponsesRequest, events: list[TurnEvent]) -> list[dict[str, Any]]:
    writer = ResponseWriter(req, "claude-sonnet-5-5", None)
    frames = writer.start()
    for event in events:
        frames += writer.feed(event)
    for frame in frames:  # every frame is one of the SDK's stream events
        STREAM_EVENT.validate_python(frame)
    return frames


def test_codex_tools_offer_its_functions_and_leave_out_web_search() -> None:
    tools = client_tools(ResponsesRequest.model_validate(CODEX))
    assert [s.name for s in tools.specs] == [
        "exec_command", "write_stdin", "update_plan", "apply_patch", "view_image",
        "multi_agent_v1__spawn_agent", "multi_agent_v1__send_input",
        "multi_agent_v1__resume_agent", "multi_agent_v1__wait_agent",
        "multi_agent_v1__close_agent"]
    assert tools.ignored == ("web_search",)
    spawn = tools.target("multi_agent_v1__spawn_agent")
    assert (spawn.kind, spawn.name, spawn.namespace) == ("function", "spawn_agent",
                                                         "multi_agent_v1")
    patch = next(s for s in tools.specs if s.name == "apply_patch")
    assert patch.parameters["required"] == ["input"]
    assert "FREEFORM" in patch.description and "*** Begin Patch" in patch.description
    assert "lark grammar" in patch.description
    assert tools.target("apply_patch").kind == "custom"


def test_names_that_collide_get_distinct_valid_aliases() -> None:
    long_space = "mcp__" + "a_very_long_server_name_" * 3
    req = request(tools=[fn("spawn_agent"), fn("multi_agent_v1__spawn_agent"),
                         space("multi_agent_v1", fn("spawn_agent")),
                         space("other", fn("spawn_agent")),
                         space(long_space, fn("list_files")), space("bad.name", fn("go"))])
    tools = client_tools(req)
    names = [s.name for s in tools.specs]
    assert len(set(names)) == len(names) == 6
    assert names[:2] == ["spawn_agent", "multi_agent_v1__spawn_agent"]  # top level keeps its
    assert all(len(n) <= MAX_TOOL_NAME and n.replace("_", "").replace("-", "").isalnum()
               for n in names)
    back = [(tools.target(n).name, tools.target(n).namespace) for n in names]
    assert back == [("spawn_agent", None), ("multi_agent_v1__spawn_agent", None),
                    ("spawn_agent", "multi_agent_v1"), ("spawn_agent", "other"),
                    ("list_files", long_space), ("go", "bad.name")]
    # A call in a history finds the same name again.
    assert [tools.claude_name(*b) for b in back] == names


def test_two_top_level_tools_of_one_name_are_400() -> None:
    with pytest.raises(InvalidRequest) as caught:
        client_tools(request(tools=[fn("a"), {"type": "custom", "name": "a"}]))
    assert caught.value.param == "tools[1].name"


def test_a_malformed_hosted_tool_is_400_naming_the_field() -> None:
    with pytest.raises(InvalidRequest) as caught:
        client_tools(request(tools=[{"type": "file_search"}]))
    assert caught.value.param == "tools[0].vector_store_ids"
    assert "file_search" in caught.value.message


@pytest.mark.parametrize("choice", [{"type": "web_search_preview"}, {"type": "file_search"},
                                    {"type": "mcp", "server_label": "deepwiki"},
                                    {"type": "image_generation"}, {"type": "shell"}])
def test_tool_choice_requiring_a_hosted_tool_is_400(choice: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_turn(request(tools=[fn("f"), {"type": "web_search"}], tool_choice=choice), CATALOG)
    assert caught.value.param == "tool_choice"
    assert f"'{choice['type']}'" in caught.value.message


@pytest.mark.parametrize(("choice", "param"), [
    ({"type": "function"}, "tool_choice"), ({"type": "allowed_tools"}, "tool_choice"),
    ({"type": "bogus"}, "tool_choice.type")])
def test_incomplete_or_unknown_tool_choices_are_400(choice: dict[str, Any],
                                                    param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_turn(request(tools=[fn("f")], tool_choice=choice), CATALOG)
    assert caught.value.param == param and "hosted" not in caught.value.message


def test_required_with_only_hosted_tools_is_400() -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_turn(request(tools=[{"type": "web_search"}], tool_choice="required"), CATALOG)
    assert caught.value.param == "tool_choice" and "web_search" in caught.value.message


def test_a_custom_tool_in_a_namespace_is_called_with_its_namespace() -> None:
    req = request(tools=[space("edits", {"type": "custom", "name": "patch"})])
    frames = write(req, [ToolCallStart(0, "toolu_e", "edits__patch"),
                         ToolCallDelta(0, '{"input": "+x"}'), TurnEnd("tool_use")])
    [item] = frames[-1]["response"]["output"]
    validate(item, "CustomToolCall")
    assert (item["type"], item["name"], item["namespace"], item["input"]) == (
        "custom_tool_call", "patch", "edits", "+x")


def test_tool_choice_names_custom_and_namespaced_tools() -> None:
    tools = [fn("f"), {"type": "custom", "name": "patch"}, space("ns", fn("g"))]
    turn = to_turn(request(tools=tools, tool_choice={"type": "custom", "name": "patch"}),
                   CATALOG)
    assert (turn.tool_choice.mode, turn.tool_choice.name) == ("named", "patch")
    turn = to_turn(request(tools=tools, tool_choice={"type": "function", "name": "g"}),
                   CATALOG)
    assert turn.tool_choice.name == "ns__g"
    with pytest.raises(InvalidRequest):
        to_turn(request(tools=tools, tool_choice={"type": "custom", "name": "f"}), CATALOG)


def test_allowed_tools_narrow_what_claude_is_offered() -> None:
    tools = [fn("f"), fn("h"), space("ns", fn("g"), fn("k")), {"type": "web_search"}]
    turn = to_turn(request(tools=tools, tool_choice={
        "type": "allowed_tools", "mode": "required",
        "tools": [{"type": "function", "name": "f"}, {"type": "namespace", "name": "ns"},
                  {"type": "web_search"}]}), CATALOG)
    assert [t.name for t in turn.tools] == ["f", "ns__g", "ns__k"]
    assert turn.tool_choice.mode == "required"
    with pytest.raises(InvalidRequest):
        to_turn(request(tools=tools, tool_choice={
            "type": "allowed_tools", "mode": "required", "tools": [{"type": "web_search"}]}),
            CATALOG)


def test_history_items_of_every_tool_type() -> None:
    thinking = seal("Let me look at the tests.", "sig-abc")
    req = request(tools=[space("multi_agent_v1", fn("spawn_agent")),
                         {"type": "custom", "name": "apply_patch"}], input=[
        {"role": "user", "content": "fix it"},
        {"type": "reasoning", "summary": [], "encrypted_content": thinking},
        {"type": "function_call", "call_id": "c1", "name": "spawn_agent",
         "namespace": "multi_agent_v1", "arguments": '{"message": "look"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "agent-1"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed",
         "action": {"type": "search", "query": "x"}},
        {"type": "local_shell_call", "id": "ls_1", "call_id": "s1", "status": "completed",
         "action": {"type": "exec", "command": ["ls"], "env": {}}},
        {"type": "local_shell_call_output", "id": "lso_1", "call_id": "s1", "output": "a.py"},
        {"type": "reasoning", "summary": [], "encrypted_content": "gAAAAB-openai-own"},
        {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch",
         "input": "*** Begin Patch\n*** End Patch\n"},
        {"type": "custom_tool_call_output", "call_id": "c2", "output": "Done!"},
    ])
    turn = to_turn(req, CATALOG)
    assert [m.role for m in turn.history] == ["user", "assistant", "user", "assistant"]
    assert list(turn.history[1].content) == [
        {"type": "thinking", "thinking": "Let me look at the tests.", "signature": "sig-abc"},
        {"type": "tool_use", "id": "c1", "name": "multi_agent_v1__spawn_agent",
         "input": {"message": "look"}}]
    assert list(turn.history[3].content) == [
        {"type": "tool_use", "id": "c2", "name": "apply_patch",
         "input": {"input": "*** Begin Patch\n*** End Patch\n"}}]
    assert list(turn.prompt) == [{"type": "tool_result", "tool_use_id": "c2",
                                  "content": "Done!"}]
    assert "ls_1" not in json.dumps([m.content for m in turn.history])


def test_item_references_are_refused() -> None:
    with pytest.raises(Unsupported) as caught:
        to_turn(request(input=[{"role": "user", "content": "a"}, {"id": "msg_1"}]), CATALOG)
    assert caught.value.param == "input[1]"


def test_a_namespaced_call_comes_back_with_its_namespace() -> None:
    req = request(tools=[fn("spawn_agent"), space("multi_agent_v1", fn("spawn_agent"))])
    frames = write(req, [ToolCallStart(0, "toolu_1", "multi_agent_v1__spawn_agent"),
                         ToolCallDelta(0, '{"x": "1"}'), ToolCallStart(1, "toolu_2", "spawn_agent"),
                         ToolCallDelta(1, "{}"), TurnEnd("tool_use")])
    first, second = frames[-1]["response"]["output"]
    validate(first, "FunctionToolCall")
    assert (first["name"], first["namespace"], first["call_id"]) == (
        "spawn_agent", "multi_agent_v1", "toolu_1")
    assert second["name"] == "spawn_agent" and "namespace" not in second
    added = [f["item"] for f in frames if f["type"] == "response.output_item.added"]
    assert added[0]["namespace"] == "multi_agent_v1"


TRICKY = 'line "one"\\\n\ttab é 😀 end\u2028'


def test_a_custom_call_streams_its_input_text_whatever_the_cuts() -> None:
    req = request(tools=[{"type": "custom", "name": "apply_patch"}])
    raw = json.dumps({"input": TRICKY})  # \\uXXXX escapes and a surrogate pair
    events: list[TurnEvent] = [ToolCallStart(0, "toolu_p", "apply_patch")]
    events += [ToolCallDelta(0, raw[i]) for i in range(len(raw))]
    frames = write(req, [*events, TurnEnd("tool_use")])
    deltas = [f for f in frames if f["type"] == "response.custom_tool_call_input.delta"]
    assert "".join(f["delta"] for f in deltas) == TRICKY
    for frame in deltas:
        validate(frame, "ResponseCustomToolCallInputDeltaEvent")
    [done] = [f for f in frames if f["type"] == "response.custom_tool_call_input.done"]
    validate(done, "ResponseCustomToolCallInputDoneEvent")
    assert done["input"] == TRICKY
    [item] = frames[-1]["response"]["output"]
    validate(item, "CustomToolCall")
    assert (item["type"], item["name"], item["call_id"], item["input"]) == (
        "custom_tool_call", "apply_patch", "toolu_p", TRICKY)


def test_a_custom_call_not_shaped_as_input_keeps_claudes_arguments() -> None:
    req = request(tools=[{"type": "custom", "name": "run"}])
    writer = ResponseWriter(req, "m", None)
    final = collect(writer, [ToolCallStart(0, "t", "run"), ToolCallDelta(0, '{"cmd": "ls"}'),
                             TurnEnd("tool_use")])
    assert final["output"][0]["input"] == '{"cmd": "ls"}'


def test_encrypted_reasoning_is_sealed_thinking_that_round_trips() -> None:
    req = request(include=["reasoning.encrypted_content"], store=False)
    frames = write(req, [ReasoningDelta("Tests fail "), ReasoningDelta("because..."),
                         ReasoningSignature("sig-xyz"), TextDelta("Fixed."), TurnEnd("end_turn")])
    reasoning, message = frames[-1]["response"]["output"]
    validate(reasoning, "ReasoningItem")
    assert reasoning["summary"] == []  # no summary was asked for
    assert unseal(reasoning["encrypted_content"]) == {
        "type": "thinking", "thinking": "Tests fail because...", "signature": "sig-xyz"}
    assert message["content"][0]["text"] == "Fixed."
    kinds = [f["type"] for f in frames]
    assert "response.reasoning_summary_text.delta" not in kinds
    # Sent back as the next request's input, Claude gets its thinking block again.
    turn = to_turn(request(input=[{"role": "user", "content": "fix"}, reasoning,
                                  {"role": "assistant", "content": [
                                      {"type": "output_text", "text": "Fixed."}]},
                                  {"role": "user", "content": "thanks"}]), CATALOG)
    assert turn.history[1].content[0]["signature"] == "sig-xyz"


def test_a_summary_request_shows_the_thinking_as_summary() -> None:
    req = request(reasoning={"effort": "low", "summary": "auto"})
    frames = write(req, [ReasoningDelta("hmm"), TextDelta("ok"), TurnEnd("end_turn")])
    reasoning = frames[-1]["response"]["output"][0]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "hmm"}]
    assert "encrypted_content" not in reasoning
    assert frames[-1]["response"]["reasoning"] == {"effort": "low", "summary": "auto"}


@pytest.mark.parametrize("content", [None, "", "cca1.", "cca1.!!!", "cca1.bm90IGpzb24",
                                     seal("x", "")])
def test_unseal_drops_what_it_did_not_write(content: str | None) -> None:
    assert unseal(content) is None


def test_the_response_echoes_every_tool() -> None:
    req = ResponsesRequest.model_validate(CODEX)
    final = collect(ResponseWriter(req, "m", None), [TextDelta("hi"), TurnEnd("end_turn")])
    assert [t["type"] for t in final["tools"]] == [t["type"] for t in CODEX["tools"]]
    assert final["store"] is False


def test_tool_outputs_keep_text_as_text_and_images_as_image_blocks() -> None:
    turn = to_turn(request(input=[
        {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "b", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "a", "output": [
            {"type": "input_text", "text": "one "}, {"type": "input_text", "text": "two"}]},
        {"type": "function_call_output", "call_id": "b", "output": [
            {"type": "input_image", "image_url": "https://example.com/a.png"}]}]), CATALOG)
    first, second = turn.prompt
    assert first["content"] == "one two"
    assert second["content"][0]["source"]["url"] == "https://example.com/a.png"
    with pytest.raises(Unsupported) as caught:
        to_turn(request(input=[
            {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "a",
             "output": [{"type": "input_file", "file_id": "file_1"}]}]), CATALOG)
    assert caught.value.param == "input[1].output[0]"
