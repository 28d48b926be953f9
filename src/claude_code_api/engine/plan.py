"""The pool's assignment step, a pure function (httpcore's connection pool splits
the same way): from the requests waiting, the workers, the limits and the time it
returns a ``Plan`` — which waiter gets which worker, which workers to start, to empty
(reset), to evict or to close, which arriving request to refuse — and changes
nothing. ``Pool`` carries the plan out: the I/O happens after the decision.

The rules:
- a waiter gets, in order of preference, the idle worker of its key holding its
  conversation, the most recently used clean one, or (no room to start one) the
  least recently used one holding another conversation, which is reset first;
- a worker started for a waiter goes to that waiter;
- a waiter with none starts one while there is room; with no room it waits for a
  worker being reset, or evicts the least recently used idle worker of another key;
- an arriving request that would wait beyond ``max_queue`` (counting the room to
  start workers and the workers being reset) is refused: a 429;
- idle workers that died are closed;
- with ``upkeep`` (and after closing a worker): idle conversations beyond
  ``max_live`` are reset, least recently used first, and spare clean chat workers
  are kept (see ``_Planner.top_up``);
- with ``sweep``: conversations idle past ``hold_seconds`` are reset and workers idle
  past ``idle_seconds`` closed, except chat workers that recent demand wants.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..settings import ClaudeSettings
from .protocol import State, Worker, WorkerKey

DEFAULT_KEY = WorkerKey()  # chat mode


@dataclass(frozen=True)
class Limits:
    max_workers: int
    max_queue: int
    min_idle: int
    max_live: int | None
    idle_seconds: float
    hold_seconds: float

    @classmethod
    def of(cls, settings: ClaudeSettings) -> Limits:
        return cls(settings.max_concurrent_sessions, settings.max_queue,
                   settings.min_idle_workers, settings.max_live_conversations,
                   settings.idle_seconds, settings.hold_seconds)


@dataclass(eq=False)
class Waiter:
    """A request waiting for a worker."""

    key: WorkerKey
    future: asyncio.Future[Worker]
    held: str | None = None
    # The worker started for it, which it gets once started.
    spawned: Worker | None = None

    @property
    def waiting(self) -> bool:
        return not self.future.done()


@dataclass
class Plan:
    assign: list[tuple[Waiter, Worker]] = field(default_factory=list)
    # A worker to start, and the waiter it is for (None: a spare).
    start: list[tuple[WorkerKey, Waiter | None]] = field(default_factory=list)
    reset: list[tuple[Worker, str]] = field(default_factory=list)  # (worker, why)
    evict: list[tuple[Worker, str]] = field(default_factory=list)  # healthy, closed
    close: list[tuple[Worker, str]] = field(default_factory=list)  # dead: a restart
    refuse: list[Waiter] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any((self.assign, self.start, self.reset, self.evict, self.close,
                    self.refuse))


def plan(waiting: Sequence[Waiter], workers: Sequence[Worker], limits: Limits, now: float,
         *, wanted: int = 0,
         arriving: Waiter | None = None, upkeep: bool = False, sweep: bool = False) -> Plan:
    """The next step for the pool; ``wanted`` is how many chat workers recent demand
    keeps, ``arriving`` a request not yet admitted to the queue."""
    step = _Planner(workers, limits, now)
    step.health()
    step.assign(waiting, arriving)
    if sweep:
        step.expire(wanted)
    # A worker closed here is replaced as upkeep says, as after any worker's end.
    if upkeep or sweep or step.plan.close or step.plan.evict:
        step.limit_live()
        if not any(w.waiting and w not in step.served for w in waiting):
            step.top_up(wanted)
    return step.plan


class _Planner:
    """The workers' states as the plan so far leaves them (nothing is changed)."""

    def __init__(self, workers: Sequence[Worker], limits: Limits, now: float) -> None:
        self.limits = limits
        self.now = now
        self.plan = Plan()
        self.states: dict[Worker, State] = {w: w.state for w in workers}
        self.served: set[Waiter] = set()
        self.room = limits.max_workers - len(workers)

    def _set(self, worker: Worker, state: State) -> None:
        self.states[worker] = state

    def _idle(self, key: WorkerKey | None = None) -> list[Worker]:
        return [w for w, s in self.states.items() if s == "idle"
                and (key is None or w.key == key)]

    def _count(self, state: State, key: WorkerKey) -> int:
        return sum(1 for w, s in self.states.items() if s == state and w.key == key)

    def health(self) -> None:
        for worker in self._idle():
            if not worker.alive:
                self.plan.close.append((worker, "died while idle"))
                self._gone(worker)

    def _gone(self, worker: Worker) -> None:
        self._set(worker, "closed")
        self.room += 1

    # -- waiters ------------------------------------------------------------------
    def assign(self, waiting: Sequence[Waiter], arriving: Waiter | None) -> None:
        # Workers being reset or finishing a turn whose answer was sent are free in
        # milliseconds: they count as room for the arriving request, and a waiter takes
        # the next of them rather than start a process.
        resetting = Counter(w.key for w, s in self.states.items()
                            if s in ("resetting", "finishing"))
        room = self.room + sum(resetting.values())
        queued = sum(1 for w in waiting if w.waiting and w is not arriving)
        for waiter in waiting:
            if waiter.waiting and waiter.spawned is not None and \
                    self.states.get(waiter.spawned) == "idle":
                self._give(waiter, waiter.spawned)
        for waiter in waiting:
            if not waiter.waiting or waiter in self.served:
                continue
            worker = self._pick(waiter.key, waiter.held)
            if worker is not None:
                self._give(waiter, worker)
            elif self._finishing(waiter):
                continue  # the worker holding its conversation is free in milliseconds
            elif waiter is arriving and queued >= self.limits.max_queue + room:
                self.plan.refuse.append(waiter)
            elif waiter.spawned is not None and \
                    self.states.get(waiter.spawned) == "starting":
                continue  # its own worker is starting
            elif resetting[waiter.key] > 0:
                resetting[waiter.key] -= 1  # it takes the next one reset
            else:
                self._start_for(waiter)

    def _give(self, waiter: Waiter, worker: Worker) -> None:
        self.plan.assign.append((waiter, worker))
        self._set(worker, "busy")
        self.served.add(waiter)

    def _pick(self, key: WorkerKey, held: str | None) -> Worker | None:
        idle = self._idle(key)
        match = [w for w in idle if held is not None and w.held == held]
        clean = [w for w in idle if w.held is None]
        if match:
            return match[0]
        if held is not None and self._finishing_holder(key, held):
            return None  # wait for it rather than rebuild the conversation elsewhere
        if clean:
            # Armed and waiting first (its call is ready at the relay), then the warmest.
            return max(clean, key=lambda w: (w.ready, w.last_used))
        if idle and self.room <= 0:
            return min(idle, key=lambda w: w.last_used)
        return None

    def _finishing_holder(self, key: WorkerKey, held: str) -> bool:
        """A busy worker already holds this conversation: its answer was sent and the
        CLI is finishing the turn (the engine marks it as it hands the answer over)."""
        return any(w.key == key and w.held == held and s == "finishing"
                   for w, s in self.states.items())

    def _finishing(self, waiter: Waiter) -> bool:
        return waiter.held is not None and self._finishing_holder(waiter.key, waiter.held)

    def _start_for(self, waiter: Waiter) -> None:
        if self.room <= 0:
            idle = self._idle()
            if not idle:
                return  # every worker is busy: the waiter waits
            victim = min(idle, key=lambda w: w.last_used)
            self.plan.evict.append((victim, "its room is needed for another mode"))
            self._gone(victim)
        self.plan.start.append((waiter.key, waiter))
        self.room -= 1

    # -- upkeep -------------------------------------------------------------------
    def expire(self, wanted: int) -> None:
        for worker in sorted(self._idle(), key=lambda w: w.last_used):
            idle = self.now - worker.last_used
            if worker.held is not None and idle > self.limits.hold_seconds:
                self._reset(worker, f"conversation idle {idle:.0f}s")
            elif idle > self.limits.idle_seconds:
                if worker.key == DEFAULT_KEY and self._chat_workers() <= wanted:
                    continue  # recent demand will want it again
                self.plan.evict.append((worker, f"idle {idle:.0f}s"))
                self._gone(worker)

    def _chat_workers(self) -> int:
        return sum(1 for w, s in self.states.items() if s != "closed"
                   and w.key == DEFAULT_KEY) + self._starts()

    def _starts(self) -> int:
        return sum(1 for key, _ in self.plan.start if key == DEFAULT_KEY)

    def _reset(self, worker: Worker, why: str) -> None:
        self.plan.reset.append((worker, why))
        self._set(worker, "resetting")

    def limit_live(self) -> None:
        """Reset the least recently used idle holders beyond ``max_live``."""
        if self.limits.max_live is None:
            return
        holders = [w for w, s in self.states.items() if s != "closed"
                   and w.held is not None and s != "resetting"]
        idle = sorted((w for w in holders if self.states[w] == "idle"),
                      key=lambda w: w.last_used)
        for worker in idle[:max(0, len(holders) - self.limits.max_live)]:
            self._reset(worker, "beyond max_live_conversations")

    def top_up(self, wanted: int) -> None:
        """Keep clean chat workers ready for new conversations: as many as recent
        demand says will be wanted together, started while there is room; and at least
        ``min_idle``, for which the least recently used idle holders are emptied when
        there is no room, so no new conversation pays a start or a reset. (Beyond
        those, a holder is emptied only when a request needs it: ~5 ms, cheaper than
        losing a warm conversation.)"""
        mine = [(w, s) for w, s in self.states.items() if w.key == DEFAULT_KEY]
        warm = self._starts() + sum(1 for w, s in mine if w.held is None
                                    and s in ("idle", "starting", "resetting"))
        busy = sum(1 for _, s in mine if s in ("busy", "finishing"))
        holders = sorted((w for w, s in mine if w.held is not None and s == "idle"),
                         key=lambda w: w.last_used)
        # An idle holder counts as a spare for recent demand (it takes a new
        # conversation after a ~5 ms reset); only ``min_idle`` of them are worth
        # emptying a live conversation for.
        for _ in range(wanted - busy - len(holders) - warm):
            if self.room > 0:
                self._spare()
                warm += 1
        for _ in range(self.limits.min_idle - warm):
            if self.room > 0:
                self._spare()
            elif holders:
                self._reset(holders.pop(0), "a clean worker is kept ready")
            else:
                return

    def _spare(self) -> None:
        self.plan.start.append((DEFAULT_KEY, None))
        self.room -= 1
