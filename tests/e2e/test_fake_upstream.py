"""The scripted fake Messages API itself, checked with the official anthropic client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Text, Thinking, ToolUse
from tests.conftest import lazy_import

if TYPE_CHECKING:
    import anthropic
else:
    anthropic = lazy_import("anthropic")


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream(prompt_cache=True)
    upstream.start()
    yield upstream
    upstream.stop()


@pytest.fixture
def client(fake: FakeUpstream) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=fake.url, api_key="sk-test", max_retries=0) as client:
        yield client


def test_streamed_blocks_accumulate_in_the_sdk(fake: FakeUpstream,
                                               client: anthropic.Anthropic) -> None:
    fake.script(Reply(blocks=[Thinking("hmm", signature="sig-9"), Text("Hello there"),
                              ToolUse("lookup", {"q": "x" * 40}, id="toolu_9")],
                      stop_reason="tool_use"))
    with client.messages.stream(model="claude-sonnet-5-5", max_tokens=64,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        message = stream.get_final_message()
    kinds = [b.type for b in message.content]
    assert kinds == ["thinking", "text", "tool_use"]
    assert message.content[0].signature == "sig-9"  # type: ignore[union-attr]
    assert message.content[1].text == "Hello there"  # type: ignore[union-attr]
    assert message.content[2].input == {"q": "x" * 40}  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use"
    assert fake.requests[-1].body["messages"] == [{"role": "user", "content": "hi"}]


def test_scripted_errors_reach_the_sdk_as_errors(fake: FakeUpstream,
                                                 client: anthropic.Anthropic) -> None:
    fake.script(Reply.error(429, "rate_limit_error", "slow down"))
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="m", max_tokens=8,
                               messages=[{"role": "user", "content": "hi"}])
    fake.script(Reply.text("ok after"))
    reply = client.messages.create(model="m", max_tokens=8,
                                   messages=[{"role": "user", "content": "hi"}])
    assert reply.content[0].text == "ok after"  # type: ignore[union-attr]


def test_responder_answers_from_the_request_once_the_script_is_empty(
        fake: FakeUpstream, client: anthropic.Anthropic) -> None:
    fake.script(Reply.text("scripted"))
    fake.responder = lambda seen: Reply.text(f"echo {seen.last_user_text()}")
    texts = [client.messages.create(model="m", max_tokens=8,
                                    messages=[{"role": "user", "content": prompt}])
             .content[0].text for prompt in ("one", "two")]  # type: ignore[union-attr]
    assert texts == ["scripted", "echo two"]
    fake.reset()
    reply = client.messages.create(model="m", max_tokens=8,
                                   messages=[{"role": "user", "content": "three"}])
    assert reply.content[0].text == "Hello from the fake upstream."  # type: ignore[union-attr]


def test_prompt_cache_emulation_bills_a_repeated_prefix_as_cache_reads(
        client: anthropic.Anthropic) -> None:
    first = [{"role": "user", "content": "a long opening message " * 20}]
    cold = client.messages.create(model="m", max_tokens=8, messages=first)  # type: ignore[arg-type]
    longer = [*first, {"role": "assistant", "content": "answer"},
              {"role": "user", "content": "follow-up"}]
    warm = client.messages.create(model="m", max_tokens=8, messages=longer)  # type: ignore[arg-type]
    assert cold.usage.cache_read_input_tokens == 0
    assert cold.usage.input_tokens > 100
    assert (warm.usage.cache_read_input_tokens or 0) > 100
    assert warm.usage.input_tokens < 20
    edited = [{"role": "user", "content": "a different opening"}, *longer[1:]]
    miss = client.messages.create(model="m", max_tokens=8, messages=edited)  # type: ignore[arg-type]
    assert miss.usage.cache_read_input_tokens == 0


def test_a_rejected_credential_gets_its_error_and_others_are_served(
        fake: FakeUpstream, client: anthropic.Anthropic) -> None:
    fake.reject["sk-test"] = Reply.error(429, "rate_limit_error", headers={"retry-after": "7"})
    fake.script(Reply.text("for the good key"))
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model="m", max_tokens=8,
                               messages=[{"role": "user", "content": "hi"}])
    assert caught.value.response.headers["retry-after"] == "7"
    with anthropic.Anthropic(base_url=fake.url, auth_token="sk-ant-oat-good",
                             max_retries=0) as bearer:
        reply = bearer.messages.create(model="m", max_tokens=8,
                                       messages=[{"role": "user", "content": "hi"}])
    assert reply.content[0].text == "for the good key"  # type: ignore[union-attr]
    assert [r.credential for r in fake.requests] == ["sk-test", "sk-ant-oat-good"]


def test_a_scripted_stall_holds_the_stream_after_the_given_delta(
        fake: FakeUpstream, client: anthropic.Anthropic) -> None:
    fake.script(Reply.text("one two three", stall_after_deltas=1, stall=1.0))
    arrived: list[tuple[str, float]] = []
    started = time.monotonic()
    with client.messages.stream(model="m", max_tokens=8,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        arrived = [(text, time.monotonic() - started) for text in stream.text_stream]
    assert [text for text, _ in arrived] == ["one", " two", " three"]
    # Silent between the first and second (a margin: the first may reach the client late).
    assert arrived[1][1] - arrived[0][1] >= 0.7
