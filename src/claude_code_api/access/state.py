"""Where the access layer keeps its fast state: in this process (the default, one
replica) or in Redis (``redis.url``, shared by every replica). ``app.build`` asks
``access_state`` once; nothing connects until the first request needs it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from ..settings import Settings
from .budgets import Held, Reservations
from .cache import MemoryCache, ResponseCache
from .limits import Limiter, RateLimiter
from .redis_state import Leases, RedisCache, RedisLimiter, RedisReservations

log = logging.getLogger("claude_code_api.access")


async def _nothing() -> None:
    return None


@dataclass
class AccessState:
    limiter: Limiter
    reservations: Reservations
    cache: ResponseCache
    shared: bool = False  # in Redis, for every replica
    # Gives back this replica's leases and closes the connections.
    close: Callable[[], Awaitable[None]] = _nothing


def access_state(settings: Settings) -> AccessState:
    config = settings.redis
    if config.url is None:
        if settings.store.target().startswith("postgresql"):
            # A shared store means replicas, probably: each would count on its own.
            log.warning("store.url is PostgreSQL but redis.url is not set: rate limits, "
                        "budget reservations and the cache are this replica's own")
        return AccessState(RateLimiter(settings.auth.rpm_window_seconds), Held(),
                           MemoryCache(settings.cache))
    client = aioredis.from_url(config.url, socket_timeout=config.timeout_seconds,
                               socket_connect_timeout=config.timeout_seconds)
    leases = Leases(client, config.lease_seconds)

    async def close() -> None:
        await leases.close()
        await client.aclose()

    return AccessState(
        RedisLimiter(client, config.prefix, settings.auth.rpm_window_seconds, leases),
        RedisReservations(client, config.prefix, leases),
        RedisCache(client, config.prefix, settings.cache), shared=True, close=close)
