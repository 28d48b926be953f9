"""The pool of warm workers: a bounded set of live CLI processes and a queue.

Modelled on httpcore's connection pool: requests wait in a FIFO queue; each event
(a request arrives, a worker is handed back, started, reset or dies, the periodic
sweep) runs one step: the pure assignment function (``plan.py``) decides, then the
pool carries the plan out — resolving waiters at once, starting, resetting and
closing processes in tasks. A worker is handed back with ``release``; it is reset
off the request path and only then becomes idle again.

Idle clean workers are armed by the engine (``on_idle``, see ``relay.Lane``); a
worker whose answer was sent is ``finishing`` until its CLI closes the turn. Upstream
credentials rotate at the relay: no worker is retired for them.

Time comes from ``clock`` (``time.monotonic`` unless a test drives it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from ..errors import GatewayError, Overloaded, UpstreamError
from ..settings import ClaudeSettings
from .plan import DEFAULT_KEY, Limits, Plan, Waiter, plan
from .protocol import Worker, WorkerKey

log = logging.getLogger(__name__)

# A close that outlives its own bound (see protocol.Worker) is ended with kill().
CLOSE_TIMEOUT = 30.0


class Pool:
    def __init__(
        self,
        settings: ClaudeSettings,
        make_worker: Callable[[WorkerKey], Worker],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.limits = Limits.of(settings)
        self.make_worker = make_worker
        self.clock = clock
        # Whether a worker may take new turns (the engine checks its credential).
        # Told of every idle worker after each assignment (the engine arms them).
        self.on_idle: Callable[[Worker], None] = lambda worker: None
        self.workers: list[Worker] = []
        self.restarts = 0
        self.started_total = 0
        self.last_start_error: str | None = None
        self._waiters: deque[Waiter] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._closed = False
        self._first_started = asyncio.Event()
        # (when, how many chat workers were wanted at once), the counts decreasing:
        # recent demand, which the pool keeps warm for (see ``_wanted``).
        self._demand: deque[tuple[float, int]] = deque()

    def __repr__(self) -> str:
        c = self.counts()
        return (f"<Pool size={c['size']}/{c['max']} idle={c['idle']} busy={c['busy']} "
                f"starting={c['starting']} resetting={c['resetting']} queued={c['queued']}>")

    def counts(self) -> dict[str, int]:
        states = [w.state for w in self.workers]
        return {
            "size": len(self.workers),
            "max": self.settings.max_concurrent_sessions,
            "idle": states.count("idle"),
            "busy": states.count("busy"),
            "starting": states.count("starting"),
            "finishing": states.count("finishing"),
            "resetting": states.count("resetting"),
            "queued": sum(1 for w in self._waiters if w.waiting),
            "restarts": self.restarts,
            "started": self.started_total,
        }

    # -- public API -----------------------------------------------------------
    async def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="pool-supervisor")
        self._step(upkeep=True)

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until one worker has started (used by startup and tests)."""
        try:
            await asyncio.wait_for(self._first_started.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def acquire(self, key: WorkerKey, held: str | None = None) -> Worker:
        """A worker for ``key``: preferably one whose live session is ``held``."""
        if self._closed:
            raise Overloaded("the server is shutting down", retry_after=self._retry_after())
        waiter = Waiter(key, asyncio.get_running_loop().create_future(), held)
        self._waiters.append(waiter)
        try:
            step = self._step(arriving=waiter)
            if key == DEFAULT_KEY:
                self._note_demand(refused=waiter in step.refuse)
            # Not wait_for: on Python 3.11 it returns a worker assigned just as the
            # caller is cancelled and swallows the cancellation; here _abandon hands
            # that worker back.
            async with asyncio.timeout(self.settings.queue_timeout_seconds):
                return await asyncio.shield(waiter.future)
        except TimeoutError:
            self._abandon(waiter)
            raise Overloaded(
                f"no Claude Code worker became free within "
                f"{self.settings.queue_timeout_seconds:g} seconds",
                retry_after=self._retry_after(),
            ) from None
        except BaseException:
            self._abandon(waiter)
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def release(self, worker: Worker, *, healthy: bool = True, held: str | None = None) -> None:
        """Hand a worker back after a turn. With ``held`` it goes on holding that
        conversation state for a warm continuation; otherwise it is reset before
        anyone else gets it. A worker whose per-turn cost limit its CLI counts over
        the process's life serves no second turn."""
        if not healthy or not worker.alive or self._closed \
                or worker.limit_spent:
            self._discard(worker, crashed=not worker.alive)
            return
        worker.last_used = self.clock()
        if held is not None and self.settings.max_live_conversations != 0:
            worker.held = held
            worker.state = "idle"
            # The next new conversation should find a clean worker.
            self._step(upkeep=True)
            return
        self._carry_out(Plan(reset=[(worker, "handed back")]))

    def give_back(self, worker: Worker) -> None:
        """Return a worker the caller was given but did not use (its request was
        refused at admission): idle again as it was, its live session kept."""
        if not worker.alive or self._closed:
            self._discard(worker, crashed=not worker.alive)
            return
        worker.state = "idle"
        self._step()

    async def close(self) -> None:
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.cancel()
        for waiter in list(self._waiters):
            if waiter.waiting:
                waiter.future.set_exception(Overloaded("the server is shutting down"))
        self._waiters.clear()
        workers, self.workers = list(self.workers), []
        await asyncio.gather(*(self._close(w) for w in workers), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def server_info(self) -> dict[str, object]:
        for worker in self.workers:
            if worker.server_info:
                return worker.server_info
        return {}

    def forget(self, held: str) -> None:
        """Reset idle workers that hold this conversation state (it was deleted)."""
        self._carry_out(Plan(reset=[(w, "its conversation was deleted") for w in self.workers
                                    if w.state == "idle" and w.held == held]))

    # -- one step: decide, then carry out -------------------------------------------
    def _step(self, *, arriving: Waiter | None = None, upkeep: bool = False,
              sweep: bool = False) -> Plan:
        if self._closed:
            return Plan()
        step = plan(self._waiters, self.workers, self.limits, self.clock(),
                    wanted=self._wanted(), arriving=arriving,
                    upkeep=upkeep, sweep=sweep)
        self._carry_out(step)
        return step

    def _carry_out(self, step: Plan) -> None:
        now = self.clock()
        for worker, why in step.close:
            log.warning("worker #%s %s; replacing it", worker.id, why)
            self._retire(worker, crashed=True)
        for worker, why in step.evict:
            log.info("closing worker #%s: %s", worker.id, why)
            self._retire(worker, crashed=False)
        for waiter in step.refuse:
            waiter.future.set_exception(Overloaded(
                f"all {self.settings.max_concurrent_sessions} Claude Code workers are busy "
                "and the queue is full; retry shortly", retry_after=self._retry_after()))
        for worker, why in step.reset:
            log.debug("resetting worker #%s: %s", worker.id, why)
            worker.state = "resetting"
            self._spawn_task(self._reset(worker))
        for waiter, worker in step.assign:
            worker.state = "busy"
            worker.last_used = now
            waiter.spawned = None
            waiter.future.set_result(worker)
        for key, maybe_waiter in step.start:
            worker = self._spawn_worker(key)
            if maybe_waiter is not None:
                maybe_waiter.spawned = worker
        for worker in self.workers:
            if worker.state == "idle":
                self.on_idle(worker)

    def _abandon(self, waiter: Waiter) -> None:
        """The caller stopped waiting; a worker assigned meanwhile goes back."""
        fut = waiter.future
        if not fut.done():
            fut.cancel()
        elif not fut.cancelled() and fut.exception() is None:
            worker = fut.result()
            worker.state = "idle"
            self._step()

    # -- I/O after assignment ---------------------------------------------------
    def _spawn_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _spawn_worker(self, key: WorkerKey) -> Worker:
        worker = self.make_worker(key)
        worker.on_exit = self._exited
        worker.last_used = self.clock()
        self.workers.append(worker)
        self._spawn_task(self._start_worker(worker))
        return worker

    async def _start_worker(self, worker: Worker) -> None:
        try:
            await worker.start()
        except Exception as exc:
            self._remove(worker)
            self.last_start_error = _describe_start_error(exc)
            log.error("could not start Claude Code: %s", self.last_start_error)
            for waiter in self._waiters:
                if waiter.spawned is worker and waiter.waiting:
                    # The detail (paths, versions) goes to the log and /health only.
                    waiter.future.set_exception(UpstreamError(
                        "could not start Claude Code; the server log says why"))
            return
        self.started_total += 1
        self.last_start_error = None
        self._first_started.set()
        if self._closed:
            await self._close(worker)
            return
        worker.state = "idle"
        worker.last_used = self.clock()
        self._step()

    def _exited(self, worker: Worker) -> None:
        """A CLI ended by itself. An idle one is replaced now; a busy one's turn
        fails with WorkerCrashed and the request path hands it back."""
        if worker.state == "idle" and worker in self.workers and not self._closed:
            log.warning("worker #%s died while idle; replacing it", worker.id)
            self._discard(worker, crashed=True)

    async def _reset(self, worker: Worker) -> None:
        try:
            worker.drain()
            clean = await worker.reset()
        except (GatewayError, Exception) as exc:
            log.warning("worker #%s failed to reset (%s); replacing it", worker.id, exc)
            self._discard(worker, crashed=True)
            return
        if not clean:
            self._discard(worker, crashed=False)
            return
        worker.state = "idle"
        worker.held = None
        worker.last_used = self.clock()
        self._step()

    def _discard(self, worker: Worker, *, crashed: bool) -> None:
        self._retire(worker, crashed=crashed)
        self._step(upkeep=True)

    def _retire(self, worker: Worker, *, crashed: bool) -> None:
        if crashed:
            self.restarts += 1
        self._remove(worker)
        self._spawn_task(self._close(worker))

    async def _close(self, worker: Worker) -> None:
        """Close within a bound of our own too: a close that hangs must neither keep
        the pool's shutdown waiting nor leave a process behind."""
        try:
            await asyncio.wait_for(asyncio.shield(worker.close()), CLOSE_TIMEOUT)
        except TimeoutError:
            log.warning("worker #%s did not close within %gs; killing it", worker.id,
                        CLOSE_TIMEOUT)
            worker.kill()

    def _remove(self, worker: Worker) -> None:
        with contextlib.suppress(ValueError):
            self.workers.remove(worker)

    # -- demand and the periodic sweep ------------------------------------------------
    def _note_demand(self, *, refused: bool) -> None:
        """Record how many chat workers are wanted right now: busy ones, and the
        requests waiting for one (this one included when it found none idle)."""
        now = self.clock()
        busy = sum(1 for w in self.workers if w.key == DEFAULT_KEY
                   and w.state in ("busy", "finishing"))
        queued = sum(1 for w in self._waiters if w.key == DEFAULT_KEY and w.waiting)
        wanted = busy + queued + refused
        # Only the counts that may still be the peak are kept (a sliding maximum): an
        # earlier count no larger than this one leaves the window first. So the memory
        # and each step's look at it stay small however many requests came.
        while self._demand and self._demand[-1][1] <= wanted:
            self._demand.pop()
        self._demand.append((now, wanted))
        self._forget_demand(now)

    def _forget_demand(self, now: float) -> None:
        while self._demand and now - self._demand[0][0] > self.settings.idle_seconds:
            self._demand.popleft()

    def _wanted(self) -> int:
        """How many chat workers to keep: the most in use at once over the last
        ``idle_seconds`` (recent demand), at least ``min_idle_workers``, at most the
        pool's size."""
        self._forget_demand(self.clock())
        peak = self._demand[0][1] if self._demand else 0
        return min(self.settings.max_concurrent_sessions,
                   max(peak, self.settings.min_idle_workers))

    async def _supervise(self) -> None:
        interval = min(5.0, self.settings.idle_seconds / 4, self.settings.hold_seconds / 4)
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    def sweep(self) -> None:
        """Reset conversations held too long, close workers idle too long or dead, keep
        spares (the supervisor runs it every few seconds)."""
        self._step(sweep=True)

    def _retry_after(self) -> int:
        return self.settings.retry_after_seconds


def _describe_start_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
