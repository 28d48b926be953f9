"""Live sessions: a Claude Code process held for one interactive client.

A session is created over HTTP, driven over a WebSocket (user turns in, the
CLI's messages out, interrupts), and closed with DELETE or after
``sessions.idle_seconds`` without a turn; closing ends its process. Sessions
take their worker from the pool, so ``sessions.max_live`` keeps some of the pool
for ordinary requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..access.budgets import Budgets, Reservation
from ..access.caller import Caller
from ..access.keys import KeyStore
from ..agent import AgentRequest, Agents
from ..catalog import Catalog
from ..engine.engine import Engine
from ..engine.live import LiveSession
from ..engine.relay import Shape
from ..engine.turns import usage_of
from ..engine.worker import WorkerKey
from ..errors import Forbidden, NotFound, Overloaded
from ..events import check_system_prompt
from ..settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Session:
    id: str
    owner: str
    model: str
    mode: str  # "chat" | "agent"
    live: LiveSession
    workspace: str | None = None
    created_at: float = field(default_factory=time.time)
    last_active: float = field(default_factory=time.monotonic)
    connected: bool = False
    reservation: Reservation | None = None  # the running turn's share of the budget

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "object": "session", "model": self.model, "mode": self.mode,
                "created_at": int(self.created_at), "turns": self.live.worker.turns,
                "state": "closed" if self.live.closed else
                ("running" if self.live.turn_running else "idle"),
                "connected": self.connected, "workspace": self.workspace}


class Sessions:
    def __init__(self, settings: Settings, engine: Engine, catalog: Catalog,
                 agents: Agents, keys: KeyStore, budgets: Budgets,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock  # what last_active and the idle sweep count with
        self.engine = engine
        self.catalog = catalog
        self.agents = agents
        self.keys = keys
        self.budgets = budgets
        self._sessions: dict[str, Session] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="session-sweeper")

    async def create(self, caller: Caller, model: str, system: str | None,
                     agent: AgentRequest | None) -> Session:
        if sum(1 for s in self._sessions.values() if not s.live.closed) >= \
                self.settings.sessions.max_live:
            raise Overloaded(f"{self.settings.sessions.max_live} live sessions are open, the "
                             "server's limit; close one (DELETE /v1/sessions/{id})",
                             retry_after=self.settings.claude.retry_after_seconds)
        check_system_prompt(system)
        resolved = self.catalog.resolve(model)
        if caller.key is not None and not caller.key.allows_model(
                *self.catalog.names_for(resolved)):
            raise Forbidden(f"The API key `{caller.key.name}` may not use the model "
                            f"`{resolved}`.", param="model")
        self.check_budget(caller.owner)
        session_id = "sess_" + uuid.uuid4().hex[:24]
        if agent is not None:
            run = self.agents.prepare(caller, agent, session_id)
            live = await self.engine.open_live(WorkerKey(agent=run.key), resolved,
                                               Shape(system=system), run.narrow)
            session = Session(session_id, caller.owner, resolved, "agent", live,
                              run.key.workspace, last_active=self.clock())
        else:
            live = await self.engine.open_live(WorkerKey(), resolved, Shape(system=system))
            session = Session(session_id, caller.owner, resolved, "chat", live,
                              last_active=self.clock())
        self._sessions[session_id] = session
        log.info("session %s opened (%s, worker #%s)", session_id, session.mode,
                 live.worker.id)
        return session

    def check_budget(self, owner: str) -> None:
        """When a session opens: a key whose budget is spent gets none."""
        key = self.keys.get(owner)
        if key is not None and key.over_budget():
            raise key.budget_error()

    def admit(self, session: Session) -> None:
        """Before each turn, as for any request given a worker: the key's budget,
        counting its turns still running, admits the turn and reserves its share."""
        self.release(session)
        session.reservation = self.budgets.admit(self.keys.get(session.owner), session.model)

    def charge(self, session: Session, result: dict[str, Any]) -> None:
        """A turn's result (its own cost: see engine/costs.py) goes to the session
        owner's ledger, in place of what the turn reserved."""
        usage = result.get("usage")
        cost = result.get("total_cost_usd")
        cost = float(cost) if isinstance(cost, int | float) else 0.0
        try:
            self.keys.charge(session.owner, session.model,
                             usage_of(usage if isinstance(usage, dict) else None), cost)
            self.budgets.record(session.owner, session.model, cost)
        finally:
            self.release(session)

    @staticmethod
    def release(session: Session) -> None:
        """Give back what the session's turn reserved (no cost is coming for it)."""
        if session.reservation is not None:
            session.reservation.release()
            session.reservation = None

    def get(self, caller: Caller, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None or session.owner != caller.owner:
            raise NotFound(f"session `{session_id}` not found")
        return session

    def all(self, caller: Caller) -> list[Session]:
        return [s for s in self._sessions.values() if s.owner == caller.owner]

    async def close(self, session: Session) -> None:
        self._sessions.pop(session.id, None)
        await self.settle(session)
        session.live.close()
        self.release(session)
        log.info("session %s closed", session.id)

    async def settle(self, session: Session) -> None:
        """End a turn nobody reads any more; its cost still goes to the ledger."""
        result = await session.live.settle()
        if result is not None:
            self.charge(session, result)
        self.release(session)  # no cost is coming if no result did

    async def close_all(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for session in list(self._sessions.values()):
            self._sessions.pop(session.id, None)
            session.live.close()
            self.release(session)

    async def _sweep(self) -> None:
        idle = self.settings.sessions.idle_seconds
        while True:
            await asyncio.sleep(min(5.0, idle / 4))
            now = self.clock()
            for session in list(self._sessions.values()):
                if session.live.closed:
                    self._sessions.pop(session.id, None)
                    self.release(session)
                elif not session.live.turn_running and now - session.last_active > idle:
                    log.info("session %s idle %.0fs; closing it", session.id,
                             now - session.last_active)
                    try:
                        await self.close(session)
                    except Exception:
                        log.exception("closing session %s failed", session.id)
