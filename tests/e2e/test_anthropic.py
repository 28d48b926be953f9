"""Anthropic Messages end to end: official anthropic client -> gateway -> real CLI -> fake."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from claude_code_api.engine.launch import bundled_cli
from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Text, Thinking, ToolUse
from tests.conftest import Gateway, lazy_import

if TYPE_CHECKING:
    import anthropic
else:
    anthropic = lazy_import("anthropic")

pytestmark = pytest.mark.e2e

ASK = [{"role": "user", "content": "Hello?"}]
WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}


@pytest.fixture
def claude(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key="sk-any", max_retries=0,
                             timeout=60) as client:
        yield client


def test_create_returns_a_message(claude: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("Hi there!", input_tokens=12, output_tokens=3))
    message = claude.messages.create(model="claude-sonnet-5-5", max_tokens=256,
                                     system="Be brief.", messages=ASK)  # type: ignore[arg-type]
    assert message.type == "message" and message.role == "assistant"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "Hi there!"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.model == "claude-sonnet-5-5"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 3)
    seen = upstream.message_requests()[-1]
    assert "Be brief." in seen.system_text
    assert seen.body["max_tokens"] == 256


def test_stream_helper_accumulates_thinking_text_and_signature(
        claude: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.script(Reply(blocks=[Thinking("Let me see.", signature="sig-xyz"),
                                  Text("The answer is 4.")]))
    texts: list[str] = []
    with claude.messages.stream(model="sonnet", max_tokens=256,
                                messages=[{"role": "user", "content": "2+2"}]) as stream:
        for text in stream.text_stream:
            texts.append(text)
        final = stream.get_final_message()
    assert "".join(texts) == "The answer is 4."
    assert len(texts) > 1
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "Let me see."  # type: ignore[union-attr]
    assert final.content[0].signature == "sig-xyz"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"


def test_raw_stream_event_order(gateway: Gateway, upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("one two"))
    names: list[str] = []
    with httpx.stream("POST", gateway.url + "/v1/messages", timeout=60, json={
            "model": "sonnet", "max_tokens": 64, "stream": True, "messages": ASK}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event: "):
                names.append(line[7:])
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}


def test_tool_use_round_trip(claude: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.script(Reply(blocks=[Text("Checking."), ToolUse(
        "get_weather", {"city": "Oslo"}, id="toolu_o1")], stop_reason="tool_use"),
        Reply.text("Oslo is cold."))
    first = claude.messages.create(model="sonnet", max_tokens=256, tools=[WEATHER],  # type: ignore[list-item]
                                   messages=[{"role": "user", "content": "Weather in Oslo?"}])
    assert first.stop_reason == "tool_use"
    tool_use = first.content[-1]
    assert tool_use.type == "tool_use"
    assert (tool_use.id, tool_use.name, tool_use.input) == ("toolu_o1", "get_weather",
                                                            {"city": "Oslo"})
    second = claude.messages.create(model="sonnet", max_tokens=256, tools=[WEATHER],  # type: ignore[list-item]
                                    messages=[
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True)
                                          for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_o1",
                                      "content": "-3C"}]}])
    assert second.content[0].text == "Oslo is cold."  # type: ignore[union-attr]
    last_user = [m for m in upstream.message_requests()[-1].messages if m["role"] == "user"][-1]
    assert last_user["content"][0]["tool_use_id"] == "toolu_o1"


def test_streamed_tool_use_input_is_accumulated(claude: anthropic.Anthropic,
                                                upstream: FakeUpstream) -> None:
    upstream.script(Reply(blocks=[ToolUse("get_weather",
                                          {"city": "Bergen, Norway"}, id="toolu_b")],
                          stop_reason="tool_use"))
    with claude.messages.stream(model="sonnet", max_tokens=64, tools=[WEATHER],  # type: ignore[list-item]
                                messages=[{"role": "user", "content": "Bergen?"}]) as stream:
        final = stream.get_final_message()
    assert final.content[0].input == {"city": "Bergen, Norway"}  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"


def test_count_tokens(claude: anthropic.Anthropic) -> None:
    small = claude.messages.count_tokens(model="sonnet", messages=ASK)  # type: ignore[arg-type]
    large = claude.messages.count_tokens(model="sonnet", messages=[  # type: ignore[arg-type]
        {"role": "user", "content": "word " * 2000}])
    assert 0 < small.input_tokens < 50
    assert 1000 < large.input_tokens < 5000


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    return dict(body["error"])


@pytest.mark.parametrize(("body", "status", "kind"), [
    ({"model": "sonnet", "messages": ASK}, 400, "invalid_request_error"),  # no max_tokens
    ({"model": "gpt-4-turbo", "max_tokens": 5, "messages": ASK}, 404, "not_found_error"),
    ({"model": "sonnet", "max_tokens": 5, "messages": [
        {"role": "assistant", "content": "prefill"}]}, 400, "invalid_request_error"),
])
def test_errors_in_anthropic_shape(gateway: Gateway, body: dict[str, Any], status: int,
                                   kind: str) -> None:
    error = error_of(httpx.post(gateway.url + "/v1/messages", json=body, timeout=30), status)
    assert error["type"] == kind


def test_malformed_json_is_an_anthropic_400(gateway: Gateway) -> None:
    response = httpx.post(gateway.url + "/v1/messages", content=b"{oops", timeout=30,
                          headers={"content-type": "application/json"})
    assert "JSON" in error_of(response, 400)["message"]


def test_upstream_overload_is_529(claude: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.script(Reply.error(529, "overloaded_error"))
    with pytest.raises(anthropic.APIStatusError) as caught:
        claude.messages.create(model="sonnet", max_tokens=16, messages=ASK)  # type: ignore[arg-type]
    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_upstream_rate_limit_is_429_with_retry_after(gateway: Gateway,
                                                     upstream: FakeUpstream) -> None:
    upstream.script(Reply.error(429, "rate_limit_error"))
    response = httpx.post(gateway.url + "/v1/messages", timeout=30, json={
        "model": "sonnet", "max_tokens": 16, "messages": ASK})
    assert error_of(response, 429)["type"] == "rate_limit_error"
    assert int(response.headers["retry-after"]) > 0


def test_an_error_after_the_first_byte_is_an_error_event(gateway: Gateway,
                                                         upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("partial answer here", fail_after_deltas=1),
                    Reply.text("other answer"))
    frames: list[tuple[str, dict[str, Any]]] = []
    with httpx.stream("POST", gateway.url + "/v1/messages", timeout=60, json={
            "model": "sonnet", "max_tokens": 64, "stream": True, "messages": ASK}) as response:
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                frames.append((name, json.loads(line[6:])))
    assert frames[-1][0] == "error"
    assert frames[-1][1]["type"] == "error"
    assert "broke off" in frames[-1][1]["error"]["message"]


def test_images_reach_claude(claude: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    png = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4DwABAQEABRjYTgAAAABJ"
           "RU5ErkJggg==")
    upstream.script(Reply.text("A pixel."))
    claude.messages.create(model="sonnet", max_tokens=32, messages=[{"role": "user", "content": [  # type: ignore[list-item]
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": png}},
        {"type": "text", "text": "What is it?"}]}])
    blocks = [b for m in upstream.message_requests()[-1].messages if m["role"] == "user"
              for b in m["content"] if isinstance(b, dict) and b.get("type") == "image"]
    assert blocks and blocks[0]["source"]["data"] == png


def test_claude_code_itself_is_a_client(gateway: Gateway, upstream: FakeUpstream,
                                        tmp_path: Path) -> None:
    """The real CLI, pointed at the gateway, gets its answer from the gateway's own CLI."""
    upstream.script(Reply.text("Hello from the inner Claude."))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "CLAUDE"))}
    env.update({"ANTHROPIC_BASE_URL": gateway.url, "ANTHROPIC_API_KEY": "sk-outer",
                "CLAUDE_CONFIG_DIR": str(tmp_path / "outer-config"),
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "CLAUDE_CODE_MAX_RETRIES": "0"})
    done = subprocess.run([str(bundled_cli()), "-p", "Say hello to the gateway",
                           "--output-format", "json"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == "Hello from the inner Claude."
    inner = upstream.message_requests()[-1]
    assert "Say hello to the gateway" in inner.last_user_text()
    offered = {t["name"] for t in inner.body.get("tools", [])}
    assert "Bash" in offered  # the outer CLI's tools, offered as client tools


def test_models_list_in_anthropic_shape(claude: anthropic.Anthropic) -> None:
    ids = [m.id for m in claude.models.list()]
    assert "claude-sonnet-5-5" in ids and "sonnet" in ids
