"""The upstream relay: how it rewrites a CLI's call for a turn, and what it forwards."""

from __future__ import annotations

import asyncio
import copy
import json
import os
from typing import Any

import httpx
import psutil
import pytest
from pydantic import SecretStr

from claude_code_api.engine.credentials import Credentials
from claude_code_api.engine.relay import (
    STRUCTURED_OUTPUT,
    SYSTEM_PLACEHOLDER,
    Lane,
    Relay,
    Shape,
    rewrite,
    rewrite_raw,
)
from claude_code_api.events import ToolChoice, ToolSpec
from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Text, ToolUse

WEATHER = ToolSpec("get_weather", "Weather for a city",
                   {"type": "object", "properties": {"city": {"type": "string"}}}, "sig")


def cli_body(**extra: Any) -> dict[str, Any]:
    """A call as the bundled CLI (2.1.332) makes it in chat mode (recorded shape)."""
    body: dict[str, Any] = {
        "model": "claude-sonnet-5-5",
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332.bd3;"},
            {"type": "text", "text": "You are a Claude agent, built on Anthropic's Claude "
                                     "Agent SDK.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": SYSTEM_PLACEHOLDER, "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "PLACEHOLDER"}]},
            {"role": "system", "content": [{"type": "text", "text": "# Environment\n..."}],
             "output_config": {"effort": "medium"}},
        ],
        "max_tokens": 128000,
        "thinking": {"type": "adaptive", "display": "updates"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "medium"},
        "stream": True,
    }
    body.update(extra)
    return body


def lane_for(shape: Shape, content: list[dict[str, Any]] | None = None) -> tuple[Lane, str]:
    lane = Lane("s", "http://127.0.0.1:1/w/s")
    lane.begin(shape)
    marker = lane.placeholder(content or [{"type": "text", "text": "What is 6*7?"}])
    return lane, marker


def rewritten(shape: Shape, content: list[dict[str, Any]] | None = None,
              **extra: Any) -> dict[str, Any]:
    lane, marker = lane_for(shape, content)
    body = cli_body(**extra)
    body["messages"][0]["content"][0]["text"] = marker
    return rewrite(copy.deepcopy(body), lane)


def test_the_system_prompt_is_the_turns_and_the_cli_header_stays() -> None:
    body = rewritten(Shape(system="You are a pirate."))
    texts = [b["text"] for b in body["system"]]
    assert texts[0].startswith("x-anthropic-billing-header")
    assert texts[2] == "You are a pirate."
    assert rewritten(Shape())["system"] == cli_body()["system"][:2]  # no empty block


def test_the_client_content_replaces_the_placeholder_and_cli_notes_go() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "iVBORw0KGgo="}}
    body = rewritten(Shape(), [{"type": "text", "text": "Look @/etc/passwd"}, image])
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "Look @/etc/passwd"}, image]}]


def test_earlier_turns_go_before_the_first_message() -> None:
    lane, marker = lane_for(Shape())
    lane.prefix = [{"role": "user", "content": [{"type": "text", "text": f"q{i}"}]}
                   if i % 2 == 0 else
                   {"role": "assistant", "content": [{"type": "text", "text": f"a{i}"}]}
                   for i in range(200)]
    body = cli_body()
    body["messages"][0]["content"][0]["text"] = marker
    out = rewrite(body, lane)
    assert len(out["messages"]) == 201
    assert out["messages"][0]["content"][0]["text"] == "q0"
    assert out["messages"][-1]["content"][0]["text"] == "What is 6*7?"


def test_limits_effort_and_stop_sequences() -> None:
    body = rewritten(Shape(max_tokens=300, effort="low", stop=("END",)))
    assert body["max_tokens"] == 300
    assert body["output_config"] == {"effort": "low"}
    assert body["stop_sequences"] == ["END"]
    # A fixed thinking budget stays below max_tokens; a tiny limit turns thinking off.
    fixed = {"type": "enabled", "budget_tokens": 31999}
    assert rewritten(Shape(max_tokens=5000), thinking=dict(fixed))["thinking"][
        "budget_tokens"] == 4999
    assert rewritten(Shape(max_tokens=300), thinking=dict(fixed))["thinking"] == {
        "type": "disabled"}


def test_effort_is_set_only_where_the_cli_sent_one() -> None:
    body = rewritten(Shape(effort="high"), output_config=None)
    assert "output_config" not in body or body["output_config"] is None


def test_sampling_turns_thinking_off_unless_reasoning_was_asked_for() -> None:
    body = rewritten(Shape(temperature=0.2, top_p=0.9, top_k=5))
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.2, 0.9, 5)
    assert body["thinking"] == {"type": "disabled"}
    assert "context_management" not in body and "output_config" not in body
    reasoning = rewritten(Shape(temperature=0.2, effort="high"))
    assert "temperature" not in reasoning
    assert reasoning["thinking"]["type"] == "adaptive"


def test_client_tools_and_tool_choice() -> None:
    body = rewritten(Shape(tools=(WEATHER,)))
    assert body["tools"] == [{"name": "get_weather", "description": "Weather for a city",
                              "input_schema": WEATHER.parameters}]
    assert "tool_choice" not in body
    none = rewritten(Shape(tools=(WEATHER,), tool_choice=ToolChoice("none")))
    assert none["tool_choice"] == {"type": "none"}
    named = rewritten(Shape(tools=(WEATHER,), tool_choice=ToolChoice("named", "get_weather")))
    assert named["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert named["thinking"] == {"type": "disabled"}
    one = rewritten(Shape(tools=(WEATHER,), parallel_tools=False))
    assert one["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_structured_output_is_a_forced_tool_with_the_clients_schema() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}
    body = rewritten(Shape(output_schema=json.dumps(schema)))
    [tool] = body["tools"]
    assert (tool["name"], tool["input_schema"]) == (STRUCTURED_OUTPUT, schema)
    assert body["tool_choice"] == {"type": "tool", "name": STRUCTURED_OUTPUT}
    # With reasoning asked for, the call is not forced (thinking stays on).
    thinking = rewritten(Shape(output_schema=json.dumps(schema), effort="high"))
    assert "tool_choice" not in thinking and thinking["thinking"]["type"] == "adaptive"


def test_a_call_without_the_system_placeholder_passes_untouched() -> None:
    """The CLI's own start-up check is not a turn."""
    lane, _ = lane_for(Shape(system="S", max_tokens=5))
    body = json.dumps({"model": "m", "max_tokens": 1,
                       "messages": [{"role": "user", "content": "Hi"}]}).encode()
    assert rewrite_raw(body, lane) == body
    turn = json.dumps(cli_body()).encode()
    assert json.loads(rewrite_raw(turn, lane))["max_tokens"] == 5


@pytest.fixture(scope="module")
def upstream() -> Any:
    fake = FakeUpstream()
    fake.start()
    yield fake
    fake.stop()


async def post(url: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(url + "/v1/messages?beta=true", json=body,
                                 headers={"x-api-key": "sk-test", "anthropic-version": "x"})


async def test_the_relay_listens_on_loopback_and_needs_a_lane_secret(
        upstream: FakeUpstream) -> None:
    relay = Relay(upstream.url)
    await relay.start()
    try:
        lane = relay.open_lane()
        listening = [c.laddr for c in psutil.Process(os.getpid()).net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == relay.port]
        assert [a.ip for a in listening] == ["127.0.0.1"]
        base = f"http://127.0.0.1:{relay.port}"
        seen = len(upstream.requests)
        for url in (base + "/w/wrong-secret", base + "/v1", base + "/w/"):
            assert (await post(url, {"model": "m", "messages": []})).status_code == 404
        async with httpx.AsyncClient() as client:
            other = await client.post(lane.url + "/v1/complete", json={})
        assert other.status_code == 404  # only the Messages API is forwarded
        assert len(upstream.requests) == seen
        answer = await post(lane.url, {"model": "m", "max_tokens": 5, "stream": True,
                                       "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200 and '"text": "Hello"' in answer.text
        assert upstream.requests[-1].credential == "sk-test"  # the CLI's own credential
        relay.close_lane(lane)
        assert (await post(lane.url, {"model": "m", "messages": []})).status_code == 404
    finally:
        await relay.close()


async def test_after_client_tool_calls_the_clis_next_call_is_held(
        upstream: FakeUpstream) -> None:
    """The CLI answers a tool it does not have itself and calls again: that call never
    reaches the upstream; it waits until the gateway starts the next turn."""
    relay = Relay(upstream.url)
    await relay.start()
    try:
        lane = relay.open_lane()
        lane.begin(Shape(tools=(WEATHER,)))
        upstream.reset()
        upstream.script(Reply(blocks=[Text("Checking."), ToolUse("get_weather", {"c": "P"})],
                              stop_reason="tool_use"))
        body = {"model": "m", "max_tokens": 50, "stream": True,
                "system": [{"type": "text", "text": SYSTEM_PLACEHOLDER}],
                "messages": [{"role": "user", "content": "hi"}]}
        first = await post(lane.url, body)
        assert '"tool_use"' in first.text and lane.halted
        assert [c.output_tokens for c in lane.calls] == [5]
        assert not lane.blocked.is_set()
        held = asyncio.create_task(post(lane.url, body))
        await asyncio.sleep(0.3)
        assert not held.done() and len(upstream.message_requests()) == 1
        assert lane.blocked.is_set()  # the CLI has read the response: it called again
        lane.begin(Shape())
        assert (await held).status_code == 400 and not lane.blocked.is_set()
        assert len(upstream.message_requests()) == 1
    finally:
        await relay.close()


TURN = {"model": "m", "max_tokens": 50, "stream": True,
        "system": [{"type": "text", "text": SYSTEM_PLACEHOLDER}],
        "messages": [{"role": "user", "content": "[claude-code-api:turn:0]"}]}


async def test_an_armed_call_waits_for_its_turn_and_a_withdrawn_one_is_refused(
        upstream: FakeUpstream) -> None:
    relay = Relay(upstream.url)
    await relay.start()
    try:
        upstream.reset()
        lane = relay.open_lane()
        # A turn's call that nobody armed for (a withdrawn turn's, late): refused now.
        assert (await post(lane.url, TURN)).status_code == 400
        lane.arm("[claude-code-api:turn:0]")
        armed = asyncio.create_task(post(lane.url, TURN))
        await asyncio.wait_for(lane.held.wait(), 10)
        await asyncio.sleep(0.1)
        assert not armed.done() and upstream.message_requests() == []
        lane.content["[claude-code-api:turn:0]"] = [{"type": "text", "text": "Real question"}]
        lane.begin(Shape(system="Be brief.", max_tokens=99))
        assert (await armed).status_code == 200 and not lane.held.is_set()
        (seen,) = upstream.message_requests()
        assert seen.body["max_tokens"] == 99 and seen.last_user_text() == "Real question"
        lane.end()
        lane.arm("[claude-code-api:turn:1]")
        withdrawn = asyncio.create_task(post(lane.url, TURN))
        await asyncio.wait_for(lane.held.wait(), 10)
        lane.disarm()
        assert (await withdrawn).status_code == 400
        assert len(upstream.message_requests()) == 1
    finally:
        await relay.close()


async def test_an_armed_call_the_cli_gives_up_on_is_no_longer_held(
        upstream: FakeUpstream) -> None:
    relay = Relay(upstream.url)
    await relay.start()
    try:
        lane = relay.open_lane()
        lane.arm("[claude-code-api:turn:0]")
        async with httpx.AsyncClient(timeout=0.5) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(lane.url + "/v1/messages", json=TURN)
        for _ in range(100):
            if not lane.held.is_set():
                break
            await asyncio.sleep(0.02)
        assert not lane.held.is_set()
    finally:
        await relay.close()


FIRST = "sk-ant-api03-relay-first-" + "a" * 20
TOKEN = "sk-ant-oat01-relay-token-" + "b" * 20


async def test_a_refused_call_is_sent_again_with_the_next_credential(
        upstream: FakeUpstream) -> None:
    credentials = Credentials([SecretStr(FIRST), SecretStr(TOKEN)], cooldown=60,
                              rejected_cooldown=600)
    relay = Relay(upstream.url, credentials=credentials)
    await relay.start()
    try:
        upstream.reset()
        upstream.reject[FIRST] = Reply.error(429, "rate_limit_error", "slow down")
        upstream.script(Reply.text("From the token."))
        lane = relay.open_lane()
        stand_in = credentials.items[0].cli_env()["ANTHROPIC_API_KEY"]
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(lane.url + "/v1/messages", json={
                "model": "m", "max_tokens": 5, "stream": True,
                "messages": [{"role": "user", "content": "hi"}]}, headers={
                "x-api-key": stand_in, "anthropic-beta": "claude-code-20250219"})
        assert answer.status_code == 200 and "token." in answer.text
        assert [r.credential for r in upstream.message_requests()] == [FIRST, TOKEN]
        last = upstream.message_requests()[-1]
        assert "x-api-key" not in last.headers
        assert last.headers["anthropic-beta"] == "claude-code-20250219,oauth-2025-04-20"
        assert [c["state"] for c in credentials.status()] == ["rate_limited", "ok"]
        assert credentials.rotations == 1
        assert all(stand_in != r.credential for r in upstream.requests)
    finally:
        await relay.close()
