"""The engine: runs a neutral ``TurnRequest`` on a warm worker, yields neutral events.

A turn takes any idle worker of its mode (chat or agent) from the pool,
switches its model live and sends it a placeholder user message; the upstream
relay (``relay.py``) applies the turn's shape to each upstream call — system
prompt, limits, sampling, the client's tools, the earlier turns the worker does
not hold and the client's real content in the placeholder's place.

How a response ends decides what happens to the worker:
- the turn's result arrived: the worker goes back to the pool, holding the
  conversation for a warm continuation or reset there;
- anything else (Claude called client tools, hang-up, stop sequence,
  max_tokens, silence): the turn is interrupted in the background; the worker
  returns once the CLI obeys, or is killed and replaced. The client's tool
  results come with its next request, a new turn like any other: the relay
  sends the conversation so far before them.

With upstream credentials configured, the CLIs hold stand-ins and the relay
puts the credential in use on each call, sending a call the upstream refuses
(429, 401/403) again with the next one (see ``credentials.py``).

Money: the caller's ``Account`` admits the request once it has a worker (a key's
budget may still refuse it then) and hears of every cost no ``TurnEnd`` carries,
exactly once per turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

from claude_agent_sdk import ClaudeAgentOptions, ResultMessage, StreamEvent
from claude_agent_sdk import Message as SDKMessage

from ..errors import (
    GatewayError,
    UpstreamAuthFailed,
    UpstreamRateLimited,
    WorkerCrashed,
    WorkerTimeout,
)
from ..events import (
    Answer,
    Message,
    Session,
    TextDelta,
    TurnEnd,
    TurnEvent,
    TurnRequest,
    Usage,
    fingerprint,
)
from ..settings import ClaudeSettings
from .costs import Account, close_account
from .credentials import Credentials
from .launch import Launch
from .live import LiveSession
from .permissions import AgentKey, Permissions
from .pool import Pool
from .protocol import Worker, WorkerFactory, WorkerKey
from .relay import RELAY_END, Relay, Shape
from .turns import StopScanner, TurnTranslator
from .worker import Worker as CLIWorker
from .worker import user_message

log = logging.getLogger(__name__)

_ABORT_TIMEOUT = 10.0
_ARM_WAIT = 5.0  # longest wait for an armed worker's call to reach the relay
_ALIVE_CHECK = 0.25  # how often a turn waiting on the relay checks on its CLI
_READ_BACK = 2.0  # longest wait for the CLI to read a response ended at tool calls


class Engine:
    def __init__(self, settings: ClaudeSettings, line_bytes: int | None = None,
                 new_worker: WorkerFactory = CLIWorker) -> None:
        self.settings = settings
        self.new_worker = new_worker  # unit tests build in-memory workers instead
        self._own_root = settings.work_root is None
        root = settings.work_root or Path(tempfile.mkdtemp(prefix="claude-code-api-"))
        self.work_dir = root / "chat"
        self.credentials = Credentials(settings.credentials,
                                       settings.credential_cooldown_seconds,
                                       settings.credential_rejected_cooldown_seconds)
        self.pool = Pool(settings, self.make_worker)
        self.pool.on_idle = self._arm
        self._aborts: set[asyncio.Task[None]] = set()
        self.launch = Launch(settings, self.credentials, self.work_dir, line_bytes)
        self.stats: Counter[str] = Counter()
        self.relay = Relay(self.upstream_url, credentials=self.credentials or None)

    @property
    def upstream_url(self) -> str | None:
        """Where the relay sends the CLIs' calls (None: the Anthropic API)."""
        return self.settings.env.get("ANTHROPIC_BASE_URL") or \
            os.environ.get("ANTHROPIC_BASE_URL") or None

    async def start(self) -> None:
        self.prepare()
        await self.relay.start()
        await self.pool.start()

    def prepare(self) -> None:
        """The CLI's working directory and launcher, which every worker needs."""
        self.launch.prepare()

    async def close(self) -> None:
        if self._aborts:
            await asyncio.wait(self._aborts, timeout=_ABORT_TIMEOUT)
        await self.pool.close()
        await self.relay.close()
        if self._own_root:
            shutil.rmtree(self.work_dir.parent, ignore_errors=True)

    # -- workers ----------------------------------------------------------------
    def make_worker(self, key: WorkerKey) -> Worker:
        permissions = Permissions(key.agent) if key.agent else None
        lane = self.relay.open_lane(chat=key.agent is None)
        options = self.options_for(key, permissions)
        options.env["ANTHROPIC_BASE_URL"] = lane.url
        worker = self.new_worker(key, options, permissions, lane)
        worker.on_closed = self._worker_closed
        return worker

    def _worker_closed(self, worker: Worker) -> None:
        if worker.lane is not None:
            self.relay.close_lane(worker.lane)

    def options_for(self, key: WorkerKey,
                    permissions: Permissions | None = None) -> ClaudeAgentOptions:
        return self.launch.options(key, permissions)

    def server_info(self) -> dict[str, Any]:
        return dict(self.pool.server_info())

    # -- turns ------------------------------------------------------------------
    async def stream(self, request: TurnRequest, session: Session | None = None,
                     agent: AgentKey | None = None, narrow: frozenset[str] | None = None,
                     account: Account | None = None) -> AsyncGenerator[TurnEvent, None]:
        """The response's events, ending with ``TurnEnd``; errors are raised.

        With a ``session``, a worker whose live session holds exactly this history
        continues it (only the new turn is delivered), and after a complete answer
        the worker keeps the conversation loaded for the next request.

        ``account`` admits the request once it has a worker, before anything is
        delivered. A response that ends before the turn's result (max_tokens, a stop
        sequence, the client hanging up) learns the turn's cost only once the CLI has
        stopped: ``account.charge_late`` gets it then.
        """
        key = WorkerKey(agent)
        held = _held(session, request, request.history) if request.history else None
        self.credentials.pick()  # fails fast while every credential rests
        worker = await self.pool.acquire(key, held)
        await self._admit(worker, account)
        try:
            async with contextlib.aclosing(self._turn(worker, request, session, held,
                                                      narrow, account)) as turn:
                async for event in turn:
                    yield event
        except (UpstreamRateLimited, UpstreamAuthFailed) as exc:
            # The relay tried every credential: say so, and when the first is back.
            if self.credentials:
                self.credentials.pick()
            raise exc

    async def _admit(self, worker: Worker, account: Account | None) -> None:
        """The pool gave the request a worker: the account may still refuse it."""
        if account is None:
            return
        try:
            await account.admit()
        except BaseException:
            self.pool.give_back(worker)
            raise

    async def _turn(self, worker: Worker, request: TurnRequest, session: Session | None,
                    held: str | None, narrow: frozenset[str] | None = None,
                    account: Account | None = None) -> AsyncGenerator[TurnEvent, None]:
        """One attempt at the turn on ``worker``; hands the worker back at the end.

        In chat mode the answer is read from the upstream's events as the relay passes
        them (``_relayed``), not from the CLI's copies of them: it is complete when the
        response ends, and the CLI's result (what the turn cost) is awaited after it,
        off the request path (``_finish``)."""
        relayed = worker.key.agent is None and worker.lane is not None
        translator = TurnTranslator(self.settings.retry_after_seconds,
                                    tools_visible=request.tool_choice.mode != "none",
                                    structured=request.output_schema is not None,
                                    agent=worker.key.agent is not None,
                                    client_tools=frozenset(t.name for t in request.tools),
                                    relayed=relayed)
        end: TurnEnd | None = None
        answer = Answer()
        try:
            if worker.permissions is not None:
                worker.permissions.narrow = narrow
            events = await self._deliver(worker, request, held, listen=relayed)
            source = self._relayed(worker, events) if events is not None else None
            async for event in self._events(worker, translator, request, source):
                answer.feed(event)
                if isinstance(event, TurnEnd):
                    end = event
                yield event
        finally:
            if worker.lane is not None:
                worker.lane.end()
            after = (*request.history, Message("user", request.prompt), answer.message())
            now_held = _held(session, request, after) if worker.rewindable else None
            if translator.done:
                self.pool.release(worker, held=now_held)
                # An error result's cost reached no TurnEnd: it is charged here.
                close_account(account, None if end else translator.result, Usage())
            elif translator.answered and end is not None:
                # Held already while the CLI finishes: the next request of this
                # conversation waits for this worker rather than go cold elsewhere.
                worker.held = now_held if self.settings.max_live_conversations != 0 else None
                worker.state = "finishing"
                self._background(self._finish(worker, now_held, account, end.usage))
            else:
                self._abort(worker, account, end.usage if end else Usage(),
                            at_tools=end is not None and end.stop_reason == "tool_use")

    async def _deliver(self, worker: Worker, request: TurnRequest, held: str | None,
                       listen: bool = False) -> asyncio.Queue[dict[str, Any]] | None:
        """Start the turn. The CLI gets a placeholder (sent ahead when the worker is
        armed); the relay sends the client's content in its place, after the earlier
        turns the worker does not hold. With ``listen``, the turn's upstream events."""
        warm = held is not None and worker.held == held
        marker = worker.armed if (warm or worker.held is None) and \
            worker.model == request.model and await self._armed_ready(worker) else None
        if marker is None:
            await worker.unarm()
        worker.drain()
        if marker is None:
            if not warm and worker.held is not None and not await worker.reset():
                raise WorkerCrashed("could not clear the Claude Code session for this request")
            await worker.set_model(request.model)
        worker.held = None  # the session is changing: it holds nothing known until done
        lane = worker.lane
        assert lane is not None
        if warm:
            self.stats["warm_continuations"] += 1
        else:
            if request.history:
                self.stats["replayed_histories"] += 1
            lane.prefix = [m for m in map(_api_message, request.history) if m["content"]]
        content = _for_cli(request.prompt)
        events = lane.listen() if listen else None
        if marker is not None:
            self.stats["armed_turns"] += 1
            worker.take_armed()
            lane.content[marker] = content
            lane.begin(shape_of(request))
        else:
            lane.begin(shape_of(request))
            await worker.send(user_message([{"type": "text",
                                             "text": lane.placeholder(content)}]))
        worker.turns += 1
        return events

    async def _armed_ready(self, worker: Worker) -> bool:
        """Whether the worker's armed call is waiting at the relay (it was sent a
        moment ago, or the CLI gave up on it)."""
        if worker.armed is None or worker.lane is None:
            return False
        waited = 0.0
        while waited < _ARM_WAIT:
            if worker.result_waiting or not worker.alive:
                return False  # the placeholder's turn ended by itself
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.lane.held.wait(), 0.05)
                return True
            waited += 0.05
        return False

    def _arm(self, worker: Worker) -> None:
        """An idle clean worker: send it the next turn's placeholder now (see ``Lane``).
        A worker holding a conversation is not armed: the next request is more often
        a new conversation, which would have to withdraw the placeholder first."""
        if worker.armed is not None or worker.lane is None or worker.state != "idle" \
                or not worker.alive or worker.held is not None:
            return
        message = worker.arm(worker.lane.placeholder())
        self._background(self._send_armed(worker, message))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """Work after a response (awaited by ``close``)."""
        task = asyncio.create_task(work)
        self._aborts.add(task)
        task.add_done_callback(self._aborts.discard)

    async def _send_armed(self, worker: Worker, message: dict[str, Any]) -> None:
        try:
            await worker.send(message)
        except (GatewayError, Exception) as exc:  # the CLI died: the pool replaces it
            log.debug("worker #%s: could not arm (%s)", worker.id, exc)

    async def open_live(self, model: str, system: str | None = None,
                        agent: AgentKey | None = None,
                        narrow: frozenset[str] | None = None) -> LiveSession:
        """A worker of its own for an interactive session, until it is closed."""
        worker = await self.pool.acquire(WorkerKey(agent))
        try:
            await worker.unarm()
            if worker.held is not None and not await worker.reset():
                raise WorkerCrashed("could not clear a Claude Code session for this one")
            worker.held = None
            await worker.set_model(model)
            if worker.lane is not None:
                worker.lane.begin(Shape(system=system))
        except BaseException:
            self.pool.release(worker, healthy=False)
            raise
        if worker.permissions is not None:
            worker.permissions.narrow = narrow
        return LiveSession(worker, self.pool, self.settings.timeout_seconds)

    def forget(self, held: str) -> None:
        """A conversation was deleted: no worker may go on holding it."""
        self.pool.forget(held)

    async def _events(self, worker: Worker, translator: TurnTranslator, request: TurnRequest,
                      source: AsyncGenerator[SDKMessage, None] | None = None
                      ) -> AsyncIterator[TurnEvent]:
        scanner = StopScanner(request.stop)
        async with contextlib.aclosing(source or self._messages(worker)) as messages:
            async for event in self._translated(messages, translator, scanner):
                yield event

    async def _translated(self, messages: AsyncGenerator[SDKMessage, None],
                          translator: TurnTranslator, scanner: StopScanner
                          ) -> AsyncIterator[TurnEvent]:
        while not translator.done:
            message = await anext(messages)
            for event in translator.feed(message):
                if isinstance(event, TextDelta):
                    text = scanner.feed(event.text)
                    if text:
                        yield TextDelta(text)
                    if scanner.matched is not None:
                        # Stop sequence: end the answer now; the CLI is interrupted.
                        yield translator.cut(scanner.matched)
                        return
                    continue
                if isinstance(event, TurnEnd):
                    if tail := scanner.flush():
                        yield TextDelta(tail)
                    yield event
                    return  # before the result only when cut short or at tool calls
                yield event

    async def _messages(self, worker: Worker) -> AsyncGenerator[SDKMessage, None]:
        while True:
            yield await worker.next_message(self.settings.timeout_seconds)

    async def _relayed(self, worker: Worker, events: asyncio.Queue[dict[str, Any]]
                       ) -> AsyncGenerator[SDKMessage, None]:
        """The turn's messages from the relay: the upstream's events as they pass. When
        a call brings no complete answer (an upstream error, or none at all), the CLI's
        own messages from then on: its result says what went wrong, or, when it called
        again and was answered, its final message is the answer (what was streamed
        already is not streamed again: a different answer is ``TextReplaced``)."""
        passed = False
        while True:
            item = await self._relay_item(worker, events)
            if item.get("type") != RELAY_END:
                passed = True
                yield StreamEvent(uuid="", session_id="", event=item)
            elif item.get("status") != 200 or not item.get("complete"):
                break
        while True:
            message = await worker.next_message(self.settings.timeout_seconds)
            if not (passed and isinstance(message, StreamEvent)):
                yield message

    async def _relay_item(self, worker: Worker,
                          events: asyncio.Queue[dict[str, Any]]) -> dict[str, Any]:
        """The next event; ``WorkerTimeout`` after the silence limit, ``WorkerCrashed``
        when the CLI is gone meanwhile (its call would never come)."""
        waited = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(events.get(), _ALIVE_CHECK)
            waited += _ALIVE_CHECK
            if not worker.alive:
                raise WorkerCrashed("the Claude Code process ended unexpectedly")
            if worker.result_waiting:
                # The CLI ended the turn without a call reaching the relay (it was not
                # logged in, say): its result says why.
                return {"type": RELAY_END, "status": 0, "complete": False}
            lane = worker.lane
            if waited >= _ARM_WAIT and lane is not None and lane.live and lane.held.is_set():
                # A call of this turn waits at the relay as if the lane were idle (it
                # came in as the turn began): let it go.
                log.warning("worker #%s: a call of the running turn was held; releasing it",
                            worker.id)
                lane.release()
            if waited >= self.settings.timeout_seconds:
                raise WorkerTimeout(f"Claude Code produced nothing for "
                                    f"{self.settings.timeout_seconds:g} seconds")

    # -- after the response -------------------------------------------------------
    async def _finish(self, worker: Worker, held: str | None, account: Account | None,
                      reported: Usage) -> None:
        """A relayed answer was sent: the CLI's result of the turn says what it cost;
        then the worker goes back (holding the conversation, if it may)."""
        result: ResultMessage | None = None
        try:
            result = await worker.until_result(self.settings.timeout_seconds)
        except (GatewayError, Exception) as exc:
            log.warning("worker #%s did not finish its turn (%s); replacing it", worker.id,
                        type(exc).__name__)
            worker.kill()
            self.pool.release(worker, healthy=False)
        finally:
            close_account(account, result, reported)
        if result is not None:
            self.pool.release(worker, held=held if not result.is_error else None)
        else:
            worker.held = None

    # -- ending turns early -------------------------------------------------------
    @staticmethod
    async def _read(worker: Worker) -> None:
        """A response that ended at the client's tool calls passed the relay whole, but
        the CLI may still be reading it: interrupted before it has, it would not count
        what the response cost (seen as a turn charged nothing). Its next call, which
        the relay holds (it answers "no such tool" itself), says it has read it."""
        waited = 0.0
        while not _read_back_done(worker) and waited < _READ_BACK:
            await asyncio.sleep(0.01)
            waited += 0.01

    def _abort(self, worker: Worker, account: Account | None, reported: Usage,
               at_tools: bool = False) -> None:
        self._background(self._interrupt(worker, account, reported, at_tools))

    async def _interrupt(self, worker: Worker, account: Account | None,
                         reported: Usage, at_tools: bool = False) -> None:
        """End a turn the client no longer wants; keep the process if it obeys. The
        turn's result says what it cost (``reported``: the usage its responses gave).
        ``at_tools``: the response ended at the client's tool calls (see ``_read``)."""
        result: ResultMessage | None = None
        try:
            if at_tools:
                await self._read(worker)
            await asyncio.wait_for(worker.interrupt(), _ABORT_TIMEOUT)
            result = await worker.until_result(_ABORT_TIMEOUT)
        except (GatewayError, Exception) as exc:
            reason = "silent" if isinstance(exc, WorkerTimeout) else type(exc).__name__
            log.warning("worker #%s did not stop cleanly (%s); replacing it", worker.id, reason)
            worker.kill()
            self.pool.release(worker, healthy=False)
        finally:
            close_account(account, result, reported)
        if result is not None:
            self.pool.release(worker)


def _read_back_done(worker: Worker) -> bool:
    lane = worker.lane
    return lane is None or lane.blocked.is_set() or worker.result_waiting or \
        not worker.alive


def _held(session: Session | None, request: TurnRequest,
           messages: tuple[Message, ...]) -> str | None:
    """The fingerprint of a live session holding ``messages`` for this caller."""
    if session is None:
        return None
    return fingerprint(session.scope, request.system, request.tools, messages)


def shape_of(request: TurnRequest) -> Shape:
    return Shape(request.system, request.max_tokens, request.effort, request.temperature,
                 request.top_p, request.top_k, request.stop, request.tools, request.tool_choice,
                 request.parallel_tools, request.output_schema, request.thinking)


def _for_cli(blocks: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """Content blocks as the relay sends them upstream: empty text blocks (which the
    API refuses) are left out."""
    return [dict(b) for b in blocks if not (b.get("type") == "text" and not b.get("text"))]


def _api_message(message: Message) -> dict[str, Any]:
    return {"role": message.role, "content": _for_cli(message.content)}
