"""Agent mode: who may use it, how a request selects it, what it runs with.

A request selects agent mode with the model name ``claude-code`` (or
``claude-code/<model>``, e.g. ``claude-code/opus``), an ``agent`` object in the
body, or the header ``X-Claude-Code-Mode: agent``. It runs only when the server
enables agent mode and the caller may use it (a key created with ``--agent``, or
the local user on loopback); otherwise the request is refused with 403 — never
silently answered in chat mode.

The ``agent`` object may narrow the server's policy, never widen it:
``{"tools": [...], "disallowed_tools": [...], "max_turns": N, "max_budget_usd": X}``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from .access.caller import Caller
from .engine.permissions import AgentKey
from .errors import Forbidden, InvalidRequest
from .settings import Settings

AGENT_MODEL = "claude-code"
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
MODE_HEADER = "x-claude-code-mode"


class AgentRequest(BaseModel):
    """What one request asks of agent mode (narrowing only): the body's ``agent``
    object, validated here so that every dialect refuses a bad one the same way."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tools: list[StrictStr] | None = Field(
        None, description="only these of the server's tools (a request never adds one)")
    disallowed_tools: list[StrictStr] = Field(
        default_factory=list, description="none of these tools")
    max_turns: StrictInt | None = Field(None, ge=1, description="model calls per turn "
                                        "at most")
    max_budget_usd: float | None = Field(None, gt=0, strict=True,
                                         description="dollars per turn at most")

    @field_validator("disallowed_tools", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


@dataclass(frozen=True)
class AgentRun:
    key: AgentKey
    narrow: frozenset[str] | None


def select(model: str, extra: Mapping[str, Any] | None, headers: Mapping[str, str],
           default_model: str) -> tuple[str, AgentRequest | None]:
    """The model name to resolve, and the agent request if the request selects agent
    mode."""
    chosen = False
    if model == AGENT_MODEL or model.startswith(AGENT_MODEL + "/"):
        chosen = True
        model = model.partition("/")[2] or default_model
    if headers.get(MODE_HEADER, "").strip().lower() == "agent":
        chosen = True
    raw = (extra or {}).get("agent")
    if raw is None or raw is False:
        return model, AgentRequest() if chosen else None
    if raw is True:
        return model, AgentRequest()
    if not isinstance(raw, dict):
        raise InvalidRequest("`agent` must be an object or true", param="agent")
    return model, _parse(raw)


def _parse(raw: dict[str, Any]) -> AgentRequest:
    try:
        return AgentRequest.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> InvalidRequest:
    """The first problem, as a 400 naming the field (``agent.max_turns``)."""
    error = exc.errors()[0]
    field = "agent" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}"
                              for p in error["loc"])
    if error["type"] == "extra_forbidden":
        return InvalidRequest(f"unknown field in `agent`: {error['loc'][0]}; it takes "
                              "tools, disallowed_tools, max_turns, max_budget_usd",
                              param=field)
    return InvalidRequest(f"Invalid value for `{field}`: {error['msg']}", param=field)


def load_mcp_servers(settings: Settings) -> dict[str, Any]:
    """The servers of a standard ``mcp_config.json`` (``{"mcpServers": {...}}``)."""
    if not settings.mcp.enabled:
        return {}
    path = settings.mcp.config_file
    if path is None:
        raise ValueError("mcp.enabled needs mcp.config_file")
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the MCP config file {path}: {exc}") from None
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict) or not all(isinstance(v, dict) for v in servers.values()):
        raise ValueError(f"{path}: expected {{\"mcpServers\": {{name: {{...}}}}}}")
    return servers


class Agents:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings.agent
        self.local_ok = settings.agent.allow_local and settings.server.is_loopback()
        self.extra_dirs = tuple(str(Path(d).resolve()) for d in
                                settings.file_access.additional_dirs)
        self.mcp_servers = load_mcp_servers(settings)
        self._mcp_json = json.dumps(self.mcp_servers, sort_keys=True) if self.mcp_servers \
            else ""

    def mcp_summary(self) -> list[dict[str, Any]]:
        """The configured servers without their commands' arguments or secrets."""
        return [{"name": name, "type": str(spec.get("type", "stdio"))}
                for name, spec in self.mcp_servers.items()]

    def usable_by(self, caller: Caller) -> bool:
        if not self.settings.enabled:
            return False
        return caller.key.agent if caller.key is not None else self.local_ok

    def prepare(self, caller: Caller, request: AgentRequest, conversation_id: str) -> AgentRun:
        """The policy a turn runs with; Forbidden when the caller may not use agent mode."""
        if not self.settings.enabled:
            raise Forbidden("Agent mode is not enabled on this server (agent.enabled); "
                            "use a chat model such as `sonnet`.")
        key = caller.key
        if key is None and not self.local_ok:
            raise Forbidden("Agent mode needs an API key allowed to use it.")
        if key is not None and not key.agent:
            raise Forbidden(f"The API key `{key.name}` may not use agent mode "
                            "(`claude-code-api keys update KEY --agent`).")
        offered = tuple(t for t in self.settings.tools if t not in
                        self.settings.disallowed_tools)
        narrow: frozenset[str] | None = None
        if request.tools is not None or request.disallowed_tools:
            base = set(request.tools) if request.tools is not None else \
                {*offered, *(f"mcp__{s}" for s in self.mcp_servers)}
            narrow = frozenset(base - set(request.disallowed_tools))
        turns = _least(request.max_turns, key.max_turns if key else None,
                       self.settings.max_turns)
        budget = _least(request.max_budget_usd, self.settings.max_budget_usd,
                        key.budget_left() if key else None)
        agent_key = AgentKey(
            workspace=self._workspace(caller.owner, conversation_id), extra_dirs=self.extra_dirs,
            tools=offered, disallowed=tuple(self.settings.disallowed_tools),
            permission_mode=self.settings.permission_mode, mcp_servers=self._mcp_json,
            max_turns=int(turns) if turns is not None else None,
            max_budget_usd=float(budget) if budget is not None else None)
        return AgentRun(agent_key, narrow)

    def _workspace(self, owner: str, conversation_id: str) -> str:
        if self.settings.project_dir is not None:
            path = Path(self.settings.project_dir).resolve()
        else:
            # Ids are checked as [A-Za-z0-9_.-]{1,128} where they come in; checked
            # again here, since this one names a directory. A leading dot ("..")
            # gets a prefix.
            if not _SAFE_ID.match(conversation_id):
                raise InvalidRequest("conversation ids are 1-128 letters, digits, '_', '.' "
                                     "or '-'", param="conversation_id")
            name = conversation_id if not conversation_id.startswith(".") else \
                "_" + conversation_id
            root = Path(self.settings.workspace_root).resolve()
            path = root / owner / name
            if root not in path.resolve().parents:
                raise InvalidRequest("invalid conversation id", param="conversation_id")
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return os.path.realpath(path)


def _least(*values: float | int | None) -> float | int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None
