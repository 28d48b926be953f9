"""The money and measures of a turn, the same whichever way the turn came in.

An HTTP request of any dialect and a live session's turn take the same steps: the
key may use the model; it is admitted against the key's limits (a spent budget,
requests per minute, requests at once); when it has a worker the key's budget
admits it and it reserves what a turn is expected to cost (see ``budgets.py``);
when it ends its tokens and cost go to the key's ledger and the metrics, and the
reservation is released. HTTP requests meet the limits in the access middleware
(it holds the slot until the response's last byte); a session turn meets them in
``Accounts.limit`` and holds its slot until the turn's result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..errors import (
    Forbidden,
    GatewayError,
    Unauthorized,
)
from ..events import TurnEnd, Usage
from ..metrics import Metrics
from .budgets import Budgets, Reservation
from .caller import Caller
from .keys import LOCAL, ApiKey, KeyStore
from .limits import Limiter, admit


@dataclass(eq=False)
class TurnAccount:
    """One turn's money (the engine's ``Account``): admitted against its key's budget
    when it gets a worker, charged what no ``TurnEnd`` carried, and its reservation
    released when the turn is over."""

    accounts: Accounts
    caller: Caller
    model: str
    reservation: Reservation | None = None

    async def admit(self) -> None:
        self.end()
        self.reservation = await self.accounts.budgets.admit(self.caller.key, self.model)

    def charge_late(self, usage: Usage, cost: float) -> None:
        if cost or usage != Usage():
            accounts, owner = self.accounts, self.caller.owner
            accounts.metrics.observe_cost(usage, cost, self.model, owner)
            accounts.keys.charge(owner, self.model, usage, cost, counted=False)
            accounts.budgets.record(owner, self.model, cost)

    def end(self) -> None:
        if self.reservation is not None:
            self.reservation.release()
            self.reservation = None


class Accounts:
    def __init__(self, keys: KeyStore, budgets: Budgets, limiter: Limiter,
                 metrics: Metrics) -> None:
        self.keys = keys
        self.budgets = budgets
        self.limiter = limiter
        self.metrics = metrics

    def current(self, owner: str) -> ApiKey | None:
        """The key of ``owner`` as it is now (a long-lived session's key may have been
        revoked or changed since it connected); None for the local user."""
        if owner == LOCAL:
            return None
        key = self.keys.get(owner)
        if key is None or not key.active:
            error = Unauthorized("The API key of this session has been revoked.")
            self.refused(error)
            raise error
        return key

    def check_model(self, caller: Caller, shown: str, *names: str) -> None:
        """Forbidden unless the caller's key may use the model (``shown``, or any of
        ``names`` it is also known by)."""
        key = caller.key
        if key is not None and not key.allows_model(shown, *names):
            self.metrics.rejected.labels("model_not_allowed").inc()
            allowed = ", ".join(key.models or ())
            raise Forbidden(f"The API key `{key.name}` may not use the model `{shown}`; "
                            f"it may use: {allowed}.", param="model")

    async def limit(self, caller: Caller) -> None:
        """Admit one turn against the key's spent budget and its requests per minute
        and at once, as the middleware admits a request; ``unlimit`` when it ends."""
        key = caller.key
        if key is None:
            return
        try:
            if key.over_budget():
                raise key.budget_error()
            await admit(self.limiter, key)
        except GatewayError as exc:
            self.refused(exc)
            raise

    async def unlimit(self, caller: Caller) -> None:
        if caller.key is not None:
            await self.limiter.release(caller.key)

    def account(self, caller: Caller, model: str) -> TurnAccount:
        return TurnAccount(self, caller, model)

    def first_token(self, caller: Caller, model: str) -> None:
        self.metrics.ttft.labels(caller.route, model).observe(time.monotonic() - caller.started)

    def charge(self, caller: Caller, model: str, end: TurnEnd) -> None:
        """A turn's end, with its own tokens and cost (see engine/costs.py): one
        request on the key's ledger."""
        self.metrics.observe_turn(end, model, caller.owner)
        self.keys.charge(caller.owner, model, end.usage, end.cost_usd)
        self.budgets.record(caller.owner, model, end.cost_usd)

    def refused(self, exc: GatewayError) -> None:
        """Count a turn refused or failed, by why."""
        self.metrics.refused(exc)
