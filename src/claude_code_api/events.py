"""The neutral turn: what a dialect asks of the engine, and the events it gets back.

Dialects translate their wire request into a ``TurnRequest`` and render the
``TurnEvent`` stream into their own frames. Nothing here knows a wire format.
Content blocks are kept in the Anthropic shape (``{"type": "text", "text": ...}``)
because that is what the CLI consumes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import InvalidRequest

Role = Literal["user", "assistant"]
Effort = Literal["low", "medium", "high", "xhigh", "max"]
StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"]


@dataclass(frozen=True)
class Message:
    """One earlier turn of the conversation."""

    role: Role
    content: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class ToolSpec:
    """A client-defined function: name, description, JSON schema of its input."""

    name: str
    description: str
    parameters: dict[str, Any] = field(hash=False, compare=False)
    # The schema as canonical JSON: what identifies the tool (dicts cannot be hashed).
    signature: str = ""


@dataclass(frozen=True)
class ToolChoice:
    mode: Literal["auto", "none", "required", "named"] = "auto"
    name: str | None = None


@dataclass(frozen=True)
class TurnRequest:
    """A turn. ``prompt`` is the last user message; it may hold ``tool_result``
    blocks answering the tool calls of the last assistant message in ``history``.
    Tool names in ``history`` and ``prompt`` are the client's own."""

    model: str
    prompt: tuple[dict[str, Any], ...]
    system: str | None = None
    history: tuple[Message, ...] = ()
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = ToolChoice()
    # The answer must be one JSON document matching this schema (canonical JSON text).
    output_schema: str | None = None
    effort: Effort | None = None
    # Sampling, passed to the model when it takes them (not with reasoning on).
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    parallel_tools: bool = True  # False: at most one tool call per response
    # False: no extended thinking, so every output token is text (legacy completions,
    # whose max_tokens is often a few dozen tokens).
    thinking: bool = True

    def __post_init__(self) -> None:
        check_system_prompt(self.system)


def check_system_prompt(system: str | None) -> None:
    """A NUL in a system prompt is a client's mistake (no model is meant to read one)."""
    if system is not None and "\x00" in system:
        raise InvalidRequest("the system prompt (system or developer messages, "
                             "`instructions`, `system`) must not contain NUL "
                             "(U+0000) characters")


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(a + b for a, b in zip(self._values(), other._values(), strict=True)))

    def __sub__(self, other: Usage) -> Usage:
        return Usage(*(max(0, a - b) for a, b in zip(self._values(), other._values(),
                                                      strict=True)))

    def _values(self) -> tuple[int, int, int, int]:
        return (self.input_tokens, self.output_tokens, self.cache_read_input_tokens,
                self.cache_creation_input_tokens)

    @property
    def prompt_tokens(self) -> int:
        """Every input token the model read, cached or not (OpenAI's prompt_tokens)."""
        return self.input_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens


@dataclass(frozen=True)
class TextDelta:
    text: str
    type: Literal["text_delta"] = "text_delta"


@dataclass(frozen=True)
class ReasoningDelta:
    text: str
    type: Literal["reasoning_delta"] = "reasoning_delta"


@dataclass(frozen=True)
class ReasoningSignature:
    """Ends a run of reasoning: the opaque signature of that thinking block,
    carried through so clients that send thinking back can do so validly."""

    signature: str
    type: Literal["reasoning_signature"] = "reasoning_signature"


@dataclass(frozen=True)
class ToolCallStart:
    """Claude calls a client function; ``index`` counts calls within this response."""

    index: int
    id: str
    name: str
    type: Literal["tool_call_start"] = "tool_call_start"


@dataclass(frozen=True)
class ToolCallDelta:
    """A fragment of the JSON arguments of call ``index``."""

    index: int
    arguments: str
    type: Literal["tool_call_delta"] = "tool_call_delta"


@dataclass(frozen=True)
class TextReplaced:
    """The answer so far is void; this is the whole answer text instead.

    Happens when the upstream stream breaks off mid-answer and Claude Code
    retries without streaming: the retry's answer differs from what streamed.
    """

    text: str
    type: Literal["text_replaced"] = "text_replaced"


@dataclass(frozen=True)
class TurnEnd:
    stop_reason: StopReason
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    cost_usd: float = 0.0
    stop_sequence: str | None = None
    type: Literal["turn_end"] = "turn_end"


TurnEvent = (TextDelta | ReasoningDelta | ReasoningSignature | ToolCallStart | ToolCallDelta
             | TextReplaced | TurnEnd)


@dataclass(frozen=True)
class Session:
    """Which conversation state a turn starts from, for warm continuation.

    ``scope`` keeps callers apart (two callers never share a session); the engine
    continues a live session only if it holds exactly ``fingerprint(scope, ...)``
    of the request's history.
    """

    scope: str


def canonical_block(block: dict[str, Any]) -> dict[str, Any] | None:
    """A content block reduced to what identifies it (no cache hints, text results
    flat); None for thinking, which some clients send back and others never do."""
    kind = block.get("type")
    if kind in ("thinking", "redacted_thinking"):
        return None
    if kind == "text":
        return {"type": "text", "text": block.get("text", "")}
    if kind == "tool_use":
        return {"type": "tool_use", "id": block.get("id"), "name": block.get("name"),
                "input": block.get("input") or {}}
    if kind == "tool_result":
        content = block.get("content", "")
        if isinstance(content, list) and all(isinstance(c, dict) and c.get("type") == "text"
                                              for c in content):
            content = "".join(c.get("text", "") for c in content)
        return {"type": "tool_result", "tool_use_id": block.get("tool_use_id"),
                "content": content, "is_error": bool(block.get("is_error"))}
    return {k: v for k, v in block.items() if k not in ("cache_control", "_param")}


def fingerprint(scope: str, system: str | None, tools: Iterable[ToolSpec],
                messages: Iterable[Message]) -> str:
    """Identifies a conversation state: caller, system prompt, tools and every turn."""
    state = [scope, system or "", [t.name + t.signature for t in tools],
             [[m.role, [c for b in m.content if (c := canonical_block(b)) is not None]]
              for m in messages]]
    encoded = json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


class Answer:
    """Accumulates a response's events into the assistant message the client sees."""

    def __init__(self) -> None:
        self.text = ""
        self.reasoning = ""
        self.calls: list[list[str]] = []  # [id, name, arguments JSON text]

    def feed(self, event: TurnEvent) -> None:
        if isinstance(event, TextDelta):
            self.text += event.text
        elif isinstance(event, TextReplaced):
            self.text = event.text
        elif isinstance(event, ReasoningDelta):
            self.reasoning += event.text
        elif isinstance(event, ToolCallStart):
            self.calls.append([event.id, event.name, ""])
        elif isinstance(event, ToolCallDelta):
            self.calls[event.index][2] += event.arguments

    def message(self) -> Message:
        blocks: list[dict[str, Any]] = [{"type": "text", "text": self.text}] if self.text else []
        for call_id, name, arguments in self.calls:
            try:
                data = json.loads(arguments or "{}")
            except json.JSONDecodeError:
                data = {}
            blocks.append({"type": "tool_use", "id": call_id, "name": name,
                           "input": data if isinstance(data, dict) else {}})
        return Message("assistant", tuple(blocks))


def after_replacement(events: list[TurnEvent]) -> list[TurnEvent]:
    """The events with any text before a ``TextReplaced`` voided by it."""
    for at in range(len(events) - 1, -1, -1):
        replaced = events[at]
        if isinstance(replaced, TextReplaced):
            kept = [e for e in events[:at] if not isinstance(e, TextDelta)]
            return [*kept, TextDelta(replaced.text), *events[at + 1:]]
    return events
