"""The pool's assignment step as a pure function: a plan from (waiters, workers,
limits, now), with nothing changed until the pool carries it out."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from claude_code_api.engine.plan import Limits, Plan, Waiter, plan
from claude_code_api.engine.protocol import State, Worker, WorkerKey
from claude_code_api.testing.fake_worker import FakeWorker

CHAT = WorkerKey()
LIMITS = Limits(max_workers=2, max_queue=1, min_idle=0, max_live=None, idle_seconds=300,
                hold_seconds=120)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()  # for the waiters' futures only: nothing runs
    yield loop
    loop.close()


def worker(state: State = "idle", held: str | None = None, used: float = 0.0) -> FakeWorker:
    w = FakeWorker(CHAT)
    w.state, w.held, w.last_used = state, held, used
    return w


def waiter(loop: asyncio.AbstractEventLoop, held: str | None = None) -> Waiter:
    return Waiter(CHAT, loop.create_future(), held)


def test_a_plan_decides_and_changes_nothing(loop: asyncio.AbstractEventLoop) -> None:
    idle, busy = worker(used=5), worker("busy")
    first, second = waiter(loop), waiter(loop)
    step = plan([first, second], [idle, busy], LIMITS, now=10)
    assert step == Plan(assign=[(first, idle)], start=[])
    # ``second`` waits: no room (two workers of two), none resetting.
    assert (idle.state, first.waiting, second.waiting) == ("idle", True, True)
    assert plan([first, second], [idle, busy], LIMITS, now=10) == step  # the same again


def test_the_worker_holding_the_conversation_comes_first(
        loop: asyncio.AbstractEventLoop) -> None:
    clean, holder = worker(used=9), worker(held="A", used=1)
    wants_a = waiter(loop, held="A")
    assert plan([wants_a], [clean, holder], LIMITS, now=10).assign == [(wants_a, holder)]


def test_a_conversation_waits_for_its_holder_finishing_its_last_turn(
        loop: asyncio.AbstractEventLoop) -> None:
    """Its answer was sent and the CLI is finishing that turn: the next request of the
    conversation waits milliseconds for it rather than go cold on a clean worker."""
    clean, finishing = worker(used=9), worker("finishing", held="A")
    wants_a, other = waiter(loop, held="A"), waiter(loop)
    step = plan([wants_a, other], [clean, finishing], LIMITS, now=10, arriving=wants_a)
    assert step.assign == [(other, clean)] and not step.start and not step.refuse
    assert wants_a.waiting
    finishing.state = "idle"
    assert plan([wants_a], [clean, finishing], LIMITS, now=10).assign == [
        (wants_a, finishing)]


def test_with_room_a_waiter_starts_a_worker_and_then_waits_for_it(
        loop: asyncio.AbstractEventLoop) -> None:
    alone = waiter(loop)
    step = plan([alone], [worker("busy")], LIMITS, now=0, arriving=alone)
    assert step.start == [(CHAT, alone)] and not step.refuse
    starting = worker("starting")
    alone.spawned = starting
    assert not plan([alone], [worker("busy"), starting], LIMITS, now=0)
    starting.state = "idle"
    assert plan([alone], [worker("busy"), starting], LIMITS, now=0).assign == [
        (alone, starting)]


def test_an_arrival_beyond_the_queue_is_refused(loop: asyncio.AbstractEventLoop) -> None:
    busy = [worker("busy"), worker("busy")]
    queued, arriving = waiter(loop), waiter(loop)
    step = plan([queued, arriving], busy, LIMITS, now=0, arriving=arriving)
    assert step.refuse == [arriving] and not step.start
    # A worker being reset counts as room: the arrival waits for it instead.
    resetting: list[Worker] = [worker("busy"), worker("resetting")]
    assert not plan([queued, arriving], resetting, LIMITS, now=0, arriving=arriving).refuse


def test_the_sweep_resets_old_conversations_and_closes_idle_workers() -> None:
    holder, idle, fresh = worker(held="A", used=0), worker(used=0), worker(used=250)
    step = plan([], [holder, idle, fresh], LIMITS, now=301, sweep=True)
    assert step.reset == [(holder, "conversation idle 301s")]
    assert step.evict == [(idle, "idle 301s")]
    assert not step.start and not step.close


def test_dead_idle_workers_are_closed_and_replaced_as_needed() -> None:
    dead = worker()
    dead.crash()
    limits = Limits(2, 1, min_idle=1, max_live=None, idle_seconds=300, hold_seconds=120)
    step = plan([], [dead], limits, now=0)
    assert step.close == [(dead, "died while idle")]
    assert step.start == [(CHAT, None)]  # one spare for min_idle
