"""Pure translation of an OpenAI chat request into a neutral turn.

System and developer messages become the system prompt; user, assistant and
tool messages become real turns in Anthropic's block shape (tool calls as
``tool_use`` blocks, tool messages as ``tool_result`` blocks in the next user
turn). Every refusal names the offending ``param``.
"""

from __future__ import annotations

import json
from typing import Any

from ...catalog import Catalog
from ...errors import InvalidRequest, Unsupported
from ...events import Message, Role, ToolChoice, ToolSpec, TurnRequest
from ...media import image_placeholder
from ...schemas import OPENAI_EFFORTS, openai_temperature, output_schema, tool_specs
from .models import (
    AssistantMessage,
    ChatCompletionRequest,
    ImagePart,
    JSONObjectFormat,
    JSONSchemaFormat,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
)


def to_turn(request: ChatCompletionRequest, catalog: Catalog) -> TurnRequest:
    _refuse_unsupported(request)
    model = catalog.resolve(request.model)
    tools = _tools(request)
    choice = _tool_choice(request, tools)
    system_parts, turns = _conversation(request)
    if not turns or turns[-1].role != "user":
        raise InvalidRequest("the last message must have role 'user' or 'tool' (there must "
                             "be something for the assistant to answer)", param="messages")
    max_tokens = request.max_completion_tokens or request.max_tokens
    system = "\n\n".join(p for p in system_parts if p) or None
    effort = OPENAI_EFFORTS.get(request.reasoning_effort or "")
    return TurnRequest(model=model, prompt=turns[-1].content, system=system,
                       history=tuple(turns[:-1]), max_tokens=max_tokens,
                       stop=request.stop_sequences(), tools=tools, tool_choice=choice,
                       output_schema=_output_schema(request), effort=effort,
                       temperature=openai_temperature(request.temperature),
                       top_p=request.top_p,
                       parallel_tools=request.parallel_tool_calls is not False)


def _output_schema(request: ChatCompletionRequest) -> str | None:
    fmt = request.response_format
    if isinstance(fmt, JSONObjectFormat):
        return output_schema("json_object", None, "response_format")
    if isinstance(fmt, JSONSchemaFormat):
        return output_schema("json_schema", fmt.json_schema.schema_,
                             "response_format.json_schema.schema")
    return None


def _refuse_unsupported(request: ChatCompletionRequest) -> None:
    if request.n is not None and request.n > 1:
        raise Unsupported("n > 1 is not supported: send one request per choice", param="n")
    if request.logprobs or request.top_logprobs:
        param = "logprobs" if request.logprobs else "top_logprobs"
        raise Unsupported("logprobs are not available from Claude", param=param)
    if request.functions or request.function_call:
        raise Unsupported("the legacy `functions` API is not supported; use `tools`",
                          param="functions" if request.functions else "function_call")
    if request.audio is not None or "audio" in (request.modalities or []):
        raise Unsupported("audio output is not available from Claude", param="modalities")
    if isinstance(request.stop, list) and len(request.stop) > 4:
        raise InvalidRequest("stop may hold at most 4 sequences", param="stop")


def _tools(request: ChatCompletionRequest) -> tuple[ToolSpec, ...]:
    return tool_specs((t.function.name, t.function.description, t.function.parameters,
                       f"tools[{i}].function") for i, t in enumerate(request.tools or []))


def _tool_choice(request: ChatCompletionRequest, tools: tuple[ToolSpec, ...]) -> ToolChoice:
    choice = request.tool_choice
    if choice is None or choice == "auto":
        return ToolChoice()
    if not tools:
        raise InvalidRequest("tool_choice needs `tools`", param="tool_choice")
    if isinstance(choice, str):
        return ToolChoice("none" if choice == "none" else "required")
    name = choice.function.name
    if all(spec.name != name for spec in tools):
        raise InvalidRequest(f"tool_choice names '{name}', which is not in `tools`",
                             param="tool_choice")
    return ToolChoice("named", name)


def _conversation(request: ChatCompletionRequest) -> tuple[list[str], list[Message]]:
    """System texts, and the turns with consecutive user content merged."""
    system: list[str] = []
    turns: list[Message] = []
    open_calls: dict[str, int] = {}  # tool call id -> index of the assistant message

    def add(role: Role, blocks: tuple[dict[str, Any], ...]) -> None:
        if turns and turns[-1].role == role == "user":
            blocks = turns.pop().content + blocks
        turns.append(Message(role, blocks))

    for i, message in enumerate(request.messages):
        if isinstance(message, SystemMessage):
            system.append(_text_of(message.content))
        elif isinstance(message, ToolMessage):
            if open_calls.pop(message.tool_call_id, None) is None:
                raise InvalidRequest(f"no assistant tool call has the id "
                                     f"'{message.tool_call_id}'",
                                     param=f"messages[{i}].tool_call_id")
            add("user", (_tool_result(message),))
        elif open_calls:
            raise InvalidRequest(f"tool calls {sorted(open_calls)} have no tool message with "
                                 "their result", param=f"messages[{min(open_calls.values())}]")
        elif isinstance(message, UserMessage):
            add("user", _user_blocks(message, i))
        elif isinstance(message, AssistantMessage):
            blocks = _assistant_blocks(message, i)
            open_calls = {b["id"]: i for b in blocks if b["type"] == "tool_use"}
            if blocks:
                add("assistant", blocks)
        else:
            raise Unsupported("messages with role 'function' (the legacy functions API) are "
                              "not supported; use tool messages", param=f"messages[{i}].role")
    if open_calls:
        raise InvalidRequest(f"tool calls {sorted(open_calls)} have no tool message with "
                             "their result", param=f"messages[{min(open_calls.values())}]")
    return system, turns


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
            if isinstance(part, ImagePart):
                blocks.append(image_placeholder(part.image_url.url,
                                                f"messages[{i}].content[{j}].image_url.url"))
            elif not isinstance(part, TextPart):
                raise Unsupported(f"'{part.type}' content parts are not supported (Claude "
                                  "reads text and images)", param=f"messages[{i}].content[{j}]")
            elif part.text:
                blocks.append({"type": "text", "text": part.text})
    if not blocks:
        raise InvalidRequest("a user message needs some text or an image",
                             param=f"messages[{i}].content")
    return tuple(blocks)


def _assistant_blocks(message: AssistantMessage, i: int) -> tuple[dict[str, Any], ...]:
    if message.function_call:
        raise Unsupported("the legacy `function_call` is not supported; use `tool_calls`",
                          param=f"messages[{i}].function_call")
    content = message.content
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        text = "".join(p.text if isinstance(p, TextPart) else p.refusal for p in content)
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for j, call in enumerate(message.tool_calls or []):
        param = f"messages[{i}].tool_calls[{j}].function.arguments"
        try:
            arguments = json.loads(call.function.arguments or "{}")
        except json.JSONDecodeError:
            raise InvalidRequest("is not valid JSON", param=param) from None
        if not isinstance(arguments, dict):
            raise InvalidRequest("must be a JSON object", param=param)
        blocks.append({"type": "tool_use", "id": call.id, "name": call.function.name,
                       "input": arguments})
    return tuple(blocks)


def _tool_result(message: ToolMessage) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": message.tool_call_id,
            "content": _text_of(message.content)}
