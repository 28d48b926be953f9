"""The response cache (off by default): exact repeats answered from memory, per key."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, ToolUse
from tests.conftest import Gateway, keys_cli, team_gateway

pytestmark = pytest.mark.e2e

TTL = 5.0


@pytest.fixture(scope="module")
def team(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Gateway, dict[str, str]]]:
    yield from team_gateway(upstream, tmp_path_factory.mktemp("cache"),
                            {"alice": (), "bob": ()}, cache__enabled="true",
                            cache__ttl_seconds=str(TTL))


def post(gateway: Gateway, body: dict[str, Any], token: str | None = None,
         path: str = "/v1/chat/completions", **headers: str) -> httpx.Response:
    sent = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(gateway.url + path, json=body, headers={**sent, **headers}, timeout=60)


def body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "sonnet", "messages": [{"role": "user", "content": text}], **extra}


def test_identical_request_is_a_hit_with_identical_bytes(gw: Gateway, tokens: dict[str, str],
                                                         upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("computed once"), Reply.text("computed twice"))
    first = post(gw, body("cache me", temperature=0.2), tokens["alice"])
    # Same request, keys in another order and other whitespace: the same canonical body.
    again = httpx.post(gw.url + "/v1/chat/completions", timeout=60,
                       headers={"Authorization": f"Bearer {tokens['alice']}",
                                "content-type": "application/json"},
                       content=json.dumps({"temperature": 0.2, "messages": [
                           {"content": "cache me", "role": "user"}], "model": "sonnet"},
                           indent=2).encode())
    assert first.status_code == again.status_code == 200
    assert first.headers["x-cache"] == "miss" and again.headers["x-cache"] == "hit"
    assert again.content == first.content
    assert again.headers["x-conversation-id"] == first.headers["x-conversation-id"]
    assert again.headers["x-request-id"] != first.headers["x-request-id"]
    assert len(upstream.message_requests()) == 1
    assert upstream.pending == 1  # the second answer was never asked for
    different = post(gw, body("cache me", temperature=0.3), tokens["alice"])
    assert different.headers["x-cache"] == "miss"
    assert different.json()["choices"][0]["message"]["content"] == "computed twice"


def test_streaming_is_cached_separately_and_replayed(gw: Gateway, tokens: dict[str, str],
                                                     upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("streamed answer"))
    first = post(gw, body("stream me", stream=True), tokens["alice"])
    again = post(gw, body("stream me", stream=True), tokens["alice"])
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("miss", "hit")
    assert again.headers["content-type"].startswith("text/event-stream")
    assert again.content == first.content
    assert b"streamed" in first.content and first.content.endswith(b"data: [DONE]\n\n")
    assert len(upstream.message_requests()) == 1


def test_legacy_completions_are_cached(gw: Gateway, upstream: FakeUpstream) -> None:
    upstream.script(Reply.text(" once"), Reply.text(" twice"))
    request = {"model": "sonnet", "prompt": "Cache this", "max_tokens": 8}
    first = post(gw, request, path="/v1/completions")
    again = post(gw, request, path="/v1/completions")
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("miss", "hit")
    assert again.content == first.content and first.json()["choices"][0]["text"] == " once"
    assert len(upstream.message_requests()) == 1


def test_never_across_keys(gw: Gateway, tokens: dict[str, str], upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("for alice"), Reply.text("for bob"), Reply.text("for nobody"))
    alice = post(gw, body("whose answer?"), tokens["alice"])
    bob = post(gw, body("whose answer?"), tokens["bob"])
    anonymous = post(gw, body("whose answer?"))
    assert [r.headers["x-cache"] for r in (alice, bob, anonymous)] == ["miss"] * 3
    assert [r.json()["choices"][0]["message"]["content"] for r in (alice, bob, anonymous)] == \
        ["for alice", "for bob", "for nobody"]
    assert post(gw, body("whose answer?"), tokens["bob"]).json()["choices"][0]["message"][
        "content"] == "for bob"


def test_errors_and_tool_calls_are_not_cached(gw: Gateway, upstream: FakeUpstream) -> None:
    upstream.script(Reply.error(500, "api_error", "boom"), Reply.text("recovered"))
    failed = post(gw, body("flaky"))
    assert failed.status_code >= 500
    assert post(gw, body("flaky")).json()["choices"][0]["message"]["content"] == "recovered"

    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}}}}]
    upstream.script(*(Reply(blocks=[ToolUse("lookup", {"q": q})],
                            stop_reason="tool_use") for q in "ab"))
    calls = [post(gw, body("use the tool", tools=tools)) for _ in range(2)]
    assert [c.headers["x-cache"] for c in calls] == ["miss", "miss"]
    assert [json.loads(c.json()["choices"][0]["message"]["tool_calls"][0]["function"][
        "arguments"]) for c in calls] == [{"q": "a"}, {"q": "b"}]


def test_cache_control_no_cache_and_ttl(gw: Gateway, upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("v1"), Reply.text("v2"), Reply.text("v3"))
    assert post(gw, body("fresh?")).json()["choices"][0]["message"]["content"] == "v1"
    forced = post(gw, body("fresh?"), **{"Cache-Control": "no-cache"})
    assert forced.headers["x-cache"] == "miss"
    assert forced.json()["choices"][0]["message"]["content"] == "v2"
    assert post(gw, body("fresh?")).json()["choices"][0]["message"]["content"] == "v2"
    time.sleep(TTL + 0.5)
    expired = post(gw, body("fresh?"))
    assert expired.headers["x-cache"] == "miss"
    assert expired.json()["choices"][0]["message"]["content"] == "v3"


def test_anthropic_messages_are_cached_and_ledgered(gw: Gateway, tokens: dict[str, str],
                                                    upstream: FakeUpstream) -> None:
    client = gw.anthropic(api_key=tokens["bob"])
    upstream.script(Reply.text("claude once"))
    request: dict[str, Any] = {"model": "sonnet", "max_tokens": 100,
                               "messages": [{"role": "user", "content": "anthropic cache"}]}
    first = client.messages.with_raw_response.create(**request)
    second = client.messages.with_raw_response.create(**request)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    assert second.parse().content[0].text == "claude once"  # type: ignore[union-attr]
    assert second.parse().id == first.parse().id
    usage = keys_cli(Path(gw.env["CLAUDE_CODE__STORE__PATH"]), "usage", "bob", "--json")
    rows = json.loads(usage.stdout)
    assert sum(r["cached_requests"] for r in rows) >= 1
    assert sum(r["requests"] for r in rows) >= 1


def test_a_cached_responses_answer_keeps_the_ignored_tools_header(
        gw: Gateway, tokens: dict[str, str], upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("no search"))
    request = {"model": "sonnet", "input": "cached with a hosted tool",
               "tools": [{"type": "web_search"}]}
    first = post(gw, request, tokens["alice"], path="/v1/responses")
    again = post(gw, request, tokens["alice"], path="/v1/responses")
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("miss", "hit")
    assert first.headers["x-tools-ignored"] == again.headers["x-tools-ignored"] == "web_search"
