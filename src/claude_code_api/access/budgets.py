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
turn, so that a first burst is held too.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .keys import ApiKey, KeyStore

RECENT_TURNS = 20  # the turns a mean is taken over


@dataclass(eq=False)
class Reservation:
    key_id: str
    amount: float
    _held: set[Reservation] = field(repr=False)

    def release(self) -> None:
        """Give the amount back (again: no effect)."""
        self._held.discard(self)


class Budgets:
    def __init__(self, keys: KeyStore, first_turn_usd: float) -> None:
        self.keys = keys
        self.first_turn_usd = first_turn_usd
        self._held: dict[str, set[Reservation]] = {}
        self._by_key: dict[tuple[str, str], deque[float]] = {}
        self._by_model: dict[str, deque[float]] = {}

    def admit(self, key: ApiKey | None, model: str) -> Reservation | None:
        """Reserve a turn of ``model`` against the key's budget, or raise
        ``BudgetExceeded``; None when there is no budget to hold."""
        if key is None or key.budget_usd is None:
            return None
        current = self.keys.get(key.id) or key  # spending as it is now
        if current.budget_usd is None:
            return None
        held = self._held.setdefault(key.id, set())
        reserved = sum(r.amount for r in held)
        if current.spent_usd + reserved >= current.budget_usd:
            raise current.budget_error(reserved, len(held))
        reservation = Reservation(key.id, self.expected(key.id, model), held)
        held.add(reservation)
        return reservation

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

    def reserved(self, key_id: str) -> float:
        return sum(r.amount for r in self._held.get(key_id, ()))

    def running(self, key_id: str) -> int:
        """Admitted turns of this key whose cost is not known yet."""
        return len(self._held.get(key_id, ()))
