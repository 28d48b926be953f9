"""Pure rendering of neutral events as OpenAI chat bodies and chunks.

Bodies are built with the openai package's own types and dumped the way OpenAI
sends them: unused fields left out, but ``logprobs``, ``message.refusal`` and a
chunk's ``finish_reason`` always present (null when unused).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageFunctionToolCall,
)
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import (
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
)
from openai.types.chat.chat_completion_message_function_tool_call import Function
from openai.types.completion_usage import CompletionUsage, PromptTokensDetails

from ...events import Answer, StopReason, Usage

FINISH_REASONS: dict[StopReason, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


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


def completion_body(cid: str, model: str, answer: Answer, stop: StopReason,
                    usage: Usage) -> dict[str, Any]:
    text, reasoning = answer.text, answer.reasoning
    tool_calls = [ChatCompletionMessageFunctionToolCall(
        id=call_id, type="function", function=Function(name=name, arguments=arguments or "{}"))
        for call_id, name, arguments in answer.calls]
    message = ChatCompletionMessage(role="assistant", content=text or None if tool_calls else text,
                                    tool_calls=tool_calls or None)
    completion = ChatCompletion(
        id=cid,
        object="chat.completion",
        created=int(time.time()),
        model=model,
        choices=[Choice(index=0, finish_reason=FINISH_REASONS[stop], message=message)],
        usage=usage_body(usage),
    )
    body = completion.model_dump(mode="json", exclude_none=True)
    body["choices"][0]["logprobs"] = None
    body["choices"][0]["message"]["refusal"] = None
    body["choices"][0]["message"].setdefault("content", None)
    if reasoning:
        # Not in OpenAI's schema: the field OpenCode, the Vercel AI SDK and others read.
        body["choices"][0]["message"]["reasoning_content"] = reasoning
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

    def reasoning(self, text: str) -> dict[str, Any]:
        body = self._chunk(ChoiceDelta())
        body["choices"][0]["delta"]["reasoning_content"] = text
        return body

    def tool_start(self, index: int, call_id: str, name: str) -> dict[str, Any]:
        return self._chunk(ChoiceDelta(tool_calls=[ChoiceDeltaToolCall(
            index=index, id=call_id, type="function",
            function=ChoiceDeltaToolCallFunction(name=name, arguments=""))]))

    def tool_arguments(self, index: int, fragment: str) -> dict[str, Any]:
        return self._chunk(ChoiceDelta(tool_calls=[ChoiceDeltaToolCall(
            index=index, function=ChoiceDeltaToolCallFunction(arguments=fragment))]))

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
