"""The engine over FakeWorker, on a virtual clock: turns, hang-ups, crashes, silence,
warm continuations, armed workers, the account's money and resting credentials, in
milliseconds.

The engine is built with ``new_worker=FakeWorkers()``; its pool and credentials read
the loop's virtual clock, so a 300 s silence or a 60 s cool-down passes at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from claude_code_api.engine.engine import Engine
from claude_code_api.errors import (
    BudgetExceeded,
    UpstreamRateLimited,
    WorkerCrashed,
    WorkerTimeout,
)
from claude_code_api.events import (
    Message,
    Session,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    ToolSpec,
    TurnEnd,
    TurnEvent,
    TurnRequest,
    Usage,
)
from claude_code_api.settings import ClaudeSettings
from claude_code_api.testing.fake_worker import (
    CRASH,
    FakeWorker,
    FakeWorkers,
    Hold,
    text,
    tool_call,
    upstream_error,
)
from claude_code_api.testing.virtual_time import run

HI = ({"type": "text", "text": "hi"},)
FIRST_KEY = "sk-ant-api03-first-key-000000000000000000000000"
SECOND_KEY = "sk-ant-api03-second-key-00000000000000000000000"


class Ledger:
    """An ``Account`` that records what the engine told it."""

    def __init__(self, refuse: Exception | None = None) -> None:
        self.refuse = refuse
        self.admitted = self.ended = 0
        self.late: list[tuple[Usage, float]] = []

    async def admit(self) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.admitted += 1

    def charge_late(self, usage: Usage, cost: float) -> None:
        self.late.append((usage, cost))

    def end(self) -> None:
        self.ended += 1


Test = Callable[[Engine, FakeWorkers], Awaitable[None]]


def virtual(**settings: Any) -> Callable[[Test], Callable[[Path], None]]:
    """Run the test on a virtual-time loop with an engine of FakeWorkers."""
    def decorate(test: Test) -> Callable[[Path], None]:
        def sync(tmp_path: Path) -> None:
            run(lambda: _with_engine(test, tmp_path, settings))
        sync.__name__ = test.__name__
        return sync
    return decorate


async def _with_engine(test: Test, tmp_path: Path, settings: dict[str, Any]) -> None:
    fakes = FakeWorkers()
    options = {"work_root": tmp_path, "max_concurrent_sessions": 2, "min_idle_workers": 1,
               "retry_after_seconds": 3, **settings}
    engine = Engine(ClaudeSettings(**options), new_worker=fakes)
    clock = asyncio.get_running_loop().time
    engine.pool.clock = engine.credentials.clock = clock
    await engine.pool.start()
    await settle()
    try:
        await test(engine, fakes)
    finally:
        await engine.close()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def request(prompt: tuple[dict[str, Any], ...] = HI, **fields: Any) -> TurnRequest:
    return TurnRequest(model="sonnet", prompt=prompt, **fields)


async def collect(stream: AsyncGenerator[TurnEvent, None]) -> list[TurnEvent]:
    return [event async for event in stream]


def only(fakes: FakeWorkers) -> FakeWorker:
    (worker,) = fakes.built
    return worker


@virtual()
async def test_a_turn_streams_the_answer_and_the_worker_is_emptied_after(
        engine: Engine, fakes: FakeWorkers) -> None:
    fakes.reply(text("hello world", cost=0.25, chunks=2))
    ledger = Ledger()
    stream = engine.stream(request(), account=ledger)
    events = [event async for event in stream]
    # The answer ends with the upstream's response (read at the relay); the CLI's
    # result, with what the turn cost, comes after it and is charged then.
    assert events == [TextDelta("hello "), TextDelta("world"),
                      TurnEnd("end_turn", Usage(3, 2), "claude-sonnet-4-5", 0.0)]
    await settle()
    worker = only(fakes)
    assert ledger.late == [(Usage(), 0.25)]
    # Armed when it started (the turn began on that placeholder), emptied after the
    # turn and armed again.
    assert (worker.sends, worker.resets, worker.state) == (2, 1, "idle")
    assert worker.ready and engine.stats["armed_turns"] == 1
    # The CLI got a placeholder; the client's text goes upstream through the relay.
    assert "hi" not in str(worker.sent[0]["message"]["content"])
    assert (ledger.admitted, ledger.ended) == (1, 1)


@virtual()
async def test_a_conversation_continues_warm_on_the_worker_that_holds_it(
        engine: Engine, fakes: FakeWorkers) -> None:
    session = Session("caller")
    await collect(engine.stream(request(), session))
    await settle()
    assert [w.held is not None for w in engine.pool.workers] == [True, False]
    history = (Message("user", HI), Message("assistant", ({"type": "text", "text": "ok"},)))
    next_turn = request(({"type": "text", "text": "more"},), history=history)
    await collect(engine.stream(next_turn, session))
    holder = fakes.built[0]
    assert (holder.sends, holder.resets) == (2, 0)
    assert engine.stats["warm_continuations"] == 1
    assert engine.stats["replayed_histories"] == 0


@virtual()
async def test_a_client_hang_up_interrupts_the_turn_and_charges_what_it_cost(
        engine: Engine, fakes: FakeWorkers) -> None:
    hold = Hold()
    answer = text("never finished")
    fakes.reply([*answer[:3], hold, *answer[3:]])
    ledger = Ledger()
    stream = engine.stream(request(), account=ledger)
    assert await anext(stream) == TextDelta("never finished")
    await stream.aclose()  # what a client hanging up does to the response
    await settle()
    worker = only(fakes)
    assert worker.interrupts == 1
    # The interrupted turn's result says what it cost; nothing reported it before.
    assert ledger.late == [(Usage(3, 5), 0.002)] and ledger.ended == 1
    assert worker.state == "idle" and engine.pool.restarts == 0  # the process is kept


@virtual()
async def test_a_cli_that_ignores_the_interrupt_is_killed_and_replaced(
        engine: Engine, fakes: FakeWorkers) -> None:
    hold = Hold()
    fakes.reply([*text("stuck")[:3], hold])
    only(fakes).obeys_interrupt = False
    ledger = Ledger()
    stream = engine.stream(request(), account=ledger)
    await anext(stream)
    await stream.aclose()
    await asyncio.sleep(11)  # the engine waits 10 s for the turn's result
    stuck = fakes.built[0]
    assert stuck.kills == 1 and stuck.state == "closed"
    assert engine.pool.restarts == 1 and len(engine.pool.workers) == 1
    assert (ledger.late, ledger.ended) == ([], 1)  # no result: nothing more to charge


@virtual()
async def test_client_tool_calls_end_the_response_and_the_turn_is_stopped(
        engine: Engine, fakes: FakeWorkers) -> None:
    fakes.reply(tool_call("lookup", '{"q": 1}'))
    ledger = Ledger()
    tools = (ToolSpec("lookup", "Look it up", {"type": "object"}),)
    events = await collect(engine.stream(request(tools=tools), account=ledger))
    assert events == [ToolCallStart(0, "toolu_fake", "lookup"), ToolCallDelta(0, '{"q": 1}'),
                      TurnEnd("tool_use", Usage(3, 2), "claude-sonnet-4-5")]
    await settle()
    assert only(fakes).interrupts == 1
    # Charged once: the result's usage beyond what the response reported.
    assert ledger.late == [(Usage(0, 3), 0.002)] and ledger.ended == 1


@virtual()
async def test_the_cli_is_stopped_at_tool_calls_only_once_it_has_read_the_response(
        engine: Engine, fakes: FakeWorkers) -> None:
    """The response is whole at the relay before the CLI has read it; interrupted
    earlier, the CLI would not count what it cost. Its next call says it has read it."""
    reading = Hold()
    fakes.reply([*tool_call("lookup"), reading])  # the call ends after the hold
    ledger = Ledger()
    tools = (ToolSpec("lookup", "Look it up", {"type": "object"}),)
    events = await collect(engine.stream(request(tools=tools), account=ledger))
    assert events[-1] == TurnEnd("tool_use", Usage(3, 2), "claude-sonnet-4-5")
    await asyncio.sleep(0.5)
    assert only(fakes).interrupts == 0 and ledger.ended == 0
    reading.release()
    await asyncio.sleep(0.1)
    assert only(fakes).interrupts == 1 and ledger.ended == 1


@virtual(timeout_seconds=300)
async def test_a_silent_cli_is_a_504_after_timeout_seconds(
        engine: Engine, fakes: FakeWorkers) -> None:
    fakes.reply([Hold()])
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(WorkerTimeout) as silent:
        await collect(engine.stream(request()))
    assert silent.value.status == 504
    assert loop.time() - began == pytest.approx(300)
    await settle()
    silent_one = fakes.built[0]  # (the sweeps started a spare meanwhile)
    assert silent_one.interrupts == 1 and silent_one.state == "idle"


@virtual()
async def test_a_crash_mid_turn_is_worker_crashed_and_the_pool_heals(
        engine: Engine, fakes: FakeWorkers) -> None:
    fakes.reply([*text("cut")[:3], CRASH])
    ledger = Ledger()
    with pytest.raises(WorkerCrashed):
        await collect(engine.stream(request(), account=ledger))
    await settle()
    crashed = fakes.built[0]
    assert crashed.state == "closed" and engine.pool.restarts == 1
    assert ledger.ended == 1
    assert [w.state for w in engine.pool.workers] == ["idle"]
    assert await collect(engine.stream(request())) == [
        TextDelta("ok"), TurnEnd("end_turn", Usage(3, 1), "claude-sonnet-4-5")]


@virtual()
async def test_an_account_that_refuses_gives_the_worker_back_unused(
        engine: Engine, fakes: FakeWorkers) -> None:
    ledger = Ledger(refuse=BudgetExceeded("the key's budget is spent"))
    with pytest.raises(BudgetExceeded):
        await collect(engine.stream(request(), account=ledger))
    worker = only(fakes)
    assert (worker.sends, worker.resets, worker.state) == (1, 0, "idle")
    assert worker.ready  # still armed: the refused request took nothing from it


@virtual(credentials=[FIRST_KEY, SECOND_KEY], credential_cooldown_seconds=60)
async def test_a_refusal_after_every_credential_was_tried_says_so_and_when_one_is_back(
        engine: Engine, fakes: FakeWorkers) -> None:
    first, second = engine.credentials.items
    # The relay sent the call with each credential; the upstream refused both.
    fakes.reply(upstream_error(429))
    engine.credentials.refused(first, 429)
    await asyncio.sleep(10)
    engine.credentials.refused(second, 429)
    with pytest.raises(UpstreamRateLimited) as refused:
        await collect(engine.stream(request()))
    assert "all 2 upstream credentials" in refused.value.message
    assert refused.value.retry_after == 50  # the first is back first
    await settle()
    assert engine.pool.restarts == 0 and [w.state for w in fakes.built] == ["idle"]


@virtual(credentials=[FIRST_KEY])
async def test_when_every_credential_is_cooling_requests_get_a_429_at_once(
        engine: Engine, fakes: FakeWorkers) -> None:
    engine.credentials.refused(engine.credentials.items[0], 429)
    with pytest.raises(UpstreamRateLimited) as cooling:
        await collect(engine.stream(request()))
    assert cooling.value.retry_after == 60
    assert fakes.built[0].turns == 0  # no worker was given the request
    await asyncio.sleep(60)
    await collect(engine.stream(request()))
    assert fakes.built[0].turns == 1
