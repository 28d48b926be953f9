"""A Responses request's tools as Claude sees them, and the way back.

Claude gets one flat list of functions. A top-level ``function`` keeps its name;
a function inside a ``namespace`` is offered as ``<namespace>__<name>`` (Codex's
own flat spelling), or a unique hashed alias when that is taken, too long or not
a valid tool name; a ``custom`` (freeform) tool becomes a function of one string
``input``, its grammar stated in the description. ``ClientTools.target`` turns a
name Claude called back into what the client dispatches on: the kind of call
item, its ``name`` and its ``namespace``. Hosted tools (web search, shells,
remote MCP...) are left out and listed in ``ignored``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from openai.types.responses import Tool as SdkTool
from pydantic import TypeAdapter, ValidationError

from ...errors import InvalidRequest
from ...events import ToolSpec
from ...schemas import MAX_TOOL_NAME, tool_specs
from .models import CustomTool, FunctionTool, HostedTool, NamespaceTool, ResponsesRequest

_VALID = re.compile(rf"^[a-zA-Z0-9_-]{{1,{MAX_TOOL_NAME}}}$")
_SDK_TOOL: TypeAdapter[Any] = TypeAdapter(SdkTool)
CUSTOM_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["input"],
    "properties": {"input": {"type": "string",
                             "description": "The whole free-form input text of the tool."}}}


@dataclass(frozen=True)
class Target:
    """What the client called: the call item's kind, ``name`` and ``namespace``."""

    kind: Literal["function", "custom"]
    name: str
    namespace: str | None = None


@dataclass(frozen=True)
class ClientTools:
    specs: tuple[ToolSpec, ...] = ()
    targets: dict[str, Target] = field(default_factory=dict)  # Claude's name -> target
    ignored: tuple[str, ...] = ()  # hosted tool types left out, in request order

    def target(self, claude_name: str) -> Target:
        return self.targets.get(claude_name, Target("function", claude_name))

    def claude_name(self, name: str, namespace: str | None = None) -> str:
        """The name Claude knows a client tool by (for calls in a history)."""
        for claude, target in self.targets.items():
            if (target.name, target.namespace) == (name, namespace):
                return claude
        return flat_name(name, namespace, set())

    def custom(self, claude_name: str) -> bool:
        return self.target(claude_name).kind == "custom"


def flat_name(name: str, namespace: str | None, taken: set[str]) -> str:
    if namespace is None and _VALID.match(name):
        return name
    flat = f"{(namespace or '').rstrip('_')}__{name.lstrip('_')}" if namespace else name
    if _VALID.match(flat) and flat not in taken:
        return flat
    digest = hashlib.sha256(f"{namespace}\0{name}".encode()).hexdigest()[:8]
    stem = re.sub(r"[^a-zA-Z0-9_-]", "_", flat)[:MAX_TOOL_NAME - 9]
    return f"{stem}_{digest}"


def client_tools(request: ResponsesRequest) -> ClientTools:
    """The request's tools for Claude; 400 for two tools of one name or a bad schema."""
    entries: list[tuple[str, str | None, Any, str]] = []
    targets: dict[str, Target] = {}
    ignored: list[str] = []
    nested: list[tuple[FunctionTool | CustomTool, NamespaceTool, str]] = []
    for i, tool in enumerate(request.tools or []):
        param = f"tools[{i}]"
        if isinstance(tool, HostedTool):
            _check_hosted(tool, param)
            if tool.type not in ignored:
                ignored.append(tool.type)
        elif isinstance(tool, NamespaceTool):
            nested += [(inner, tool, f"{param}.tools[{j}]") for j, inner in enumerate(tool.tools)]
        else:
            entries.append(_entry(tool, tool.name, tool.description, param))
            targets[tool.name] = Target(tool.type, tool.name)
    taken = {name for name, *_ in entries}
    for inner, space, param in nested:
        claude = flat_name(inner.name, space.name, taken)
        taken.add(claude)
        description = "\n\n".join(p for p in (
            inner.description, f"(Part of `{space.name}`: {space.description})"
            if space.description else None) if p)
        entries.append(_entry(inner, claude, description, param))
        targets[claude] = Target(inner.type, inner.name, space.name)
    return ClientTools(tool_specs(entries), targets, tuple(ignored))


def _entry(tool: FunctionTool | CustomTool, name: str, description: str | None,
           param: str) -> tuple[str, str | None, Any, str]:
    if isinstance(tool, FunctionTool):
        return name, description, tool.parameters, param
    return name, custom_description(tool, description), CUSTOM_INPUT_SCHEMA, param


def custom_description(tool: CustomTool, description: str | None) -> str:
    rule = "This tool takes free-form text, not JSON arguments: put the whole text in `input`."
    fmt = tool.format
    if fmt is not None and fmt.type == "grammar" and fmt.definition:
        rule += (f" The text must match this {fmt.syntax or ''} grammar:\n"
                 f"```\n{fmt.definition}\n```")
    return "\n\n".join(p for p in (description, rule) if p)


def _check_hosted(tool: HostedTool, param: str) -> None:
    """A hosted tool is left out, but echoed in the Response: it must be well formed."""
    try:
        _SDK_TOOL.validate_python(tool.model_dump(exclude_none=True))
    except ValidationError as exc:
        errors = exc.errors()
        # The SDK's Tool is a plain union: skip the members whose `type` differs.
        others = {e["loc"][0] for e in errors if tuple(e["loc"][1:]) == ("type",)}
        own = [e for e in errors if e["loc"] and e["loc"][0] not in others] or errors
        where = ".".join(str(p) for p in own[0]["loc"][1:])
        raise InvalidRequest(f"Invalid '{tool.type}' tool: {own[0]['msg']}",
                             param=f"{param}.{where}" if where else param) from None
