"""Pure translation between the CLI's messages and the neutral turn events.

``TurnTranslator`` is a small state machine fed one SDK message at a time; it
yields neutral events and raises a ``GatewayError`` for an error result.
``StopScanner`` applies client stop sequences to streamed text (the CLI has no
stop-sequence option, so the gateway cuts the text and interrupts the turn).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from claude_agent_sdk import (
    AssistantMessage,
    ResultMessage,
    StreamEvent,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)
from claude_agent_sdk import (
    Message as SDKMessage,
)

from ..errors import (
    GatewayError,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamOverloaded,
    UpstreamRateLimited,
    UpstreamRejected,
)
from ..events import (
    ReasoningDelta,
    ReasoningSignature,
    StopReason,
    TextDelta,
    TextReplaced,
    ToolCallDelta,
    ToolCallStart,
    TurnEnd,
    TurnEvent,
    Usage,
)

_STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool_use": "tool_use",
    "refusal": "refusal",
    "pause_turn": "end_turn",
    "model_context_window_exceeded": "max_tokens",
}

STRUCTURED_OUTPUT = "StructuredOutput"  # the tool the relay offers for output schemas
# Stop reasons with which a response is the turn's complete answer (in chat mode).
_ANSWERED = ("end_turn", "stop_sequence", "refusal", "pause_turn")
_AGENT_LIMITS = {"error_max_turns": "the turn reached its limit of model calls (max_turns)",
                 "error_max_budget_usd": "the turn reached its cost limit (max_budget_usd)"}
_SHOWN = 160  # characters of a tool's input or output shown as progress
AUTH_HELP = ("Claude Code could not authenticate with the Anthropic API. Log in with "
             "`claude` (then restart the server) or set ANTHROPIC_API_KEY for the server.")


class TurnTranslator:
    """Feeds on one response's SDK messages; ``done`` once the turn's result arrived.

    A response can end before the turn does: at the client's tool calls (the
    turn waits for their results), at ``max_tokens`` or at a stop sequence.
    ``usage_before`` is what earlier responses of the same turn already reported
    (the result's usage covers the whole turn).
    """

    def __init__(self, retry_after: int | None = None, usage_before: Usage | None = None,
                 *, tools_visible: bool = True, structured: bool = False,
                 agent: bool = False, client_tools: frozenset[str] = frozenset(),
                 relayed: bool = False) -> None:
        self.retry_after = retry_after
        # Fed the upstream's events as the relay passes them (not the CLI's copies):
        # the answer is complete at the response's end, before the CLI's result.
        self.relayed = relayed
        self.answered = False  # relayed: the response ended, the turn is answered
        self._earlier = Usage()  # relayed: the turn's earlier calls' usage
        # The client's function names: a call to one ends the response.
        self.client_tools = client_tools
        # Agent mode: Claude Code's own tool calls and their outcomes are progress
        # (reasoning events); the text of successive model calls is one answer.
        self.agent = agent
        self._text_sent = False
        self._step_break = False
        self._tool_names: dict[str, str] = {}
        # Structured output: the answer is the input Claude gives the CLI's
        # StructuredOutput tool, streamed as text; other text is not the answer.
        self.structured = structured
        self._structured_block: int | None = None
        self._structured_sent = False
        # False for tool_choice "none": the model is told to call none; a call it
        # makes anyway is not shown.
        self.tools_visible = tools_visible
        self.usage_before = usage_before or Usage()
        self.done = False
        self.result: ResultMessage | None = None  # the turn's result, once it arrived
        self.model = ""
        self.calls = 0  # client tool calls in this response
        self._streamed = ""
        self._thought = ""  # thinking streamed since the last assistant message
        self._signed = False
        self._usage: dict[str, Any] = {}
        self._blocks: dict[int, int] = {}  # stream block index -> tool call index
        self._streamed_ids: set[str] = set()
        self._assistant_error: str | None = None

    def feed(self, message: SDKMessage) -> Iterator[TurnEvent]:
        if isinstance(message, StreamEvent):
            if message.parent_tool_use_id is None:
                yield from self._stream_event(message.event)
        elif isinstance(message, AssistantMessage):
            if message.parent_tool_use_id is None:
                yield from self._assistant(message)
        elif isinstance(message, UserMessage):
            if self.agent and message.parent_tool_use_id is None:
                yield from self._tool_results(message)
        elif isinstance(message, ResultMessage):
            self.done = True
            self.result = message
            yield from self._result(message)

    def usage(self) -> Usage:
        """What the current API call has used so far (from the stream); relayed, the
        turn's earlier calls too."""
        return self._earlier + usage_of(self._usage)

    def _stream_event(self, event: dict[str, Any]) -> Iterator[TurnEvent]:
        kind = event.get("type")
        if kind == "message_start":
            self._step_break = self.agent and self._text_sent
            self._streamed = ""
            self._blocks = {}
            if self.relayed:
                self._earlier += usage_of(self._usage)
            message = event.get("message", {})
            self.model = str(message.get("model") or self.model)
            self._usage = dict(message.get("usage") or {})
        elif kind == "message_delta":
            self._usage.update(event.get("usage") or {})
            stop = event.get("delta", {}).get("stop_reason")
            if stop == "max_tokens":
                # The CLI would carry on by itself ("Output token limit hit. Resume
                # directly"); the client asked for a limit, so the answer ends here.
                yield TurnEnd("max_tokens", self.usage(), self.model)
            elif stop == "tool_use" and self._blocks:
                yield TurnEnd("tool_use", self.usage(), self.model)
            elif stop == "tool_use" and self._structured_sent:
                # The answer was the structured-output call's input: it is complete.
                yield TurnEnd("end_turn", self.usage(), self.model)
            elif self.relayed and stop in _ANSWERED:
                yield from self._answered(stop, event.get("delta", {}).get("stop_sequence"))
        elif kind == "content_block_start":
            yield from self._block_start(event)
        elif kind == "content_block_delta":
            yield from self._block_delta(event)

    def _block_start(self, event: dict[str, Any]) -> Iterator[TurnEvent]:
        block = event.get("content_block", {})
        name = self._client(str(block.get("name", ""))) if block.get("type") == "tool_use" \
            else None
        if self.structured and block.get("type") == "tool_use" and \
                block.get("name") == STRUCTURED_OUTPUT:
            self._structured_block = int(event.get("index", 0))
            self._streamed_ids.add(str(block.get("id")))
        if name is not None and self.tools_visible:
            self._blocks[int(event.get("index", 0))] = self.calls
            self._streamed_ids.add(str(block.get("id")))
            yield ToolCallStart(self.calls, str(block.get("id")), name)
            self.calls += 1

    def _block_delta(self, event: dict[str, Any]) -> Iterator[TurnEvent]:
        delta = event.get("delta", {})
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            self._streamed += delta["text"]
            if not self.structured:
                yield from self._text(delta["text"])
        elif kind == "thinking_delta" and delta.get("thinking"):
            self._thought += delta["thinking"]
            yield ReasoningDelta(delta["thinking"])
        elif kind == "signature_delta" and delta.get("signature"):
            self._signed = True
            yield ReasoningSignature(delta["signature"])
        elif kind == "input_json_delta" and delta.get("partial_json"):
            if self.structured and event.get("index") == self._structured_block:
                self._structured_sent = True
                yield TextDelta(delta["partial_json"])
                return
            call = self._blocks.get(int(event.get("index", -1)))
            if call is not None:
                yield ToolCallDelta(call, delta["partial_json"])

    def _answered(self, stop: str, stop_sequence: Any) -> Iterator[TurnEvent]:
        """Relayed: the response ended with the answer (its cost comes with the CLI's
        result, after it: ``Account.charge_late``)."""
        if self.structured and not self._structured_sent:
            raise UpstreamError("Claude did not produce an answer matching the schema")
        self.answered = True
        yield TurnEnd(_STOP_REASONS.get(stop, "end_turn"), self.usage(), self.model,
                      stop_sequence=stop_sequence if isinstance(stop_sequence, str) else None)

    def _client(self, name: str) -> str | None:
        return name if name in self.client_tools else None

    def cut(self, stop_sequence: str) -> TurnEnd:
        """The end of a response the gateway cuts short at a stop sequence."""
        return TurnEnd("stop_sequence", self.usage(), self.model, stop_sequence=stop_sequence)

    def _assistant(self, message: AssistantMessage) -> Iterator[TurnEvent]:
        self.model = message.model or self.model
        if message.error is not None:
            # The CLI's own error prose ("API Error: ..."), never model output.
            self._assistant_error = message.error
            return
        thinking = "".join(b.thinking for b in message.content if isinstance(b, ThinkingBlock))
        thought, self._thought = self._thought, ""
        signed, self._signed = self._signed, False
        if thinking.startswith(thought) and thinking[len(thought):]:
            yield ReasoningDelta(thinking[len(thought):])
        if not signed:
            for block in message.content:
                if isinstance(block, ThinkingBlock) and block.signature:
                    yield ReasoningSignature(block.signature)
        text = "".join(b.text for b in message.content if isinstance(b, TextBlock))
        streamed, self._streamed = self._streamed, ""
        if self.structured:
            yield from self._unstreamed_structured(message)
            return
        if streamed and not text.startswith(streamed):
            yield TextReplaced(text)
            return
        if text[len(streamed):]:
            yield from self._text(text[len(streamed):])
        yield from self._unstreamed_calls(message)
        if self.agent:
            yield from self._agent_calls(message)

    def _text(self, text: str) -> Iterator[TurnEvent]:
        if self._step_break:
            self._step_break = False
            text = "\n\n" + text
        self._text_sent = True
        yield TextDelta(text)

    def _agent_calls(self, message: AssistantMessage) -> Iterator[TurnEvent]:
        for block in message.content:
            if isinstance(block, ToolUseBlock) and self._client(block.name) is None \
                    and block.name != STRUCTURED_OUTPUT:
                self._tool_names[block.id] = block.name
                yield ReasoningDelta(f"\n[{block.name}] {describe_input(block.input)}\n")

    def _tool_results(self, message: UserMessage) -> Iterator[TurnEvent]:
        if isinstance(message.content, str):
            return
        for block in message.content:
            if isinstance(block, ToolResultBlock) and block.tool_use_id in self._tool_names:
                name = self._tool_names.pop(block.tool_use_id)
                outcome = "failed" if block.is_error else "done"
                yield ReasoningDelta(f"[{name}] {outcome}: {describe_output(block.content)}\n")

    def _unstreamed_structured(self, message: AssistantMessage) -> Iterator[TurnEvent]:
        for block in message.content:
            if isinstance(block, ToolUseBlock) and block.name == STRUCTURED_OUTPUT and \
                    block.id not in self._streamed_ids and not self._structured_sent:
                self._structured_sent = True
                yield TextDelta(json.dumps(block.input))
        yield from self._unstreamed_calls(message)

    def _unstreamed_calls(self, message: AssistantMessage) -> Iterator[TurnEvent]:
        for block in message.content:
            if not isinstance(block, ToolUseBlock) or block.id in self._streamed_ids:
                continue
            name = self._client(block.name)
            if name is not None and self.tools_visible:
                self._streamed_ids.add(block.id)
                yield ToolCallStart(self.calls, block.id, name)
                yield ToolCallDelta(self.calls, json.dumps(block.input))
                self.calls += 1

    def _result(self, result: ResultMessage) -> Iterator[TurnEvent]:
        if self.agent and result.subtype in _AGENT_LIMITS:
            # The agent ran out of model calls or budget: the answer so far stands.
            yield ReasoningDelta(f"\n[stopped] {_AGENT_LIMITS[result.subtype]}\n")
            yield TurnEnd("max_tokens", usage_of(result.usage) - self.usage_before,
                          self.model, result.total_cost_usd or 0.0)
            return
        if result.is_error:
            error = result_error(result, self._assistant_error)
            if isinstance(error, UpstreamRateLimited | UpstreamOverloaded):
                error.retry_after = self.retry_after
            raise error
        if self.structured and not self._structured_sent:
            if result.structured_output is None:
                raise UpstreamError("Claude did not produce an answer matching the schema")
            yield TextDelta(json.dumps(result.structured_output))
        stop = _STOP_REASONS.get(result.stop_reason or "end_turn", "end_turn")
        if stop == "tool_use" and not self.calls:
            stop = "end_turn"
        yield TurnEnd(stop, usage_of(result.usage) - self.usage_before, self.model,
                      result.total_cost_usd or 0.0)


def describe_input(data: dict[str, Any]) -> str:
    """A tool call's input in one short line: its path, pattern or command if any."""
    for name in ("file_path", "notebook_path", "path", "pattern", "command", "url", "query"):
        value = data.get(name)
        if isinstance(value, str) and value:
            return _short(value)
    return _short(json.dumps(data, ensure_ascii=False))


def describe_output(content: Any) -> str:
    if isinstance(content, list):
        content = " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return _short(str(content or "").strip()) or "(no output)"


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _SHOWN else line[:_SHOWN - 1] + "…"


def usage_of(raw: dict[str, Any] | None) -> Usage:
    raw = raw or {}

    def num(name: str) -> int:
        value = raw.get(name)
        return value if isinstance(value, int) else 0

    return Usage(
        input_tokens=num("input_tokens"),
        output_tokens=num("output_tokens"),
        cache_read_input_tokens=num("cache_read_input_tokens"),
        cache_creation_input_tokens=num("cache_creation_input_tokens"),
    )


def result_error(result: ResultMessage, assistant_error: str | None) -> GatewayError:
    """Map an error result to the gateway's error, most specific first."""
    status = result.api_error_status
    if status == 429 or assistant_error == "rate_limit":
        return UpstreamRateLimited("the Anthropic API rate limit was reached (429); "
                                   "retry after a pause")
    if status in (401, 403) or assistant_error in ("authentication_failed", "billing_error"):
        if assistant_error == "billing_error":
            return UpstreamAuthFailed("the Anthropic account behind this server has a "
                                      "billing problem")
        return UpstreamAuthFailed(AUTH_HELP)
    if status == 529 or (status is not None and status >= 500) or \
            assistant_error == "server_error":
        return UpstreamOverloaded(f"the Anthropic API is overloaded or failing ({status or 503}); "
                                  "retry after a pause")
    if status is not None and 400 <= status < 500:
        return UpstreamRejected(f"the Anthropic API rejected the request ({status})")
    if result.subtype == "error_max_budget_usd":
        return UpstreamError("the turn exceeded its cost budget")
    return UpstreamError(f"Claude Code ended the turn with an error ({result.subtype})")


class StopScanner:
    """Cuts streamed text at the first stop sequence.

    Text that might be the start of a stop sequence is held back until the next
    piece decides it, so a client never sees part of a stop sequence.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.matched: str | None = None
        self._held = ""

    def feed(self, text: str) -> str:
        if not self.stops:
            return text
        if self.matched is not None:
            return ""
        buffer = self._held + text
        first: tuple[int, str] | None = None
        for stop in self.stops:
            at = buffer.find(stop)
            if at != -1 and (first is None or at < first[0]):
                first = (at, stop)
        if first is not None:
            self.matched = first[1]
            self._held = ""
            return buffer[: first[0]]
        keep = self._partial_suffix(buffer)
        self._held = buffer[len(buffer) - keep:] if keep else ""
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held if self.matched is None else ""

    def _partial_suffix(self, buffer: str) -> int:
        """Length of the longest buffer suffix that is a proper prefix of a stop."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(buffer)), best, -1):
                if buffer.endswith(stop[:n]):
                    best = n
                    break
        return best
