"""Client mistakes found late are 4xx in the dialect's shape, never 5xx; failures after
a stream began end it in the dialect's own terms (issue 12)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply
from tests.conftest import (
    Gateway,
    lazy_import,
    module_gateway,
    ready,
    serving,
    start_gateway,
)

if TYPE_CHECKING:
    import anthropic
else:
    anthropic = lazy_import("anthropic")

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
LONE = "\ud800"  # a valid JSON escape, and no character: it has no UTF-8 encoding
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}}


def raw_post(gateway: Gateway, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST a body as JSON with \\u escapes, as json.dumps (and JavaScript) write a
    lone surrogate; the official clients cannot even encode one."""
    return httpx.post(gateway.url + path, content=json.dumps(body).encode(), timeout=60,
                      headers={"content-type": "application/json"})


def chat(content: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "sonnet", "messages": [{"role": "user", "content": content}], **extra}


def anthropic_body(content: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "sonnet", "max_tokens": 32,
            "messages": [{"role": "user", "content": content}], **extra}


# -- text that cannot be encoded ------------------------------------------------------
@pytest.mark.parametrize(("path", "body", "param"), [
    ("/v1/chat/completions", chat(f"hi {LONE} there"), "messages[0].content"),
    ("/v1/chat/completions", {"model": "sonnet", "messages": [
        {"role": "system", "content": [{"type": "text", "text": LONE}]},
        {"role": "user", "content": "hi"}]}, "messages[0].content[0].text"),
    ("/v1/chat/completions", chat(tools=[{"type": "function", "function": {
        "name": "get_weather", "description": f"weather {LONE}", "parameters": WEATHER}}]),
     "tools[0].function.description"),
    ("/v1/chat/completions", chat(tools=[{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": LONE}}}}}]),
     "tools[0].function.parameters.properties.city.description"),
    ("/v1/chat/completions", chat(user=LONE), "user"),
    ("/v1/responses", {"model": "sonnet", "input": f"{LONE}!"}, "input"),
    ("/v1/responses", {"model": "sonnet", "input": "hi", "instructions": LONE},
     "instructions"),
    ("/v1/responses", {"model": "sonnet", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": LONE}]}]}, "input[0].content[0].text"),
    ("/v1/batch", {"requests": [{"custom_id": "a", "body": chat()},
                                {"custom_id": "b", "body": chat(LONE)}]},
     "requests[1].body.messages[0].content"),
    ("/v1/chat/completions", {**chat(), LONE: 1}, None),  # a field name
])
def test_text_that_cannot_be_encoded_is_a_400_naming_the_field_in_openai_shape(
        gateway: Gateway, upstream: FakeUpstream, path: str, body: dict[str, Any],
        param: str | None) -> None:
    response = raw_post(gateway, path, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert "surrogate" in error["message"] and "UTF-8" in error["message"]
    assert upstream.message_requests() == []  # refused before any upstream call


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/v1/messages", anthropic_body(LONE), "messages[0].content"),
    ("/v1/messages", anthropic_body(system=[{"type": "text", "text": LONE}]),
     "system[0].text"),
    ("/v1/messages", anthropic_body(tools=[{"name": "get_weather", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string", "description": LONE}}}}]),
     "tools[0].input_schema.properties.city.description"),
    ("/v1/messages", anthropic_body(metadata={"user_id": LONE}), "metadata.user_id"),
    ("/v1/messages/count_tokens", {"model": "sonnet", "messages": [
        {"role": "user", "content": [{"type": "text", "text": LONE}]}]},
     "messages[0].content[0].text"),
])
def test_text_that_cannot_be_encoded_is_a_400_in_anthropic_shape(
        gateway: Gateway, upstream: FakeUpstream, path: str, body: dict[str, Any],
        param: str) -> None:
    response = raw_post(gateway, path, body)
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "error"
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert f"'{param}'" in error["message"] and "surrogate" in error["message"]
    assert upstream.message_requests() == []


def test_escaped_surrogate_pairs_are_text_and_reach_claude(gateway: Gateway,
                                                           upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("Nice emoji."))
    response = raw_post(gateway, "/v1/chat/completions", chat("smile \U0001F600 please"))
    assert b"\\ud83d\\ude00" in json.dumps(chat("\U0001F600")).encode()  # sent as a pair
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Nice emoji."
    assert "smile \U0001F600 please" in upstream.message_requests()[-1].last_user_text()


# -- image hosts that cannot be reached -----------------------------------------------
NOWHERE = "http://no-such-host.invalid/cat.png"  # .invalid never resolves (RFC 2606)


def test_an_image_host_that_does_not_resolve_is_a_400_naming_the_image(
        gateway: Gateway, upstream: FakeUpstream) -> None:
    client = gateway.client()
    with pytest.raises(openai.BadRequestError) as chat_error:
        client.chat.completions.create(model="sonnet", messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": NOWHERE}}]}])
    assert chat_error.value.param == "messages[0].content[1].image_url.url"
    assert "no-such-host.invalid does not resolve" in chat_error.value.message
    with pytest.raises(openai.BadRequestError) as responses_error:
        client.responses.create(model="sonnet", input=[{"role": "user", "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": NOWHERE, "detail": "auto"}]}])
    assert responses_error.value.param == "input[0].content[1].image_url"
    with pytest.raises(anthropic.BadRequestError) as messages_error:
        gateway.anthropic(api_key="sk-any").messages.create(
            model="sonnet", max_tokens=32, messages=[{
                "role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image", "source": {"type": "url", "url": NOWHERE}}]}])
    error = messages_error.value.body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("messages[0].content[1].source: image refused: ")
    assert "does not resolve" in error["message"]
    assert upstream.message_requests() == []



PIXEL = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4DwABAQEABRjYTgAAAABJ"
         "RU5ErkJggg==")


def test_an_image_in_a_tool_result_is_checked_like_any_other(
        gateway: Gateway, upstream: FakeUpstream) -> None:
    claude = gateway.anthropic(api_key="sk-any")

    def ask(data: str) -> Any:
        result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": data}}]}
        return claude.messages.create(
            model="sonnet", max_tokens=32, tools=[{"name": "snap", "input_schema": WEATHER}],
            messages=[{"role": "user", "content": "Take a picture"},
                      {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                                                         "name": "snap", "input": {}}]},
                      {"role": "user", "content": [result]}])

    with pytest.raises(anthropic.BadRequestError) as caught:
        ask("not base64!")
    message = caught.value.body["error"]["message"]  # type: ignore[index]
    assert message.startswith("messages[2].content[0].content[0].source: image refused: ")
    assert upstream.message_requests() == []
    upstream.script(Reply.text("A pixel."))
    assert ask(PIXEL).content[0].text == "A pixel."  # type: ignore[union-attr]
    results = [b for m in upstream.message_requests()[-1].messages if m["role"] == "user"
               and isinstance(m["content"], list) for b in m["content"]
               if b.get("type") == "tool_result"]
    images = [c for r in results for c in r["content"] if c.get("type") == "image"]
    assert [i["source"]["data"] for i in images] == [PIXEL]

# -- a body limit instead of the SDK's 1 MiB read buffer --------------------------------
@pytest.fixture(scope="module")
def one_worker(upstream: FakeUpstream,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One worker, no spare: a second conversation must clear the first's in place.
    (No idle worker is kept, so none is waited for.)"""
    yield from serving(start_gateway(upstream, tmp_path_factory.mktemp("gateway"),
                                     server__max_body_bytes=str(4 * MiB),
                                     claude__max_concurrent_sessions="1",
                                     claude__min_idle_workers="0"), idle=0)


@pytest.fixture
def limited(one_worker: Gateway, upstream: FakeUpstream) -> Gateway:
    return ready(one_worker, upstream)


def test_a_message_of_two_mib_is_answered(limited: Gateway, upstream: FakeUpstream) -> None:
    text = "\n".join(f"line {i}: the quick brown fox jumps over the lazy dog"
                    for i in range(40_000))
    assert 2 * MiB < len(text) < 3 * MiB
    upstream.script(Reply.text("Read it all."), Reply.text("Next one."))
    client = limited.client()
    first = client.chat.completions.create(model="sonnet",
                                           messages=[{"role": "user", "content": text}])
    assert first.choices[0].message.content == "Read it all."
    assert text in upstream.message_requests()[-1].last_user_text()
    # The only worker holds that conversation: this one has it cleared first.
    second = client.chat.completions.create(model="sonnet",
                                            messages=[{"role": "user", "content": "Next?"}])
    assert second.choices[0].message.content == "Next one."
    assert limited.health()["pool"]["restarts"] == 0


def test_a_body_over_the_limit_is_413_in_each_dialect(limited: Gateway,
                                                      upstream: FakeUpstream) -> None:
    text = "x" * (5 * MiB)
    with pytest.raises(openai.APIStatusError) as openai_error:
        limited.client().chat.completions.create(
            model="sonnet", messages=[{"role": "user", "content": text}])
    assert openai_error.value.status_code == 413
    assert openai_error.value.code == "request_too_large"
    assert "server.max_body_bytes" in openai_error.value.message
    with pytest.raises(anthropic.APIStatusError) as anthropic_error:
        limited.anthropic(api_key="sk-any").messages.create(
            model="sonnet", max_tokens=32, messages=[{"role": "user", "content": text}])
    assert anthropic_error.value.status_code == 413
    body = anthropic_error.value.body
    assert body["type"] == "error"  # type: ignore[index]
    assert body["error"]["type"] == "request_too_large"  # type: ignore[index]
    assert "server.max_body_bytes" in body["error"]["message"]  # type: ignore[index]

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while it streams in
        body = json.dumps({"model": "sonnet", "input": text}).encode()
        yield from (body[i:i + 64 * 1024] for i in range(0, len(body), 64 * 1024))

    response = httpx.post(limited.url + "/v1/responses", content=chunks(), timeout=60,
                          headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert upstream.message_requests() == []


# -- a Responses stream that fails ----------------------------------------------------
def test_a_responses_stream_that_breaks_ends_with_response_failed(
        gateway: Gateway, upstream: FakeUpstream) -> None:
    # The upstream stream breaks off and Claude Code's retry says something else:
    # what streamed cannot be taken back, so the response fails.
    upstream.script(Reply.text("partial answer that breaks", fail_after_deltas=2,
                               chunk_delay=0.05), Reply.text("A different answer."))
    client = gateway.client()
    with client.responses.stream(model="sonnet", input="Go") as stream:
        events = list(stream)
        with pytest.raises(RuntimeError, match="response.completed"):
            stream.get_final_response()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    error, failed = events[-2], events[-1]
    assert error.type == "error" and failed.type == "response.failed"
    assert error.code == "upstream_error" and "broke off" in error.message
    response = failed.response
    assert response.id == events[0].response.id  # type: ignore[union-attr]
    assert response.status == "failed"
    assert response.error is not None and response.error.code == "server_error"
    assert response.error.message == error.message
    [message] = response.output
    assert message.type == "message" and message.status == "incomplete"
    assert message.content[0].text == "partial answer"  # type: ignore[union-attr]


# -- the gateway's own timeout in the Anthropic dialect ---------------------------------
@pytest.fixture(scope="module")
def impatient(upstream: FakeUpstream,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from module_gateway(upstream, tmp_path_factory, claude__timeout_seconds="3")


def test_the_gateways_timeout_is_a_504_timeout_error(impatient: Gateway,
                                                     upstream: FakeUpstream) -> None:
    gateway = ready(impatient, upstream)
    upstream.script(Reply.text("one two three", stall_after_deltas=1, stall=20))
    with pytest.raises(anthropic.APIStatusError) as caught:
        gateway.anthropic(api_key="sk-any").messages.create(
            model="sonnet", max_tokens=32, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 504
    error = caught.value.body["error"]  # type: ignore[index]
    assert error["type"] == "timeout_error"
    assert "3 seconds" in error["message"]
    gateway.wait_idle()


def test_the_gateways_timeout_mid_stream_is_a_timeout_error_event(
        impatient: Gateway, upstream: FakeUpstream) -> None:
    gateway = ready(impatient, upstream)
    upstream.script(Reply.text("one two three", stall_after_deltas=1, stall=20))
    received: list[str] = []
    claude = gateway.anthropic(api_key="sk-any")
    with pytest.raises(anthropic.APIStatusError) as caught, claude.messages.stream(
            model="sonnet", max_tokens=32, messages=[{"role": "user", "content": "hi"}]) as stream:
        received.extend(stream.text_stream)
    assert received == ["one"]  # the stream had begun: the error came inside it
    error = caught.value.body["error"]  # type: ignore[index]
    assert error["type"] == "timeout_error"
    gateway.wait_idle()
