"""Pure translation of an OpenAI Responses request into a neutral turn.

``previous`` is the conversation a ``previous_response_id`` ended with; the
request's input items follow it. Instructions are not carried over from the
previous response (as on OpenAI). Items of hosted tools (``web_search_call``,
``local_shell_call``...) are dropped: Claude never had those tools, and OpenAI's
own encrypted content (compaction) is unreadable here.
"""

from __future__ import annotations

import json
from typing import Any

from ...catalog import Catalog
from ...errors import InvalidRequest, Unsupported
from ...events import Message, Role, ToolChoice, ToolSpec, TurnRequest
from ...media import image_placeholder
from ...schemas import OPENAI_EFFORTS, openai_temperature, output_schema
from .models import (
    HOSTED_TOOLS,
    AllowedTools,
    CustomToolCallItem,
    CustomToolCallOutputItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    HostedChoice,
    InputImage,
    InputText,
    ItemReference,
    MessageItem,
    OutputText,
    Part,
    ReasoningItem,
    Refusal,
    ResponsesRequest,
)
from .reasoning import unseal
from .tools import ClientTools, client_tools


def to_turn(request: ResponsesRequest, catalog: Catalog,
            previous: list[Message] | None = None,
            offered: ClientTools | None = None) -> TurnRequest:
    model = catalog.resolve(request.model)
    offered = offered or client_tools(request)
    tools, choice = _tool_choice(request, offered)
    system, turns = _conversation(request, list(previous or []), offered)
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
        parallel_tools=request.parallel_tool_calls is not False,
        output_schema=output_schema(fmt.type if fmt else None, fmt.schema_ if fmt else None,
                                    "text.format.schema"))


def _tool_choice(request: ResponsesRequest, offered: ClientTools
                 ) -> tuple[tuple[ToolSpec, ...], ToolChoice]:
    """The tools Claude is offered, and the choice among them."""
    choice, specs = request.tool_choice, offered.specs
    if choice is None or choice == "auto":
        return specs, ToolChoice()
    if choice == "required" and not specs and offered.ignored:
        raise InvalidRequest("tool_choice 'required' can only be met by hosted tools ("
                             f"{', '.join(offered.ignored)}), which this gateway cannot run",
                             param="tool_choice")
    if isinstance(choice, str):
        return specs, ToolChoice("none" if choice == "none" else "required")
    if isinstance(choice, HostedChoice):
        if choice.type in ("function", "custom", "allowed_tools"):
            needs = "`mode` and `tools`" if choice.type == "allowed_tools" else "a `name`"
            raise InvalidRequest(f"a '{choice.type}' tool_choice needs {needs}",
                                 param="tool_choice")
        if choice.type not in (*HOSTED_TOOLS, "computer_use"):
            raise InvalidRequest(f"Invalid value for 'tool_choice.type': '{choice.type}' is "
                                 "not a tool type", param="tool_choice.type")
        raise InvalidRequest(f"tool_choice requires the hosted tool '{choice.type}', which "
                             "this gateway cannot run; offer a function instead",
                             param="tool_choice")
    if isinstance(choice, AllowedTools):
        allowed = _allowed(choice, offered)
        if choice.mode == "required" and not allowed:
            raise InvalidRequest("tool_choice.tools names none of the function or custom "
                                 "tools in `tools`; hosted tools cannot be run here",
                                 param="tool_choice.tools")
        return (tuple(s for s in specs if s.name in allowed),
                ToolChoice("required" if choice.mode == "required" else "auto"))
    names = [claude for claude, t in offered.targets.items()
             if t.kind == choice.type and t.name == choice.name]
    top = [claude for claude in names if offered.targets[claude].namespace is None]
    if len(top or names) != 1:
        raise InvalidRequest(f"tool_choice names the {choice.type} tool '{choice.name}', "
                             "which is not in `tools`" if not names else
                             f"tool_choice names '{choice.name}', which several namespaces "
                             "hold", param="tool_choice")
    return specs, ToolChoice("named", (top or names)[0])


def _allowed(choice: AllowedTools, offered: ClientTools) -> set[str]:
    allowed: set[str] = set()
    for entry in choice.tools:
        kind, name, space = entry.get("type"), entry.get("name"), entry.get("namespace")
        for claude, target in offered.targets.items():
            if kind == "namespace" and target.namespace == name or \
                    kind == target.kind and name == target.name and \
                    (space is None or space == target.namespace):
                allowed.add(claude)
    return allowed


def _conversation(request: ResponsesRequest, turns: list[Message], offered: ClientTools
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
        elif isinstance(item, FunctionCallItem | CustomToolCallItem):
            add("assistant", (_call(item, i, offered),))
        elif isinstance(item, FunctionCallOutputItem | CustomToolCallOutputItem):
            add("user", ({"type": "tool_result", "tool_use_id": item.call_id,
                          "content": _output(item.output, f"input[{i}].output")},))
        elif isinstance(item, ReasoningItem):
            # Our own sealed thinking goes back to Claude; any other reasoning is dropped.
            thinking = unseal(item.encrypted_content)
            if thinking is not None:
                add("assistant", (thinking,))
        elif isinstance(item, ItemReference):
            raise Unsupported("item references are not supported; send the item itself",
                              param=f"input[{i}]")
        # items of hosted tools: dropped (see the module's docstring)
    return "\n\n".join(p for p in system if p) or None, turns


def _call(item: FunctionCallItem | CustomToolCallItem, i: int,
          offered: ClientTools) -> dict[str, Any]:
    name = offered.claude_name(item.name, item.namespace)
    if isinstance(item, CustomToolCallItem):
        return {"type": "tool_use", "id": item.call_id, "name": name,
                "input": {"input": item.input}}
    try:
        arguments = json.loads(item.arguments or "{}")
    except json.JSONDecodeError:
        raise InvalidRequest("is not valid JSON", param=f"input[{i}].arguments") from None
    if not isinstance(arguments, dict):
        raise InvalidRequest("must be a JSON object", param=f"input[{i}].arguments")
    return {"type": "tool_use", "id": item.call_id, "name": name, "input": arguments}


def _output(output: str | list[Part], param: str) -> str | list[dict[str, Any]]:
    """A tool's output: its text, or text and image blocks (Codex's view_image)."""
    if isinstance(output, str):
        return output
    blocks = list(_parts(output, param))
    if all(b["type"] == "text" for b in blocks):
        return "".join(b["text"] for b in blocks)
    return blocks


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
