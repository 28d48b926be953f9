"""The access layer's fast state in Redis, shared by every replica (``redis.url``).

Each check-and-change is one Lua script, so it is atomic across replicas, and
each script reads the time from Redis (``TIME``), so replicas whose clocks
differ still count one window. Keys, under ``redis.prefix``:

    rpm:<key id>        sorted set: one member per request started, scored by when
    run:<key id>        sorted set: one lease per request running, scored by expiry
    resv:<key id>       sorted set: one lease per budget reservation, by expiry
    resv-usd:<key id>   hash: each reservation's amount
    cache:<sha256>      hash: a stored answer (body, media type, headers), with a TTL
    cache-index         sorted set: the stored answers by expiry (bounds their count)

A lease (a running request, a reservation) expires ``redis.lease_seconds`` after
its replica last renewed it; ``Leases`` renews this replica's every third of
that, so a replica that dies gives its slots and reservations back within one
lease, and one that lives keeps them however long its turns run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Iterator
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..errors import StateUnavailable
from ..settings import CacheSettings
from .budgets import NANO, Reservation, nano
from .cache import Cached
from .keys import ApiKey
from .limits import Verdict

log = logging.getLogger("claude_code_api.access.redis")

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: rpm set, run set. ARGV: rpm (-1: none), concurrency (-1: none), window ms,
# lease ms, member. -> {allowed, reason, retry ms, started in window, reset ms}
_ACQUIRE = _NOW + """
local rpm, conc = tonumber(ARGV[1]), tonumber(ARGV[2])
local window, lease = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local started = redis.call('ZCARD', KEYS[1])
local function reset()
  local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if #newest == 0 then return 0 end
  return tonumber(newest[2]) + window - now
end
if rpm >= 0 and started >= rpm then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, 'rpm', tonumber(oldest[2]) + window - now, started, reset()}
end
if conc >= 0 and redis.call('ZCARD', KEYS[2]) >= conc then
  return {0, 'concurrency', 1000, started, reset()}
end
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('PEXPIRE', KEYS[1], window)
redis.call('ZADD', KEYS[2], now + lease, ARGV[5])
redis.call('PEXPIRE', KEYS[2], lease)
return {1, '', 0, started + 1, window}
"""

# KEYS: lease set, amounts hash: expired reservations dropped, the live ones summed.
_HELD_NOW = _NOW + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 1, #expired do redis.call('HDEL', KEYS[2], expired[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
local held = 0
if #live > 0 then
  local amounts = redis.call('HMGET', KEYS[2], unpack(live))
  for i = 1, #amounts do held = held + (tonumber(amounts[i]) or 0) end
end
"""

# KEYS: lease set, amounts hash. ARGV: budget, spent, amount (nano-dollars), lease ms,
# id. -> {reserved (1) or refused (0), what is held (before this one), how many}
_RESERVE = _HELD_NOW + """
if tonumber(ARGV[2]) + held >= tonumber(ARGV[1]) then
  return {0, held, #live}
end
local lease = tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], now + lease, ARGV[5])
redis.call('HSET', KEYS[2], ARGV[5], ARGV[3])
redis.call('PEXPIRE', KEYS[1], lease)
redis.call('PEXPIRE', KEYS[2], lease)
return {1, held, #live}
"""

# KEYS: lease set, amounts hash. -> {what is held, how many}
_HELD = _HELD_NOW + """
return {held, #live}
"""

# KEYS: a lease set, then keys that live as long as it. ARGV: lease ms, members.
# A lease that expired meanwhile is not brought back (XX): its slot is gone.
_RENEW = _NOW + """
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[i]) end
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], lease) end
return 0
"""

# KEYS: a set scored by expiry. -> its live members
_LIVE = _NOW + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""

# KEYS: the entry, the index. ARGV: ttl ms, max entries, media type, headers, body,
# stored at. The oldest entries beyond the bound are deleted.
_PUT = _NOW + """
local ttl = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'm', ARGV[3], 'h', ARGV[4], 'b', ARGV[5], 's', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], now + ttl, KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[2])
if over > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #oldest, 2 do redis.call('DEL', oldest[i]) end
end
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
"""


@contextlib.contextmanager
def reaching_redis() -> Iterator[None]:
    """Redis failing is the gateway's trouble, not the client's: a 503 that says so
    (without the URL, which may hold a password)."""
    try:
        yield
    except (RedisError, OSError) as exc:
        log.warning("redis: %s", type(exc).__name__)
        raise StateUnavailable("The gateway cannot reach its shared state (Redis); "
                               "retry shortly.", retry_after=1) from exc


class Leases:
    """This replica's leases, renewed while held; and the background deletions of
    those it gives back (a release is called from code that cannot wait)."""

    def __init__(self, client: aioredis.Redis, lease_seconds: float) -> None:
        self.client = client
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self._held: dict[tuple[str, ...], set[str]] = {}  # (set, *kept alive) -> members
        self._renew = client.register_script(_RENEW)
        self._renewer: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[Any]] = set()

    def add(self, keys: tuple[str, ...], member: str) -> None:
        self._held.setdefault(keys, set()).add(member)
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renewing(), name="redis-leases")

    def discard(self, keys: tuple[str, ...], member: str) -> None:
        members = self._held.get(keys)
        if members is not None:
            members.discard(member)
            if not members:
                del self._held[keys]

    def later(self, work: Awaitable[Any]) -> None:
        """Run ``work`` in the background, keeping a reference until it is done."""
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The lease ends on its own within lease_seconds.
            log.warning("redis: a release failed (%s)", type(task.exception()).__name__)

    async def renew(self) -> None:
        for keys, members in list(self._held.items()):
            if members:
                await self._renew(keys=list(keys), args=[self.lease_ms, *members])

    async def _renewing(self) -> None:
        while self._held:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                await self.renew()
            except (RedisError, OSError) as exc:  # try again next time, within the lease
                log.warning("redis: renewing leases failed (%s)", type(exc).__name__)

    async def stop(self) -> None:
        """Stop renewing: what is held now ends with its lease (as if this replica died)."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None

    async def close(self) -> None:
        """Stop renewing and give back what is still held (a replica shutting down)."""
        await self.stop()
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=2)
        with contextlib.suppress(RedisError, OSError):
            for keys, members in self._held.items():
                await self.give_back(keys, *members)
        self._held.clear()

    async def give_back(self, keys: tuple[str, ...], *members: str) -> None:
        """End leases now: out of their set, and out of the keys that live with it."""
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(keys[0], *members)
        for also in keys[1:]:
            pipe.hdel(also, *members)
        await pipe.execute()


class RedisLimiter:
    """Requests per minute and at once, counted in Redis for every replica."""

    def __init__(self, client: aioredis.Redis, prefix: str, window: float,
                 leases: Leases) -> None:
        self.prefix = prefix
        self.window_ms = max(1, int(window * 1000))
        self.leases = leases
        self._acquire = client.register_script(_ACQUIRE)
        self._live = client.register_script(_LIVE)
        self._mine: dict[str, list[str]] = {}  # key id -> this replica's running leases

    async def acquire(self, key: ApiKey) -> Verdict:
        member = uuid.uuid4().hex
        running = self._run(key.id)
        with reaching_redis():
            allowed, reason, wait, started, reset = await self._acquire(
                keys=[f"{self.prefix}rpm:{key.id}", running],
                args=[_limit(key.rpm), _limit(key.concurrency), self.window_ms,
                      self.leases.lease_ms, member])
        if allowed:
            self._mine.setdefault(key.id, []).append(member)
            self.leases.add((running,), member)
        reason = reason.decode() if isinstance(reason, bytes) else str(reason)
        retry = 0 if allowed else max(1, math.ceil(int(wait) / 1000))
        if key.rpm is None:
            return Verdict(bool(allowed), reason, retry)
        return Verdict(bool(allowed), reason, retry, key.rpm, max(0, key.rpm - int(started)),
                       max(0.0, int(reset) / 1000))

    async def release(self, key: ApiKey) -> None:
        mine = self._mine.get(key.id)
        if not mine:
            return
        member = mine.pop()
        if not mine:
            del self._mine[key.id]
        running = self._run(key.id)
        self.leases.discard((running,), member)
        try:
            await self.leases.client.zrem(running, member)
        except (RedisError, OSError) as exc:  # no longer renewed: it ends with its lease
            log.warning("redis: a release failed (%s)", type(exc).__name__)

    async def running(self, key_id: str) -> int:
        with reaching_redis():
            return int(await self._live(keys=[self._run(key_id)]))

    def _run(self, key_id: str) -> str:
        return f"{self.prefix}run:{key_id}"


class RedisReservations:
    """Budget reservations in Redis: one made on any replica counts on all."""

    def __init__(self, client: aioredis.Redis, prefix: str, leases: Leases) -> None:
        self.prefix = prefix
        self.leases = leases
        self._reserve = client.register_script(_RESERVE)
        self._held = client.register_script(_HELD)

    async def reserve(self, key: ApiKey, amount: float) -> Reservation:
        reservation = Reservation(key.id, amount, self._release)
        keys = self._keys(key.id)
        with reaching_redis():
            ok, held, count = await self._reserve(
                keys=list(keys), args=[nano(key.budget_usd or 0.0), nano(key.spent_usd),
                                       nano(amount), self.leases.lease_ms, reservation.id])
        if not ok:
            raise key.budget_error(int(held) / NANO, int(count))
        self.leases.add(keys, reservation.id)
        return reservation

    async def held(self, key_id: str) -> tuple[float, int]:
        with reaching_redis():
            held, count = await self._held(keys=list(self._keys(key_id)))
        return int(held) / NANO, int(count)

    def _release(self, reservation: Reservation) -> None:
        # Called when a turn ends, from code that cannot wait: done in the background.
        keys = self._keys(reservation.key_id)
        self.leases.discard(keys, reservation.id)
        self.leases.later(self.leases.give_back(keys, reservation.id))

    def _keys(self, key_id: str) -> tuple[str, str]:
        return f"{self.prefix}resv:{key_id}", f"{self.prefix}resv-usd:{key_id}"


class RedisCache:
    """The response cache in Redis: an answer stored by one replica serves all."""

    def __init__(self, client: aioredis.Redis, prefix: str, settings: CacheSettings) -> None:
        self.client = client
        self.prefix = prefix
        self.settings = settings
        self.hits = 0
        self.misses = 0
        self._put = client.register_script(_PUT)
        self._live = client.register_script(_LIVE)

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def owner_part(self, owner: str) -> str:
        return "*" if self.settings.shared_across_keys else owner

    async def get(self, key: str) -> Cached | None:
        with reaching_redis():
            media, headers, body, stored = await self.client.hmget(
                f"{self.prefix}cache:{key}", ["m", "h", "b", "s"])
        if not isinstance(body, bytes) or not isinstance(media, bytes):
            self.misses += 1
            return None
        self.hits += 1
        pairs = tuple((str(n), str(v)) for n, v in json.loads(headers or b"[]"))
        return Cached(body, media.decode(), pairs, float(stored or 0))

    async def put(self, key: str, body: bytes, media_type: str,
                  headers: tuple[tuple[str, str], ...] = ()) -> bool:
        if len(body) > self.settings.max_entry_bytes:
            return False
        with reaching_redis():
            await self._put(keys=[f"{self.prefix}cache:{key}", f"{self.prefix}cache-index"],
                            args=[max(1, int(self.settings.ttl_seconds * 1000)),
                                  self.settings.max_entries, media_type,
                                  json.dumps(headers), body, repr(time.time())])
        return True

    async def entries(self) -> int:
        with reaching_redis():
            return int(await self._live(keys=[f"{self.prefix}cache-index"]))


def _limit(value: int | None) -> int:
    return -1 if value is None else value
