"""Wire models of an OpenAI Responses request (our own; the SDK's params are TypedDicts)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


class InputText(_Wire):
    type: Literal["input_text"]
    text: str


class OutputText(_Wire):
    type: Literal["output_text"]
    text: str


class InputImage(_Wire):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None


class InputFile(_Wire):
    type: Literal["input_file"]


class Refusal(_Wire):
    type: Literal["refusal"]
    refusal: str


Part = Annotated[InputText | OutputText | InputImage | InputFile | Refusal,
                 Field(discriminator="type")]


class MessageItem(_Wire):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[Part]


class FunctionCallItem(_Wire):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    namespace: str | None = None
    id: str | None = None


class FunctionCallOutputItem(_Wire):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[Part]


class CustomToolCallItem(_Wire):
    type: Literal["custom_tool_call"]
    call_id: str
    name: str
    input: str
    namespace: str | None = None
    id: str | None = None


class CustomToolCallOutputItem(_Wire):
    type: Literal["custom_tool_call_output"]
    call_id: str
    output: str | list[Part]


class ReasoningItem(_Wire):
    type: Literal["reasoning"]
    encrypted_content: str | None = None


# Items of tools the gateway never offers (OpenAI's hosted tools, shell and patch
# tools, MCP approvals, compaction): accepted in a history, never shown to Claude.
HostedItemType = Literal[
    "file_search_call", "web_search_call", "computer_call", "computer_call_output",
    "image_generation_call", "code_interpreter_call", "local_shell_call",
    "local_shell_call_output", "shell_call", "shell_call_output", "apply_patch_call",
    "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request",
    "mcp_approval_response", "mcp_call", "tool_search_call", "tool_search_output",
    "additional_tools", "compaction", "compaction_summary", "compaction_trigger", "program",
    "program_output"]


class HostedItem(_Wire):
    type: HostedItemType


class ItemReference(_Wire):
    type: Literal["item_reference"] | None = None
    id: str


_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class FunctionTool(_Wire):
    type: Literal["function"]
    name: str = Field(pattern=_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class CustomFormat(_Wire):
    type: Literal["text", "grammar"]
    syntax: str | None = None
    definition: str | None = None


class CustomTool(_Wire):
    """A freeform tool: its input is one text (checked by a grammar on OpenAI)."""

    type: Literal["custom"]
    name: str = Field(pattern=_NAME)
    description: str | None = None
    format: CustomFormat | None = None


class NamespaceTool(_Wire):
    """Functions (and custom tools) grouped under a name; calls carry ``namespace``."""

    type: Literal["namespace"]
    name: str = Field(min_length=1)
    description: str | None = None
    tools: list[Annotated[FunctionTool | CustomTool, Field(discriminator="type")]] = \
        Field(min_length=1)


# Tools OpenAI runs itself, or the client runs with a call shape of OpenAI's own:
# the gateway cannot run them and Claude has no counterpart, so they are left out.
HostedToolType = Literal[
    "web_search", "web_search_2025_08_26", "web_search_preview",
    "web_search_preview_2025_03_11", "file_search", "computer", "computer_use_preview",
    "code_interpreter", "image_generation", "mcp", "local_shell", "shell",
    "apply_patch", "tool_search", "programmatic_tool_calling"]
HOSTED_TOOLS: tuple[str, ...] = get_args(HostedToolType)


class HostedTool(_Wire):
    type: HostedToolType


Tool = Annotated[FunctionTool | CustomTool | NamespaceTool | HostedTool,
                 Field(discriminator="type")]


class NamedTool(_Wire):
    """``tool_choice`` naming one function or custom tool."""

    type: Literal["function", "custom"]
    name: str


class AllowedTools(_Wire):
    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]]


class HostedChoice(_Wire):
    """``tool_choice`` requiring a hosted tool (``{"type": "web_search_preview"}``,
    ``{"type": "mcp", "server_label": ...}``...): refused, as it cannot be run here."""

    type: str


class TextFormat(_Wire):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class TextOptions(_Wire):
    format: TextFormat | None = None
    verbosity: str | None = None


class ReasoningOptions(_Wire):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: str | None = None


class ResponsesRequest(_Wire):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "sonnet", "instructions": "Be brief.", "input": "Say hello"},
        {"model": "sonnet", "stream": True, "input": "Hi"}]})

    model: str = Field(min_length=1)
    input: str | list[MessageItem | FunctionCallItem | FunctionCallOutputItem
                      | CustomToolCallItem | CustomToolCallOutputItem | ReasoningItem
                      | HostedItem | ItemReference]
    instructions: str | None = None
    tools: list[Tool] | None = None
    tool_choice: (Literal["none", "auto", "required"] | NamedTool | AllowedTools | HostedChoice
                  | None) = None
    parallel_tool_calls: bool | None = None
    text: TextOptions | None = None
    reasoning: ReasoningOptions | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    stream: bool | None = False
    store: bool | None = True
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    include: list[str] | None = None
