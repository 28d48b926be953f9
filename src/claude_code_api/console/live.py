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
from ..engine.worker import Worker
from ..gateway import Gateway
from .access import gateway_of
from .admin import Admin

router = APIRouter(prefix="/ui/api")
TICK = 0.25  # seconds between looks at the pool
KEEPALIVE = 5.0  # seconds: a snapshot is sent at least this often
LIFETIME = 300.0  # seconds: the stream ends then and the console reconnects


@router.get("/live")
async def live(request: Request, _: Admin) -> StreamingResponse:
    return StreamingResponse(_snapshots(request), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _snapshots(request: Request) -> AsyncIterator[str]:
    gateway = gateway_of(request)
    last, sent_at, started = "", 0.0, time.monotonic()
    held: dict[str, str] = {}
    while time.monotonic() - started < LIFETIME and not await request.is_disconnected():
        now = time.monotonic()
        body = json.dumps(snapshot(gateway, held), separators=(",", ":"))
        if body != last or now - sent_at >= KEEPALIVE:
            last, sent_at = body, now
            yield f"event: snapshot\ndata: {body}\n\n"
        await asyncio.sleep(TICK)


def snapshot(gateway: Gateway, held: dict[str, str]) -> dict[str, Any]:
    """What the live view shows; ``held`` remembers which conversation a fingerprint
    is (it never changes: a conversation's next turn has a new fingerprint)."""
    names = {k.id: k.name for k in gateway.keys.all(include_revoked=True)}
    if len(held) > 1000:
        held.clear()
    return {"pool": gateway.pool_counts(),
            "workers": [_worker(gateway, w, held) for w in gateway.engine.pool.workers],
            "requests": [{**r, "key": names.get(r["key"], "(no key)" if r["key"] == LOCAL
                                                 else r["key"])}
                         for r in reversed(gateway.metrics.last_requests)],
            "batches": _batches(gateway, names)}


def _worker(gateway: Gateway, worker: Worker, held: dict[str, str]) -> dict[str, Any]:
    fingerprint = worker.holds
    if fingerprint and fingerprint not in held:
        found = gateway.conversations.store.holding(fingerprint)
        if found is not None:  # not stored yet: looked up again next time
            held[fingerprint] = found.id
    return {"id": worker.id, "state": worker.state, "pid": worker.pid, "turns": worker.turns,
            "model": worker.model, "rss_bytes": _rounded(worker.rss_bytes()),
            # The conversation its live session holds, warm for its next turn.
            "conversation": held.get(fingerprint) if fingerprint else None}


def _rounded(rss: int | None) -> int | None:
    """Memory to the MiB, so that a snapshot changes when something does, not at
    every page the CLI touches."""
    return None if rss is None else rss // 2**20 * 2**20


def _batches(gateway: Gateway, names: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for owner in [LOCAL, *names]:
        page, _ = gateway.batches.page(owner, None, 10)
        out += [{"id": b["id"], "status": b["status"], "created_at": b["created_at"],
                 "counts": b["request_counts"], "key": names.get(owner, "(no key)")}
                for b in page]
    return sorted(out, key=lambda b: -b["created_at"])[:20]
