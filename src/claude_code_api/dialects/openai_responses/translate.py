"""Pure translation of an OpenAI Responses request into a neutral turn.

``previous`` is the conversation a ``previous_response_id`` ended with; the
request's input items follow it. Instructions are not carried over from the
previous response (as on OpenAI).
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
    FunctionCallItem,
    FunctionCallOutputItem,
    InputImage,
    InputText,
    MessageItem,
    OutputText,
    Part,
    Refusal,
    ResponsesRequest,
)


def to_turn(request: ResponsesRequest, catalog: Catalog,
            previous: list[Message] | None = None) -> TurnRequest:
    model = catalog.resolve(request.model)
    tools = _tools(request)
    choice = _tool_choice(request, tools)
    system, turns = _conversation(request, list(previous or []))
    if not turns or turns[-1].role != "user":
        raise InvalidRequest("the input must end with a user message or a function call "
                             "output", param="input")
    fmt = request.text.format if request.text else None
    effort = OPENAI_EFFORTS.get((request.reasoning.effort if request.reasoning else None) or "")
    return TurnRequest(
        model=model, prompt=turns[-1].content, history=tuple(turns[:-1]),
        system=system, max_tokens=request.max_output_tokens,
        tools=tools, tool_choice=choice, effort=effort,
        temperature=openai_temperature(request.temperature), top_p=request.top_p,
        output_schema=output_schema(fmt.type if fmt else None, fmt.schema_ if fmt else None,
                                    "text.format.schema"))


def _tools(request: ResponsesRequest) -> tuple[ToolSpec, ...]:
    return tool_specs((t.name, t.description, t.parameters, f"tools[{i}]")
                      for i, t in enumerate(request.tools or []))


def _tool_choice(request: ResponsesRequest, tools: tuple[ToolSpec, ...]) -> ToolChoice:
    choice = request.tool_choice
    if choice is None or choice == "auto":
        return ToolChoice()
    if isinstance(choice, str):
        return ToolChoice("none" if choice == "none" else "required")
    if all(spec.name != choice.name for spec in tools):
        raise InvalidRequest(f"tool_choice names '{choice.name}', which is not in `tools`",
                             param="tool_choice")
    return ToolChoice("named", choice.name)


def _conversation(request: ResponsesRequest, turns: list[Message]
                  ) -> tuple[str | None, list[Message]]:
    system = [request.instructions or ""]

    def add(role: Role, blocks: tuple[dict[str, Any], ...]) -> None:
        if turns and turns[-1].role == role:
            blocks = turns.pop().content + blocks
        turns.append(Message(role, blocks))

    items = request.input if isinstance(request.input, list) else [
        MessageItem(role="user", content=request.input)]
    for i, item in enumerate(items):
        if isinstance(item, MessageItem):
            if item.role in ("system", "developer"):
                system.append(_text(item.content))
                continue
            blocks = _parts(item.content, f"input[{i}].content")
            if blocks:
                add("user" if item.role == "user" else "assistant", blocks)
        elif isinstance(item, FunctionCallItem):
            add("assistant", (_call(item, i),))
        elif isinstance(item, FunctionCallOutputItem):
            add("user", ({"type": "tool_result", "tool_use_id": item.call_id,
                          "content": _text(item.output)},))
        # reasoning items are Claude's own business: dropped
    return "\n\n".join(p for p in system if p) or None, turns


def _call(item: FunctionCallItem, i: int) -> dict[str, Any]:
    try:
        arguments = json.loads(item.arguments or "{}")
    except json.JSONDecodeError:
        raise InvalidRequest("is not valid JSON", param=f"input[{i}].arguments") from None
    if not isinstance(arguments, dict):
        raise InvalidRequest("must be a JSON object", param=f"input[{i}].arguments")
    return {"type": "tool_use", "id": item.call_id, "name": item.name, "input": arguments}


def _text(content: str | list[Part]) -> str:
    if isinstance(content, str):
        return content
    return "".join(getattr(p, "text", "") or getattr(p, "refusal", "") for p in content)


def _parts(content: str | list[Part], param: str) -> tuple[dict[str, Any], ...]:
    if isinstance(content, str):
        return ({"type": "text", "text": content},) if content else ()
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        if isinstance(part, InputText | OutputText) and part.text:
            blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, Refusal):
            blocks.append({"type": "text", "text": part.refusal})
        elif isinstance(part, InputImage):
            if not part.image_url:
                raise Unsupported("images by file_id are not supported; use image_url",
                                  param=f"{param}[{j}]")
            blocks.append(image_placeholder(part.image_url, f"{param}[{j}].image_url"))
        elif not isinstance(part, InputText | OutputText):
            raise Unsupported(f"'{part.type}' parts are not supported", param=f"{param}[{j}]")
    return tuple(blocks)
