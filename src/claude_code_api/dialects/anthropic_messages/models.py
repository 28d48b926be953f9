"""Wire models of an Anthropic Messages request (our own; the SDK's params are TypedDicts)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextBlock(_Wire):
    type: Literal["text"]
    text: str


class Base64Source(_Wire):
    type: Literal["base64"]
    media_type: str
    data: str


class URLSource(_Wire):
    type: Literal["url"]
    url: str


class ImageBlock(_Wire):
    type: Literal["image"]
    source: Annotated[Base64Source | URLSource, Field(discriminator="type")]


class ToolUseBlock(_Wire):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(_Wire):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock] = ""
    is_error: bool | None = None


class ThinkingBlock(_Wire):
    type: Literal["thinking"]
    thinking: str
    signature: str


class RedactedThinkingBlock(_Wire):
    type: Literal["redacted_thinking"]
    data: str


class DocumentBlock(_Wire):
    type: Literal["document"]
    source: dict[str, Any]


Block = Annotated[TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock
                  | RedactedThinkingBlock | DocumentBlock, Field(discriminator="type")]
BLOCK_TAGS = frozenset({"text", "image", "tool_use", "tool_result", "thinking",
                        "redacted_thinking", "document", "base64", "url", "auto", "any",
                        "tool", "none", "enabled", "disabled", "adaptive"})


class MessageParam(_Wire):
    # "system" messages inside `messages` are what Claude Code itself sends (its
    # environment notes); they join the system prompt.
    role: Literal["user", "assistant", "system"]
    content: str | list[Block]


class Tool(_Wire):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    # Required for client tools; server tools (web_search_20250305...) have none and
    # are refused by name in translate.
    input_schema: dict[str, Any] | None = None
    type: str | None = None


class ToolChoiceAuto(_Wire):
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(_Wire):
    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(_Wire):
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(_Wire):
    type: Literal["none"]


ToolChoice = Annotated[ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone,
                       Field(discriminator="type")]


# "omitted": thinking blocks come back empty, with their signature. Any other value
# shows thinking ("summarized"; Claude Code also sends "updates", not in the spec).
ThinkingDisplay = str


class ThinkingEnabled(_Wire):
    type: Literal["enabled"]
    budget_tokens: int = Field(ge=1024)
    display: ThinkingDisplay | None = None


class ThinkingDisabled(_Wire):
    type: Literal["disabled"]


class ThinkingAdaptive(_Wire):
    type: Literal["adaptive"]
    display: ThinkingDisplay | None = None


Thinking = Annotated[ThinkingEnabled | ThinkingDisabled | ThinkingAdaptive,
                     Field(discriminator="type")]


class JSONOutputFormat(_Wire):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(_Wire):
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: JSONOutputFormat | None = None
    # Beta: a token budget the API tells the model about. Refused (see translate).
    task_budget: dict[str, Any] | None = None


class MessagesRequest(_Wire):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "sonnet", "max_tokens": 1024,
         "messages": [{"role": "user", "content": "Say hello"}]},
        {"model": "sonnet", "max_tokens": 1024, "stream": True,
         "messages": [{"role": "user", "content": "Hi"}]}]})

    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = False
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None
    # Deprecated (beta) spelling of output_config.format; LiteLLM still sends it.
    output_format: JSONOutputFormat | None = None
    metadata: dict[str, Any] | None = None
    # Advisory: accepted and ignored (README, "Anthropic Messages").
    service_tier: str | None = None
    context_management: dict[str, Any] | None = None
    cache_control: dict[str, Any] | None = None
    inference_geo: str | None = None
    speed: str | None = None
    user_profile_id: str | None = None
    # Refused: they need Anthropic's server-side tools (see translate).
    container: str | dict[str, Any] | None = None
    mcp_servers: list[dict[str, Any]] | None = None


class CountTokensRequest(_Wire):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "sonnet", "messages": [{"role": "user", "content": "Say hello"}]}]})

    model: str = Field(min_length=1)
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
