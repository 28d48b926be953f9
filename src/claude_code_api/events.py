"""The neutral turn: what a dialect asks of the engine, and the events it gets back.

Dialects translate their wire request into a ``TurnRequest`` and render the
``TurnEvent`` stream into their own frames. Nothing here knows a wire format.
Content blocks are kept in the Anthropic shape (``{"type": "text", "text": ...}``)
because that is what the CLI consumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant"]
StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"]


@dataclass(frozen=True)
class Message:
    """One earlier turn of the conversation."""

    role: Role
    content: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class TurnRequest:
    model: str
    prompt: tuple[dict[str, Any], ...]
    system: str | None = None
    history: tuple[Message, ...] = ()
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

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


TurnEvent = TextDelta | ReasoningDelta | TextReplaced | TurnEnd
