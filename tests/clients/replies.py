"""What the fake Claude answers the client guides, computed from each request, so that
guides running at once get the right answers whatever the order of arrival.

- an output schema is offered (the CLI's `StructuredOutput` tool): an object for it;
- the last user message carries tool results: "The tool says: <first result>";
- the prompt asks for the weather and a `get_weather` tool is offered: a call to it;
- the prompt says Run `<command>` and a shell tool (Codex's `exec_command`) is offered:
  a call running that command;
- the prompt says Read <path> and Claude Code's `Read` tool is offered: a call to it;
- anything else: "You said: <the prompt>".
"""

from __future__ import annotations

import re
from typing import Any

from claude_code_api.testing.fake_upstream import Reply, Seen, ToolUse

PLACE = {"city": "Paris", "country": "France"}


def last_user_content(seen: Seen) -> Any:
    users = [message for message in seen.messages if message["role"] == "user"]
    return users[-1]["content"] if users else ""


def client_text(seen: Seen) -> str:
    """The client's own text in the last user message (not the CLI's reminders)."""
    content = last_user_content(seen)
    if isinstance(content, str):
        return content
    texts = [block["text"] for block in content if block.get("type") == "text"
             and not block["text"].startswith("<system-reminder>")]
    return texts[-1] if texts else ""


def tool_results(seen: Seen) -> list[str]:
    """The text of each tool result in the last user message."""
    content = last_user_content(seen)
    if isinstance(content, str):
        return []
    return ["".join(part.get("text", "") for part in block["content"])
            if isinstance(block["content"], list) else str(block["content"])
            for block in content if block.get("type") == "tool_result"]


def call(name: str, arguments: dict[str, Any]) -> Reply:
    return Reply(blocks=[ToolUse(name, arguments)], stop_reason="tool_use")


def answer(seen: Seen) -> Reply:
    tools = [tool["name"] for tool in seen.body.get("tools", [])]

    def offered(suffix: str) -> str | None:
        return next((name for name in tools if name.endswith(suffix)), None)

    if "StructuredOutput" in tools:
        return call("StructuredOutput", PLACE)
    if results := tool_results(seen):
        return Reply.text(f"The tool says: {results[0]}")
    prompt = client_text(seen)
    if "weather" in prompt and (weather := offered("get_weather")):
        return call(weather, {"city": "Paris"})
    if (command := re.search(r"Run `([^`]+)`", prompt)) and (shell := offered("exec_command")):
        return call(shell, {"cmd": command.group(1)})
    if (path := re.search(r"Read (/\S+)", prompt)) and (read := offered("Read")):
        return call(read, {"file_path": path.group(1)})
    return Reply.text(f"You said: {prompt}", chunk_delay=0.01)
