"""Client-defined functions offered to Claude as real tools.

Each worker whose key has tools gets an in-process MCP server (``client``) with
one tool per client function, schema as given. When Claude calls one, the CLI
invokes our handler, which waits: the HTTP response ends with the tool calls,
and the turn stays paused inside the handler until the client's next request
brings the results (``ToolBridge.supply``). The CLI calls the handlers one after
another, so a handler learns which call it serves by matching name and input
against the calls the client echoes back.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from claude_agent_sdk import SdkMcpTool, create_sdk_mcp_server
from claude_agent_sdk.types import McpSdkServerConfig

from ..events import ToolSpec

SERVER = "client"
PREFIX = f"mcp__{SERVER}__"
REFUSED = "Tool calls are not allowed in this response; answer without calling tools."


def cli_name(name: str) -> str:
    return PREFIX + name


def client_name(name: str) -> str | None:
    """The client's function name for a CLI tool name, None for other tools."""
    return name[len(PREFIX):] if name.startswith(PREFIX) else None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass
class _Waiting:
    name: str
    input: dict[str, Any]
    future: asyncio.Future[dict[str, Any]]


@dataclass
class ToolBridge:
    """Connects the CLI's tool handlers to results that arrive over HTTP."""

    specs: tuple[ToolSpec, ...]
    refuse: bool = False  # tool_choice "none": every call is answered with REFUSED
    _waiting: list[_Waiting] = field(default_factory=list)
    # Results supplied before their handler was called: (name, input, result).
    _ready: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)

    def server(self) -> McpSdkServerConfig:
        return create_sdk_mcp_server(SERVER, tools=[self._tool(s) for s in self.specs])

    def allowed(self) -> list[str]:
        return [cli_name(s.name) for s in self.specs]

    def _tool(self, spec: ToolSpec) -> SdkMcpTool[Any]:
        async def handler(args: dict[str, Any]) -> dict[str, Any]:
            return await self._called(spec.name, args)

        return SdkMcpTool(name=spec.name, description=spec.description or spec.name,
                          input_schema=spec.parameters, handler=handler)

    async def _called(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if self.refuse:
            return {"content": [{"type": "text", "text": REFUSED}], "is_error": True}
        result = self._claim(name, args)
        if result is not None:
            return result
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(name, args, future))
        try:
            return await future
        finally:
            self._waiting = [w for w in self._waiting if w.future is not future]

    def supply(self, calls: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
        """Results for (name, input, MCP result) triples, in the order of the calls."""
        for name, args, result in calls:
            pending = [(w.name, w.input) for w in self._waiting if not w.future.done()]
            at = _best_match(pending, name, args)
            if at is None:
                self._ready.append((name, args, result))
            else:
                [w for w in self._waiting if not w.future.done()][at].future.set_result(result)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def cancel(self) -> None:
        """Unblock every waiting handler (the turn is being abandoned)."""
        for waiting in self._waiting:
            if not waiting.future.done():
                waiting.future.set_result({"content": [{"type": "text", "text":
                                                        "The call was abandoned."}],
                                           "is_error": True})
        self.clear()

    def clear(self) -> None:
        self._ready.clear()

    def _claim(self, name: str, args: dict[str, Any]) -> dict[str, Any] | None:
        at = _best_match([(n, a) for n, a, _ in self._ready], name, args)
        return None if at is None else self._ready.pop(at)[2]


def _best_match(calls: list[tuple[str, dict[str, Any]]], name: str,
                args: dict[str, Any]) -> int | None:
    """Index of the first call with this name and input, else with this name."""
    canonical = _canonical(args)
    for i, (other, other_args) in enumerate(calls):
        if other == name and _canonical(other_args) == canonical:
            return i
    for i, (other, _) in enumerate(calls):
        if other == name:
            return i
    return None


def mcp_result(content: Any, is_error: bool = False) -> dict[str, Any]:
    """An MCP tool result from a tool_result block's content (string or blocks)."""
    if isinstance(content, str):
        blocks: list[dict[str, Any]] = [{"type": "text", "text": content}]
    else:
        blocks = [_mcp_block(b) for b in content if isinstance(b, dict)]
    return {"content": blocks or [{"type": "text", "text": ""}], "is_error": is_error}


def _mcp_block(block: dict[str, Any]) -> dict[str, Any]:
    """MCP content wants an image as {data, mimeType}, not Anthropic's {source}: the
    SDK's MCP server failed on the latter ("'data'" reached Claude as the result)."""
    source = block.get("source")
    if block.get("type") == "image" and isinstance(source, dict) and "data" in source:
        return {"type": "image", "data": source["data"],
                "mimeType": source.get("media_type", "image/png")}
    return block
