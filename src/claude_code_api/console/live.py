"""``/ui/api/live``: the pool, its queue, recent requests and batches, as a stream of
server-sent events, one snapshot whenever it changes (and every few seconds anyway,
so a proxy does not close a quiet stream). The console reads it with ``fetch`` so
that its key travels in a header, never in the URL as ``EventSource`` would need."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ..access.keys import LOCAL
from ..deps import Services
from ..engine.protocol import Worker
from ..ops import PoolGauges
from .access import gateway_of
from .admin import Admin

router = APIRouter(prefix="/ui/api")
TICK = 0.25  # seconds between looks at the pool (memory only)
SLOW = 1.0  # seconds between reads of the store (key names, batches)
KEEPALIVE = 5.0  # seconds: a snapshot is sent at least this often
LIFETIME = 300.0  # seconds: the stream ends then and the console reconnects


@router.get("/live")
async def live(request: Request, _: Admin) -> StreamingResponse:
    return StreamingResponse(_snapshots(request), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _snapshots(request: Request) -> AsyncIterator[str]:
    view = View(gateway_of(request))
    last, sent_at, started = "", 0.0, time.monotonic()
    while time.monotonic() - started < LIFETIME and not await request.is_disconnected():
        now = time.monotonic()
        body = json.dumps(view.snapshot(), separators=(",", ":"))
        if body != last or now - sent_at >= KEEPALIVE:
            last, sent_at = body, now
            yield f"event: snapshot\ndata: {body}\n\n"
        await asyncio.sleep(TICK)


class View:
    """What one live stream shows. The pool is read at every tick; what comes from
    the store is read at most every ``SLOW`` seconds, so that an open console costs
    the store a few queries a second however many keys there are."""

    def __init__(self, gateway: Services) -> None:
        self.gateway = gateway
        self.names: dict[str, str] = {}
        self.batches: list[dict[str, Any]] = []
        self.read_at = -SLOW
        # Which conversation a fingerprint is: it never changes (a conversation's
        # next turn has a new fingerprint).
        self.held: dict[str, str] = {}

    def snapshot(self) -> dict[str, Any]:
        if time.monotonic() - self.read_at >= SLOW:
            self._read_store()
        gateway = self.gateway
        return {"pool": PoolGauges(gateway.engine).pool_counts(),
                "workers": [self._worker(w) for w in gateway.engine.pool.workers],
                "requests": [{**r, "key": self._name(r["key"])}
                             for r in reversed(gateway.metrics.last_requests)],
                "batches": self.batches}

    def _read_store(self) -> None:
        self.read_at = time.monotonic()
        self.names = {k.id: k.name for k in self.gateway.keys.all(include_revoked=True)}
        if len(self.held) > 1000:
            self.held.clear()
        batches = self.gateway.batches
        # Through the service: a running batch's counts are its live progress.
        self.batches = [{"id": b["id"], "status": b["status"], "created_at": b["created_at"],
                         "counts": b["request_counts"], "key": self._name(owner)}
                        for owner, stored in batches.store.recent(20)
                        for b in [batches.get(owner, stored["id"])]]

    def _worker(self, worker: Worker) -> dict[str, Any]:
        fingerprint = worker.held
        if fingerprint and fingerprint not in self.held:
            found = self.gateway.conversations.store.holding(fingerprint)
            if found is not None:  # not stored yet: looked up again next time
                self.held[fingerprint] = found.id
        return {"id": worker.id, "state": worker.state, "pid": worker.pid,
                "turns": worker.turns, "model": worker.model, "armed": worker.ready,
                "rss_bytes": _rounded(worker.rss_bytes()),
                # The conversation its live session holds, warm for its next turn.
                "conversation": self.held.get(fingerprint) if fingerprint else None}

    def _name(self, owner: str) -> str:
        return self.names.get(owner) or ("(no key)" if owner == LOCAL else owner)


def _rounded(rss: int) -> int:
    """Memory to the MiB, so that a snapshot changes when something does, not at
    every page the CLI touches."""
    return rss // 2**20 * 2**20
