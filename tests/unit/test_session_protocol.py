"""The WebSocket protocol of live sessions: client messages parsed or refused naming
the field, and the CLI's messages (as the SDK gives them) turned into ours."""

from __future__ import annotations

import json
from typing import Any

import pytest
from claude_agent_sdk import (
    AssistantMessage,
    ResultMessage,
    StreamEvent,
    SystemMessage,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)

from claude_code_api.engine.live import message_json
from claude_code_api.errors import BudgetExceeded, InvalidRequest, UpstreamError
from claude_code_api.events import Usage
from claude_code_api.sessions.protocol import (
    ErrorFrame,
    Interrupt,
    ResultFrame,
    UserTurn,
    cli_frame,
    parse_client,
)


def test_a_user_turn_and_an_interrupt_are_parsed() -> None:
    turn = parse_client('{"type": "user", "content": "hi"}')
    assert isinstance(turn, UserTurn) and turn.blocks() == "hi"
    blocks = [{"type": "text", "text": "look"},
              {"type": "image", "source": {"type": "url", "url": "https://x/a.png"}}]
    turn = parse_client(json.dumps({"type": "user", "content": blocks, "extra": 1}))
    assert isinstance(turn, UserTurn) and turn.blocks() == blocks  # passed on as sent
    assert isinstance(parse_client('{"type": "interrupt"}'), Interrupt)


@pytest.mark.parametrize(("text", "param", "words"), [
    ('{"type": "user", "content": ""}', "content", "non-empty string"),
    ('{"type": "user", "content": 3}', "content", "non-empty string"),
    ('{"type": "user", "content": [{"type": "text"}, {"text": "x"}]}', "content[1].type",
     "Field required"),
    ('{"type": "user", "content": [{"type": ""}]}', "content[0].type", "at least 1"),
    ('{"type": "user"}', "content", "Field required"),
    ('{"type": "hello"}', "type", "unknown message type 'hello'"),
    ('{"type": 5}', "type", "unknown message type 5"),
    ('{"content": "x"}', "type", "every message has a `type`"),
    ('["user"]', None, "messages are JSON objects"),
    ("{nope", None, "messages are JSON objects"),
    ('{"type": "user", "content": "\\ud800"}', "content", "cannot be encoded"),
])
def test_a_bad_client_message_is_refused_naming_the_field(text: str, param: str | None,
                                                         words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_client(text)
    assert caught.value.param == param
    assert words in caught.value.message


def frame(message: Any) -> dict[str, Any]:
    """What the client receives for one message of the CLI."""
    made = cli_frame(message_json(message))
    assert made is not None
    return made.model_dump(mode="json")


def test_an_assistant_message_is_ours_whatever_the_sdk_adds() -> None:
    message = AssistantMessage(
        content=[TextBlock("hello"), ThinkingBlock("hmm", "sig"),
                 ToolUseBlock("tu_1", "Write", {"file_path": "a.txt"})],
        model="claude-sonnet-4-5", parent_tool_use_id=None, usage={"output_tokens": 3},
        message_id="msg_1", session_id="cli-session", uuid="u-1")
    assert frame(message) == {
        "type": "assistant", "model": "claude-sonnet-4-5", "parent_tool_use_id": None,
        "error": None, "stop_reason": None,
        "content": [{"type": "text", "text": "hello"},
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "tool_use", "id": "tu_1", "name": "Write",
                     "input": {"file_path": "a.txt"}}]}


def test_tool_results_stream_events_and_system_notices() -> None:
    user = UserMessage(content=[ToolResultBlock("tu_1", "done", False)], uuid="u-2",
                       tool_use_result={"type": "create"})
    assert frame(user) == {"type": "user", "parent_tool_use_id": None,
                           "tool_use_result": {"type": "create"},
                           "content": [{"type": "tool_result", "tool_use_id": "tu_1",
                                        "content": "done", "is_error": False}]}
    event = {"type": "content_block_delta", "index": 0,
             "delta": {"type": "text_delta", "text": "he"}}
    assert frame(StreamEvent("u-3", "cli-session", event)) == {
        "type": "stream_event", "event": event, "parent_tool_use_id": None}
    init = SystemMessage("init", {"type": "system", "subtype": "init", "cwd": "/home/me/ws",
                                  "model": "claude-sonnet-4-5", "tools": ["Read"],
                                  "mcp_servers": [{"name": "docs", "status": "connected"}],
                                  "permissionMode": "default", "plugins": [{"path": "/x"}],
                                  "session_id": "cli-session"})
    assert frame(init) == {"type": "system", "subtype": "init", "model": "claude-sonnet-4-5",
                           "tools": ["Read"], "permission_mode": "default",
                           "mcp_servers": [{"name": "docs", "status": "connected"}]}


def test_a_result_carries_the_turns_cost_and_usage() -> None:
    result = ResultMessage(
        subtype="success", duration_ms=20, duration_api_ms=15, is_error=False, num_turns=1,
        session_id="cli-session", stop_reason="end_turn", total_cost_usd=0.0123,
        usage={"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 2,
               "server_tool_use": {"web_search_requests": 0}},
        result="hi", uuid="u-4", api_error_status=None)
    sent = frame(result)
    assert "session_id" not in sent and "uuid" not in sent
    assert (sent["total_cost_usd"], sent["result"], sent["is_error"]) == (0.0123, "hi", False)
    parsed = cli_frame(message_json(result))
    assert isinstance(parsed, ResultFrame)
    assert parsed.turn_usage() == Usage(10, 4, 2, 0)


def test_unknown_kinds_are_left_out_and_a_changed_known_one_fails_loudly() -> None:
    assert cli_frame({"type": "rate_limit_event", "info": {}}) is None
    kept = cli_frame({"type": "assistant", "model": "m", "content": [
        {"type": "text", "text": "a"}, {"type": "some_future_block", "x": 1}]})
    assert kept is not None and kept.model_dump()["content"] == [{"type": "text", "text": "a"}]
    with pytest.raises(UpstreamError, match="cannot read"):
        cli_frame({"type": "result", "subtype": "success"})  # its fields renamed away


def test_an_error_frame_has_the_errors_type_code_and_retry_after() -> None:
    error = BudgetExceeded("spent")
    error.retry_after = 3
    assert ErrorFrame.of(error).model_dump(mode="json") == {
        "type": "error", "error": {"type": "insufficient_quota", "code": "insufficient_quota",
                                   "message": "spent", "param": None, "retry_after": 3}}
