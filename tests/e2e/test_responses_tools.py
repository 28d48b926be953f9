"""Responses tools of every type, end to end with the official openai client: namespaced
functions, custom (freeform) tools, hosted tools left out, and Codex CLI's own request
carried through a stateless conversation."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import openai
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Text, Thinking, ToolUse
from tests.conftest import Gateway
from tests.e2e.test_images import PNG

pytestmark = pytest.mark.e2e

CODEX = json.loads((Path(__file__).parent.parent / "fixtures" / "codex" / "request.json")
                   .read_text())
CODEX_TOOLS = ["exec_command", "write_stdin", "update_plan", "apply_patch", "view_image",
               "multi_agent_v1__spawn_agent", "multi_agent_v1__send_input",
               "multi_agent_v1__resume_agent", "multi_agent_v1__wait_agent",
               "multi_agent_v1__close_agent"]
PATCH = ('*** Begin Patch\n*** Update File: src/math.py\n@@ def add(a, b):\n'
         '-    return a - b\n+    return a + b\n*** End Patch\n')
SPAWN = {"type": "function", "name": "spawn_agent", "description": "Start a helper",
         "parameters": {"type": "object", "properties": {"message": {"type": "string"}},
                        "required": ["message"]}}
AGENTS = {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents",
          "tools": [SPAWN]}
PATCHER = {"type": "custom", "name": "apply_patch", "description": "Edit files",
           "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "x"'}}


def client_tool_names(upstream: FakeUpstream) -> list[str]:
    """The tools the last upstream request offered Claude (in no particular order)."""
    return sorted(t["name"] for t in upstream.message_requests()[-1].body.get("tools", []))


def blocks(upstream: FakeUpstream, kind: str) -> list[dict[str, Any]]:
    return [b for m in upstream.message_requests()[-1].messages
            if isinstance(m["content"], list) for b in m["content"] if b.get("type") == kind]


def as_input(item: Any) -> dict[str, Any]:
    """An output item as Codex sends it back: without its id and status."""
    data: dict[str, Any] = item.model_dump(exclude_none=True)
    data.pop("id", None)
    data.pop("status", None)
    return data


def test_a_namespaced_function_call_round_trip(client: openai.OpenAI,
                                               upstream: FakeUpstream) -> None:
    upstream.script(Reply(blocks=[ToolUse("multi_agent_v1__spawn_agent",
                                          {"message": "review"}, id="toolu_ns")],
                          stop_reason="tool_use"),
                    Reply.text("The helper is on it."))
    tools: Any = [SPAWN, AGENTS]
    asked = [{"role": "user", "content": "Get a reviewer."}]
    first = client.responses.create(model="sonnet", input=asked,  # type: ignore[arg-type]
                                    tools=tools, store=False)
    # The top-level function and the namespace's one of the same name both reach Claude.
    assert client_tool_names(upstream) == ["multi_agent_v1__spawn_agent",
                                           "spawn_agent"]
    [call] = first.output
    assert call.type == "function_call"
    assert (call.name, call.namespace, call.call_id) == ("spawn_agent", "multi_agent_v1",
                                                         "toolu_ns")
    assert json.loads(call.arguments) == {"message": "review"}
    second = client.responses.create(model="sonnet", tools=tools, store=False, input=[
        *asked, as_input(call),  # type: ignore[list-item]
        {"type": "function_call_output", "call_id": "toolu_ns", "output": "agent-7"}])
    assert second.output_text == "The helper is on it."
    [result] = blocks(upstream, "tool_result")
    assert result["tool_use_id"] == "toolu_ns" and "agent-7" in json.dumps(result["content"])


def test_a_custom_tool_call_round_trip(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply(blocks=[ToolUse("apply_patch", {"input": PATCH},
                                          id="toolu_patch")], stop_reason="tool_use"),
                    Reply.text("Patched."))
    first = client.responses.create(model="sonnet", input="Fix add()",
                                    tools=[PATCHER])  # type: ignore[list-item]
    offered = upstream.message_requests()[-1].body["tools"]
    [patcher] = [t for t in offered if t["name"] == "apply_patch"]
    assert patcher["input_schema"]["required"] == ["input"]
    assert 'start: "x"' in patcher["description"]
    [call] = first.output
    assert call.type == "custom_tool_call"
    assert (call.name, call.input, call.call_id) == ("apply_patch", PATCH, "toolu_patch")
    second = client.responses.create(
        model="sonnet", previous_response_id=first.id, tools=[PATCHER],  # type: ignore[list-item]
        input=[{"type": "custom_tool_call_output", "call_id": "toolu_patch", "output": "Done!"}])
    assert second.output_text == "Patched."
    [result] = blocks(upstream, "tool_result")
    assert result["tool_use_id"] == "toolu_patch" and "Done!" in json.dumps(result["content"])


def test_a_streamed_custom_tool_call(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply(blocks=[ToolUse("apply_patch", {"input": PATCH},
                                          id="toolu_sp")], stop_reason="tool_use"))
    deltas: list[str] = []
    kinds: list[str] = []
    with client.responses.stream(model="sonnet", input="Fix add()",
                                 tools=[PATCHER]) as stream:  # type: ignore[list-item]
        for event in stream:
            kinds.append(event.type)
            if event.type == "response.custom_tool_call_input.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert len(deltas) > 1 and "".join(deltas) == PATCH  # streamed, decoded from JSON
    assert kinds[-3:] == ["response.custom_tool_call_input.done",
                          "response.output_item.done", "response.completed"]
    [call] = final.output
    assert call.type == "custom_tool_call" and call.input == PATCH


def test_hosted_tools_are_left_out_and_named_in_a_header(client: openai.OpenAI,
                                                         gateway: Gateway,
                                                         upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("No search needed."))
    tools: Any = [{"type": "web_search", "external_web_access": False}, SPAWN,
                  {"type": "local_shell"}, {"type": "web_search"},
                  {"type": "file_search", "vector_store_ids": ["vs_1"]},
                  {"type": "code_interpreter", "container": {"type": "auto"}}, AGENTS]
    raw = client.responses.with_raw_response.create(model="sonnet", input="Hi", tools=tools)
    assert raw.headers["x-tools-ignored"] == "web_search,local_shell,file_search,code_interpreter"
    assert raw.parse().output_text == "No search needed."
    assert client_tool_names(upstream) == ["multi_agent_v1__spawn_agent",
                                           "spawn_agent"]
    assert "hosted tools left out" in gateway.log()


@pytest.mark.parametrize("choice", [{"type": "web_search_preview"},
                                    {"type": "mcp", "server_label": "deepwiki"}])
def test_tool_choice_requiring_a_hosted_tool_is_400(client: openai.OpenAI,
                                                    choice: dict[str, Any]) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="sonnet", input="Search", tool_choice=choice,  # type: ignore[arg-type]
                                tools=[{"type": "web_search_preview"}, SPAWN])  # type: ignore[list-item]
    assert caught.value.param == "tool_choice"
    assert choice["type"] in caught.value.message


def test_hosted_tool_items_in_a_history_are_dropped(client: openai.OpenAI,
                                                    upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("Summarised."))
    answer = client.responses.create(model="sonnet", store=False, input=[
        {"role": "user", "content": "What is new?"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed",
         "action": {"type": "search", "query": "news"}},
        {"type": "local_shell_call", "id": "lsh_1", "call_id": "call_sh", "status": "completed",
         "action": {"type": "exec", "command": ["date"], "env": {}}},
        {"type": "local_shell_call_output", "id": "lsh_1", "call_id": "call_sh",
         "output": "Thu"},
        {"type": "message", "role": "assistant", "content": [
            {"type": "output_text", "text": "Nothing much."}]},
        {"role": "user", "content": "Summarise that."}])  # type: ignore[list-item]
    assert answer.output_text == "Summarised."
    seen = upstream.message_requests()[-1]
    turns = [m for m in seen.messages if m["role"] in ("user", "assistant")]
    assert [m["role"] for m in turns] == ["user", "assistant", "user"]
    assert "Nothing much." in json.dumps(turns[1])
    assert "call_sh" not in json.dumps(seen.messages) and "news" not in json.dumps(seen.messages)


def test_codex_default_request_through_a_stateless_conversation(
        client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(
        Reply(blocks=[Thinking("Run the tests first.", signature="sig-1"),
                      ToolUse("exec_command", {"cmd": "pytest -q"},
                              id="toolu_exec")], stop_reason="tool_use"),
        Reply(blocks=[Thinking("add subtracts.", signature="sig-2"),
                      ToolUse("apply_patch", {"input": PATCH}, id="toolu_patch")],
              stop_reason="tool_use"),
        Reply(blocks=[ToolUse("multi_agent_v1__spawn_agent",
                              {"message": "Review the fix"}, id="toolu_spawn")],
              stop_reason="tool_use"),
        Reply(blocks=[Text("Fixed add() and asked a reviewer.")]),
        Reply(blocks=[Text("You're welcome.")]))
    body = copy.deepcopy(CODEX)
    history: list[dict[str, Any]] = list(body.pop("input"))

    def turn(*new: dict[str, Any]) -> list[Any]:
        history.extend(new)
        raw = client.responses.with_raw_response.create(input=history, **body)
        assert raw.headers["x-tools-ignored"] == "web_search"
        events = list(raw.parse())
        assert [e.sequence_number for e in events] == list(range(len(events)))
        assert events[0].type == "response.created" and events[-1].type == "response.completed"
        final = events[-1].response
        assert final.store is False
        done = [e.item for e in events if e.type == "response.output_item.done"]
        assert [i.model_dump() for i in done] == [i.model_dump() for i in final.output]
        history.extend(as_input(item) for item in final.output)
        return list(final.output)

    reasoning, call = turn()
    assert client_tool_names(upstream) == sorted(f"{n}" for n in CODEX_TOOLS)
    assert reasoning.type == "reasoning" and reasoning.encrypted_content
    assert [s.text for s in reasoning.summary] == ["Run the tests first."]  # summary: auto
    assert call.type == "function_call" and call.name == "exec_command"
    assert json.loads(call.arguments) == {"cmd": "pytest -q"}

    _, patch = turn({"type": "function_call_output", "call_id": "toolu_exec",
                     "output": "1 failed: assert add(2, 2) == 4"})
    assert "1 failed" in json.dumps(blocks(upstream, "tool_result"))
    assert patch.type == "custom_tool_call" and patch.name == "apply_patch"
    assert patch.input == PATCH

    [spawn] = turn({"type": "custom_tool_call_output", "call_id": "toolu_patch",
                    "output": "Success. Updated src/math.py"})
    assert "Success. Updated" in json.dumps(blocks(upstream, "tool_result"))
    assert (spawn.type, spawn.name, spawn.namespace) == ("function_call", "spawn_agent",
                                                         "multi_agent_v1")

    [message] = turn({"type": "function_call_output", "call_id": "toolu_spawn",
                      "output": '{"agent_id": "agent-1"}'})
    assert message.type == "message"
    assert message.content[0].text == "Fixed add() and asked a reviewer."

    [thanks] = turn({"type": "message", "role": "user",
                     "content": [{"type": "input_text", "text": "Thanks!"}]})
    assert thanks.content[0].text == "You're welcome."
    seen = upstream.message_requests()[-1]
    results = [b["tool_use_id"] for b in blocks(upstream, "tool_result")]
    assert results == ["toolu_exec", "toolu_patch", "toolu_spawn"]
    assert seen.messages[-1]["role"] == "user"


def test_encrypted_reasoning_sent_back_to_a_replayed_history(
        client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(
        Reply(blocks=[Thinking("Start one helper.", signature="sig-cold"),
                      ToolUse("spawn_agent", {"message": "go"}, id="toolu_c")],
              stop_reason="tool_use"),
        Reply.text("Done."))
    asked: list[Any] = [{"role": "user", "content": "Start a helper."}]
    first = client.responses.create(model="sonnet", input=asked, tools=[SPAWN],  # type: ignore[list-item]
                                    store=False, include=["reasoning.encrypted_content"])
    reasoning, call = first.output
    assert reasoning.type == "reasoning" and reasoning.summary == []  # no summary asked
    assert reasoning.encrypted_content and "sig-cold" not in reasoning.encrypted_content
    # Other instructions: not the conversation the gateway holds, so the history is
    # replayed from the request, reasoning item included.
    second = client.responses.create(
        model="sonnet", instructions="Be brief.", tools=[SPAWN],  # type: ignore[list-item]
        store=False, include=["reasoning.encrypted_content"], input=[
            *asked, as_input(reasoning), as_input(call),
            {"type": "function_call_output", "call_id": "toolu_c", "output": "started"}])
    assert second.output_text == "Done."
    seen = upstream.message_requests()[-1]
    assert "Be brief." in seen.system_text
    [use] = blocks(upstream, "tool_use")
    [result] = blocks(upstream, "tool_result")
    assert (use["id"], result["tool_use_id"], result["content"]) == ("toolu_c", "toolu_c",
                                                                      "started")


def test_a_tool_output_with_an_image_reaches_claude_as_an_image(
        client: openai.OpenAI, upstream: FakeUpstream) -> None:
    viewer: Any = {"type": "function", "name": "view_image", "parameters": {
        "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}
    upstream.script(Reply(blocks=[ToolUse("view_image", {"path": "a.png"},
                                          id="toolu_img")], stop_reason="tool_use"),
                    Reply.text("A single pixel."))
    asked: list[Any] = [{"role": "user", "content": "Look at a.png"}]
    first = client.responses.create(model="sonnet", input=asked, tools=[viewer], store=False)
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    second = client.responses.create(model="sonnet", tools=[viewer], store=False, input=[
        *asked, as_input(first.output[0]),
        {"type": "function_call_output", "call_id": "toolu_img", "output": [
            {"type": "input_text", "text": "a.png:"},
            {"type": "input_image", "image_url": url}]}])
    assert second.output_text == "A single pixel."
    [result] = blocks(upstream, "tool_result")
    content = result["content"]
    assert content[0] == {"type": "text", "text": "a.png:"}
    [image] = [b for b in content if b["type"] == "image"]  # (the CLI may add a note)
    assert base64.b64decode(image["source"]["data"]) == PNG
