"""An in-memory ``Worker`` for unit tests of the pool and the engine.

``FakeWorkers`` is a ``WorkerFactory``: give it to ``Engine(new_worker=...)``, or its
``for_pool`` to a ``Pool``. Each worker answers a turn with the next reply scripted on
the factory (``reply``; by default the text "ok"), as the SDK messages the real CLI
emits, each result carrying its turn's own cost. A script may hold a ``Hold`` (the
reply waits until the test releases it) or ``CRASH`` (the process dies there).
Knobs on the factory (or on one worker) make starts wait or fail, resets refuse,
interrupts go unheeded or closes hang; counters say what the pool and engine did.
Nothing here sleeps: delays are events the test sets.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ResultMessage,
    StreamEvent,
    TextBlock,
)
from claude_agent_sdk import Message as SDKMessage

from ..engine.permissions import Permissions
from ..engine.protocol import State, Worker, WorkerKey
from ..engine.relay import RELAY_END, Lane
from ..errors import WorkerCrashed, WorkerTimeout

MODEL = "claude-sonnet-4-5"
DEFAULT_KEY = WorkerKey()


class Hold:
    """A point in a reply where it waits until ``release()``."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def release(self) -> None:
        self.event.set()


CRASH: Literal["crash"] = "crash"
Item = SDKMessage | Hold | Literal["crash"]


def _event(event: dict[str, Any]) -> StreamEvent:
    return StreamEvent(uuid="fake", session_id="fake", event=event)


def result(cost: float = 0.0, *, output_tokens: int = 1, subtype: str = "success",
           status: int | None = None, stop_reason: str | None = "end_turn") -> ResultMessage:
    """A turn's result (``status``: the upstream's error status, as the CLI reports)."""
    return ResultMessage(subtype=subtype, duration_ms=1, duration_api_ms=1,
                         is_error=subtype != "success", num_turns=1, session_id="fake",
                         stop_reason=stop_reason, total_cost_usd=cost,
                         usage={"input_tokens": 3, "output_tokens": output_tokens},
                         api_error_status=status)


def text(answer: str, cost: float = 0.001, *, chunks: int = 1) -> list[Item]:
    """A streamed text answer and its result, in ``chunks`` deltas."""
    size = max(1, -(-len(answer) // chunks))
    parts = [answer[i:i + size] for i in range(0, len(answer), size)]
    return [_event({"type": "message_start",
                    "message": {"model": MODEL, "usage": {"input_tokens": 3}}}),
            _event({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
            *(_event({"type": "content_block_delta", "index": 0,
                      "delta": {"type": "text_delta", "text": part}}) for part in parts),
            _event({"type": "content_block_stop", "index": 0}),
            _event({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": len(parts)}}),
            AssistantMessage(content=[TextBlock(answer)], model=MODEL),
            result(cost, output_tokens=len(parts))]


def tool_call(name: str, arguments: str = "{}", call_id: str = "toolu_fake") -> list[Item]:
    """A response ending at a call of the client's tool ``name``: the turn waits for
    its result (no ``ResultMessage`` until the engine interrupts it)."""
    return [_event({"type": "message_start",
                    "message": {"model": MODEL, "usage": {"input_tokens": 3}}}),
            _event({"type": "content_block_start", "index": 0, "content_block": {
                "type": "tool_use", "id": call_id, "name": name, "input": {}}}),
            _event({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": arguments}}),
            _event({"type": "content_block_stop", "index": 0}),
            _event({"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                    "usage": {"output_tokens": 2}})]


def upstream_error(status: int) -> list[Item]:
    """The upstream refused the turn (429, 401...): the CLI's error result."""
    return [result(subtype="error_during_execution", status=status, stop_reason=None)]


class FakeWorkers:
    """A ``WorkerFactory`` of ``FakeWorker``; the script and knobs they share."""

    def __init__(self) -> None:
        self.built: list[FakeWorker] = []
        self.replies: deque[list[Item]] = deque()
        self.start_hold: Hold | None = None  # starts wait for it
        self.start_error: Exception | None = None  # starts fail with it
        # Called as a start connects, before the pool hears of it.
        self.on_connected: Callable[[FakeWorker], None] | None = None
        self.close_hangs = False  # closes wait for kill()
        # What an interrupted turn's result says it cost, and the output it counts.
        self.interrupt_cost = 0.002
        self.interrupt_output_tokens = 5

    def __call__(self, key: WorkerKey, options: ClaudeAgentOptions | None = None,
                 permissions: Permissions | None = None,
                 lane: Lane | None = None) -> FakeWorker:
        worker = FakeWorker(key, options, permissions, lane, factory=self)
        self.built.append(worker)
        return worker

    def for_pool(self, key: WorkerKey) -> Worker:
        """As ``Pool(make_worker=...)`` wants it: a key alone."""
        return self(key)

    def reply(self, *scripts: Sequence[Item]) -> None:
        """Queue the replies to the next turns, whichever worker serves them."""
        self.replies.extend(list(s) for s in scripts)

    def live(self) -> list[FakeWorker]:
        """The workers whose process has not ended yet."""
        return [w for w in self.built if w.state != "closed"]


class FakeWorker(Worker):
    """A worker without a process. Counters: ``connects``, ``sends``, ``interrupts``,
    ``resets``, ``closes``, ``kills``; ``sent`` holds the messages it was given."""

    _ids = itertools.count(1)

    def __init__(self, key: WorkerKey = DEFAULT_KEY, options: ClaudeAgentOptions | None = None,
                 permissions: Permissions | None = None,
                 lane: Lane | None = None, *, factory: FakeWorkers | None = None) -> None:
        self.factory = factory or FakeWorkers()
        self.id = next(self._ids)
        self.key = key
        self.state: State = "starting"
        self.model = options.model if options is not None else None
        self.pid: int | None = None
        self.server_info: dict[str, Any] = {}
        self.turns = 0
        self.held: str | None = None
        self.last_used = 0.0
        self.armed: str | None = None
        self.permissions = permissions
        self.lane = lane
        self.on_exit = None
        self.on_closed = None
        self.replies: deque[list[Item]] = deque()  # before the factory's
        self.reset_result = True
        self.reset_error: Exception | None = None
        self.obeys_interrupt = True
        self.unrewindable = False
        self.sent: list[dict[str, Any]] = []
        self.connects = self.sends = self.interrupts = self.resets = 0
        self.closes = self.kills = 0
        self.spent = 0.0
        self._inbox: asyncio.Queue[SDKMessage | None] = asyncio.Queue()  # None: died
        self._results = 0  # results in the inbox
        self._feed: asyncio.Task[None] | None = None
        self._dead = False
        self._killed = asyncio.Event()
        self._at_tools = False  # the response being relayed ended at tool calls

    def __repr__(self) -> str:
        return f"<FakeWorker #{self.id} {self.state} turns={self.turns}>"

    @property
    def alive(self) -> bool:
        return not self._dead and self.state != "closed"

    @property
    def ready(self) -> bool:
        return self.armed is not None and self.lane is not None and self.lane.held.is_set()

    @property
    def limit_spent(self) -> bool:
        return False

    @property
    def rewindable(self) -> bool:
        return not self.unrewindable

    @property
    def cost_usd(self) -> float:
        return self.spent

    def rss_bytes(self) -> int:
        return 0

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        self.connects += 1
        if self.factory.start_hold is not None:
            await self.factory.start_hold.event.wait()
        if self.factory.start_error is not None:
            self.state = "closed"
            raise self.factory.start_error
        self.pid = 100_000 + self.id
        self.server_info = {"pid": self.pid, "models": [{"value": "sonnet"}]}
        # As a CLI's start returns: other tasks (a request arriving) run before the
        # pool's task resumes; the state stays "starting" for the pool to change.
        if self.factory.on_connected is not None:
            self.factory.on_connected(self)
        await asyncio.sleep(0)

    async def close(self) -> None:
        self.closes += 1
        if self.state == "closed":
            return
        if self._feed is not None:
            self._feed.cancel()
        if self.factory.close_hangs and not self._killed.is_set():
            await self._killed.wait()
        self._end()

    def kill(self) -> None:
        self.kills += 1
        self._dead = True
        self._killed.set()

    def crash(self) -> None:
        """The process ends by itself, as a CLI killed from outside would."""
        self._dead = True
        self._inbox.put_nowait(None)
        if self.on_exit is not None:
            self.on_exit(self)

    def _end(self) -> None:
        self._dead = True
        self.state = "closed"
        if self.on_closed is not None:
            self.on_closed(self)

    # -- turns ----------------------------------------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        self._check()
        self.sends += 1
        self.sent.append(message)
        self._feed = asyncio.create_task(self._turn(message))

    async def _turn(self, message: dict[str, Any]) -> None:
        """As the CLI would: an armed placeholder's call waits at the relay for its
        turn to begin; a withdrawn one ends in an error result."""
        lane = self.lane
        if lane is not None and lane.armed is not None and \
                _text(message) == lane.armed and not await lane.wait():
            self._put(result(subtype="error_during_execution", status=400,
                             stop_reason=None, output_tokens=0))
            return
        script = self.replies.popleft() if self.replies else \
            self.factory.replies.popleft() if self.factory.replies else text("ok")
        await self._play(script)

    async def _play(self, script: Iterable[Item]) -> None:
        """The script, as the CLI's messages; its stream events pass the lane's relay
        too (the upstream's call, ending when the CLI's own messages about it begin)."""
        calling = False
        for item in script:
            if isinstance(item, Hold):
                await item.event.wait()
            elif item == CRASH:
                self.crash()
                return
            else:
                if isinstance(item, StreamEvent):
                    calling = True
                    self._relay(item.event)
                elif calling:
                    calling = False
                    self._relay({"type": RELAY_END, "status": 200, "complete": True})
                elif isinstance(item, ResultMessage) and item.api_error_status:
                    self._relay({"type": RELAY_END, "status": item.api_error_status,
                                 "complete": False})
                self._put(item)
        if calling:
            self._relay({"type": RELAY_END, "status": 200, "complete": True})

    def _relay(self, event: dict[str, Any]) -> None:
        if self.lane is None:
            return
        if self.lane.events is not None:
            self.lane.events.put_nowait(event)
        if event.get("type") == RELAY_END and self._at_tools:
            # As the CLI does once it has read the response: its next call (answering
            # "no such tool" itself) reaches the relay, which holds it.
            self._at_tools = False
            self.lane.blocked.set()
        elif event.get("type") == "message_delta" and \
                event.get("delta", {}).get("stop_reason") == "tool_use":
            self._at_tools = True

    def _put(self, message: SDKMessage) -> None:
        if isinstance(message, ResultMessage):
            self.spent += message.total_cost_usd or 0.0
            self._results += 1
        self._inbox.put_nowait(message)

    async def set_model(self, model: str) -> None:
        self._check()
        self.model = model

    async def interrupt(self) -> None:
        self._check()
        self.interrupts += 1
        if not self.obeys_interrupt:
            return
        if self._feed is not None and not self._feed.done():
            self._feed.cancel()
        self._put(result(self.factory.interrupt_cost, subtype="error_during_execution",
                         output_tokens=self.factory.interrupt_output_tokens,
                         stop_reason=None))

    async def next_message(self, timeout: float) -> SDKMessage:
        try:
            async with asyncio.timeout(timeout):
                item = await self._inbox.get()
        except TimeoutError:
            raise WorkerTimeout(f"the fake worker produced nothing for {timeout:g} "
                                "seconds") from None
        if item is None:
            self._inbox.put_nowait(None)
            raise WorkerCrashed("the fake worker's process ended")
        if isinstance(item, ResultMessage):
            self._results -= 1
        return item

    async def until_result(self, timeout: float) -> ResultMessage:
        while True:
            message = await self.next_message(timeout)
            if isinstance(message, ResultMessage):
                return message

    def arm(self, marker: str) -> dict[str, Any]:
        self.armed = marker
        if self.lane is not None:
            self.lane.arm(marker)
        return {"type": "user", "message": {"role": "user", "content": [
            {"type": "text", "text": marker}]}}

    def take_armed(self) -> str | None:
        marker, self.armed = self.armed, None
        return marker

    async def unarm(self, timeout: float = 10.0) -> None:
        if self.armed is None:
            return
        self.armed = None
        if self.lane is not None:
            self.lane.disarm()
        await self.until_result(timeout)
        self.drain()

    async def reset(self, timeout: float = 10.0) -> bool:
        self._check()
        self.resets += 1
        await self.unarm(timeout)
        if self.lane is not None:
            self.lane.forget()
        if self.reset_error is not None:
            raise self.reset_error
        return self.reset_result and not self.unrewindable

    @property
    def result_waiting(self) -> bool:
        return self._results > 0

    def drain(self) -> None:
        while not self._inbox.empty():
            item = self._inbox.get_nowait()
            if item is None:
                self._inbox.put_nowait(None)
                return
            if isinstance(item, ResultMessage):
                self._results -= 1

    def _check(self) -> None:
        if self._dead:
            raise WorkerCrashed("the fake worker's process is not running")


def _text(message: dict[str, Any]) -> str:
    content = message.get("message", {}).get("content")
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("text", ""))
    return str(content)
