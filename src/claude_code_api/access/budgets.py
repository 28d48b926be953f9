"""Budgets that hold under bursts: reservations for the turns under way.

A key's spending is known only when a turn ends, so checking ``spent < budget``
when a request arrives lets a burst through whole. Instead a turn is *admitted*
when the pool gives it a worker: it is refused if what the key has spent plus
what its running turns have reserved has reached the budget; otherwise it
reserves what a turn is expected to cost, until its real cost is charged. So
a burst goes over a budget by at most the turns already running when the budget
ran out.

What a turn reserves: the mean cost of the key's recent turns of that model;
without those, the mean of recent turns of that model across all keys; without
any (a fresh server), ``auth.turn_reserve_usd``, meant to be at least a typical
turn, so that a first burst is held too. (These means are each replica's own:
they only size a reservation.)

Where reservations are held is the ``Reservations`` interface: ``Held`` in this
process, ``redis_state.RedisReservations`` in Redis, where a reservation made on
one replica counts on all and expires if its replica dies.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .keys import ApiKey, KeyStore

RECENT_TURNS = 20  # the turns a mean is taken over
NANO = 10**9  # reservations add up in whole nano-dollars: ten of $0.10 are $1 exactly


def nano(usd: float) -> int:
    return round(usd * NANO)


@dataclass(eq=False)
class Reservation:
    key_id: str
    amount: float
    _release: Callable[[Reservation], None] = field(repr=False)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    released: bool = False

    def release(self) -> None:
        """Give the amount back (again: no effect)."""
        if not self.released:
            self.released = True
            self._release(self)


class Reservations(Protocol):
    """The reservations of every key's running turns, wherever they are kept."""

    async def reserve(self, key: ApiKey, amount: float) -> Reservation:
        """Hold ``amount`` of the key's budget, atomically with the check that its
        spending plus what is held stays under it; else raise ``BudgetExceeded``."""
        ...

    async def held(self, key_id: str) -> tuple[float, int]:
        """What the key's running turns reserve, and how many they are."""
        ...


class Held:
    """Reservations in this process (no ``redis.url``)."""

    def __init__(self) -> None:
        self._held: dict[str, set[Reservation]] = {}

    async def reserve(self, key: ApiKey, amount: float) -> Reservation:
        held = self._held.setdefault(key.id, set())
        reserved = sum(nano(r.amount) for r in held)
        if key.budget_usd is not None and \
                nano(key.spent_usd) + reserved >= nano(key.budget_usd):
            raise key.budget_error(reserved / NANO, len(held))
        reservation = Reservation(key.id, amount, self._release)
        held.add(reservation)
        return reservation

    async def held(self, key_id: str) -> tuple[float, int]:
        held = self._held.get(key_id, ())
        return sum(nano(r.amount) for r in held) / NANO, len(held)

    def _release(self, reservation: Reservation) -> None:
        held = self._held.get(reservation.key_id)
        if held is not None:
            held.discard(reservation)
            if not held:
                del self._held[reservation.key_id]


class Budgets:
    def __init__(self, keys: KeyStore, first_turn_usd: float,
                 reservations: Reservations | None = None) -> None:
        self.keys = keys
        self.first_turn_usd = first_turn_usd
        self.reservations: Reservations = reservations or Held()
        self._by_key: dict[tuple[str, str], deque[float]] = {}
        self._by_model: dict[str, deque[float]] = {}

    async def admit(self, key: ApiKey | None, model: str) -> Reservation | None:
        """Reserve a turn of ``model`` against the key's budget, or raise
        ``BudgetExceeded``; None when there is no budget to hold."""
        if key is None or key.budget_usd is None:
            return None
        current = self.keys.get(key.id) or key  # spending as it is now
        if current.budget_usd is None:
            return None
        return await self.reservations.reserve(current, self.expected(key.id, model))

    def expected(self, key_id: str, model: str) -> float:
        """What a turn of ``model`` for this key is expected to cost."""
        for recent in (self._by_key.get((key_id, model)), self._by_model.get(model)):
            if recent:
                return sum(recent) / len(recent)
        return self.first_turn_usd

    def record(self, key_id: str, model: str, cost: float) -> None:
        """A turn's real cost, for what later turns are expected to cost."""
        if cost <= 0:
            return
        self._by_key.setdefault((key_id, model), deque(maxlen=RECENT_TURNS)).append(cost)
        self._by_model.setdefault(model, deque(maxlen=RECENT_TURNS)).append(cost)

    async def reserved(self, key_id: str) -> float:
        return (await self.reservations.held(key_id))[0]

    async def running(self, key_id: str) -> int:
        """Admitted turns of this key whose cost is not known yet."""
        return (await self.reservations.held(key_id))[1]
