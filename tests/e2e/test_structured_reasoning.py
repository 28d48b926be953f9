"""response_format (structured output through the CLI) and reasoning (effort, thinking)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pydantic
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Text, Thinking
from tests.conftest import Gateway, offered_schema, start_gateway, structured

pytestmark = pytest.mark.e2e

PERSON = {"type": "object", "properties": {"name": {"type": "string"},
                                           "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}
ASK = [{"role": "user", "content": "Ann is 31. Extract the person."}]


def test_json_schema_answer_is_the_document(client: openai.OpenAI,
                                            upstream: FakeUpstream) -> None:
    upstream.script(structured({"name": "Ann", "age": 31}, preamble="Let me extract that."))
    completion = client.chat.completions.create(model="sonnet", messages=ASK, response_format={
        "type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}})
    content = completion.choices[0].message.content or ""
    document = json.loads(content)
    jsonschema.validate(document, PERSON)
    assert document == {"name": "Ann", "age": 31}
    assert "extract" not in content  # text around the document is not the answer
    assert completion.choices[0].finish_reason == "stop"
    assert offered_schema(upstream) == PERSON


def test_json_schema_streams_the_document(client: openai.OpenAI,
                                          upstream: FakeUpstream) -> None:
    upstream.script(structured({"name": "Bo", "age": 7}))
    chunks = list(client.chat.completions.create(
        model="sonnet", messages=ASK, stream=True, response_format={
            "type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices
              and c.choices[0].delta.content]
    assert len(pieces) > 1
    assert json.loads("".join(pieces)) == {"name": "Bo", "age": 7}
    assert chunks[-1].choices[0].finish_reason == "stop"


class Person(pydantic.BaseModel):
    name: str
    age: int


def test_openai_sdk_parse_helper_returns_the_model(client: openai.OpenAI,
                                                   upstream: FakeUpstream) -> None:
    upstream.script(structured({"name": "Cy", "age": 44}))
    completion = client.chat.completions.parse(model="sonnet", messages=ASK,
                                               response_format=Person)
    assert completion.choices[0].message.parsed == Person(name="Cy", age=44)
    assert offered_schema(upstream)["required"] == ["name", "age"]


def test_json_object_mode_returns_an_object(client: openai.OpenAI,
                                            upstream: FakeUpstream) -> None:
    upstream.script(structured({"anything": [1, 2, 3]}))
    completion = client.chat.completions.create(model="sonnet", messages=ASK,
                                                response_format={"type": "json_object"})
    assert json.loads(completion.choices[0].message.content or "") == {"anything": [1, 2, 3]}
    assert offered_schema(upstream) == {"type": "object"}


@pytest.mark.parametrize("schema", [{"type": "object", "properties": {"a": {"type": 5}}},
                                    {"type": "array", "items": {"type": "string"}}])
def test_invalid_schemas_are_400(client: openai.OpenAI, schema: dict[str, Any]) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="sonnet", messages=ASK, response_format={
            "type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert caught.value.param == "response_format.json_schema.schema"


def test_thinking_is_reasoning_content(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply(blocks=[Thinking("First, recall that 6 times 7 is 42."),
                                  Text("42")]))
    completion = client.chat.completions.create(
        model="sonnet", messages=[{"role": "user", "content": "6*7?"}], reasoning_effort="high")
    message = completion.choices[0].message
    assert message.content == "42"
    assert getattr(message, "reasoning_content", None) == "First, recall that 6 times 7 is 42."
    assert upstream.message_requests()[-1].body["output_config"]["effort"] == "high"


def test_thinking_streams_as_reasoning_deltas_before_the_answer(
        client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.script(Reply(blocks=[Thinking("Let me think step by step."), Text("Done.")]))
    kinds: list[tuple[str, str]] = []
    for chunk in client.chat.completions.create(
            model="sonnet", stream=True, reasoning_effort="low",
            messages=[{"role": "user", "content": "think"}]):
        if chunk.choices:
            delta = chunk.choices[0].delta
            if getattr(delta, "reasoning_content", None):
                kinds.append(("reasoning", delta.reasoning_content))  # type: ignore[attr-defined]
            if delta.content:
                kinds.append(("content", delta.content))
    reasoning = "".join(t for k, t in kinds if k == "reasoning")
    assert reasoning == "Let me think step by step."
    assert "".join(t for k, t in kinds if k == "content") == "Done."
    assert kinds[0][0] == "reasoning" and kinds[-1][0] == "content"
    assert upstream.message_requests()[-1].body["output_config"]["effort"] == "low"


def test_reasoning_can_be_hidden(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reset()
    gateway: Gateway = start_gateway(upstream, tmp_path, chat__reasoning_content="false")
    try:
        gateway.wait_idle()
        upstream.script(Reply(blocks=[Thinking("private musing"), Text("Answer.")]))
        message = gateway.client().chat.completions.create(
            model="sonnet", messages=[{"role": "user", "content": "x"}]).choices[0].message
        assert message.content == "Answer."
        assert getattr(message, "reasoning_content", None) is None
    finally:
        gateway.stop()


def test_no_document_from_claude_is_a_clear_error(client: openai.OpenAI,
                                                  upstream: FakeUpstream) -> None:
    # Claude answers in prose twice (the CLI insists once): there is no document.
    upstream.script(Reply.text("Ann, 31."), Reply.text("Still prose."))
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="sonnet", messages=ASK,
                                       response_format={"type": "json_object"})
    assert caught.value.status_code == 502
    assert "schema" in str(caught.value.message)
