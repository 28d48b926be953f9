"""Pure translation of an Anthropic Messages request into a neutral turn.

The neutral turn already speaks Anthropic's block shape, so most blocks pass
through; images become placeholders the media resolver checks like any other.
"""

from __future__ import annotations

import json
from typing import Any

from ...catalog import Catalog
from ...errors import InvalidRequest, Unsupported
from ...events import Effort, Message, Role, ToolChoice, ToolSpec, TurnRequest
from ...media import image_placeholder
from ...schemas import output_schema, tool_specs
from .models import (
    Base64Source,
    Block,
    CountTokensRequest,
    DocumentBlock,
    ImageBlock,
    MessagesRequest,
    TextBlock,
    ThinkingAdaptive,
    ThinkingBlock,
    ThinkingDisabled,
    ThinkingEnabled,
    ToolChoiceAny,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolResultBlock,
)


def to_turn(request: MessagesRequest, catalog: Catalog) -> TurnRequest:
    _refuse_unsupported(request)
    model = catalog.resolve(request.model)
    tools = _tools(request)
    choice = _tool_choice(request, tools)
    turns, notes = _turns(request)
    if not turns or turns[-1].role != "user":
        raise InvalidRequest("the last message must be a user message (prefilling the "
                             "assistant's answer is not supported)", param="messages")
    system = "\n\n".join(p for p in (system_text(request.system), *notes) if p) or None
    return TurnRequest(model=model, prompt=turns[-1].content, system=system,
                       history=tuple(turns[:-1]), max_tokens=request.max_tokens,
                       stop=tuple(request.stop_sequences or ()), tools=tools,
                       tool_choice=choice, output_schema=_output_schema(request),
                       effort=_effort(request), temperature=request.temperature,
                       top_p=request.top_p, top_k=request.top_k,
                       parallel_tools=not _one_call_only(request))


def _refuse_unsupported(request: MessagesRequest) -> None:
    """Fields that would change what the answer is, and that Claude Code cannot honour."""
    if request.mcp_servers:
        raise Unsupported("Anthropic's MCP connector is not available here: define the "
                          "functions as `tools`", param="mcp_servers")
    if request.container is not None:
        raise Unsupported("containers belong to Anthropic's code execution tool, which is "
                          "not available here", param="container")
    if request.output_config is not None and request.output_config.task_budget is not None:
        raise Unsupported("task budgets are not supported", param="output_config.task_budget")


def _output_schema(request: MessagesRequest) -> str | None:
    """Structured output: ``output_config.format``, or its older top-level spelling."""
    config = request.output_config.format if request.output_config else None
    if config is not None and request.output_format is not None:
        raise InvalidRequest("give the format once, as output_config.format (output_format "
                             "is its deprecated spelling)", param="output_format")
    if config is not None:
        return output_schema("json_schema", config.schema_, "output_config.format.schema")
    if request.output_format is not None:
        return output_schema("json_schema", request.output_format.schema_,
                             "output_format.schema")
    return None


# The CLI has no such option: like a non-auto tool_choice, an instruction.
def _one_call_only(request: MessagesRequest) -> bool:
    choice = request.tool_choice
    return bool(choice is not None and not isinstance(choice, ToolChoiceNone)
                and choice.disable_parallel_tool_use)


def system_text(system: str | list[TextBlock] | None) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    return "\n\n".join(block.text for block in system if block.text)


def _tools(request: MessagesRequest) -> tuple[ToolSpec, ...]:
    for i, tool in enumerate(request.tools or []):
        if tool.type not in (None, "custom"):
            raise Unsupported(f"'{tool.type}' is one of Anthropic's server tools, which are "
                              "not available here; define client tools (with input_schema)",
                              param=f"tools[{i}].type")
        if tool.input_schema is None:
            raise InvalidRequest("a client tool needs an input_schema",
                                 param=f"tools[{i}].input_schema")
    return tool_specs((t.name, t.description, t.input_schema, f"tools[{i}]")
                      for i, t in enumerate(request.tools or []))


def _tool_choice(request: MessagesRequest, tools: tuple[ToolSpec, ...]) -> ToolChoice:
    choice = request.tool_choice
    if choice is None or not tools and isinstance(choice, ToolChoiceNone):
        return ToolChoice()
    if isinstance(choice, ToolChoiceNone):
        return ToolChoice("none")
    if isinstance(choice, ToolChoiceAny):
        return ToolChoice("required")
    if isinstance(choice, ToolChoiceTool):
        if all(spec.name != choice.name for spec in tools):
            raise InvalidRequest(f"tool_choice names '{choice.name}', which is not in `tools`",
                                 param="tool_choice.name")
        return ToolChoice("named", choice.name)
    return ToolChoice()


def thinking_omitted(request: MessagesRequest) -> bool:
    thinking = request.thinking
    return isinstance(thinking, ThinkingEnabled | ThinkingAdaptive) and \
        thinking.display == "omitted"


def _effort(request: MessagesRequest) -> Effort | None:
    """``output_config.effort`` as given; else Claude Code sets thinking by effort, and
    a thinking budget maps to the nearest level."""
    if request.output_config is not None and request.output_config.effort is not None:
        return request.output_config.effort
    thinking = request.thinking
    if isinstance(thinking, ThinkingDisabled):
        return "low"
    if isinstance(thinking, ThinkingEnabled):
        budget = thinking.budget_tokens
        return "high" if budget >= 16_000 else "medium" if budget >= 4_000 else "low"
    return None


def _turns(request: MessagesRequest | CountTokensRequest) -> tuple[list[Message], list[str]]:
    """The user/assistant turns, and the text of system-role messages."""
    turns: list[Message] = []
    notes: list[str] = []
    for i, message in enumerate(request.messages):
        blocks = _blocks(message.content, i)
        if not blocks:
            raise InvalidRequest("a message needs content", param=f"messages[{i}].content")
        if message.role == "system":
            notes.append("\n".join(b.get("text", "") for b in blocks if b["type"] == "text"))
            continue
        role: Role = message.role
        if turns and turns[-1].role == role:
            turns[-1] = Message(role, turns[-1].content + blocks)
        else:
            turns.append(Message(role, blocks))
    return turns, notes


def _blocks(content: str | list[Block], i: int) -> tuple[dict[str, Any], ...]:
    if isinstance(content, str):
        return ({"type": "text", "text": content},) if content else ()
    out: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        param = f"messages[{i}].content[{j}]"
        if isinstance(block, ImageBlock):
            out.append(image_placeholder(_image_url(block), f"{param}.source"))
        elif isinstance(block, DocumentBlock):
            raise Unsupported("document blocks are not supported; send text or images",
                              param=param)
        elif isinstance(block, ToolResultBlock):
            out.append(_tool_result(block, param))
        elif isinstance(block, TextBlock) and not block.text:
            continue
        elif isinstance(block, ThinkingBlock) and not block.signature:
            # Unsigned thinking is ours (agent-mode progress): the API would refuse it.
            continue
        else:
            out.append(block.model_dump(exclude_none=True, exclude={"cache_control"}))
    return tuple(out)


def _image_url(block: ImageBlock) -> str:
    source = block.source
    if isinstance(source, Base64Source):
        return f"data:{source.media_type};base64,{source.data}"
    return source.url


def _tool_result(block: ToolResultBlock, param: str) -> dict[str, Any]:
    content: str | list[dict[str, Any]]
    if isinstance(block.content, str):
        content = block.content
    else:
        content = []
        for k, part in enumerate(block.content):
            if isinstance(part, ImageBlock) and not isinstance(part.source, Base64Source):
                raise Unsupported("images inside tool results must be base64",
                                  param=f"{param}.content[{k}]")
            if isinstance(part, ImageBlock):  # checked like any other image
                content.append(image_placeholder(_image_url(part),
                                                 f"{param}.content[{k}].source"))
                continue
            content.append(part.model_dump(exclude_none=True, exclude={"cache_control"}))
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": block.tool_use_id,
                              "content": content}
    if block.is_error:
        result["is_error"] = True
    return result


def estimate_tokens(request: CountTokensRequest) -> int:
    """An estimate (~3.5 characters a token): the CLI offers no token counter, and a
    Claude login cannot call Anthropic's counting endpoint."""
    parts: list[Any] = [system_text(request.system)]
    parts += [m.model_dump(exclude_none=True) for m in request.messages]
    parts += [t.model_dump(exclude_none=True) for t in request.tools or []]
    size = len(json.dumps(parts, ensure_ascii=False))
    return max(1, round(size / 3.5))
