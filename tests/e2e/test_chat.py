"""Chat completions end to end: official openai client -> gateway -> real CLI -> fake upstream."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Seen, content_text
from tests.conftest import Gateway
from tests.openapi import validate

pytestmark = pytest.mark.e2e


def user_texts(seen: Seen) -> list[str]:
    return [content_text(m["content"]) for m in seen.messages if m["role"] == "user"]


def turns(seen: Seen) -> list[tuple[str, str]]:
    """(role, text) of the user and assistant turns the upstream received."""
    return [(m["role"], content_text(m["content"])) for m in seen.messages
            if m["role"] in ("user", "assistant")]


def test_completion_answer_usage_and_shape(client: openai.OpenAI, gateway: Gateway,
                                           upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("Paris is the capital of France.", input_tokens=21,
                               output_tokens=8, cache_read_input_tokens=4))
    completion = client.chat.completions.create(
        model="sonnet", messages=[{"role": "user", "content": "Capital of France?"}])

    assert completion.choices[0].message.content == "Paris is the capital of France."
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "claude-sonnet-5-5"
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 25  # input + cache reads
    assert completion.usage.completion_tokens == 8
    assert completion.usage.total_tokens == 33
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 4
    raw = httpx.post(gateway.base_url + "/chat/completions",
                     json={"model": "sonnet", "messages": [{"role": "user", "content": "x"}]},
                     timeout=60).json()
    validate(raw, "CreateChatCompletionResponse")
    assert raw["choices"][0]["logprobs"] is None
    assert raw["choices"][0]["message"]["refusal"] is None


def test_system_message_becomes_the_system_prompt(client: openai.OpenAI,
                                                  upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("Ahoy!"))
    client.chat.completions.create(model="sonnet", messages=[
        {"role": "system", "content": "You are a pirate named Quillbeard."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in one word."}]},
        {"role": "user", "content": "Greet me."},
    ])
    seen = upstream.message_requests()[-1]
    assert "You are a pirate named Quillbeard." in seen.system_text
    assert "Answer in one word." in seen.system_text
    assert "Quillbeard" not in json.dumps(seen.messages)
    assert user_texts(seen)[-1] == "Greet me."


def test_earlier_turns_reach_the_model_as_real_turns(client: openai.OpenAI,
                                                     upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("Your name is Zed."))
    completion = client.chat.completions.create(model="sonnet", messages=[
        {"role": "user", "content": "My name is Zed."},
        {"role": "assistant", "content": "Nice to meet you, Zed."},
        {"role": "user", "content": [{"type": "text", "text": "What is "},
                                     {"type": "text", "text": "my name?"}]},
    ])
    assert completion.choices[0].message.content == "Your name is Zed."
    seen = upstream.message_requests()[-1]
    assert turns(seen) == [("user", "My name is Zed."),
                           ("assistant", "Nice to meet you, Zed."),
                           ("user", "What is \nmy name?")]


def test_a_reused_worker_starts_each_conversation_empty(client: openai.OpenAI,
                                                        gateway: Gateway,
                                                        upstream: FakeUpstream) -> None:
    for word in ("alpha", "beta", "gamma"):
        client.chat.completions.create(model="sonnet",
                                       messages=[{"role": "user", "content": word}])
    seen = upstream.message_requests()
    assert [turns(s) for s in seen[-3:]] == [[("user", "alpha")], [("user", "beta")],
                                             [("user", "gamma")]]
    workers = gateway.wait_idle()["workers"]
    assert any(w["turns"] >= 2 for w in workers), workers  # the same process served several


def test_prompts_are_delivered_verbatim(client: openai.OpenAI, gateway: Gateway,
                                        upstream: FakeUpstream, tmp_path: object) -> None:
    canary = gateway.config_dir / "canary.txt"
    canary.write_text("CANARY-7f3a secret file content")
    for prompt in (f"Summarise @{canary}", "/help", "/clear"):
        client.chat.completions.create(model="sonnet",
                                       messages=[{"role": "user", "content": prompt}])
        seen = upstream.message_requests()[-1]
        assert user_texts(seen)[-1] == prompt
        assert "CANARY-7f3a" not in json.dumps(seen.body)


def test_chat_mode_has_no_claude_code_tools_and_no_user_memory(
        client: openai.OpenAI, gateway: Gateway, upstream: FakeUpstream) -> None:
    (gateway.config_dir / "CLAUDE.md").write_text("USER-MEMORY-5c1e always say banana")
    client.chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "hi"}])
    seen = upstream.message_requests()[-1]
    assert seen.body.get("tools", []) == []
    assert "USER-MEMORY-5c1e" not in json.dumps(seen.body)


def test_model_is_switched_live(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    for model, expected in (("haiku", "claude-haiku-5-5"), ("claude-opus-5-5", "claude-opus-5-5"),
                            ("gpt-4o", "claude-sonnet-5-5")):
        completion = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}])
        assert upstream.message_requests()[-1].body["model"] == expected
        assert completion.model == expected


def test_max_tokens_reaches_upstream_and_length_is_reported(client: openai.OpenAI,
                                                            upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("A long answer cut", stop_reason="max_tokens"))
    completion = client.chat.completions.create(
        model="sonnet", max_completion_tokens=17, messages=[{"role": "user", "content": "x"}])
    assert upstream.message_requests()[-1].body["max_tokens"] == 17
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "A long answer cut"


def test_stop_sequence_cuts_the_answer(client: openai.OpenAI, gateway: Gateway,
                                       upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("one two three END four five"))
    completion = client.chat.completions.create(
        model="sonnet", stop=["END", "never"], messages=[{"role": "user", "content": "count"}])
    assert completion.choices[0].message.content == "one two three "
    assert completion.choices[0].finish_reason == "stop"
    gateway.wait_idle()  # the interrupted worker came back


def test_accepted_parameters_do_not_break_a_request(client: openai.OpenAI,
                                                    upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("fine"))
    completion = client.chat.completions.create(
        model="sonnet", messages=[{"role": "user", "content": "x"}], temperature=0.2, top_p=0.9,
        seed=7, presence_penalty=0.1, frequency_penalty=0.1, user="u-1", metadata={"a": "b"},
        n=1, logit_bias={"50256": -100}, parallel_tool_calls=False, store=False,
        extra_body={"some_future_field": True})
    assert completion.choices[0].message.content == "fine"


def test_chat_turns_leave_no_transcripts_behind(client: openai.OpenAI,
                                                gateway: Gateway) -> None:
    client.chat.completions.create(model="sonnet", messages=[
        {"role": "user", "content": "private words"}])
    transcripts = list((gateway.config_dir / "projects").rglob("*.jsonl"))
    assert transcripts == []


def test_a_system_prompt_larger_than_an_argument_can_hold(client: openai.OpenAI,
                                                          upstream: FakeUpstream) -> None:
    system = "Rule: be kind. " * 15_000  # ~225 KB, beyond Linux's 128 KiB per argument
    upstream.script(Reply.text("kind answer"))
    completion = client.chat.completions.create(model="sonnet", messages=[
        {"role": "system", "content": system}, {"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "kind answer"
    assert system.strip() in upstream.message_requests()[-1].system_text
