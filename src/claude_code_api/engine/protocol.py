"""The seam below the engine: what the pool and the engine need of a worker.

``worker.Worker`` is the real one, a live Claude Code CLI behind ``ClaudeSDKClient``;
``testing/fake_worker.py`` has an in-memory one with scripted replies, for the pool's
and the engine's unit tests. Only the engine builds workers (through a
``WorkerFactory``), so the rest of the package never depends on which one it has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from claude_agent_sdk import ClaudeAgentOptions, ResultMessage
from claude_agent_sdk import Message as SDKMessage

from .permissions import AgentKey, Permissions
from .relay import Lane

# finishing: its answer was sent; the CLI is still closing the turn (milliseconds).
State = Literal["starting", "idle", "busy", "finishing", "resetting", "closed"]


@dataclass(frozen=True)
class WorkerKey:
    """What a CLI process cannot change after it starts. Everything else a turn asks
    for (system prompt, output limit, effort, sampling, earlier turns) is applied per
    upstream call by the relay (``relay.py``)."""

    agent: AgentKey | None = None  # agent mode: Claude Code's tools in a workspace


class Worker(Protocol):
    """One process that serves turns, one at a time.

    Lifecycle: ``start`` connects and leaves the state ``starting``: only the pool
    makes a worker ``idle``, and moves it between ``idle``, ``busy`` and ``resetting``
    (the engine marks a busy one ``finishing``); ``close`` ends it (``closed``).

    A turn: ``send`` one stream-json user message, then ``next_message`` until the
    turn's ``ResultMessage`` (whose cost is the turn's own, not the process's running
    total). ``interrupt`` asks the running turn to stop; its result still follows.
    ``reset`` empties the conversation for the next caller, ``drain`` drops what an
    earlier turn left unread.

    The close contract, which the pool relies on to never leak a process:
    - ``close`` is idempotent and may be called from any task;
    - it is shielded from cancellation: a caller cancelled while awaiting it does not
      stop the process from being ended;
    - it is bounded in time: terminate, wait a bounded while, then kill;
    - ``kill`` is the synchronous hard stop for a process that does not obey, after
      which a pending ``close`` returns promptly.
    ``on_exit`` is called when the process ends by itself (not through ``close``);
    ``on_closed`` once it has ended, whichever way.
    """

    id: int
    key: WorkerKey
    state: State
    model: str | None
    pid: int | None
    server_info: dict[str, Any]
    turns: int
    # The fingerprint of the conversation state its live session holds, if any.
    held: str | None
    last_used: float
    # The next turn's placeholder, sent ahead (see ``Lane``), if any.
    armed: str | None
    permissions: Permissions | None
    lane: Lane | None
    # Any, not Worker: each implementation calls back with its own type.
    on_exit: Callable[[Any], None] | None
    on_closed: Callable[[Any], None] | None

    @property
    def alive(self) -> bool: ...

    @property
    def ready(self) -> bool:
        """Armed, and its call waits at the relay: a turn starts at once."""
        ...

    @property
    def limit_spent(self) -> bool:
        """True when it may serve no further turn within its cost limit."""
        ...

    @property
    def rewindable(self) -> bool:
        """False when its conversation cannot be emptied in place."""
        ...

    @property
    def cost_usd(self) -> float: ...

    def rss_bytes(self) -> int: ...

    async def start(self) -> None:
        """Connect: the process is up and answered its handshake (bounded in time)."""
        ...

    async def close(self) -> None: ...

    def kill(self) -> None: ...

    async def send(self, message: dict[str, Any]) -> None: ...

    async def set_model(self, model: str) -> None: ...

    async def interrupt(self) -> None: ...

    async def next_message(self, timeout: float) -> SDKMessage:
        """The next message of the turn; ``WorkerTimeout`` after ``timeout`` seconds of
        silence, ``WorkerCrashed`` once the process has ended."""
        ...

    async def until_result(self, timeout: float) -> ResultMessage: ...

    async def reset(self, timeout: float = 10.0) -> bool:
        """Empty the conversation; False when that is not possible (the worker must
        then be closed). Raises ``WorkerCrashed`` when the process failed meanwhile."""
        ...

    def drain(self) -> None: ...

    @property
    def result_waiting(self) -> bool:
        """A turn's result waits to be read."""
        ...

    def arm(self, marker: str) -> dict[str, Any]:
        """Mark it armed with ``marker``; the message to ``send`` for it."""
        ...

    def take_armed(self) -> str | None:
        """The armed placeholder, for the turn about to begin on it."""
        ...

    async def unarm(self, timeout: float = 10.0) -> None:
        """Withdraw the armed placeholder: its call is refused, and the conversation
        is cut back to before it. ``reset`` does this too."""
        ...


# How the engine builds a worker: the key, the CLI's options, the agent-mode policy
# and its path through the relay.
WorkerFactory = Callable[[WorkerKey, ClaudeAgentOptions, Permissions | None, Lane | None],
                         Worker]
