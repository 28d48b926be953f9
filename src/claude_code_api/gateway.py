"""What the routes share: settings, the engine, the model catalog, keys, metrics and
batches."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from .access.accounts import Accounts
from .access.budgets import Budgets
from .access.cache import ResponseCache
from .access.caller import Caller
from .access.keys import KeyStore
from .access.limits import RateLimiter
from .agent import AgentRequest, Agents
from .batch.service import Batches
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
from .metrics import Metrics
from .sessions.service import Sessions
from .settings import Settings
from .store.sqlite import ConversationStore

log = logging.getLogger(__name__)
_FIRST_TOKEN = (TextDelta, ReasoningDelta, ToolCallStart)


@dataclass
class Run:
    """A turn under way: its conversation, the model it answers as, its events."""

    located: Located
    model: str
    events: AsyncGenerator[TurnEvent, None]


@dataclass
class Gateway:
    settings: Settings
    engine: Engine
    catalog: Catalog
    media: MediaResolver
    conversations: Conversations
    keys: KeyStore
    cache: ResponseCache
    limiter: RateLimiter
    agents: Agents
    metrics: Metrics = field(init=False)
    budgets: Budgets = field(init=False)
    accounts: Accounts = field(init=False)
    sessions: Sessions = field(init=False)
    batches: Batches = field(init=False)
    started_at: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        self.metrics = Metrics(self)
        self.engine.relay.on_call = lambda lane, call: self.metrics.observe_upstream(
            call.status, call.duration_s, call.first_token_s)
        self.budgets = Budgets(self.keys, self.settings.auth.turn_reserve_usd)
        self.accounts = Accounts(self.keys, self.budgets, self.limiter, self.metrics)
        self.sessions = Sessions(self.settings, self.engine, self.catalog, self.agents,
                                 self.accounts)
        self.batches = Batches(self)

    @classmethod
    def build(cls, settings: Settings) -> Gateway:
        return cls(settings, Engine(settings.claude, settings.cli_line_bytes()),
                   Catalog(settings.models.aliases), MediaResolver(settings.media),
                   Conversations(ConversationStore(settings.store.path)),
                   KeyStore(settings.store.path), ResponseCache(settings.cache),
                   RateLimiter(settings.auth.rpm_window_seconds), Agents(settings))

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

    # -- what the metrics read when scraped ----------------------------------------
    def pool_counts(self) -> dict[str, int]:
        pool = self.engine.pool
        return {**pool.counts(),
                "holding_conversations": sum(1 for w in pool.workers if w.holds)}

    def pool_totals(self) -> dict[str, int]:
        return {"restarts": self.engine.pool.restarts,
                "started": self.engine.pool.started_total,
                "credential_rotations": self.engine.credentials.rotations}

    async def start(self) -> None:
        await self.engine.start()
        self.sessions.start()
        self.batches.start()

    async def learn_models(self, timeout: float) -> None:
        if await self.engine.pool.wait_ready(timeout):
            self.catalog.learn(self.engine.server_info())

    async def close(self) -> None:
        await self.sessions.close_all()
        await self.batches.close()  # first: their turns are interrupted, not orphaned
        await self.engine.close()
        await self.media.close()
        self.conversations.store.close()
        self.keys.close()
