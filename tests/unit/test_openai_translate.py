"""OpenAI chat request -> neutral turn, and the bodies we send back."""

from __future__ import annotations

from typing import Any

import pytest

from claude_code_api.catalog import Catalog
from claude_code_api.dialects.openai_chat.models import ChatCompletionRequest
from claude_code_api.dialects.openai_chat.translate import (
    ChunkWriter,
    completion_body,
    to_turn,
)
from claude_code_api.errors import InvalidRequest, ModelNotFound, Unsupported
from claude_code_api.events import Message, Usage
from tests.openapi import validate

CATALOG = Catalog({"gpt-4o": "sonnet"})


def turn_of(**body: Any) -> Any:
    body.setdefault("model", "sonnet")
    return to_turn(ChatCompletionRequest.model_validate(body), CATALOG)


def test_system_and_developer_messages_join_into_the_system_prompt() -> None:
    turn = turn_of(messages=[{"role": "system", "content": "A."},
                             {"role": "user", "content": "q1"},
                             {"role": "developer", "content": [{"type": "text", "text": "B."}]},
                             {"role": "user", "content": "q2"}])
    assert turn.system == "A.\n\nB."
    assert turn.history == (Message("user", ({"type": "text", "text": "q1"},)),)
    assert turn.prompt == ({"type": "text", "text": "q2"},)


def test_no_system_message_means_no_system_prompt() -> None:
    assert turn_of(messages=[{"role": "user", "content": "hi"}]).system is None


def test_history_keeps_roles_and_drops_empty_assistant_turns() -> None:
    turn = turn_of(messages=[{"role": "user", "content": "a"},
                             {"role": "assistant", "content": None},
                             {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
                             {"role": "user", "content": "c"}])
    assert [m.role for m in turn.history] == ["user", "assistant"]


def test_parameters_map_to_the_turn() -> None:
    turn = turn_of(model="gpt-4o", messages=[{"role": "user", "content": "x"}],
                   max_tokens=10, max_completion_tokens=20, stop="END")
    assert (turn.model, turn.max_tokens, turn.stop) == ("sonnet", 20, ("END",))


@pytest.mark.parametrize(("body", "error", "param"), [
    ({"messages": [{"role": "user", "content": "x"}], "model": "llama-3"}, ModelNotFound,
     "model"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 3}, Unsupported, "n"),
    ({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, Unsupported,
     "top_logprobs"),
    ({"messages": [{"role": "user", "content": "x"}],
      "response_format": {"type": "json_object"}}, Unsupported, "response_format"),
    ({"messages": [{"role": "tool", "content": "r", "tool_call_id": "c"}]}, Unsupported,
     "messages[0].role"),
    ({"messages": [{"role": "system", "content": "only system"}]}, InvalidRequest, "messages"),
])
def test_refusals_name_their_param(body: dict[str, Any], error: type[Exception],
                                   param: str) -> None:
    with pytest.raises(error) as caught:
        turn_of(**body)
    assert getattr(caught.value, "param", None) == param


def test_completion_body_matches_the_openapi_schema() -> None:
    body = completion_body("chatcmpl-1", "claude-sonnet-5-5", "hi", "max_tokens",
                           Usage(1, 2, 3, 0))
    validate(body, "CreateChatCompletionResponse")
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["prompt_tokens"] == 4
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 3}


def test_chunks_match_the_openapi_schema() -> None:
    writer = ChunkWriter("chatcmpl-1", "m", include_usage=True)
    for chunk in (writer.role(), writer.text("x"), writer.finish("end_turn"),
                  writer.usage(Usage(1, 1))):
        validate(chunk, "CreateChatCompletionStreamResponse")
    assert writer.text("x")["usage"] is None
    assert writer.usage(Usage(1, 1))["choices"] == []
