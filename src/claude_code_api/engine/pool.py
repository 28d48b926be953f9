"""The pool of warm workers: a bounded set of live CLI processes and a queue.

Modelled on httpcore's connection pool: requests wait in a FIFO queue, a pure
assignment step (``_dispatch``) hands idle workers to waiters or decides to start
one, and the I/O (starting, resetting, closing processes) happens in tasks after
it. A worker is handed back with ``release``; it is reset (``/clear``) off the
request path and only then becomes idle again.

A worker that is no longer ``usable`` (its upstream credential is cooling down,
or a preferred one is back) is never handed out: idle, it is retired; busy, it
is closed when released; the pool starts fresh workers as it needs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from ..errors import GatewayError, Overloaded, UpstreamError
from ..settings import ClaudeSettings
from .worker import Worker, WorkerKey

log = logging.getLogger(__name__)

DEFAULT_KEY = WorkerKey()


@dataclass(eq=False)
class _Waiter:
    key: WorkerKey
    future: asyncio.Future[Worker]
    holding: str | None = None
    spawning: bool = False
    since: float = field(default_factory=time.monotonic)


class Pool:
    def __init__(
        self,
        settings: ClaudeSettings,
        make_worker: Callable[[WorkerKey], Worker],
    ) -> None:
        self.settings = settings
        self.make_worker = make_worker
        # Whether a worker may take new turns (the engine checks its credential).
        self.usable: Callable[[Worker], bool] = lambda worker: True
        # Told of every idle worker after each assignment (the engine arms them).
        self.on_idle: Callable[[Worker], None] = lambda worker: None
        self.workers: list[Worker] = []
        self.restarts = 0
        self.started_total = 0
        self.last_start_error: str | None = None
        self._waiters: deque[_Waiter] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._closed = False
        self._first_started = asyncio.Event()
        # (when, how many chat workers were wanted at once): recent demand, which the
        # pool keeps warm for (see ``_wanted``).
        self._demand: deque[tuple[float, int]] = deque()

    def __repr__(self) -> str:
        c = self.counts()
        return (f"<Pool size={c['size']} idle={c['idle']} busy={c['busy']} "
                f"starting={c['starting']} resetting={c['resetting']} queued={c['queued']}>")

    def counts(self) -> dict[str, int]:
        states = [w.state for w in self.workers]
        return {
            "size": len(self.workers),
            "max": self.settings.max_concurrent_sessions,
            "idle": states.count("idle"),
            "busy": states.count("busy"),
            "starting": states.count("starting"),
            "resetting": states.count("resetting"),
            "queued": len(self._waiters),
            "restarts": self.restarts,
            "started": self.started_total,
        }

    # -- public API -----------------------------------------------------------
    async def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="pool-supervisor")
        self._top_up()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until one worker has started (used by startup and tests)."""
        try:
            await asyncio.wait_for(self._first_started.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def acquire(self, key: WorkerKey, holding: str | None = None) -> Worker:
        """A worker for ``key``: preferably one whose live session is ``holding``."""
        if self._closed:
            raise Overloaded("the server is shutting down", retry_after=self._retry_after())
        worker = self._take_idle(key, holding)
        if key == DEFAULT_KEY:
            self._note_demand(1 if worker is None else 0)
        if worker is not None:
            return worker
        # Workers being reset are free in milliseconds: they count as room too.
        resetting = sum(1 for w in self.workers if w.state == "resetting")
        if len(self._waiters) >= self.settings.max_queue + self._free_slots() + resetting:
            raise Overloaded(
                f"all {self.settings.max_concurrent_sessions} Claude Code workers are busy "
                "and the queue is full; retry shortly",
                retry_after=self._retry_after(),
            )
        waiter = _Waiter(key, asyncio.get_running_loop().create_future(), holding)
        self._waiters.append(waiter)
        self._dispatch()
        try:
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

    def release(self, worker: Worker, *, healthy: bool = True, keep: str | None = None) -> None:
        """Hand a worker back after a turn. With ``keep`` it goes on holding that
        conversation state for a warm continuation; otherwise it is reset before
        anyone else gets it. A worker whose per-turn cost limit its CLI counts over
        the process's life serves no second turn."""
        if not healthy or not worker.alive or self._closed or not self.usable(worker) \
                or worker.limit_spent:
            self._discard(worker, crashed=not worker.alive)
            return
        worker.last_used = time.monotonic()
        if keep is not None and self.settings.max_live_conversations != 0:
            worker.holds = keep
            worker.state = "idle"
            self._evict_beyond_limit()
            self._dispatch()
            self._top_up()  # the next new conversation should find a clean worker
            return
        worker.state = "resetting"
        self._spawn_task(self._reset(worker))

    def give_back(self, worker: Worker) -> None:
        """Return a worker the caller was given but did not use (its request was
        refused at admission): idle again as it was, its live session kept."""
        if not worker.alive or self._closed or not self.usable(worker):
            self._discard(worker, crashed=not worker.alive)
            return
        worker.state = "idle"
        self._dispatch()

    async def close(self) -> None:
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.cancel()
        for waiter in list(self._waiters):
            if not waiter.future.done():
                waiter.future.set_exception(Overloaded("the server is shutting down"))
        self._waiters.clear()
        workers, self.workers = list(self.workers), []
        await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def server_info(self) -> dict[str, object]:
        for worker in self.workers:
            if worker.server_info:
                return worker.server_info
        return {}

    # -- assignment -----------------------------------------------------------
    def _take_idle(self, key: WorkerKey, holding: str | None = None) -> Worker | None:
        """The worker holding ``holding`` if idle; else a clean one, armed first, then
        the most recently used (the warmest); else, when no new worker may be started, the least
        recently used one holding another conversation, which the engine resets
        first (LRU eviction of live sessions)."""
        idle = [w for w in self.workers if w.state == "idle" and w.key == key and w.alive
                and self.usable(w)]
        match = [w for w in idle if holding is not None and w.holds == holding]
        clean = [w for w in idle if w.holds is None]
        if match:
            worker = match[0]
        elif clean:
            # Armed and waiting first (its call is ready at the relay), then the warmest.
            worker = max(clean, key=lambda w: (w.ready, w.last_used))
        elif idle and not self._free_slots():
            worker = min(idle, key=lambda w: w.last_used)
        else:
            return None
        worker.state = "busy"
        worker.last_used = time.monotonic()
        return worker

    def _evict_beyond_limit(self) -> None:
        """Reset the least recently used idle holders beyond ``max_live_conversations``."""
        limit = self.settings.max_live_conversations
        if limit is None:
            return
        holders = [w for w in self.workers if w.holds is not None]
        idle = sorted((w for w in holders if w.state == "idle"), key=lambda w: w.last_used)
        for worker in idle[:max(0, len(holders) - limit)]:
            worker.state = "resetting"
            self._spawn_task(self._reset(worker))

    def retire_unusable(self) -> None:
        """Close the idle workers that may take no new turns; busy ones follow when
        released. Replacements start as the queue and ``min_idle_workers`` need them."""
        stale = [w for w in self.workers if w.state == "idle" and not self.usable(w)]
        for worker in stale:
            log.info("retiring worker #%s: its upstream credential is no longer the one "
                     "in use", worker.id)
            self._retire(worker, crashed=False)
        if stale:
            self._dispatch()
            self._top_up()

    def forget(self, holding: str) -> None:
        """Reset idle workers that hold this conversation state (it was deleted)."""
        for worker in self.workers:
            if worker.state == "idle" and worker.holds == holding:
                worker.state = "resetting"
                self._spawn_task(self._reset(worker))

    def _free_slots(self) -> int:
        return max(0, self.settings.max_concurrent_sessions - len(self.workers))

    def _dispatch(self) -> None:
        """Pure assignment: give idle workers to waiters, start or evict as needed."""
        # A worker being reset is idle again in milliseconds: wait for it rather
        # than start a process (hundreds of milliseconds).
        resetting = Counter(w.key for w in self.workers if w.state == "resetting")
        for waiter in list(self._waiters):
            if waiter.future.done():
                continue
            worker = self._take_idle(waiter.key, waiter.holding)
            if worker is not None:
                waiter.future.set_result(worker)
                continue
            if waiter.spawning:
                continue
            if resetting[waiter.key] > 0:
                resetting[waiter.key] -= 1
                continue
            if not self._free_slots():
                victim = self._idle_victim()
                if victim is None:
                    continue  # every worker is busy: the waiter waits
                self._retire(victim, crashed=False)
            waiter.spawning = True
            self._spawn_worker(waiter.key, waiter)
        for worker in self.workers:
            if worker.state == "idle":
                self.on_idle(worker)

    def _idle_victim(self) -> Worker | None:
        idle = [w for w in self.workers if w.state == "idle"]
        return min(idle, key=lambda w: w.last_used) if idle else None

    def _abandon(self, waiter: _Waiter) -> None:
        """The caller stopped waiting; a worker assigned meanwhile goes back."""
        fut = waiter.future
        if not fut.done():
            fut.cancel()
        elif not fut.cancelled() and fut.exception() is None:
            worker = fut.result()
            worker.state = "idle"
            self._dispatch()

    # -- I/O after assignment ---------------------------------------------------
    def _spawn_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _spawn_worker(self, key: WorkerKey, waiter: _Waiter | None) -> None:
        worker = self.make_worker(key)
        worker.on_exit = self._exited
        self.workers.append(worker)
        self._spawn_task(self._start_worker(worker, waiter))

    async def _start_worker(self, worker: Worker, waiter: _Waiter | None) -> None:
        try:
            await worker.start()
        except Exception as exc:
            self._remove(worker)
            self.last_start_error = _describe_start_error(exc)
            log.error("could not start Claude Code: %s", self.last_start_error)
            if waiter is not None and not waiter.future.done():
                # The detail (paths, versions) goes to the log and /health only.
                waiter.future.set_exception(UpstreamError(
                    "could not start Claude Code; the server log says why"))
            return
        self.started_total += 1
        self.last_start_error = None
        self._first_started.set()
        if self._closed:
            await worker.close()
            return
        if not self.usable(worker):  # its credential began to cool down meanwhile
            if waiter is not None:
                waiter.spawning = False
            self._discard(worker, crashed=False)
            return
        if waiter is not None and not waiter.future.done():
            worker.state = "busy"
            worker.last_used = time.monotonic()
            waiter.future.set_result(worker)
        self._dispatch()

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
        if not clean or not self.usable(worker):
            self._discard(worker, crashed=False)
            return
        worker.state = "idle"
        worker.holds = None
        worker.last_used = time.monotonic()
        self._dispatch()

    def _discard(self, worker: Worker, *, crashed: bool) -> None:
        self._retire(worker, crashed=crashed)
        self._dispatch()
        self._top_up()

    def _retire(self, worker: Worker, *, crashed: bool) -> None:
        if crashed:
            self.restarts += 1
        self._remove(worker)
        self._spawn_task(worker.close())

    def _remove(self, worker: Worker) -> None:
        with contextlib.suppress(ValueError):
            self.workers.remove(worker)

    def _note_demand(self, waiting: int) -> None:
        """Record how many chat workers are wanted right now (busy ones, plus this
        request when it found none idle)."""
        now = time.monotonic()
        busy = sum(1 for w in self.workers if w.key == DEFAULT_KEY and w.state == "busy")
        queued = sum(1 for w in self._waiters if w.key == DEFAULT_KEY)
        self._demand.append((now, busy + queued + waiting))
        while self._demand and now - self._demand[0][0] > self.settings.idle_seconds:
            self._demand.popleft()

    def _wanted(self) -> int:
        """How many chat workers to keep: the most in use at once over the last
        ``idle_seconds`` (recent demand), at least ``min_idle_workers``, at most the
        pool's size."""
        now = time.monotonic()
        peak = max((n for t, n in self._demand if now - t <= self.settings.idle_seconds),
                   default=0)
        return min(self.settings.max_concurrent_sessions,
                   max(peak, self.settings.min_idle_workers))

    def _top_up(self) -> None:
        """Keep clean chat workers ready for new conversations: as many as recent
        demand says will be wanted together, started while there is room; and at least
        ``min_idle_workers``, for which the least recently used idle holders are
        emptied in the background when there is none, so no new conversation pays a
        start or a reset. (Beyond those, a holder is emptied only when a request
        needs it: ~5 ms, cheaper than losing a warm conversation.)"""
        if self._closed or any(not w.future.done() for w in self._waiters):
            return
        warm = sum(1 for w in self.workers if w.key == DEFAULT_KEY and w.holds is None
                   and w.state in ("idle", "starting", "resetting"))
        busy = sum(1 for w in self.workers if w.key == DEFAULT_KEY and w.state == "busy")
        holders = sorted((w for w in self.workers if w.key == DEFAULT_KEY and w.holds
                          and w.state == "idle"), key=lambda w: w.last_used)
        # Recent demand starts spares while there is room (an idle holder counts: it
        # takes a new conversation after a ~5 ms reset); only ``min_idle_workers`` of
        # them are worth emptying a live conversation for.
        for _ in range(self._wanted() - busy - len(holders) - warm):
            if self._free_slots():
                self._spawn_worker(DEFAULT_KEY, None)
                warm += 1
        for _ in range(self.settings.min_idle_workers - warm):
            if self._free_slots():
                self._spawn_worker(DEFAULT_KEY, None)
            elif holders:
                worker = holders.pop(0)
                worker.state = "resetting"
                self._spawn_task(self._reset(worker))
            else:
                return

    async def _supervise(self) -> None:
        interval = min(5.0, self.settings.idle_seconds / 4, self.settings.hold_seconds / 4)
        while True:
            await asyncio.sleep(interval)
            self._sweep()

    def _sweep(self) -> None:
        self.retire_unusable()
        now = time.monotonic()
        for worker in list(self.workers):
            if worker.state == "idle" and not worker.alive:
                log.warning("worker #%s died while idle; replacing it", worker.id)
                self._discard(worker, crashed=True)
            elif worker.state == "idle" and worker.holds is not None and \
                    now - worker.last_used > self.settings.hold_seconds:
                log.info("worker #%s: conversation idle %.0fs; resetting", worker.id,
                         now - worker.last_used)
                worker.state = "resetting"
                self._spawn_task(self._reset(worker))
            elif worker.state == "idle" and now - worker.last_used > self.settings.idle_seconds:
                if worker.key == DEFAULT_KEY and self._default_count() <= self._wanted():
                    continue  # recent demand will want it again
                log.info("closing worker #%s after %.0fs idle", worker.id, now - worker.last_used)
                self._discard(worker, crashed=False)
        self._top_up()

    def _default_count(self) -> int:
        return sum(1 for w in self.workers if w.key == DEFAULT_KEY)

    def _retry_after(self) -> int:
        return self.settings.retry_after_seconds


def _describe_start_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
