"""The one stream loop and the one collecting loop every dialect shares, and the
helpers around them: peeking a stream, watching for hang-ups, keep-alive cues."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from fastapi import Request

from ..errors import GatewayError, UpstreamError
from ..events import TextReplaced, TurnEnd, TurnEvent

T = TypeVar("T")

BROKEN_STREAM = ("the upstream stream broke off after part of the answer was sent, and the "
                 "retried answer differs from it; retry the request")
NO_RESULT = "Claude Code ended the turn without a result"


class Writer(Protocol):
    """One streamed response in a dialect's wire format: its frames (SSE bytes) before
    the first event, for each event, for a keep-alive, for an error after the first
    byte, and after the end."""

    ping_seconds: float | None  # silence after which ``ping`` is sent; None: never

    def start(self) -> list[bytes]: ...
    def feed(self, event: TurnEvent) -> list[bytes]: ...
    def ping(self) -> list[bytes]: ...
    def fail(self, error: GatewayError) -> list[bytes]: ...
    def end(self) -> list[bytes]: ...


async def _nothing() -> None:
    return None


async def frames(events: AsyncGenerator[TurnEvent, None], first: TurnEvent,
                 writer: Writer, over: Callable[[], Awaitable[None]] = _nothing
                 ) -> AsyncIterator[bytes]:
    """The stream loop: ``first`` (already read, see ``first_event``), then the other
    events up to ``TurnEnd``, each written by ``writer``. The turn's events are closed
    however the stream ends, a client hanging up included. ``over`` is awaited once the
    turn is over, before its last frames are written (``Caller.released``)."""
    following = _following(first, events, writer.ping_seconds)
    try:
        for frame in writer.start():
            yield frame
        async for event in following:
            if event is None:
                for frame in writer.ping():
                    yield frame
                continue
            if isinstance(event, TextReplaced):
                raise UpstreamError(BROKEN_STREAM)
            if isinstance(event, TurnEnd):
                await over()
            for frame in writer.feed(event):
                yield frame
            if isinstance(event, TurnEnd):
                break
        else:
            raise GatewayError(NO_RESULT)
    except GatewayError as exc:
        await over()
        # After the first byte the status is sent: the error travels in the stream.
        for frame in writer.fail(exc):
            yield frame
    finally:
        await following.aclose()
        await events.aclose()
    for frame in writer.end():
        yield frame


async def _following(first: TurnEvent, events: AsyncGenerator[TurnEvent, None],
                     ping_seconds: float | None) -> AsyncGenerator[TurnEvent | None, None]:
    yield first
    if ping_seconds is None:
        async for event in events:
            yield event
        return
    pinged = with_pings(events, ping_seconds)
    async with contextlib.aclosing(pinged):
        async for cue in pinged:
            yield cue


async def collect_events(events: AsyncGenerator[TurnEvent, None]) -> list[TurnEvent]:
    """The collecting loop: every event up to and including ``TurnEnd`` (non-streaming
    responses fold them into their body)."""
    seen: list[TurnEvent] = []
    try:
        async for event in events:
            seen.append(event)
            if isinstance(event, TurnEnd):
                return seen
    finally:
        await events.aclose()
    raise GatewayError(NO_RESULT)


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
                     ) -> AsyncGenerator[TurnEvent | None, None]:
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
