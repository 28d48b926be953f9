"""Streaming chat completions: chunk order, timing, usage, raw SSE framing."""

from __future__ import annotations

import json
import time

import openai
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply
from tests.conftest import Gateway, raw_stream
from tests.openapi import validate

pytestmark = pytest.mark.e2e


def test_stream_chunks_follow_openai_conventions(gateway: Gateway,
                                                 upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("Hello there, streaming world", output_tokens=6))
    frames = raw_stream(gateway, "/chat/completions", {"model": "sonnet", "stream": True,
                                  "messages": [{"role": "user", "content": "hi"}]})
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(f) for f in frames[:-1]]
    for chunk in chunks:
        validate(chunk, "CreateChatCompletionStreamResponse")
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == "claude-sonnet-5-5"
        assert "usage" not in chunk  # no include_usage: no usage key at all
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "",
                                                "refusal": None}
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    finishes = [c["choices"][0]["finish_reason"] for c in chunks]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    assert all(f is None for f in finishes[:-1])
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "Hello there, streaming world"
    assert len(chunks) >= 6  # real deltas, not one block


def test_include_usage_adds_a_final_usage_chunk(client: openai.OpenAI,
                                                upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("counted", input_tokens=30, output_tokens=3))
    chunks = list(client.chat.completions.create(
        model="sonnet", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "count"}]))
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (30, 3)
    assert chunks[-1].usage.total_tokens == 33
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_deltas_arrive_as_the_model_produces_them(client: openai.OpenAI,
                                                  upstream: FakeUpstream) -> None:
    words = "one two three four five six"
    upstream.script(Reply.text(words, chunk_delay=0.25))
    arrivals: list[tuple[float, str]] = []
    start = time.monotonic()
    for chunk in client.chat.completions.create(
            model="sonnet", stream=True, messages=[{"role": "user", "content": "count"}]):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append((time.monotonic() - start, chunk.choices[0].delta.content))
    assert "".join(t for _, t in arrivals) == words
    # Six deltas 0.25 s apart upstream: the first is seen long before the last.
    assert arrivals[-1][0] - arrivals[0][0] > 0.9
    assert len(arrivals) == 6


def test_stream_helper_of_the_openai_sdk(client: openai.OpenAI,
                                         upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("Streamed via helper"))
    with client.chat.completions.stream(
            model="sonnet", messages=[{"role": "user", "content": "x"}]) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "Streamed via helper"
    assert final.choices[0].finish_reason == "stop"


def test_stop_sequence_in_a_stream_never_shows_its_start(client: openai.OpenAI,
                                                         gateway: Gateway,
                                                         upstream: FakeUpstream) -> None:
    # The stop "# #g" spans two upstream deltas (" #", " #gamma"): its first "#"
    # must be held back, then dropped.
    upstream.script(Reply.text("alpha beta # #gamma ## delta"))
    chunks = list(client.chat.completions.create(
        model="sonnet", stream=True, stop=["# #g", "zzz"],
        messages=[{"role": "user", "content": "x"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "alpha beta "
    assert chunks[-1].choices[0].finish_reason == "stop"
    gateway.wait_idle()


def test_max_tokens_in_a_stream_reports_length(client: openai.OpenAI,
                                               upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("truncated answer", stop_reason="max_tokens"))
    chunks = list(client.chat.completions.create(
        model="sonnet", stream=True, max_tokens=5, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "x"}]))
    assert chunks[-2].choices[0].finish_reason == "length"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        "truncated answer"
    assert upstream.message_requests()[0].body["max_tokens"] == 5
    # The CLI's own "resume after the limit" request never completes an answer.
    assert chunks[-1].usage is not None
