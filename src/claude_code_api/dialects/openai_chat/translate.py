"""Pure translation: OpenAI chat request -> neutral turn; neutral events -> OpenAI bodies.

Bodies are built with the openai package's own types and dumped the way OpenAI
sends them: unused fields left out, but ``logprobs``, ``message.refusal`` and a
chunk's ``finish_reason`` always present (null when unused).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from openai.types.completion_usage import CompletionUsage, PromptTokensDetails

from ...catalog import Catalog
from ...errors import InvalidRequest, Unsupported
from ...events import Message, StopReason, TurnRequest, Usage
from .models import (
    AssistantMessage,
    ChatCompletionRequest,
    SystemMessage,
    TextPart,
    UserMessage,
)

FINISH_REASONS: dict[StopReason, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Parameters we refuse outright rather than silently ignore (see README).
_LATER = "is not supported by this gateway yet"


def to_turn(request: ChatCompletionRequest, catalog: Catalog) -> TurnRequest:
    _refuse_unsupported(request)
    model = catalog.resolve(request.model)
    system_parts: list[str] = []
    turns: list[Message] = []
    for i, message in enumerate(request.messages):
        if isinstance(message, SystemMessage):
            system_parts.append(_text_of(message.content))
        elif isinstance(message, UserMessage):
            turns.append(Message("user", _user_blocks(message, i)))
        elif isinstance(message, AssistantMessage):
            blocks = _assistant_blocks(message, i)
            if blocks:
                turns.append(Message("assistant", blocks))
        else:
            raise Unsupported(f"messages with role '{message.role}' (tool results) {_LATER}",
                              param=f"messages[{i}].role")
    if not turns or turns[-1].role != "user":
        raise InvalidRequest("the last message must have role 'user' (or there must be at "
                             "least one user message after the system messages)",
                             param="messages")
    max_tokens = request.max_completion_tokens or request.max_tokens
    system = "\n\n".join(p for p in system_parts if p) or None
    return TurnRequest(model=model, prompt=turns[-1].content, system=system,
                       history=tuple(turns[:-1]), max_tokens=max_tokens,
                       stop=request.stop_sequences())


def _refuse_unsupported(request: ChatCompletionRequest) -> None:
    if request.n is not None and request.n > 1:
        raise Unsupported("n > 1 is not supported: send one request per choice", param="n")
    if request.logprobs or request.top_logprobs:
        param = "logprobs" if request.logprobs else "top_logprobs"
        raise Unsupported("logprobs are not available from Claude", param=param)
    if request.tools or request.functions:
        raise Unsupported(f"tool calling {_LATER}", param="tools")
    fmt = (request.response_format or {}).get("type")
    if fmt not in (None, "text"):
        raise Unsupported(f"response_format '{fmt}' {_LATER}", param="response_format")
    if request.audio is not None or "audio" in (request.modalities or []):
        raise Unsupported("audio output is not available from Claude", param="modalities")
    if isinstance(request.stop, list) and len(request.stop) > 4:
        raise InvalidRequest("stop may hold at most 4 sequences", param="stop")


def _text_of(content: str | list[TextPart]) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.text for part in content)


def _user_blocks(message: UserMessage, i: int) -> tuple[dict[str, Any], ...]:
    if isinstance(message.content, str):
        blocks = [{"type": "text", "text": message.content}] if message.content else []
    else:
        blocks = []
        for j, part in enumerate(message.content):
            if not isinstance(part, TextPart):
                raise Unsupported(f"'{part.type}' content parts {_LATER}",
                                  param=f"messages[{i}].content[{j}]")
            if part.text:
                blocks.append({"type": "text", "text": part.text})
    if not blocks:
        raise InvalidRequest("a user message needs some text", param=f"messages[{i}].content")
    return tuple(blocks)


def _assistant_blocks(message: AssistantMessage, i: int) -> tuple[dict[str, Any], ...]:
    if message.tool_calls or message.function_call:
        raise Unsupported(f"assistant tool calls in the history {_LATER}",
                          param=f"messages[{i}].tool_calls")
    content = message.content
    if content is None:
        return ()
    if isinstance(content, str):
        text = content
    else:
        text = "".join(p.text if isinstance(p, TextPart) else p.refusal for p in content)
    return ({"type": "text", "text": text},) if text else ()


# -- responses ---------------------------------------------------------------

def new_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def usage_body(usage: Usage) -> CompletionUsage:
    prompt = usage.prompt_tokens
    return CompletionUsage(
        prompt_tokens=prompt,
        completion_tokens=usage.output_tokens,
        total_tokens=prompt + usage.output_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cache_read_input_tokens),
    )


def completion_body(cid: str, model: str, text: str, stop: StopReason, usage: Usage,
                    created: int | None = None) -> dict[str, Any]:
    completion = ChatCompletion(
        id=cid,
        object="chat.completion",
        created=created or int(time.time()),
        model=model,
        choices=[Choice(index=0, finish_reason=FINISH_REASONS[stop],
                        message=ChatCompletionMessage(role="assistant", content=text))],
        usage=usage_body(usage),
    )
    body = completion.model_dump(mode="json", exclude_none=True)
    body["choices"][0]["logprobs"] = None
    body["choices"][0]["message"]["refusal"] = None
    return body


class ChunkWriter:
    """Builds the chunks of one streamed completion, in OpenAI's conventions."""

    def __init__(self, cid: str, model: str, include_usage: bool) -> None:
        self.cid = cid
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage

    def _chunk(self, delta: ChoiceDelta, finish: str | None = None) -> dict[str, Any]:
        chunk = ChatCompletionChunk(
            id=self.cid, object="chat.completion.chunk", created=self.created, model=self.model,
            choices=[ChunkChoice(index=0, delta=delta,
                                 finish_reason=finish)],
        )
        body = chunk.model_dump(mode="json", exclude_none=True)
        body["choices"][0]["finish_reason"] = finish
        body["choices"][0]["logprobs"] = None
        if self.include_usage:
            body["usage"] = None
        return body

    def role(self) -> dict[str, Any]:
        body = self._chunk(ChoiceDelta(role="assistant", content=""))
        body["choices"][0]["delta"]["refusal"] = None
        return body

    def text(self, text: str) -> dict[str, Any]:
        return self._chunk(ChoiceDelta(content=text))

    def finish(self, stop: StopReason) -> dict[str, Any]:
        return self._chunk(ChoiceDelta(), FINISH_REASONS[stop])

    def usage(self, usage: Usage) -> dict[str, Any]:
        chunk = ChatCompletionChunk(
            id=self.cid, object="chat.completion.chunk", created=self.created, model=self.model,
            choices=[], usage=usage_body(usage),
        )
        return chunk.model_dump(mode="json", exclude_none=True)


def error_body(message: str, type_: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
