"""Every failure in OpenAI's error shape, with the status code a client expects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply
from tests.conftest import Gateway, start_gateway

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "hi"}]


def post(gateway: Gateway, body: Any = None, content: bytes | None = None,
         path: str = "/chat/completions") -> httpx.Response:
    return httpx.post(gateway.base_url + path, json=body, content=content, timeout=60,
                      headers={"content-type": "application/json"})


def assert_error(response: httpx.Response, status: int, param: str | None = None,
                 code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    assert "Traceback" not in response.text and "/tmp" not in response.text
    return dict(error)


def test_malformed_json_is_400(gateway: Gateway) -> None:
    error = assert_error(post(gateway, content=b'{"model": "sonnet", "messages": ['), 400)
    assert "JSON" in error["message"]
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": USER}, "model"),
    ({"model": "sonnet"}, "messages"),
    ({"model": "sonnet", "messages": []}, "messages"),
    ({"model": "sonnet", "messages": [{"role": "user"}]}, "messages[0].content"),
    ({"model": "sonnet", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"model": "sonnet", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
     "messages[0].content[0].text"),
    ({"model": "sonnet", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0]"),
    ({"model": "sonnet", "messages": USER, "temperature": 3}, "temperature"),
    ({"model": "sonnet", "messages": USER, "max_tokens": 0}, "max_tokens"),
    ({"model": "sonnet", "messages": USER, "stream": "yes please"}, "stream"),
    ({"model": "sonnet", "messages": USER, "n": 2}, "n"),
    ({"model": "sonnet", "messages": USER, "logprobs": True}, "logprobs"),
    ({"model": "sonnet", "messages": USER, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"model": "sonnet", "messages": [{"role": "assistant", "content": "only me"}]},
     "messages"),
    ({"model": "sonnet", "messages": [{"role": "user", "content": ""}]},
     "messages[0].content"),
])
def test_schema_violations_name_the_param(gateway: Gateway, body: dict[str, Any],
                                          param: str) -> None:
    error = assert_error(post(gateway, body), 400, param=param)
    assert error["type"] == "invalid_request_error"


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-5-turbo", messages=USER)  # type: ignore[arg-type]
    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"


def test_upstream_rate_limit_is_429_with_retry_after(gateway: Gateway,
                                                     upstream: FakeUpstream) -> None:
    upstream.script(Reply.error(429, "rate_limit_error", "slow down"))
    response = post(gateway, {"model": "sonnet", "messages": USER})
    assert_error(response, 429, code="rate_limit_exceeded")
    assert int(response.headers["retry-after"]) > 0


def test_upstream_rate_limit_raises_the_sdk_error(client: openai.OpenAI,
                                                  upstream: FakeUpstream) -> None:
    upstream.script(Reply.error(429, "rate_limit_error", "slow down"))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="sonnet", messages=USER, stream=True)


@pytest.mark.parametrize("status", [529, 500, 503])
def test_upstream_overload_is_503(gateway: Gateway, upstream: FakeUpstream,
                                  status: int) -> None:
    upstream.script(Reply.error(status, "overloaded_error"))
    response = post(gateway, {"model": "sonnet", "messages": USER})
    error = assert_error(response, 503, code="upstream_overloaded")
    assert "overloaded" in error["message"]
    assert int(response.headers["retry-after"]) > 0
    assert "127.0.0.1" not in error["message"]


def test_rejected_credentials_are_a_clear_502(gateway: Gateway,
                                              upstream: FakeUpstream) -> None:
    upstream.script(Reply.error(401, "authentication_error", "invalid x-api-key"))
    error = assert_error(post(gateway, {"model": "sonnet", "messages": USER}), 502,
                         code="upstream_auth_failed")
    assert "ANTHROPIC_API_KEY" in error["message"] and "log in" in error["message"].lower()
    assert "sk-ant-test" not in error["message"]


def test_error_after_the_first_byte_travels_in_the_stream(gateway: Gateway,
                                                          upstream: FakeUpstream) -> None:
    # The upstream stream breaks off; Claude Code retries without streaming and gets
    # a different answer. What streamed cannot be taken back: the client is told.
    upstream.script(Reply.text("partial answer that breaks", fail_after_deltas=2,
                               chunk_delay=0.05), Reply.text("A different answer."))
    frames: list[str] = []
    with httpx.stream("POST", gateway.base_url + "/chat/completions", timeout=60,
                      json={"model": "sonnet", "stream": True, "messages": USER}) as response:
        assert response.status_code == 200
        frames = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    last = json.loads(frames[-2])
    assert set(last) == {"error"}
    assert last["error"]["code"] == "upstream_error"
    assert "broke off" in last["error"]["message"]
    text = "".join(json.loads(f)["choices"][0]["delta"].get("content", "")
                   for f in frames[:-2])
    assert text == "partial answer"
    gateway.wait_idle()


def test_a_broken_upstream_stream_still_answers_a_non_streaming_request(
        client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("partial answer that breaks", fail_after_deltas=2),
                    Reply.text("The complete retried answer."))
    completion = client.chat.completions.create(model="sonnet", messages=USER)
    assert completion.choices[0].message.content == "The complete retried answer."


def test_openai_sdk_raises_on_an_in_stream_error(client: openai.OpenAI,
                                                 upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("partial answer that breaks", fail_after_deltas=1))
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model="sonnet", messages=USER, stream=True):
            pass


def test_unsupported_features_are_refused_not_ignored(gateway: Gateway) -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    assert_error(post(gateway, {"model": "sonnet", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "what is this"}, audio]}]}),
        400, param="messages[0].content[1]")
    functions = [{"name": "f", "parameters": {"type": "object"}}]
    assert_error(post(gateway, {"model": "sonnet", "messages": USER, "functions": functions}),
                 400, param="functions")


def test_unknown_route_is_404_in_openai_shape(gateway: Gateway) -> None:
    assert_error(post(gateway, {"x": 1}, path="/nothing/here"), 404)
    response = httpx.get(gateway.base_url + "/chat/completions", timeout=10)
    assert response.status_code == 405
    assert set(response.json()) == {"error"}


def test_a_server_without_credentials_says_how_to_log_in(upstream: FakeUpstream,
                                                         tmp_path: Path) -> None:
    upstream.reset()
    gateway = start_gateway(upstream, tmp_path, api_key=None)
    try:
        health = gateway.wait_idle()
        assert health["account"].get("apiKeySource") is None
        error = assert_error(post(gateway, {"model": "sonnet", "messages": USER}), 502,
                             code="upstream_auth_failed")
        assert "log in" in error["message"].lower()
        assert upstream.message_requests() == []  # the CLI never called the API
    finally:
        gateway.stop()


def test_a_cli_that_cannot_start_is_a_502_and_health_says_why(upstream: FakeUpstream,
                                                              tmp_path: Path) -> None:
    gateway = start_gateway(upstream, tmp_path, claude__cli_path=str(tmp_path / "no-claude"))
    try:
        health = gateway.wait_for(lambda h: "last_start_error" in h)
        assert health["status"] == "degraded"
        error = assert_error(post(gateway, {"model": "sonnet", "messages": USER}), 502)
        assert "could not start Claude Code" in error["message"]
        assert "no-claude" not in error["message"]  # paths stay in the log
    finally:
        gateway.stop()
