"""Legacy completions (POST /v1/completions) end to end: the official openai client's
``completions.create`` -> gateway -> real CLI -> fake upstream."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Seen, content_text
from tests.conftest import Gateway, raw_stream
from tests.openapi import validate

pytestmark = pytest.mark.e2e


def user_text(seen: Seen) -> str:
    users = [m for m in seen.messages if m["role"] == "user"]
    assert len(users) == 1, seen.messages  # a completion is one turn, no history
    return content_text(users[0]["content"])


def test_a_completion_continues_the_prompt_verbatim(client: openai.OpenAI, gateway: Gateway,
                                                    upstream: FakeUpstream) -> None:
    upstream.script(Reply.text(" there lived a fox.\n", input_tokens=12, output_tokens=7,
                               cache_read_input_tokens=3))
    completion = client.completions.create(model="sonnet", prompt="Once upon a time",
                                           max_tokens=40)
    assert completion.object == "text_completion"
    assert completion.id.startswith("cmpl-")
    assert completion.model == "claude-sonnet-5-5"
    assert [(c.index, c.text, c.finish_reason) for c in completion.choices] == [
        (0, " there lived a fox.\n", "stop")]
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens,
            completion.usage.total_tokens) == (15, 7, 22)
    seen = upstream.message_requests()[-1]
    assert user_text(seen) == "Once upon a time"
    assert "text completion engine" in seen.system_text
    assert "no greeting, explanation" in seen.system_text
    assert seen.body["max_tokens"] == 40
    # No thinking: with the few tokens completions get, all of them are for the text.
    assert seen.body["thinking"] == {"type": "disabled"}
    assert seen.body.get("tools", []) == []

    raw = httpx.post(gateway.base_url + "/completions", timeout=60,
                     json={"model": "sonnet", "prompt": "x"}).json()
    validate(raw, "CreateCompletionResponse")
    assert raw["choices"][0]["logprobs"] is None
    assert "conversation_id" not in raw


def test_without_max_tokens_the_answer_is_limited_to_16_tokens(
        client: openai.OpenAI, upstream: FakeUpstream) -> None:
    # OpenAI's documented default for this endpoint; clients that want more say so.
    upstream.script(Reply.text("a b c d", stop_reason="max_tokens"))
    completion = client.completions.create(model="sonnet", prompt="Count:")
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].text == "a b c d"
    assert upstream.message_requests()[-1].body["max_tokens"] == 16


def test_thinking_is_off_and_sampling_reaches_claude(client: openai.OpenAI,
                                                     upstream: FakeUpstream) -> None:
    # A model with a fixed thinking budget (1024 tokens, over max_tokens 16) too.
    upstream.script(Reply.text(" fine"))
    client.completions.create(model="claude-sonnet-4-5", prompt="All", max_tokens=16,
                              temperature=0.3, top_p=0.9)
    body = upstream.message_requests()[-1].body
    assert body["thinking"] == {"type": "disabled"}
    assert (body["temperature"], body["top_p"]) == (0.3, 0.9)


def test_suffix_asks_claude_for_exactly_the_gap(client: openai.OpenAI,
                                                upstream: FakeUpstream) -> None:
    gap = "    return a + b\n"
    upstream.script(Reply.text(gap))
    prefix, suffix = "def add(a, b):\n", "\n\nprint(add(1, 2))\n"
    completion = client.completions.create(model="sonnet", prompt=prefix, suffix=suffix,
                                           max_tokens=64, stop=["\n\n\n"])
    assert completion.choices[0].text == gap  # passed through as Claude wrote it
    seen = upstream.message_requests()[-1]
    assert user_text(seen) == f"<prefix>{prefix}</prefix><suffix>{suffix}</suffix>"
    system = seen.system_text
    assert "fill-in-the-middle" in system
    assert "Reply with only the text that goes in the gap" in system
    assert "Do not repeat the prefix or the suffix" in system
    assert "code fences" in system and "never write the tags" in system

    # The answer is never unwrapped or trimmed: what Claude says is what the client gets.
    upstream.script(Reply.text("```\nx = 1\n```"))
    fenced = client.completions.create(model="sonnet", prompt="", suffix="\nprint(x)\n")
    assert fenced.choices[0].text == "```\nx = 1\n```"
    assert user_text(upstream.message_requests()[-1]) == \
        "<prefix></prefix><suffix>\nprint(x)\n</suffix>"


def test_echo_stop_and_several_prompts(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply.text(" world"))
    echoed = client.completions.create(model="sonnet", prompt="Hello", echo=True,
                                       max_tokens=8)
    assert echoed.choices[0].text == "Hello world"

    upstream.script(Reply.text("first line\nsecond line"))
    stopped = client.completions.create(model="sonnet", prompt="Lines:", stop="\n",
                                        max_tokens=50)
    assert (stopped.choices[0].text, stopped.choices[0].finish_reason) == ("first line",
                                                                           "stop")

    # Several prompts: one choice each, in prompt order, however the turns interleave.
    upstream.responder = lambda seen: Reply.text(f"<{user_text(seen).upper()}>",
                                                 output_tokens=2)
    several = client.completions.create(model="sonnet", prompt=["alpha", "beta", "gamma"],
                                        max_tokens=8)
    assert [(c.index, c.text) for c in several.choices] == [
        (0, "<ALPHA>"), (1, "<BETA>"), (2, "<GAMMA>")]
    assert several.usage is not None and several.usage.completion_tokens == 6
    assert sorted(user_text(s) for s in upstream.message_requests()[-3:]) == [
        "alpha", "beta", "gamma"]


def test_stream_chunks_follow_openai_conventions(gateway: Gateway,
                                                 upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("streaming the rest of it", output_tokens=5))
    frames = raw_stream(gateway, "/completions", {"model": "sonnet", "prompt": "Go on:",
                                                  "stream": True, "max_tokens": 30})
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(f) for f in frames[:-1]]
    for chunk in chunks:
        validate(chunk, "CompletionChunk")
        assert chunk["object"] == "text_completion"
        assert chunk["model"] == "claude-sonnet-5-5"
        assert "usage" not in chunk
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("cmpl-")
    finishes = [c["choices"][0]["finish_reason"] for c in chunks]
    assert finishes[-1] == "stop" and all(f is None for f in finishes[:-1])
    validate(chunks[-1], "CreateCompletionResponse")
    assert "".join(c["choices"][0]["text"] for c in chunks) == "streaming the rest of it"
    assert len(chunks) >= 5  # real deltas, not one block


def test_streaming_with_the_sdk_echo_and_usage(client: openai.OpenAI,
                                               upstream: FakeUpstream) -> None:
    upstream.script(Reply.text(" two three", input_tokens=20, output_tokens=2))
    chunks = list(client.completions.create(model="sonnet", prompt="one", echo=True,
                                            stream=True, max_tokens=10,
                                            stream_options={"include_usage": True}))
    assert chunks[0].choices[0].text == "one"  # the echoed prompt comes first
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "one two three"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (20, 2)
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_an_upstream_failure_mid_stream_ends_it_with_an_openai_error(
        client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("one two three four five six", fail_after_deltas=2))
    with pytest.raises(openai.APIError) as raised:
        for _ in client.completions.create(model="sonnet", prompt="Count:", stream=True,
                                           max_tokens=30):
            pass
    assert "Traceback" not in str(raised.value)


def test_a_completion_is_not_kept_as_a_conversation(client: openai.OpenAI, gateway: Gateway,
                                                    upstream: FakeUpstream) -> None:
    # The gateway is shared: conversations of earlier modules may be held on it.
    held = gateway.wait_idle()["pool"]["holding_conversations"]
    before = httpx.get(gateway.base_url + "/conversations", timeout=10).json()["data"]
    upstream.script(Reply.text(" done"))
    completion = client.completions.with_raw_response.create(model="sonnet",
                                                             prompt="Not kept", max_tokens=5)
    assert "x-conversation-id" not in completion.headers
    health = gateway.wait_idle()
    after = httpx.get(gateway.base_url + "/conversations", timeout=10).json()["data"]
    assert [c["id"] for c in after] == [c["id"] for c in before]
    assert health["pool"]["holding_conversations"] <= held  # no worker kept it


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"prompt": [1212, 318, 257]}, "prompt", "unsupported_parameter"),
    ({"prompt": [[1212, 318], [257]]}, "prompt", "unsupported_parameter"),
    ({"prompt": "hi", "n": 2}, "n", "unsupported_parameter"),
    ({"prompt": "hi", "best_of": 3}, "best_of", "unsupported_parameter"),
    ({"prompt": "hi", "logprobs": 2}, "logprobs", "unsupported_parameter"),
    ({"prompt": ["a", "b"], "stream": True}, "prompt", "unsupported_parameter"),
    ({"prompt": "hi", "agent": True}, "model", "unsupported_parameter"),
    ({"prompt": ""}, "prompt", None),
    ({"prompt": ["fine", ""]}, "prompt[1]", None),
    ({"prompt": []}, "prompt", None),
    ({"prompt": None}, "prompt", None),
    ({}, "prompt", None),
    ({"prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}, "stop", None),
    ({"prompt": "hi", "max_tokens": 0}, "max_tokens", None),
])
def test_requests_we_cannot_honour_are_clear_400s(gateway: Gateway, body: dict[str, Any],
                                                  param: str, code: str | None) -> None:
    response = httpx.post(gateway.base_url + "/completions", json={"model": "sonnet", **body},
                          timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (param, code,
                                                              "invalid_request_error")
    assert error["message"] and "Traceback" not in response.text


def test_an_unknown_model_is_a_404_in_openai_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi")
    assert raised.value.code == "model_not_found"


def test_completions_are_counted_as_their_own_route(client: openai.OpenAI, gateway: Gateway,
                                                    upstream: FakeUpstream) -> None:
    upstream.script(Reply.text(" counted"))
    client.completions.create(model="sonnet", prompt="Metrics", max_tokens=5)
    metrics = httpx.get(gateway.url + "/metrics", timeout=10).text
    assert any(line.startswith("claude_code_api_requests_total{")
               and 'route="/v1/completions"' in line and 'status="200"' in line
               for line in metrics.splitlines())
