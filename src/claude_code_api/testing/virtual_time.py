"""An asyncio event loop whose clock only moves when nothing is ready to run.

Then it jumps straight to the next timer: ``asyncio.sleep(300)``, a 30 s queue timeout
or a 10 s interrupt bound take no real time, and each fires in its order. Unit tests
of the pool and the engine run on it (``run``), so that every rule about time is
tested in milliseconds, without sleeping and without races against a real clock.
Give ``loop.time`` as the clock of what keeps its own (``Pool(clock=...)``).
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class _Selector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self.loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None:
            # Nothing is scheduled: only I/O can wake the loop (a test that waits for
            # what never comes ends at pytest's timeout).
            return super().select(None)
        self.loop.now += timeout  # idle until the next timer: jump there
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.now = 1000.0
        super().__init__(_Selector(self))

    def time(self) -> float:
        return self.now


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` to its end on a fresh virtual-time loop."""
    async def wrapped() -> T:
        return await main()

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(wrapped())
