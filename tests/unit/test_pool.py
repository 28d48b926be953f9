"""The pool over FakeWorker, on a virtual clock: every rule in milliseconds.

Each test runs on ``VirtualTimeLoop``: time stands still while anything can run and
jumps to the next timer when nothing can, so a 30 s queue timeout or a 300 s idle
limit passes at once, and the pool's clock is the loop's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from claude_code_api.engine.permissions import AgentKey
from claude_code_api.engine.pool import CLOSE_TIMEOUT, Pool
from claude_code_api.engine.protocol import Worker, WorkerKey
from claude_code_api.errors import Overloaded, UpstreamError
from claude_code_api.settings import ClaudeSettings
from claude_code_api.testing.fake_worker import FakeWorker, FakeWorkers, Hold
from claude_code_api.testing.virtual_time import run

CHAT = WorkerKey()
AGENT = WorkerKey(agent=AgentKey(workspace="/nonexistent/workspace"))


def virtual(test: Callable[[FakeWorkers], Awaitable[None]]) -> Callable[[], None]:
    """Run an async test body on a fresh virtual-time loop with its own fakes."""
    def sync() -> None:
        run(lambda: test(FakeWorkers()))
    sync.__name__ = test.__name__
    return sync


async def pool_of(fakes: FakeWorkers, **settings: Any) -> Pool:
    options = {"max_concurrent_sessions": 2, "min_idle_workers": 0, "max_queue": 4,
               "retry_after_seconds": 7, **settings}
    pool = Pool(ClaudeSettings(**options), fakes.for_pool,
                clock=asyncio.get_running_loop().time)
    await pool.start()
    await settle()
    return pool


async def settle() -> None:
    """Let every task that can run, run (virtual time does not move)."""
    for _ in range(20):
        await asyncio.sleep(0)


def fake(worker: Worker) -> FakeWorker:
    assert isinstance(worker, FakeWorker)
    return worker


def later(pool: Pool, key: WorkerKey = CHAT, held: str | None = None
          ) -> asyncio.Task[Worker]:
    return asyncio.create_task(pool.acquire(key, held))


@virtual
async def test_repr_shows_the_counts(fakes: FakeWorkers) -> None:
    pool = await pool_of(fakes, min_idle_workers=2)
    assert repr(pool) == "<Pool size=2/2 idle=2 busy=0 starting=0 resetting=0 queued=0>"
    first = await pool.acquire(CHAT)
    await pool.acquire(CHAT)
    waiting = later(pool)
    await settle()
    assert repr(pool) == "<Pool size=2/2 idle=0 busy=2 starting=0 resetting=0 queued=1>"
    pool.release(first)
    assert repr(pool) == "<Pool size=2/2 idle=0 busy=1 starting=0 resetting=1 queued=1>"
    assert await waiting is first
    assert repr(pool) == "<Pool size=2/2 idle=0 busy=2 starting=0 resetting=0 queued=0>"
    await pool.close()
    assert repr(pool) == "<Pool size=0/2 idle=0 busy=0 starting=0 resetting=0 queued=0>"


@virtual
async def test_a_queued_request_gets_the_worker_handed_back_after_its_reset(
        fakes: FakeWorkers) -> None:
    pool = await pool_of(fakes, max_concurrent_sessions=1, min_idle_workers=1)
    worker = await pool.acquire(CHAT)
    queued = [later(pool) for _ in range(3)]
    await settle()
    assert pool.counts()["queued"] == 3 and not any(t.done() for t in queued)
    for task in queued:
        pool.release(worker)
        worker = await task
    assert len(fakes.built) == 1  # one process served all four, in order
    assert fake(worker).resets == 3
    await pool.close()


@virtual
async def test_a_full_queue_is_a_429_with_retry_after(fakes: FakeWorkers) -> None:
    pool = await pool_of(fakes, max_concurrent_sessions=1, max_queue=1)
    busy = await pool.acquire(CHAT)
    queued = later(pool)
    await settle()
    with pytest.raises(Overloaded) as refused:
        await pool.acquire(CHAT)
    assert refused.value.status == 429 and refused.value.retry_after == 7
    assert "queue is full" in str(refused.value)
    pool.release(busy)
    assert await queued is busy  # the refused request took no place in the queue
    await pool.close()


@virtual
async def test_a_request_that_waits_too_long_is_a_429(fakes: FakeWorkers) -> None:
    pool = await pool_of(fakes, max_concurrent_sessions=1, queue_timeout_seconds=30)
    await pool.acquire(CHAT)
    began = asyncio.get_running_loop().time()
    with pytest.raises(Overloaded, match="within 30 seconds"):
        await pool.acquire(CHAT)
    assert asyncio.get_running_loop().time() - began == pytest.approx(30)
    assert pool.counts()["queued"] == 0
    await pool.close()


@virtual
async def test_a_caller_that_gives_up_leaves_the_queue(fakes: FakeWorkers) -> None:
    pool = await pool_of(fakes, max_concurrent_sessions=1)
    busy = await pool.acquire(CHAT)
    gone = later(pool)
    await settle()
    gone.cancel()
    await settle()
    assert pool.counts()["queued"] == 0
    pool.release(busy)
    await settle()
    assert pool.counts()["idle"] == 1  # handed to nobody
    await pool.close()


@virtual
async def test_never_more_workers_than_the_limit_and_one_more_process_while_replaced(
        fakes: FakeWorkers) -> None:
    pool = await pool_of(fakes, max_concurrent_sessions=2)
    fakes.close_hangs = True  # a CLI slow to exit
    first, second = await pool.acquire(CHAT), await pool.acquire(CHAT)
    assert len(fakes.built) == 2
    waiting = later(pool)
    await settle()
    assert len(fakes.built) == 2  # no room: it waits
    pool.release(first, healthy=False)
    replacement = await waiting
    assert replacement not in (first, second)
    assert pool.counts()["size"] == 2
    assert len(fakes.live()) == 3  # the old process is still ending
    await asyncio.sleep(CLOSE_TIMEOUT + 1)
    assert len(fakes.live()) == 2 and fake(first).kills == 1
    await pool.close()


@virtual
async def test_recent_demand_keeps_spares_until_idle_seconds(fakes: FakeWorkers) -> None:
    pool = await pool_of(fakes, max_concurrent_sessions=4, idle_seconds=300)
    assert pool.counts()["size"] == 0  # min_idle_workers=0: nothing yet
    workers = await asyncio.gather(*(pool.acquire(CHAT) for _ in range(3)))
    for worker in workers:
        pool.release(worker)
    await asyncio.sleep(100)
    fake(workers[0]).crash()  # replaced: three were wanted at once not long ago
    await settle()
    assert pool.counts()["idle"] == 3 and pool.counts()["started"] == 4
    await asyncio.sleep(100)
    assert pool.counts()["idle"] == 3
    await asyncio.sleep(300)  # no demand within idle_seconds, none idle for less
    assert pool.counts()["size"] == 0
    assert all(w.state == "closed" for w in fakes.built)
    await pool.close()


@virtual
async def test_a_peak_is_forgotten_after_idle_seconds_and_later_demand_is_not(
        fakes: FakeWorkers) -> None:
    pool = await pool_of(fakes, max_concurrent_sessions=4, idle_seconds=300)
    workers = await asyncio.gather(*(pool.acquire(CHAT) for _ in range(3)))
    for worker in workers:
        pool.release(worker)
    await asyncio.sleep(200)
    pool.release(await pool.acquire(CHAT))  # one wanted at once, 200 s later
    await asyncio.sleep(115)  # the peak of three is over 300 s old: two are closed
    assert pool.counts()["size"] == 1
    await asyncio.sleep(200)  # the demand for one is over 300 s old too
    assert pool.counts()["size"] == 0
    await pool.close()


@virtual
async def test_the_memory_of_demand_does_not_grow_with_traffic(fakes: FakeWorkers) -> None:
    pool = await pool_of(fakes, max_concurrent_sessions=4, idle_seconds=300)
    for _ in range(2000):  # a request every 0.1 s, one at a time, for 200 s
        pool.release(await pool.acquire(CHAT))
        await asyncio.sleep(0.1)
    assert len(pool._demand) <= 2
    await pool.close()


@virtual
async def test_a_held_conversation_leaves_a_clean_spare(fakes: FakeWorkers) -> None:
    pool = await pool_of(fakes, min_idle_workers=1)
    worker = await pool.acquire(CHAT)
    pool.release(worker, held="conversation A")
    await settle()
    assert pool.counts()["started"] == 2
    assert [w.held for w in pool.workers] == ["conversation A", None]
    again = await pool.acquire(CHAT, held="conversation A")
    assert again is worker and fake(worker).resets == 0  # a warm continuation
    await pool.close()


@virtual
async def test_live_conversations_beyond_the_limit_are_reset_oldest_first(
        fakes: FakeWorkers) -> None:
    pool = await pool_of(fakes, max_live_conversations=1)
    one, two = await pool.acquire(CHAT), await pool.acquire(CHAT)
    pool.release(one, held="A")
    await asyncio.sleep(1)
    pool.release(two, held="B")
    await settle()
    assert (one.held, two.held) == (None, "B")
    assert (fake(one).resets, fake(two).resets) == (1, 0)
    await pool.close()


@virtual
async def test_with_no_room_a_held_conversation_is_reclaimed(fakes: FakeWorkers) -> None:
    pool = await pool_of(fakes, max_concurrent_sessions=1)
    worker = await pool.acquire(CHAT)
    pool.release(worker, held="A")
    other = await pool.acquire(CHAT, held="B")
    # The engine resets it before the turn (the holder is handed out as it is).
    assert other is worker and worker.held == "A"
    await pool.close()


@virtual
async def test_an_idle_worker_of_another_mode_is_evicted_for_room(
        fakes: FakeWorkers) -> None:
    pool = await pool_of(fakes, max_concurrent_sessions=1)
    chat = await pool.acquire(CHAT)
    pool.release(chat)
    await settle()
    agent = await pool.acquire(AGENT)
    assert agent.key == AGENT and fake(chat).closes == 1
    assert pool.workers == [agent] and pool.restarts == 0
    await pool.close()


@virtual
async def test_a_worker_that_dies_while_idle_is_replaced_at_once(fakes: FakeWorkers) -> None:
    pool = await pool_of(fakes, min_idle_workers=1)
    (dead,) = pool.workers
    fake(dead).crash()
    await settle()
    assert pool.counts()["restarts"] == 1 and pool.counts()["idle"] == 1
    assert pool.workers[0] is not dead and fake(dead).closes == 1
    await pool.close()


@virtual
async def test_a_worker_handed_back_broken_is_replaced(fakes: FakeWorkers) -> None:
    pool = await pool_of(fakes, min_idle_workers=1)
    worker = await pool.acquire(CHAT)
    fake(worker).crash()  # the turn failed with WorkerCrashed; the engine hands it back
    pool.release(worker, healthy=False)
    await settle()
    assert pool.restarts == 1 and worker not in pool.workers
    assert pool.counts()["idle"] == 1
    await pool.close()


@virtual
async def test_a_worker_that_cannot_be_reset_is_replaced(fakes: FakeWorkers) -> None:
    pool = await pool_of(fakes, max_concurrent_sessions=1, min_idle_workers=1)
    worker = await pool.acquire(CHAT)
    fake(worker).reset_result = False  # e.g. a session that began with a tool result
    pool.release(worker)
    fresh = await pool.acquire(CHAT)
    assert fresh is not worker and fake(worker).closes == 1 and pool.restarts == 0
    await pool.close()


@virtual
async def test_a_cli_that_cannot_start_fails_its_request(fakes: FakeWorkers) -> None:
    fakes.start_error = RuntimeError("/opt/secret/claude: not found")
    pool = await pool_of(fakes)
    with pytest.raises(UpstreamError) as failed:
        await pool.acquire(CHAT)
    assert "/opt/secret" not in str(failed.value)  # the detail is for the log
    assert pool.last_start_error == "/opt/secret/claude: not found"
    assert pool.workers == []
    await pool.close()


@virtual
async def test_a_request_waits_for_a_slow_start(fakes: FakeWorkers) -> None:
    fakes.start_hold = Hold()
    pool = await pool_of(fakes)
    waiting = later(pool)
    await settle()
    assert repr(pool) == "<Pool size=1/2 idle=0 busy=0 starting=1 resetting=0 queued=1>"
    fakes.start_hold.release()
    worker = await waiting
    assert worker.state == "busy" and fake(worker).connects == 1
    await pool.close()


@virtual
async def test_a_worker_just_started_goes_to_one_request_only(fakes: FakeWorkers) -> None:
    """A request arriving as a worker's start returns (before the pool's task resumes)
    does not take that worker: it was started for the request waiting on it. (Seen in
    CI: two requests on one CLI, one got the other's answer and the other a 400.)"""
    fakes.start_hold = Hold()
    pool = await pool_of(fakes)
    first = later(pool)
    await settle()
    arrivals: list[asyncio.Task[Worker]] = []
    fakes.on_connected = lambda worker: arrivals.append(later(pool))
    fakes.start_hold.release()
    one = await first
    await settle()
    fakes.on_connected = None
    other = await arrivals[0]
    assert one is not other
    assert (one.state, other.state) == ("busy", "busy")
    await pool.close()


@virtual
async def test_shutdown_is_bounded_even_when_a_close_hangs(fakes: FakeWorkers) -> None:
    pool = await pool_of(fakes, min_idle_workers=2)
    fakes.close_hangs = True
    began = asyncio.get_running_loop().time()
    await pool.close()
    assert asyncio.get_running_loop().time() - began == pytest.approx(CLOSE_TIMEOUT)
    assert [(w.kills, w.state) for w in fakes.built] == [(1, "closed"), (1, "closed")]
    with pytest.raises(Overloaded, match="shutting down"):
        await pool.acquire(CHAT)


@virtual
async def test_a_conversation_idle_past_hold_seconds_is_reset(fakes: FakeWorkers) -> None:
    pool = await pool_of(fakes, hold_seconds=120, idle_seconds=600)
    worker = await pool.acquire(CHAT)
    pool.release(worker, held="A")
    await asyncio.sleep(100)
    assert worker.held == "A"
    await asyncio.sleep(40)
    assert worker.held is None and fake(worker).resets == 1
    await pool.close()


@virtual
async def test_the_min_idle_spare_is_kept_however_long_it_idles(fakes: FakeWorkers) -> None:
    pool = await pool_of(fakes, min_idle_workers=1, idle_seconds=60)
    (spare,) = pool.workers
    await asyncio.sleep(3600)
    assert pool.workers == [spare] and fake(spare).closes == 0
    assert pool.counts()["started"] == 1  # not closed and started again
    await pool.close()


@virtual
async def test_a_new_conversation_gets_the_most_recently_used_clean_worker(
        fakes: FakeWorkers) -> None:
    pool = await pool_of(fakes)
    first, second = await pool.acquire(CHAT), await pool.acquire(CHAT)
    pool.release(second)
    await asyncio.sleep(5)
    pool.release(first)
    await settle()
    assert await pool.acquire(CHAT) is first  # the warmest
    await pool.close()
