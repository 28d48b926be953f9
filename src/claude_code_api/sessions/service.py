"""Live sessions: a Claude Code process held for one interactive client.

A session is created over HTTP, driven over a WebSocket (user turns in, the
CLI's messages out, interrupts), and closed with DELETE or after
``sessions.idle_seconds`` without a turn; closing ends its process. Sessions
take their worker from the pool, so ``sessions.max_live`` keeps some of the pool
for ordinary requests.

Each turn is admitted, charged and measured as an HTTP turn is (``Accounts``):
the key as it is now (revoked: refused), its model list and agent permission, its
spent budget, requests per minute and at once (the turn holds a slot until its
result), then its budget reservation; the result goes to the key's ledger as one
request, to the budget's recent costs and to the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..access.accounts import Accounts, TurnAccount
from ..access.caller import Caller
from ..agent import AgentRequest, Agents
from ..catalog import Catalog
from ..engine.permissions import AgentKey
from ..errors import Forbidden, GatewayError, NotFound, Overloaded, WorkerCrashed
from ..events import StopReason, TurnEnd, check_system_prompt
from ..settings import Settings
from .protocol import (
    AssistantFrame,
    CliMessage,
    ResultFrame,
    SessionInfo,
    StreamEventFrame,
    cli_frame,
)

log = logging.getLogger(__name__)
ROUTE = "/v1/sessions"  # the metrics' route label of session turns
_STOPS: dict[str, StopReason] = {"end_turn": "end_turn", "max_tokens": "max_tokens",
                                 "stop_sequence": "stop_sequence", "tool_use": "tool_use",
                                 "refusal": "refusal"}


class Live(Protocol):
    """What a session uses of the engine's live session."""

    @property
    def closed(self) -> bool: ...
    @property
    def turn_running(self) -> bool: ...
    @property
    def turns(self) -> int: ...
    @property
    def worker_id(self) -> int: ...
    def turn(self, content: str | list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]: ...
    async def interrupt(self) -> None: ...
    async def settle(self, timeout: float = 10.0) -> dict[str, Any] | None: ...
    def close(self) -> None: ...


class LiveOpener(Protocol):
    """The engine, as sessions use it."""

    async def open_live(self, model: str, system: str | None = None,
                        agent: AgentKey | None = None,
                        narrow: frozenset[str] | None = None) -> Live: ...


@dataclass(eq=False)
class SessionTurn:
    """A running turn's admission: the key's limits slot and its budget reservation."""

    caller: Caller
    account: TurnAccount
    answered: bool = False  # its first token was seen (time to first token)


@dataclass
class Session:
    id: str
    owner: str
    model: str
    mode: str  # "chat" | "agent"
    live: Live
    workspace: str | None = None
    created_at: float = field(default_factory=time.time)
    last_active: float = field(default_factory=time.monotonic)
    connected: bool = False
    turn: SessionTurn | None = None

    def summary(self) -> SessionInfo:
        state = "closed" if self.live.closed else \
            ("running" if self.live.turn_running else "idle")
        return SessionInfo(id=self.id, model=self.model, mode=self.mode,
                           created_at=int(self.created_at), turns=self.live.turns,
                           state=state, connected=self.connected, workspace=self.workspace)


class Sessions:
    def __init__(self, settings: Settings, engine: LiveOpener, catalog: Catalog,
                 agents: Agents, accounts: Accounts,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock  # what last_active and the idle sweep count with
        self.engine = engine
        self.catalog = catalog
        self.agents = agents
        self.accounts = accounts
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
        self.accounts.check_model(caller, resolved, *self.catalog.names_for(resolved))
        if caller.key is not None and caller.key.over_budget():  # a spent key gets none
            error = caller.key.budget_error()
            self.accounts.refused(error)
            raise error
        session_id = "sess_" + uuid.uuid4().hex[:24]
        if agent is not None:
            run = self.agents.prepare(caller, agent, session_id)
            live = await self.engine.open_live(resolved, system, run.key, run.narrow)
            session = Session(session_id, caller.owner, resolved, "agent", live,
                              run.key.workspace, last_active=self.clock())
        else:
            live = await self.engine.open_live(resolved, system)
            session = Session(session_id, caller.owner, resolved, "chat", live,
                              last_active=self.clock())
        self._sessions[session_id] = session
        log.info("session %s opened (%s, worker #%s)", session_id, session.mode,
                 live.worker_id)
        return session

    # -- a turn ---------------------------------------------------------------------
    async def begin(self, session: Session) -> None:
        """Admit the session's next turn as an HTTP request is admitted, or raise the
        refusal (401, 403, 429) for the client."""
        if session.live.closed:  # nothing to admit: no turn can run
            raise WorkerCrashed("this session's Claude Code process has ended; create a "
                                "new session")
        caller = Caller(key=self.accounts.current(session.owner), route=ROUTE)
        self.accounts.check_model(caller, session.model,
                                  *self.catalog.names_for(session.model))
        if session.mode == "agent" and not self.agents.usable_by(caller):
            raise Forbidden("This session's API key may no longer use agent mode.")
        await self.accounts.limit(caller)
        account = self.accounts.account(caller, session.model)
        try:
            await account.admit()
        except GatewayError as exc:
            await self.accounts.unlimit(caller)
            self.accounts.refused(exc)
            raise
        session.turn = SessionTurn(caller, account)
        session.last_active = self.clock()

    async def run(self, session: Session, content: str | list[dict[str, Any]]
                  ) -> AsyncIterator[CliMessage]:
        """The admitted turn's messages, as the protocol has them; its result charged."""
        try:
            async for raw in session.live.turn(content):
                frame = cli_frame(raw)
                if frame is None:
                    continue
                if isinstance(frame, ResultFrame):
                    await self._charge(session, frame)
                elif isinstance(frame, AssistantFrame | StreamEventFrame):
                    self._answered(session, frame)
                yield frame
        except GatewayError as exc:
            self.accounts.refused(exc)
            await self._end(session)  # no result is coming
            raise
        finally:
            session.last_active = self.clock()

    def _answered(self, session: Session, frame: AssistantFrame | StreamEventFrame) -> None:
        turn = session.turn
        if turn is None or turn.answered:
            return
        if isinstance(frame, AssistantFrame) or \
                frame.event.get("type") in ("content_block_start", "content_block_delta"):
            turn.answered = True
            self.accounts.first_token(turn.caller, session.model)

    async def _charge(self, session: Session, result: ResultFrame) -> None:
        """The turn's result (its own cost: see engine/costs.py) goes to the key's
        ledger as one request, in place of what the turn reserved."""
        turn = session.turn
        if turn is None:
            return
        try:
            end = TurnEnd(_STOPS.get(result.stop_reason or "", "end_turn"),
                          result.turn_usage(), session.model, result.total_cost_usd or 0.0)
            self.accounts.charge(turn.caller, session.model, end)
        finally:
            await self._end(session)

    async def _end(self, session: Session) -> None:
        """The turn is over: give back its reservation and its limits slot."""
        turn, session.turn = session.turn, None
        if turn is not None:
            turn.account.end()
            await self.accounts.unlimit(turn.caller)

    async def settle(self, session: Session) -> None:
        """End a turn nobody reads any more; its cost still goes to the ledger."""
        raw = await session.live.settle()
        try:
            frame = cli_frame(raw) if raw is not None else None
            if isinstance(frame, ResultFrame):
                await self._charge(session, frame)
        except GatewayError:
            log.exception("session %s: the stopped turn's result could not be read",
                          session.id)
        finally:
            await self._end(session)  # no cost is coming if no result did

    # -- the sessions -----------------------------------------------------------------
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
        await self._end(session)
        log.info("session %s closed", session.id)

    async def close_all(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for session in list(self._sessions.values()):
            self._sessions.pop(session.id, None)
            session.live.close()
            await self._end(session)

    async def _sweep(self) -> None:
        idle = self.settings.sessions.idle_seconds
        while True:
            await asyncio.sleep(min(5.0, idle / 4))
            now = self.clock()
            for session in list(self._sessions.values()):
                if session.live.closed:
                    self._sessions.pop(session.id, None)
                    await self._end(session)
                elif not session.live.turn_running and now - session.last_active > idle:
                    log.info("session %s idle %.0fs; closing it", session.id,
                             now - session.last_active)
                    try:
                        await self.close(session)
                    except Exception:
                        log.exception("closing session %s failed", session.id)
