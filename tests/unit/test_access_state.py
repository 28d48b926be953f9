"""The access layer's state, in process and in the real Redis: each interface
(Limiter, Reservations, ResponseCache) passes the same checks on both, and in Redis
two replicas share it (exact limits, reservations that count everywhere, leases
that end when their replica dies)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from claude_code_api.access.budgets import Reservation
from claude_code_api.access.keys import ApiKey
from claude_code_api.access.limits import admit
from claude_code_api.access.redis_state import Leases, RedisLimiter, RedisReservations
from claude_code_api.access.state import AccessState, access_state
from claude_code_api.errors import BudgetExceeded, RateLimited, StateUnavailable
from claude_code_api.settings import (
    AuthSettings,
    CacheSettings,
    RedisSettings,
    Settings,
    StoreSettings,
)
from tests.conftest import free_port
from tests.shared_redis import REDIS_URL, keys_under, redis_prefix

__all__ = ["redis_prefix"]  # the fixture

Replica = Callable[..., Awaitable[AccessState]]


@pytest.fixture(params=["memory", "redis"])
async def replica(request: pytest.FixtureRequest) -> AsyncIterator[Replica]:
    """Makes a replica's access state: in process (each its own), or in Redis (all
    on one test prefix)."""
    made: list[AccessState] = []
    prefix = request.getfixturevalue("redis_prefix") if request.param == "redis" else ""

    async def make(window: float = 60.0, lease: float = 30.0, **cache: object) -> AccessState:
        url = REDIS_URL if request.param == "redis" else None
        settings = Settings(auth=AuthSettings(rpm_window_seconds=window),
                            redis=RedisSettings(url=url, prefix=prefix, lease_seconds=lease),
                            cache=CacheSettings(enabled=True, **cache))
        state = access_state(settings)
        made.append(state)
        return state

    yield make
    for state in made:
        await state.close()


@pytest.fixture
async def shared(redis_prefix: str) -> AsyncIterator[Replica]:
    """Replicas in Redis only (for what only a shared state can show)."""
    made: list[AccessState] = []

    async def make(window: float = 60.0, lease: float = 30.0, **cache: object) -> AccessState:
        settings = Settings(auth=AuthSettings(rpm_window_seconds=window),
                            redis=RedisSettings(url=REDIS_URL, prefix=redis_prefix,
                                                lease_seconds=lease),
                            cache=CacheSettings(enabled=True, **cache))
        made.append(access_state(settings))
        return made[-1]

    yield make
    for state in made:
        await state.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def leases_of(state: AccessState) -> Leases:
    assert isinstance(state.limiter, RedisLimiter)
    return state.limiter.leases


# -- requests per minute and at once ----------------------------------------------------
async def test_rpm_admits_exactly_the_limit_then_says_when(replica: Replica) -> None:
    state = await replica()
    key = ApiKey("k-rpm", "rpm3", rpm=3)
    verdicts = [await state.limiter.acquire(key) for _ in range(5)]
    assert [v.allowed for v in verdicts] == [True, True, True, False, False]
    assert [v.remaining for v in verdicts[:3]] == [2, 1, 0]
    assert verdicts[0].headers()["x-ratelimit-limit-requests"] == "3"
    refused = verdicts[3]
    assert refused.reason == "rpm" and 59 <= refused.retry_after <= 60
    for _ in range(3):
        await state.limiter.release(key)
    with pytest.raises(RateLimited, match="3 requests per minute") as error:
        await admit(state.limiter, key)
    assert error.value.headers["x-ratelimit-reason"] == "rpm"


async def test_the_rpm_window_slides(replica: Replica) -> None:
    state = await replica(window=0.4)
    key = ApiKey("k-slide", "slide", rpm=1)
    assert (await state.limiter.acquire(key)).allowed
    await state.limiter.release(key)
    assert not (await state.limiter.acquire(key)).allowed
    await asyncio.sleep(0.5)
    assert (await state.limiter.acquire(key)).allowed


async def test_concurrency_counts_until_release(replica: Replica) -> None:
    state = await replica()
    key = ApiKey("k-conc", "two", concurrency=2)
    assert (await state.limiter.acquire(key)).allowed
    assert (await state.limiter.acquire(key)).allowed
    refused = await state.limiter.acquire(key)
    assert (refused.allowed, refused.reason, refused.retry_after) == (False, "concurrency", 1)
    assert refused.headers() == {}  # no rpm limit: no x-ratelimit-* numbers
    assert await state.limiter.running(key.id) == 2
    await state.limiter.release(key)
    assert await state.limiter.running(key.id) == 1
    assert (await state.limiter.acquire(key)).allowed


async def test_an_rpm_limit_across_replicas_admits_exactly_n(shared: Replica) -> None:
    one, two = await shared(), await shared()
    key = ApiKey("k-burst", "burst", rpm=7)
    verdicts = await asyncio.gather(*(r.limiter.acquire(key) for r in [one, two] * 10))
    assert sum(v.allowed for v in verdicts) == 7
    assert {v.reason for v in verdicts if not v.allowed} == {"rpm"}


async def test_a_concurrency_slot_is_shared_and_freed_by_its_replica(shared: Replica) -> None:
    one, two = await shared(), await shared()
    key = ApiKey("k-slot", "slot", concurrency=1)
    assert (await one.limiter.acquire(key)).allowed
    assert not (await two.limiter.acquire(key)).allowed
    await two.limiter.release(key)  # holds nothing: frees nothing
    assert not (await two.limiter.acquire(key)).allowed
    await one.limiter.release(key)
    assert (await two.limiter.acquire(key)).allowed


async def test_slots_outlive_the_lease_while_renewed_and_end_when_the_replica_dies(
        shared: Replica) -> None:
    living, dying, other = await shared(lease=0.3), await shared(lease=0.3), await shared()
    held = ApiKey("k-held", "held", concurrency=1)
    lost = ApiKey("k-lost", "lost", concurrency=1)
    assert (await living.limiter.acquire(held)).allowed
    assert (await dying.limiter.acquire(lost)).allowed
    await leases_of(dying).stop()  # its process is gone: nothing renews its leases
    await asyncio.sleep(1.0)  # over three leases
    assert not (await other.limiter.acquire(held)).allowed  # renewed all along
    assert (await other.limiter.acquire(lost)).allowed  # expired with its replica


# -- budget reservations --------------------------------------------------------------
async def test_reservations_hold_a_budget_until_released(replica: Replica) -> None:
    state = await replica()
    key = ApiKey("k-budget", "burst", budget_usd=0.25)
    first = await state.reservations.reserve(key, 0.125)
    await state.reservations.reserve(key, 0.125)
    assert await state.reservations.held(key.id) == (0.25, 2)
    with pytest.raises(BudgetExceeded, match=r"\$0.2500 is reserved by 2 turns still running"):
        await state.reservations.reserve(key, 0.125)
    first.release()
    first.release()  # twice changes nothing

    async def one_left() -> bool:
        return await state.reservations.held(key.id) == (0.125, 1)

    await eventually(one_left)
    spent = ApiKey("k-budget", "burst", budget_usd=0.25, spent_usd=0.125)
    with pytest.raises(BudgetExceeded, match=r"spent \$0.1250, and \$0.1250 is reserved"):
        await state.reservations.reserve(spent, 0.01)


async def test_a_reservation_counts_on_every_replica_and_ends_with_its_replica(
        shared: Replica) -> None:
    one, two = await shared(lease=0.3), await shared(lease=0.3)
    key = ApiKey("k-shared-budget", "team", budget_usd=1.0)
    reservations = await asyncio.gather(*(r.reservations.reserve(key, 0.25)
                                          for r in [one, two] * 2))
    assert all(isinstance(r, Reservation) for r in reservations)
    with pytest.raises(BudgetExceeded):
        await two.reservations.reserve(key, 0.25)
    assert await one.reservations.held(key.id) == (1.0, 4)
    await asyncio.sleep(1.0)  # renewed: still held
    assert await two.reservations.held(key.id) == (1.0, 4)
    await leases_of(one).stop()  # replica one dies with its two reservations
    await asyncio.sleep(0.5)
    assert await two.reservations.held(key.id) == (0.5, 2)
    assert isinstance(two.reservations, RedisReservations)
    await two.reservations.reserve(key, 0.25)


async def test_a_burst_across_replicas_reserves_no_more_than_the_budget(
        shared: Replica) -> None:
    one, two = await shared(), await shared()
    key = ApiKey("k-race", "race", budget_usd=1.0)

    async def try_reserve(state: AccessState) -> bool:
        try:
            await state.reservations.reserve(key, 0.1)
        except BudgetExceeded:
            return False
        return True

    admitted = await asyncio.gather(*(try_reserve(r) for r in [one, two] * 15))
    assert sum(admitted) == 10


# -- the response cache -----------------------------------------------------------------
async def test_the_cache_serves_within_its_ttl_and_bounds(replica: Replica) -> None:
    state = await replica(ttl_seconds=0.5, max_entries=2, max_entry_bytes=5)
    cache = state.cache
    assert await cache.put("a", b"1", "application/json", (("x-conversation-id", "c1"),))
    assert not await cache.put("big", b"123456", "application/json")
    hit = await cache.get("a")
    assert hit is not None and (hit.body, hit.media_type, hit.headers) == \
        (b"1", "application/json", (("x-conversation-id", "c1"),))
    await cache.put("b", b"2", "text/event-stream")
    await cache.put("c", b"3", "application/json")
    assert await cache.entries() == 2
    assert await cache.get("big") is None
    assert await cache.get("c") is not None
    await asyncio.sleep(0.6)
    assert await cache.get("c") is None and await cache.entries() == 0
    assert (cache.hits, cache.misses) == (2, 2)


async def test_an_answer_cached_by_one_replica_serves_another(shared: Replica) -> None:
    one, two = await shared(max_entries=3), await shared(max_entries=3)
    await one.cache.put("q", b'{"answer": 42}', "application/json")
    hit = await two.cache.get("q")
    assert hit is not None and hit.body == b'{"answer": 42}'
    for name in "wxyz":  # the bound holds across replicas: oldest go first
        await two.cache.put(name, b"{}", "application/json")
    assert await one.cache.entries() == 3
    assert await one.cache.get("q") is None and await one.cache.get("w") is None


# -- failure and cleanliness ------------------------------------------------------------
async def test_an_unreachable_redis_is_a_503_without_its_address() -> None:
    port = free_port()
    settings = Settings(redis=RedisSettings(url=f"redis://:hunter2@127.0.0.1:{port}/0",
                                            timeout_seconds=0.5))
    state = access_state(settings)
    try:
        with pytest.raises(StateUnavailable) as error:
            await state.limiter.acquire(ApiKey("k", "k", rpm=1))
        assert error.value.status == 503 and error.value.retry_after == 1
        assert "hunter2" not in error.value.message and str(port) not in error.value.message
        with pytest.raises(StateUnavailable):
            await state.cache.get("anything")
        await state.limiter.release(ApiKey("k", "k"))  # never raises: the lease expires
    finally:
        await state.close()


async def test_a_replica_closing_gives_back_its_slots_and_reservations(
        shared: Replica, redis_prefix: str) -> None:
    one, two = await shared(), await shared()
    key = ApiKey("k-close", "close", concurrency=1, budget_usd=1.0)
    assert (await one.limiter.acquire(key)).allowed
    await one.reservations.reserve(key, 0.5)
    await one.close()
    assert await two.reservations.held(key.id) == (0.0, 0)
    assert (await two.limiter.acquire(key)).allowed
    await two.limiter.release(key)
    left = {k.decode() for k in keys_under(redis_prefix)}
    assert left == {f"{redis_prefix}rpm:k-close"}  # the window outlives the requests


async def test_a_shared_store_without_redis_is_warned_about(
        caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(store=StoreSettings(url="postgresql://cca@127.0.0.1:5432/nothing"))
    with caplog.at_level(logging.WARNING, logger="claude_code_api.access"):
        state = access_state(settings)
    assert not state.shared
    assert "redis.url is not set" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="claude_code_api.access"):
        access_state(Settings())  # one process on SQLite: nothing to say
    assert caplog.text == ""
