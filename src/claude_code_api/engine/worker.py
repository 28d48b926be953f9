"""One live Claude Code CLI process (a connected ``ClaudeSDKClient``).

The SDK client must be connected and disconnected in the same task (it holds an
anyio task group), so each worker has an owner task that connects, pumps every
message the CLI emits into an inbox queue, and on close disconnects. Request
tasks only write user messages and read the inbox, so a request being cancelled
(client hung up) never tears the client's task group.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import psutil
from claude_agent_sdk import (
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ResultMessage,
)
from claude_agent_sdk import (
    Message as SDKMessage,
)

from ..errors import WorkerCrashed, WorkerTimeout
from . import control
from .costs import Meter
from .permissions import Permissions
from .protocol import State as State
from .protocol import Worker as WorkerProtocol
from .protocol import WorkerKey as WorkerKey
from .relay import Lane

log = logging.getLogger(__name__)

_ids = itertools.count(1)


class _Died:
    """Inbox marker: the CLI's message stream ended."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


def user_message(content: Any) -> dict[str, Any]:
    """A stream-json user message. ``client_composed`` keeps the text inert: no
    ``@file`` expansion, no slash commands."""
    return {
        "type": "user",
        "message": {"role": "user", "content": content},
        "parent_tool_use_id": None,
        "uuid": str(uuid.uuid4()),
        "client_composed": True,
    }


def _has_tool_result(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in content)


class Worker(WorkerProtocol):
    """The real worker: see ``protocol.Worker`` for the contract it keeps."""

    def __init__(self, key: WorkerKey, options: ClaudeAgentOptions,
                 permissions: Permissions | None = None, lane: Lane | None = None) -> None:
        self.id = next(_ids)
        # Its path through the upstream relay, where each turn's shape is applied.
        self.lane = lane
        self.on_closed: Callable[[Worker], None] | None = None
        self.permissions = permissions
        self.on_exit: Callable[[Worker], None] | None = None
        self.key = key
        self.options = options
        self.state: State = "starting"
        self.model: str | None = options.model
        self.pid: int | None = None
        self.server_info: dict[str, Any] = {}
        self.turns = 0
        # Results leave the pump with their turn's own cost (see costs.py).
        self.meter = Meter.starting(options)
        self.last_used = time.monotonic()
        # The fingerprint of the conversation state its live session holds, if any.
        self.held: str | None = None
        self._client: ClaudeSDKClient | None = None
        self._inbox: asyncio.Queue[SDKMessage | _Died] = asyncio.Queue()
        self._results = 0  # results in the inbox
        self._started: asyncio.Future[None] | None = None
        self._closing = asyncio.Event()
        self._owner: asyncio.Task[None] | None = None
        self._dead = False
        # The conversation currently held, for reset(): its first and last user uuids.
        self._first_user: str | None = None
        self._last_user: str | None = None
        self._unrewindable = False
        # The placeholder of the next turn, sent ahead (see ``arm``), and the user
        # message before it.
        self.armed: str | None = None
        self._armed_uuid: str | None = None
        self._before_armed: str | None = None
        self._armed_ended = False  # the armed placeholder's turn ended by itself

    def __repr__(self) -> str:
        return f"<Worker #{self.id} {self.state} pid={self.pid} turns={self.turns}>"

    @property
    def cost_usd(self) -> float:
        """The running total the process reported last: every turn it served."""
        return self.meter.total

    @property
    def limit_spent(self) -> bool:
        """The CLI holds ``max_budget_usd`` against its process's running total, not
        per turn: after a turn that cost anything, the next would get less than its
        limit (and, once the total reaches it, nothing at all)."""
        return self.options.max_budget_usd is not None and self.meter.total > 0

    @property
    def ready(self) -> bool:
        """Armed, and its call is waiting at the relay: a turn starts at once."""
        return self.armed is not None and self.lane is not None and self.lane.held.is_set()

    @property
    def alive(self) -> bool:
        return not self._dead and self.state != "closed"

    @property
    def rewindable(self) -> bool:
        """False when the session began with an assistant message or a tool result:
        it cannot be emptied in place, so the worker must not keep it for later."""
        return not self._unrewindable

    def rss_bytes(self) -> int:
        if self.pid is None:
            return 0
        try:
            return int(psutil.Process(self.pid).memory_info().rss)
        except psutil.Error:
            return 0

    # -- lifecycle ----------------------------------------------------------
    async def start(self, timeout: float = 60.0) -> None:
        loop = asyncio.get_running_loop()
        self._started = loop.create_future()
        self._owner = asyncio.create_task(self._own(), name=f"worker-{self.id}")
        try:
            await asyncio.wait_for(asyncio.shield(self._started), timeout)
        except BaseException:
            # A CLI that never answers the handshake keeps connect() waiting for the
            # SDK's own (longer) initialize timeout: cancel it, so start is bounded.
            if not self._started.done():
                self._owner.cancel()
            await self.close()
            if self._started.done() and not self._started.cancelled():
                self._started.exception()  # retrieved: the caller gets its own error
            raise

    async def _own(self) -> None:
        assert self._started is not None
        client = ClaudeSDKClient(self.options)
        try:
            await client.connect()
            info = await client.get_server_info() or {}
        except BaseException as exc:  # includes cancellation during start
            with contextlib.suppress(BaseException):
                await client.disconnect()
            self._dead = True
            self.state = "closed"
            if self.on_closed is not None:
                self.on_closed(self)
            if not self._started.done():
                self._started.set_exception(exc)
            return
        self._client = client
        self.server_info = info
        pid = info.get("pid")
        self.pid = pid if isinstance(pid, int) else None
        # The state stays "starting": the pool makes it idle once ``start`` has
        # returned to it. (Set here, a request arriving before the pool's task resumes
        # could take the worker while the pool then gives it to the request it was
        # started for as well: two turns on one CLI.)
        self._started.set_result(None)
        pump = asyncio.create_task(self._pump(client))
        try:
            await self._closing.wait()
        finally:
            pump.cancel()
            # A call held at the relay (an armed worker's) is refused first: a CLI
            # waiting on its call does not exit at the end of its input, and the SDK
            # would give it 5 s before terminating it.
            if self.lane is not None:
                self.lane.disarm()
            # Shielded and bounded: the transport terminates, then kills the CLI.
            with contextlib.suppress(BaseException):
                await asyncio.shield(asyncio.wait_for(client.disconnect(), 25))
            self._kill_if_alive()
            self.state = "closed"
            if self.on_closed is not None:
                self.on_closed(self)

    async def _pump(self, client: ClaudeSDKClient) -> None:
        error: BaseException | None = None
        try:
            async for message in client.receive_messages():
                # Metered here, as they arrive, so that a result nobody reads (one
                # dropped by drain()) is never added to the next turn's cost.
                if isinstance(message, ResultMessage):
                    message = self.meter.turn(message)
                    self._results += 1
                    # A result while armed is the armed turn's own: it failed before
                    # any turn began on it (the CLI not logged in, say).
                    self._armed_ended = self._armed_ended or self.armed is not None
                self._inbox.put_nowait(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = exc
        self._dead = True
        if not self._closing.is_set():
            log.warning("worker #%s: CLI stream ended (%s)", self.id, error or "exit")
        self._inbox.put_nowait(_Died(error))
        if self.on_exit is not None:
            self.on_exit(self)

    def _kill_if_alive(self) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(self.pid)
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                proc.kill()

    async def close(self) -> None:
        """Stop the CLI. Safe to call more than once, and from any task."""
        self._closing.set()
        owner = self._owner
        if owner is not None and owner is not asyncio.current_task():
            with contextlib.suppress(BaseException):
                await asyncio.shield(owner)
        self.state = "closed"

    def kill(self) -> None:
        """Hard stop for a hung CLI; the owner task then cleans up."""
        self._dead = True
        self._kill_if_alive()
        self._closing.set()

    # -- conversation I/O ---------------------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        client = self._require_client()
        if message["type"] == "user":
            if self._first_user is None and _has_tool_result(message["message"]["content"]):
                # The CLI refuses to rewind onto a tool result ("target splits a tool
                # call"): the session cannot be emptied for the next caller.
                self._unrewindable = True
            self._first_user = self._first_user or message["uuid"]
            self._last_user = message["uuid"]
        elif self._first_user is None:
            self._unrewindable = True

        async def one() -> AsyncIterator[dict[str, Any]]:
            yield message

        await client.query(one())

    async def set_model(self, model: str) -> None:
        if model != self.model:
            await self._require_client().set_model(model)
            self.model = model

    async def interrupt(self) -> None:
        await self._require_client().interrupt()

    async def next_message(self, timeout: float) -> SDKMessage:
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a
            # cancellation that arrives with a message, and a cancelled turn runs on.
            async with asyncio.timeout(timeout):
                item = await self._inbox.get()
        except TimeoutError:
            raise WorkerTimeout(
                f"Claude Code produced nothing for {timeout:g} seconds"
            ) from None
        if isinstance(item, _Died):
            raise WorkerCrashed("the Claude Code process ended unexpectedly")
        if isinstance(item, ResultMessage):
            self._results -= 1
        return item

    @property
    def result_waiting(self) -> bool:
        """A turn's result waits in the inbox (the turn ended, whatever else did)."""
        return self._results > 0

    async def until_result(self, timeout: float) -> ResultMessage:
        while True:
            message = await self.next_message(timeout)
            if isinstance(message, ResultMessage):
                return message

    def arm(self, marker: str) -> dict[str, Any]:
        """Mark the worker armed with ``marker`` and return the message to ``send``:
        the CLI prepares its upstream call, which the relay holds until a turn
        begins on the lane (``Lane.wait``)."""
        self.armed = marker
        self._armed_ended = False
        if self.lane is not None:
            self.lane.arm(marker)
        self._before_armed = self._last_user
        message = user_message([{"type": "text", "text": marker}])
        self._armed_uuid = message["uuid"]
        return message

    def take_armed(self) -> str | None:
        """The armed placeholder, for the turn about to begin on it."""
        marker, self.armed = self.armed, None
        return marker

    async def unarm(self, timeout: float = 10.0) -> None:
        """Withdraw the armed placeholder: its call is refused, and the conversation
        is cut back to before it."""
        if self.armed is None:
            return
        self.armed = None
        if self.lane is not None:
            self.lane.disarm()
        await self._armed_result(timeout)
        armed = self._armed_uuid
        assert armed is not None
        if not await self._rewind(armed, armed, timeout):
            raise WorkerCrashed("could not withdraw the armed turn")
        self._last_user = self._before_armed
        if self._last_user is None:
            self._first_user = None

    async def _armed_result(self, timeout: float) -> None:
        """The withdrawn placeholder's turn is over (its result may have been read, or
        dropped by ``drain``, already)."""
        if not self._armed_ended or self.result_waiting:
            await self.until_result(timeout)
        self.drain()
        self._armed_ended = False

    async def reset(self, timeout: float = 10.0) -> bool:
        """Empty the conversation for the next caller; False if that was not possible.

        ``rewind_conversation`` cut back to before the conversation's first user
        message takes ~5 ms and, unlike ``/clear``, leaves nothing behind (``/clear``
        records a local-command caveat that would reach the next conversation's
        first prompt).
        """
        if self.armed is not None:
            if self.lane is not None:
                self.lane.disarm()
            self.armed = None
            await self._armed_result(timeout)
        if self.lane is not None:
            self.lane.forget()
        first, last = self._first_user, self._last_user
        if self._unrewindable:
            return False
        if first is None or last is None:
            return True
        if not await self._rewind(first, last, timeout):
            return False
        self._first_user = self._last_user = None
        return True

    async def _rewind(self, target: str, last: str, timeout: float) -> bool:
        """Cut the conversation back to before ``target`` (see ``control.py``)."""
        client = self._require_client()
        try:
            response = await asyncio.wait_for(control.rewind(client, target, last, timeout),
                                              timeout)
        except control.ControlUnavailable:
            raise
        except Exception as exc:  # the CLI died, went silent, or wrote what the SDK refused
            raise WorkerCrashed("could not clear the Claude Code session") from exc
        if response.get("rewound") is not True:
            log.warning("worker #%s: rewind refused: %s", self.id, response)
            return False
        return True

    def drain(self) -> None:
        """Drop anything left in the inbox from an earlier turn."""
        while not self._inbox.empty():
            item = self._inbox.get_nowait()
            if isinstance(item, _Died):
                self._inbox.put_nowait(item)
                return
            if isinstance(item, ResultMessage):
                self._results -= 1

    def _require_client(self) -> ClaudeSDKClient:
        if self._client is None or self._dead:
            raise WorkerCrashed("the Claude Code process is not running")
        return self._client
