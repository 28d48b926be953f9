"""The turn service: access check → conversation → engine → accounting and charging.

Every dialect's turns (and each batch item) run through ``Turns.run``; what it needs
is handed to it by the composition root (``app.py``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from .access.accounts import Accounts
from .access.caller import Caller
from .agent import AgentRequest, Agents
from .catalog import Catalog
from .conversations.service import Conversations, Located
from .engine.engine import Engine
from .errors import BudgetExceeded, Overloaded, UpstreamError
from .events import (
    ReasoningDelta,
    TextDelta,
    ToolCallStart,
    TurnEnd,
    TurnEvent,
    TurnRequest,
)
from .media import MediaResolver
from .settings import Settings

log = logging.getLogger(__name__)
_FIRST_TOKEN = (TextDelta, ReasoningDelta, ToolCallStart)


@dataclass
class Run:
    """A turn under way: its conversation, the model it answers as, its events."""

    located: Located
    model: str
    events: AsyncGenerator[TurnEvent, None]


class Turns:
    """The turn path: the caller's access to the model, the turn's conversation, the
    engine, then the accounting (metrics, the key's ledger and budget)."""

    def __init__(self, settings: Settings, engine: Engine, catalog: Catalog,
                 media: MediaResolver, conversations: Conversations, agents: Agents,
                 accounts: Accounts) -> None:
        self.settings = settings
        self.engine = engine
        self.catalog = catalog
        self.media = media
        self.conversations = conversations
        self.agents = agents
        self.accounts = accounts

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
        self.accounts.check_model(caller, turn.model, model)
        turn = await self.media.resolve(turn)
        if remember:
            located = self.conversations.locate(caller.scope(user), turn, explicit)
        else:
            located = self.conversations.transient(caller.scope(user), turn)
        account = self.accounts.account(caller, model)
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
                    self.accounts.first_token(caller, model)
                if isinstance(event, TurnEnd):
                    caller.completed = event.stop_reason != "tool_use"
                    self.accounts.charge(caller, model, event)
                yield event
        except (Overloaded, BudgetExceeded, UpstreamError) as exc:
            self.accounts.refused(exc)
            raise
        finally:
            await events.aclose()
