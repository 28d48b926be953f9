"""Helpers every dialect's routes share: peeking a stream, watching for hang-ups."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from typing import Any, TypeVar

from fastapi import Request

from ..errors import GatewayError
from ..events import TurnEnd, TurnEvent

T = TypeVar("T")

BROKEN_STREAM = ("the upstream stream broke off after part of the answer was sent, and the "
                 "retried answer differs from it; retry the request")


async def collect_events(events: AsyncGenerator[TurnEvent, None]) -> list[TurnEvent]:
    """Every event up to and including ``TurnEnd`` (non-streaming responses)."""
    seen: list[TurnEvent] = []
    try:
        async for event in events:
            seen.append(event)
            if isinstance(event, TurnEnd):
                return seen
    finally:
        await events.aclose()
    raise GatewayError("Claude Code ended the turn without a result")


async def first_event(events: AsyncGenerator[TurnEvent, None]) -> TurnEvent:
    """The first event, before any byte is sent, so early errors get a real status."""
    try:
        return await anext(events)
    except BaseException:
        await events.aclose()
        raise


async def unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T | None:
    """Run ``work``; cancel it (and so interrupt the turn) if the client hangs up."""
    task = asyncio.ensure_future(work)

    async def hung_up() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(hung_up())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return None if task.cancelled() else task.result()




async def with_pings(events: AsyncGenerator[TurnEvent, None], every: float
                     ) -> AsyncIterator[TurnEvent | None]:
    """The events, with None whenever ``every`` seconds pass without one (a cue for a
    keep-alive). The pending read is never cancelled by the wait."""
    pending: asyncio.Task[TurnEvent] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({pending}, timeout=every)
            if not done:
                yield None
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield event
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
