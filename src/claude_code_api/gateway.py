"""The turn service: access check → conversation → engine → accounting and charging.

Every dialect's turns (and each batch item) run through ``Turns.run``; what it needs
is handed to it by the composition root (``app.py``)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from .access.budgets import Budgets, Reservation
from .access.caller import Caller
from .access.keys import KeyStore
from .agent import AgentRequest, Agents
from .catalog import Catalog
from .conversations.service import Conversations, Located
from .engine.engine import Engine
from .errors import BudgetExceeded, Forbidden, Overloaded, UpstreamError
from .events import (
    ReasoningDelta,
    TextDelta,
    ToolCallStart,
    TurnEnd,
    TurnEvent,
    TurnRequest,
    Usage,
)
from .media import MediaResolver
from .metrics import Metrics
from .settings import Settings

log = logging.getLogger(__name__)
_FIRST_TOKEN = (TextDelta, ReasoningDelta, ToolCallStart)


@dataclass
class Run:
    """A turn under way: its conversation, the model it answers as, its events."""

    located: Located
    model: str
    events: AsyncGenerator[TurnEvent, None]


@dataclass(eq=False)
class _Account:
    """One request's money (the engine's ``Account``): admitted against its key's
    budget when it gets a worker, charged what no ``TurnEnd`` carried, and its
    reservation released when the engine says the turn is over."""

    turns: Turns
    caller: Caller
    model: str
    reservation: Reservation | None = None

    def admit(self) -> None:
        self.end()
        self.reservation = self.turns.budgets.admit(self.caller.key, self.model)

    def charge_late(self, usage: Usage, cost: float) -> None:
        if cost or usage != Usage():
            self.turns.metrics.observe_cost(usage, cost, self.model, self.caller.owner)
            self.turns.keys.charge(self.caller.owner, self.model, usage, cost, counted=False)
            self.turns.budgets.record(self.caller.owner, self.model, cost)

    def end(self) -> None:
        if self.reservation is not None:
            self.reservation.release()
            self.reservation = None


class Turns:
    """The turn path: the caller's access to the model, the turn's conversation, the
    engine, then the accounting (metrics, the key's ledger and budget)."""

    def __init__(self, settings: Settings, engine: Engine, catalog: Catalog,
                 media: MediaResolver, conversations: Conversations, agents: Agents,
                 keys: KeyStore, budgets: Budgets, metrics: Metrics) -> None:
        self.settings = settings
        self.engine = engine
        self.catalog = catalog
        self.media = media
        self.conversations = conversations
        self.agents = agents
        self.keys = keys
        self.budgets = budgets
        self.metrics = metrics

    async def run(self, turn: TurnRequest, caller: Caller, user: str | None = None,
                  explicit: str | None = None, agent: AgentRequest | None = None,
                  remember: bool = True) -> Run:
        """Check the caller may use the model, check the turn's images, find its
        conversation, start it on the engine (in agent mode: in the conversation's
        workspace, under the agent policy); the key's budget admits it when it gets a
        worker; the conversation is recorded and the key charged when the answer is
        complete. Without ``remember`` (legacy completions: every request stands
        alone) the turn is neither stored nor kept loaded in its worker, so a burst of
        them does not push conversations out of the warm workers."""
        model = self.catalog.cli_aliases.get(turn.model, turn.model)
        if caller.key is not None and not caller.key.allows_model(turn.model, model):
            self.metrics.rejected.labels("model_not_allowed").inc()
            allowed = ", ".join(caller.key.models or ())
            raise Forbidden(f"The API key `{caller.key.name}` may not use the model "
                            f"`{turn.model}`; it may use: {allowed}.", param="model")
        turn = await self.media.resolve(turn)
        if remember:
            located = self.conversations.locate(caller.scope(user), turn, explicit)
        else:
            located = self.conversations.transient(caller.scope(user), turn)
        account = _Account(self, caller, model)
        if agent is not None:
            run = self.agents.prepare(caller, agent, located.conversation.id)
            caller.cacheable = False  # an agent turn acts on its workspace: never replayed
            stream = self.engine.stream(located.turn, located.session, run.key, run.narrow,
                                        account)
        else:
            stream = self.engine.stream(located.turn, located.session if remember else None,
                                        account=account)
        events = self.conversations.recording(located, stream, model) if remember else stream
        return Run(located, model, self._accounted(caller, model, events))

    async def _accounted(self, caller: Caller, model: str,
                         events: AsyncGenerator[TurnEvent, None]
                         ) -> AsyncGenerator[TurnEvent, None]:
        """The events, measured: time to first token, tokens, cost; the key is charged
        with the turn's cost as Claude Code reports it (see engine/costs.py)."""
        first = True
        try:
            async for event in events:
                if first and isinstance(event, _FIRST_TOKEN):
                    first = False
                    self.metrics.ttft.labels(caller.route, model).observe(
                        time.monotonic() - caller.started)
                if isinstance(event, TurnEnd):
                    self._charge(caller, model, event)
                yield event
        except Overloaded:
            self.metrics.rejected.labels("gateway_busy").inc()
            raise
        except BudgetExceeded:
            self.metrics.rejected.labels("budget").inc()
            raise
        except UpstreamError as exc:
            self.metrics.upstream_errors.labels(exc.code or "upstream_error").inc()
            raise
        finally:
            await events.aclose()

    def _charge(self, caller: Caller, model: str, end: TurnEnd) -> None:
        caller.completed = end.stop_reason != "tool_use"
        self.metrics.observe_turn(end, model, caller.owner)
        self.keys.charge(caller.owner, model, end.usage, end.cost_usd)
        self.budgets.record(caller.owner, model, end.cost_usd)
