"""The response cache: exact repeats of a request get the stored response bytes.

The key is the route, the caller (unless the cache is shared across keys), an
explicit conversation id, and the request body in canonical JSON (sorted keys,
no insignificant whitespace), so model, messages, tools, format, sampling
parameters and ``stream`` all count. Only complete answers are stored: never an
error, never a turn that stopped at tool calls (the caller owes results).
Entries live for ``ttl_seconds``, bounded in count and size: in this process
(``MemoryCache``, least recently used go first) or, with ``redis.url``, in Redis
(``redis_state.RedisCache``, shared by every replica, oldest go first).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..settings import CacheSettings

CACHED_ROUTES = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/responses",
                           "/v1/messages"})


@dataclass(frozen=True)
class Cached:
    body: bytes
    media_type: str
    headers: tuple[tuple[str, str], ...]
    stored_at: float


def request_key(path: str, owner: str, conversation: str | None, body: bytes) -> str | None:
    """The cache key of a request, or None when the body is not a JSON object."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    canonical = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    material = "\n".join((path, owner, conversation or "", canonical))
    return hashlib.sha256(material.encode()).hexdigest()


class ResponseCache(Protocol):
    """Stored answers, wherever they are kept."""

    settings: CacheSettings
    hits: int  # this replica's lookups
    misses: int

    @property
    def enabled(self) -> bool: ...

    def owner_part(self, owner: str) -> str: ...

    async def get(self, key: str) -> Cached | None: ...

    async def put(self, key: str, body: bytes, media_type: str,
                  headers: tuple[tuple[str, str], ...] = ()) -> bool:
        """Store an answer; False when it is larger than an entry may be."""
        ...

    async def entries(self) -> int: ...


class MemoryCache:
    """The cache of one process (no ``redis.url``)."""

    def __init__(self, settings: CacheSettings, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.settings = settings
        self._clock = clock
        self._entries: OrderedDict[str, Cached] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def owner_part(self, owner: str) -> str:
        return "*" if self.settings.shared_across_keys else owner

    async def get(self, key: str) -> Cached | None:
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.stored_at > self.settings.ttl_seconds:
            del self._entries[key]
            entry = None
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    async def put(self, key: str, body: bytes, media_type: str,
            headers: tuple[tuple[str, str], ...] = ()) -> bool:
        if len(body) > self.settings.max_entry_bytes:
            return False
        self._entries[key] = Cached(body, media_type, headers, self._clock())
        self._entries.move_to_end(key)
        while len(self._entries) > self.settings.max_entries:
            self._entries.popitem(last=False)
        return True

    async def entries(self) -> int:
        """The entries still served (those past their TTL are dropped here)."""
        now = self._clock()
        for key in [k for k, e in self._entries.items()
                    if now - e.stored_at > self.settings.ttl_seconds]:
            del self._entries[key]
        return len(self._entries)
