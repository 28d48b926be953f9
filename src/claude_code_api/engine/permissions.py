"""Agent mode's permission policy, enforced in the SDK's ``can_use_tool``.

The CLI asks ``can_use_tool`` only about calls it would prompt a person for; it
runs read-only tools inside its working directory without asking. A
``PreToolUse`` hook answers "ask" for every call, so every call of Claude Code's
own tools and of MCP tools comes to ``can_use_tool``, and the policy decides:

- the tool must be one the server offers (and not disallowed), and one the
  request allowed if it narrowed the set (a request can only narrow);
- every path the call names must be inside the conversation's workspace or a
  configured additional directory, after resolving ``..`` and symbolic links, and
  so must every directory a Glob ``pattern`` or a Grep ``glob`` could search
  (see ``confinement``).

A denied call is answered with a message; the CLI gives it to Claude as the
tool's error result and the caller sees it in the turn's progress.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from claude_agent_sdk import (
    HookContext,
    HookMatcher,
    PermissionResultAllow,
    PermissionResultDeny,
    ToolPermissionContext,
)
from claude_agent_sdk.types import HookInput, HookJSONOutput, PermissionResult

from .confinement import Confinement

log = logging.getLogger(__name__)

# Input fields that name files or directories, in any tool (MCP tools included).
_PATH_FIELDS = ("file_path", "path", "notebook_path")
# Glob patterns over paths, relative to the call's ``path``. Grep's ``pattern`` is a
# regular expression over file contents (its input schema says so), not a path.
_PATTERN_FIELDS = {"Glob": "pattern", "Grep": "glob"}


@dataclass(frozen=True)
class AgentKey:
    """What an agent worker is started with (part of its WorkerKey)."""

    workspace: str
    extra_dirs: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    disallowed: tuple[str, ...] = ()
    permission_mode: str = "default"
    mcp_servers: str = ""  # canonical JSON of the configured MCP servers
    max_turns: int | None = None
    max_budget_usd: float | None = None


class Permissions:
    """One agent worker's policy; ``narrow`` is set per turn from the request."""

    def __init__(self, key: AgentKey) -> None:
        self.key = key
        self.confinement = Confinement(key.workspace, key.extra_dirs)
        self.narrow: frozenset[str] | None = None
        self.denied: list[tuple[str, str]] = []  # (tool, reason), for logs and tests

    def decide(self, tool: str, tool_input: dict[str, Any]) -> str | None:
        """Why this call is refused, or None when it may run."""
        if _matches(tool, self.key.disallowed):
            return f"{tool} is disallowed on this server"
        if not tool.startswith("mcp__") and tool not in self.key.tools:
            return f"{tool} is not one of the tools this server allows"
        if tool.startswith("mcp__") and not self.key.mcp_servers:
            return f"{tool}: no MCP servers are configured"
        if self.narrow is not None and not _matches(tool, self.narrow):
            return f"{tool} is not allowed for this request"
        return self._outside(tool, tool_input)

    def _outside(self, tool: str, tool_input: dict[str, Any]) -> str | None:
        """Why a path or pattern of the call reaches outside the roots, if one does."""
        for name in _PATH_FIELDS:
            value = tool_input.get(name)
            if isinstance(value, str) and value:
                reason = self.confinement.path(value)
                if reason is not None:
                    return reason
        pattern = tool_input.get(_PATTERN_FIELDS.get(tool, ""))
        if not isinstance(pattern, str) or not pattern:
            return None
        base = tool_input.get("path")
        return self.confinement.pattern(pattern, base if isinstance(base, str) and base
                                        else None)

    async def can_use_tool(self, tool: str, tool_input: dict[str, Any],
                           context: ToolPermissionContext) -> PermissionResult:
        reason = self.decide(tool, tool_input)
        if reason is None:
            return PermissionResultAllow()
        self.denied.append((tool, reason))
        log.info("agent: denied %s: %s", tool, reason)
        return PermissionResultDeny(message=f"Permission denied: {reason}.")

    async def ask(self, hook_input: HookInput, tool_use_id: str | None,
                  context: HookContext) -> HookJSONOutput:
        """PreToolUse: send every call to ``can_use_tool`` (none runs unasked)."""
        return {"hookSpecificOutput": {"hookEventName": "PreToolUse",
                                       "permissionDecision": "ask",
                                       "permissionDecisionReason": "gateway policy"}}

    def hooks(self) -> dict[Any, list[HookMatcher]]:
        return {"PreToolUse": [HookMatcher(matcher=None, hooks=[self.ask],
                                           on_failure="block")]}


def _matches(tool: str, patterns: tuple[str, ...] | frozenset[str]) -> bool:
    """``Read`` matches itself; ``mcp__server`` and ``mcp__server__*`` match the
    server's tools."""
    for pattern in patterns:
        if tool == pattern or (pattern.endswith("*") and tool.startswith(pattern[:-1])):
            return True
        if pattern.startswith("mcp__") and pattern.count("__") == 1 and \
                tool.startswith(pattern + "__"):
            return True
    return False
