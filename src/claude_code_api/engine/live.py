"""A live session: one Claude Code process given to one interactive client.

The worker comes from the pool (so sessions count against
``max_concurrent_sessions``) and stays busy until the session is closed, when
its process is ended. The client's turns go in as client-composed user
messages; everything the CLI emits comes back as JSON-ready dicts.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from claude_agent_sdk import (
    AssistantMessage,
    ResultMessage,
    StreamEvent,
    SystemMessage,
    UserMessage,
)
from claude_agent_sdk import Message as SDKMessage

from ..errors import WorkerCrashed, WorkerTimeout
from .pool import Pool
from .protocol import Worker
from .worker import user_message

_KINDS: dict[type, str] = {AssistantMessage: "assistant", UserMessage: "user",
                           SystemMessage: "system", ResultMessage: "result",
                           StreamEvent: "stream_event"}


def message_json(message: SDKMessage) -> dict[str, Any]:
    """A CLI message as JSON: its fields, with ``type`` saying which message it is
    (content blocks carry their own ``type`` too)."""
    data = _plain(message)
    kind = _KINDS.get(type(message), type(message).__name__)
    return {"type": kind, **(data if isinstance(data, dict) else {"data": data})}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        block = type(value).__name__
        if block.endswith("Block"):
            out["type"] = {"TextBlock": "text", "ThinkingBlock": "thinking",
                           "ToolUseBlock": "tool_use", "ToolResultBlock": "tool_result",
                           "ServerToolUseBlock": "server_tool_use",
                           "ServerToolResultBlock": "server_tool_result"}.get(block, block)
        return out
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


class LiveSession:
    def __init__(self, worker: Worker, pool: Pool, timeout: float) -> None:
        self.worker = worker
        self.pool = pool
        self.timeout = timeout
        self.closed = False
        self.turn_running = False  # a user turn was sent and its result not yet seen

    @property
    def turns(self) -> int:
        return self.worker.turns

    @property
    def worker_id(self) -> int:
        return self.worker.id

    async def turn(self, content: str | list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        """Send one user turn; yield the CLI's messages up to and including its result."""
        if self.closed:
            raise WorkerCrashed("this session's Claude Code process has ended; create a "
                                "new session")
        if self.turn_running:
            raise RuntimeError("a turn is already running")
        self.turn_running = True
        try:
            self.worker.drain()
            await self.worker.send(user_message(content))
            self.worker.turns += 1
            while True:
                message = await self.worker.next_message(self.timeout)
                if isinstance(message, ResultMessage):
                    self.turn_running = False
                yield message_json(message)
                if isinstance(message, ResultMessage):
                    return
        except (WorkerCrashed, WorkerTimeout):
            # The process died or fell silent mid-turn: no result is coming, and it
            # cannot be trusted with the session's next turn.
            self.turn_running = False
            self.close()
            raise

    async def interrupt(self) -> None:
        """Ask the CLI to stop the running turn (its result still follows)."""
        if self.turn_running:
            await self.worker.interrupt()

    async def settle(self, timeout: float = 10.0) -> dict[str, Any] | None:
        """Stop a turn nobody reads any more and wait for its end (its result, for the
        ledger); a CLI that does not obey loses the session."""
        if not self.turn_running:
            return None
        try:
            async with asyncio.timeout(timeout):
                await self.worker.interrupt()
            result = await self.worker.until_result(timeout)
        except Exception:
            self.close()
            return None
        self.turn_running = False
        return message_json(result)

    def close(self) -> None:
        """End the process: the pool starts a fresh one when it needs one."""
        if not self.closed:
            self.closed = True
            self.pool.release(self.worker, healthy=False)
