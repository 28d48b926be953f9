"""The WebSocket protocol of ``/v1/sessions/{id}/ws``: every message, as our own models.

JSON text frames, each an object whose ``type`` says which message it is (a union
discriminated on ``type``). The client sends ``user`` (a turn) and ``interrupt``;
the server sends ``session`` once, then the CLI's messages as they come
(``stream_event``, ``assistant``, ``user`` with tool results, ``system``, ``result``)
and ``error`` for a message it cannot take or a turn that failed. The README has
the table.

The server's messages are built from what the engine reports, field by field: only
the fields declared here go out, so a Claude Code or SDK upgrade cannot change the
protocol (a message kind we do not know is left out; a known one that no longer
fits fails loudly instead of going out changed).
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from ..body import check_text
from ..errors import GatewayError, InvalidRequest, UpstreamError
from ..events import Usage

log = logging.getLogger(__name__)


# -- client -> server -------------------------------------------------------------
class ContentBlock(BaseModel):
    """A content block of a user turn, as the Messages API has it (``text``,
    ``image``, ``document``...): passed to Claude Code as it is."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(min_length=1)


class UserTurn(BaseModel):
    """Start a turn (one at a time)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["user"]
    content: Annotated[str, Field(min_length=1)] | \
        Annotated[list[ContentBlock], Field(min_length=1)]

    def blocks(self) -> str | list[dict[str, Any]]:
        """The content as the CLI takes it."""
        if isinstance(self.content, str):
            return self.content
        return [block.model_dump() for block in self.content]


class Interrupt(BaseModel):
    """Stop the running turn; its ``result`` still follows."""

    model_config = ConfigDict(extra="allow")

    type: Literal["interrupt"]


ClientMessage = Annotated[UserTurn | Interrupt, Field(discriminator="type")]
_CLIENT: TypeAdapter[UserTurn | Interrupt] = TypeAdapter(ClientMessage)
_CLIENT_TYPES = "`user` or `interrupt`"
_CONTENT = "it is a non-empty string or a non-empty list of content blocks"


def parse_client(text: str) -> UserTurn | Interrupt:
    """One client frame, or ``InvalidRequest`` naming what is wrong with it."""
    try:
        raw = json.loads(text)
    except ValueError:
        raise InvalidRequest("messages are JSON objects") from None
    if not isinstance(raw, dict):
        raise InvalidRequest("messages are JSON objects")
    check_text(text, raw)
    try:
        message = _CLIENT.validate_python(raw)
    except ValidationError as exc:
        raise _invalid(exc, raw) from None
    if message.model_extra:
        log.info("session message %s: ignored unknown fields %s", message.type,
                 sorted(message.model_extra))
    return message


def _invalid(exc: ValidationError, raw: dict[str, Any]) -> InvalidRequest:
    errors = exc.errors()
    kind = errors[0]["type"]
    if kind == "union_tag_not_found":
        return InvalidRequest(f"every message has a `type`: {_CLIENT_TYPES}", param="type")
    if kind == "union_tag_invalid":
        return InvalidRequest(f"unknown message type {raw.get('type')!r}; send "
                              f"{_CLIENT_TYPES}", param="type")
    # A union reports each member's failure; the deepest is the telling one.
    error = max(errors, key=lambda e: len(e["loc"]))
    param = _param(error["loc"][1:])  # the first part is the message's type
    detail = _CONTENT if param == "content" and error["type"] != "missing" else error["msg"]
    return InvalidRequest(f"Invalid value for '{param}' of a `{raw['type']}` message: "
                          f"{detail}", param=param)


def _param(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" not in part and "-" not in part and part not in ("str", "list"):
            # (the others name a union's member, not a field)
            out += f".{part}" if out else part
    return out


# -- server -> client -------------------------------------------------------------
class _Frame(BaseModel):
    # What the engine reports may carry more than the protocol says: left out.
    model_config = ConfigDict(extra="ignore")


class SessionInfo(_Frame):
    """A session, as ``GET /v1/sessions/{id}`` returns it."""

    id: str
    object: Literal["session"] = "session"
    model: str
    mode: Literal["chat", "agent"]
    created_at: int
    turns: int
    state: Literal["idle", "running", "closed"]
    connected: bool
    workspace: str | None = Field(None, description="agent mode: the session's "
                                                    "working directory")


class SessionFrame(SessionInfo):
    """Sent once when the client connects."""

    type: Literal["session"] = "session"


class TextBlock(_Frame):
    type: Literal["text"]
    text: str


class ThinkingBlock(_Frame):
    type: Literal["thinking"]
    thinking: str
    signature: str


class ToolUseBlock(_Frame):
    type: Literal["tool_use", "server_tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(_Frame):
    type: Literal["tool_result", "server_tool_result"]
    tool_use_id: str
    content: str | list[dict[str, Any]] | dict[str, Any] | None = None
    is_error: bool | None = None


Block = Annotated[TextBlock | ThinkingBlock | ToolUseBlock | ToolResultBlock,
                  Field(discriminator="type")]
_BLOCK_TYPES = frozenset({"text", "thinking", "tool_use", "server_tool_use", "tool_result",
                          "server_tool_result"})


def _known_blocks(value: Any) -> Any:
    """Blocks of a kind the protocol does not define are left out."""
    if isinstance(value, list):
        return [b for b in value if not isinstance(b, dict) or b.get("type") in _BLOCK_TYPES]
    return value


class StreamEventFrame(_Frame):
    """One event of the upstream's streamed answer, as the Messages API streams it."""

    type: Literal["stream_event"]
    event: dict[str, Any]
    parent_tool_use_id: str | None = None


class AssistantFrame(_Frame):
    """One whole message of Claude's (text, thinking, tool calls)."""

    type: Literal["assistant"]
    content: list[Block]
    model: str
    parent_tool_use_id: str | None = None
    error: str | None = None
    stop_reason: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _known(cls, value: Any) -> Any:
        return _known_blocks(value)


class UserFrame(_Frame):
    """A user message of the turn: in agent mode, the results of Claude Code's tools."""

    type: Literal["user"]
    content: str | list[Block]
    parent_tool_use_id: str | None = None
    tool_use_result: dict[str, Any] | list[Any] | str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _known(cls, value: Any) -> Any:
        return _known_blocks(value)


class McpServer(_Frame):
    name: str
    status: str


class SystemFrame(_Frame):
    """A notice from Claude Code (``init`` starts each turn). Only these fields: the
    rest of what the CLI says about itself (paths, plugins) is not for clients."""

    type: Literal["system"]
    subtype: str
    model: str | None = None
    tools: list[str] | None = None
    mcp_servers: list[McpServer] | None = None
    permission_mode: str | None = None


class ResultFrame(_Frame):
    """The turn's end: its own cost and usage (not the process's running total)."""

    type: Literal["result"]
    subtype: str
    is_error: bool
    num_turns: int
    duration_ms: int
    duration_api_ms: int
    stop_reason: str | None = None
    result: str | None = None
    structured_output: Any = None
    errors: list[str] | None = None
    permission_denials: list[Any] | None = None
    total_cost_usd: float | None = None
    usage: dict[str, Any] | None = None
    model_usage: dict[str, dict[str, Any]] | None = None

    def turn_usage(self) -> Usage:
        def count(name: str) -> int:
            value = (self.usage or {}).get(name)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        return Usage(count("input_tokens"), count("output_tokens"),
                     count("cache_read_input_tokens"), count("cache_creation_input_tokens"))


class ErrorBody(_Frame):
    type: str
    code: str | None = None
    message: str
    param: str | None = None
    retry_after: int | None = Field(None, description="seconds, for a 429")


class ErrorFrame(_Frame):
    """A message the server could not take, or a turn that failed or was refused
    (``error.type`` and ``code`` as the HTTP endpoints' errors)."""

    type: Literal["error"] = "error"
    error: ErrorBody

    @classmethod
    def of(cls, exc: GatewayError) -> ErrorFrame:
        return cls(error=ErrorBody(type=exc.type, code=exc.code, message=exc.message,
                                   param=exc.param, retry_after=exc.retry_after))


CliMessage = StreamEventFrame | AssistantFrame | UserFrame | SystemFrame | ResultFrame
CliFrame = Annotated[CliMessage, Field(discriminator="type")]
ServerMessage = Annotated[SessionFrame | StreamEventFrame | AssistantFrame | UserFrame |
                          SystemFrame | ResultFrame | ErrorFrame, Field(discriminator="type")]
_CLI: TypeAdapter[CliMessage] = TypeAdapter(CliFrame)
_CLI_TYPES = frozenset({"stream_event", "assistant", "user", "system", "result"})


def cli_frame(raw: dict[str, Any]) -> CliMessage | None:
    """The protocol's message for one message of the CLI; None for a kind it does not
    define."""
    if raw.get("type") not in _CLI_TYPES:
        log.debug("session: left out a CLI message of type %r", raw.get("type"))
        return None
    if raw["type"] == "system":
        raw = {"type": "system", "subtype": raw.get("subtype"), **_init_fields(raw)}
    try:
        return _CLI.validate_python(raw)
    except ValidationError as exc:
        # The CLI or the SDK changed a message we define: say so, send nothing changed.
        log.error("session: a CLI %s message no longer fits the protocol: %s", raw["type"],
                  exc)
        raise UpstreamError(f"Claude Code sent a `{raw['type']}` message this server "
                            "cannot read") from None


def _init_fields(raw: dict[str, Any]) -> dict[str, Any]:
    data = raw.get("data")
    if not isinstance(data, dict):
        return {}
    return {"model": data.get("model"), "tools": data.get("tools"),
            "mcp_servers": data.get("mcp_servers"),
            "permission_mode": data.get("permissionMode")}
