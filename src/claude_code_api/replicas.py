"""This process as one replica among several sharing a store.

Each replica has an id (``server.replica_id``, default ``hostname:port``) and keeps
the registry of the conversations its workers hold warm (``store/warm.py``) true:
every ``interval`` seconds it records the states its workers hold, which drops the
ones they let go of. A load balancer that hashes on ``X-Conversation-ID`` keeps a
conversation on one replica; the registry says which replica that is
(``GET /v1/conversations/{id}/replica``). A
conversation whose replica went is continued by any other, rebuilt from the store.

The registry is read from the pool (``held`` below), so the engine needs no change;
``kept`` and ``let_go`` are there for the engine to call at the moment a worker
keeps or drops a state, which makes the registry exact at once rather than within
``interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterable

from .store.warm import WarmStore

log = logging.getLogger(__name__)

# A replica's rows count as gone after this many missed refreshes (it died).
STALE_INTERVALS = 3


def default_replica_id(port: int) -> str:
    return f"{socket.gethostname()}:{port}"


class Replica:
    def __init__(self, replica_id: str, store: WarmStore, held: Callable[[], Iterable[str]],
                 interval: float = 1.0) -> None:
        self.id = replica_id
        self.store = store
        self.held = held  # the state fingerprints this process's workers hold now
        self.interval = interval
        self.stale_seconds = STALE_INTERVALS * interval
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Replica {self.id!r} every {self.interval:g}s>"

    def start(self) -> None:
        # What a previous run of this replica held died with its workers.
        self.store.let_go(self.id)
        self._task = asyncio.create_task(self._refresh(), name="warm registry")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):  # the store may be gone already
            self.store.let_go(self.id)

    def sync(self) -> None:
        self.store.sync(self.id, self.held(), self.stale_seconds)

    def holder(self, conversation_id: str) -> str | None:
        return self.store.holder(conversation_id, self.stale_seconds)

    # -- the engine's hook: exact at once rather than within ``interval`` -------------
    def kept(self, fingerprint: str) -> None:
        self.store.hold(fingerprint, self.id)

    def let_go(self, fingerprint: str) -> None:
        self.store.let_go(self.id, fingerprint)

    async def _refresh(self) -> None:
        while True:
            try:
                self.sync()
            except Exception:
                # A store hiccup must not end the loop: the next refresh repairs it.
                log.warning("could not refresh the warm conversation registry",
                            exc_info=True)
            await asyncio.sleep(self.interval)
