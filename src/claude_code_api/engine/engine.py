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
import json
import logging
import os
import shlex
import shutil
import tempfile
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

from claude_agent_sdk import ClaudeAgentOptions, ResultMessage

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
from .live import LiveSession
from .permissions import AgentKey, Permissions
from .pool import Pool
from .protocol import Worker, WorkerFactory, WorkerKey
from .relay import SYSTEM_PLACEHOLDER, Relay, Shape
from .turns import StopScanner, TurnTranslator
from .worker import Worker as CLIWorker
from .worker import user_message

log = logging.getLogger(__name__)

# Set for every CLI unless the operator's configuration says otherwise.
_CLI_ENV_DEFAULTS = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    # Offer exactly the client's tools: no deferred-loading placeholder tool.
    "ENABLE_TOOL_SEARCH": "false",
    # For some models (claude-haiku-5-5, claude-sonnet-4-5, claude-opus-4-x...) the CLI
    # appends "<total_tokens>N tokens left</total_tokens>" after every tool result and
    # user prompt: text the client never sent, counting down a budget nobody set.
    "CLAUDE_CODE_TOTAL_TOKENS_REMINDER": "off",
}
_OWN_PREFIX = "CLAUDE_CODE__"  # the gateway's settings in its environment
_ABORT_TIMEOUT = 10.0
_ARM_WAIT = 5.0  # longest wait for an armed worker's call to reach the relay


class Engine:
    def __init__(self, settings: ClaudeSettings, line_bytes: int | None = None,
                 new_worker: WorkerFactory = CLIWorker) -> None:
        self.settings = settings
        self.new_worker = new_worker  # unit tests build in-memory workers instead
        self.line_bytes = line_bytes  # the SDK's read buffer; None: its own 1 MiB
        self._own_root = settings.work_root is None
        root = settings.work_root or Path(tempfile.mkdtemp(prefix="claude-code-api-"))
        self.work_dir = root / "chat"
        self.credentials = Credentials(settings.credentials,
                                       settings.credential_cooldown_seconds,
                                       settings.credential_rejected_cooldown_seconds)
        self.pool = Pool(settings, self.make_worker)
        self.pool.on_idle = self._arm
        self._aborts: set[asyncio.Task[None]] = set()
        self._launcher: str | None = None
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
        self.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._launcher = _launcher(self.work_dir.parent, self.settings.cli_path)

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
        """How a worker's CLI is started. Its upstream calls go through the relay
        (``make_worker`` points ``ANTHROPIC_BASE_URL`` at the worker's lane), which puts
        each turn's system prompt in place of ``SYSTEM_PLACEHOLDER`` and a configured
        credential in place of the stand-in the CLI holds."""
        credential = self.credentials.current()
        # The SDK lays these over the gateway's own environment: blank the gateway's
        # settings there (CLAUDE_CODE__CLAUDE__CREDENTIALS and the like), which are
        # none of the CLI's business and may hold secrets.
        env = {**dict.fromkeys((k for k in os.environ if k.startswith(_OWN_PREFIX)), ""),
               **_CLI_ENV_DEFAULTS, **self.settings.env,
               "CLAUDE_CODE_MAX_RETRIES": str(self.settings.max_retries),
               **(credential.cli_env() if credential is not None else {})}
        if key.agent is not None and permissions is not None:
            return self._agent_options(key.agent, permissions, env)
        return ClaudeAgentOptions(
            tools=[],  # chat mode: none of Claude Code's own tools
            system_prompt=SYSTEM_PLACEHOLDER,
            setting_sources=[],  # no user/project settings, no CLAUDE.md
            strict_mcp_config=True,
            mcp_servers={},
            cwd=str(self.work_dir),
            cli_path=self._launcher or self.settings.cli_path,
            env=env,
            include_partial_messages=True,
            model=self.settings.default_model,
            stderr=_log_stderr,
            max_buffer_size=self.line_bytes,
            # Chat turns are not kept as transcripts in the operator's ~/.claude;
            # rewind_conversation works the same without them.
            extra_args={"no-session-persistence": None},
        )

    def _agent_options(self, agent: AgentKey, permissions: Permissions,
                       env: dict[str, str]) -> ClaudeAgentOptions:
        """Claude Code as itself: its system prompt (the client's appended), its tools
        in the conversation's workspace, MCP servers, every call through the policy."""
        servers: dict[str, Any] = json.loads(agent.mcp_servers) if agent.mcp_servers else {}
        prompt: dict[str, Any] = {"type": "preset", "preset": "claude_code",
                                  "append": SYSTEM_PLACEHOLDER}
        return ClaudeAgentOptions(
            tools=list(agent.tools),
            disallowed_tools=list(agent.disallowed),
            system_prompt=prompt,  # type: ignore[arg-type]
            setting_sources=[],  # the operator's settings and CLAUDE.md stay out
            strict_mcp_config=True,
            mcp_servers=servers,
            permission_mode=agent.permission_mode,  # type: ignore[arg-type]
            can_use_tool=permissions.can_use_tool,
            hooks=permissions.hooks(),
            cwd=agent.workspace,
            add_dirs=list(agent.extra_dirs),
            max_turns=agent.max_turns,
            max_budget_usd=agent.max_budget_usd,
            cli_path=self._launcher or self.settings.cli_path,
            env=env,
            include_partial_messages=True,
            model=self.settings.default_model,
            stderr=_log_stderr,
            max_buffer_size=self.line_bytes,
            extra_args={"no-session-persistence": None},
        )

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
        holding = _state(session, request, request.history) if request.history else None
        self.credentials.pick()  # fails fast while every credential rests
        worker = await self.pool.acquire(key, holding)
        await self._admit(worker, account)
        try:
            async with contextlib.aclosing(self._turn(worker, request, session, holding,
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
                    holding: str | None, narrow: frozenset[str] | None = None,
                    account: Account | None = None) -> AsyncGenerator[TurnEvent, None]:
        """One attempt at the turn on ``worker``; hands the worker back at the end."""
        translator = TurnTranslator(self.settings.retry_after_seconds,
                                    tools_visible=request.tool_choice.mode != "none",
                                    structured=request.output_schema is not None,
                                    agent=worker.key.agent is not None,
                                    client_tools=frozenset(t.name for t in request.tools))
        end: TurnEnd | None = None
        answer = Answer()
        try:
            if worker.permissions is not None:
                worker.permissions.narrow = narrow
            await self._deliver(worker, request, holding)
            async for event in self._events(worker, translator, request):
                answer.feed(event)
                if isinstance(event, TurnEnd):
                    end = event
                yield event
        finally:
            if worker.lane is not None:
                worker.lane.end()
            if translator.done:
                after = (*request.history, Message("user", request.prompt), answer.message())
                keep = _state(session, request, after) if worker.rewindable else None
                self.pool.release(worker, keep=keep)
                # An error result's cost reached no TurnEnd: it is charged here.
                close_account(account, None if end else translator.result, Usage())
            else:
                self._abort(worker, account, end.usage if end else Usage())

    async def _deliver(self, worker: Worker, request: TurnRequest, holding: str | None) -> None:
        """Start the turn. The CLI gets a placeholder (sent ahead when the worker is
        armed); the relay sends the client's content in its place, after the earlier
        turns the worker does not hold."""
        warm = holding is not None and worker.holds == holding
        worker.drain()
        marker = worker.armed if (warm or worker.holds is None) and \
            worker.model == request.model and await self._armed_ready(worker) else None
        if marker is None:
            await worker.unarm()
            if not warm and worker.holds is not None and not await worker.reset():
                raise WorkerCrashed("could not clear the Claude Code session for this request")
            await worker.set_model(request.model)
        worker.holds = None  # the session is changing: it holds nothing known until done
        lane = worker.lane
        assert lane is not None
        if warm:
            self.stats["warm_continuations"] += 1
        else:
            if request.history:
                self.stats["replayed_histories"] += 1
            lane.prefix = [m for m in map(_api_message, request.history) if m["content"]]
        content = _for_cli(request.prompt)
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

    async def _armed_ready(self, worker: Worker) -> bool:
        """Whether the worker's armed call is waiting at the relay (it was sent a
        moment ago, or the CLI gave up on it)."""
        if worker.armed is None or worker.lane is None:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(worker.lane.held.wait(), _ARM_WAIT)
            return True
        return False

    def _arm(self, worker: Worker) -> None:
        """An idle worker: send it the next turn's placeholder now (see ``Lane``)."""
        if worker.armed is not None or worker.lane is None or worker.state != "idle" \
                or not worker.alive:
            return
        message = worker.arm(worker.lane.placeholder())
        task = asyncio.create_task(self._send_armed(worker, message))
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
            if worker.holds is not None and not await worker.reset():
                raise WorkerCrashed("could not clear a Claude Code session for this one")
            worker.holds = None
            await worker.set_model(model)
            if worker.lane is not None:
                worker.lane.begin(Shape(system=system))
        except BaseException:
            self.pool.release(worker, healthy=False)
            raise
        if worker.permissions is not None:
            worker.permissions.narrow = narrow
        return LiveSession(worker, self.pool, self.settings.timeout_seconds)

    def forget(self, state: str) -> None:
        """A conversation was deleted: no worker may go on holding it."""
        self.pool.forget(state)

    async def _events(self, worker: Worker, translator: TurnTranslator,
                      request: TurnRequest) -> AsyncIterator[TurnEvent]:
        scanner = StopScanner(request.stop)
        while not translator.done:
            message = await worker.next_message(self.settings.timeout_seconds)
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

    # -- ending turns early -------------------------------------------------------
    def _abort(self, worker: Worker, account: Account | None, reported: Usage) -> None:
        task = asyncio.create_task(self._interrupt(worker, account, reported))
        self._aborts.add(task)
        task.add_done_callback(self._aborts.discard)

    async def _interrupt(self, worker: Worker, account: Account | None,
                         reported: Usage) -> None:
        """End a turn the client no longer wants; keep the process if it obeys. The
        turn's result says what it cost (``reported``: the usage its responses gave)."""
        result: ResultMessage | None = None
        try:
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


def _state(session: Session | None, request: TurnRequest,
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


def _launcher(root: Path, cli_path: str | None) -> str | None:
    """A wrapper that runs the CLI with PR_SET_PDEATHSIG, so that no CLI outlives a
    gateway killed with SIGKILL (the CLI does not exit when its stdin closes while a
    turn is in flight). Linux with util-linux's setpriv only; elsewhere None."""
    setpriv = shutil.which("setpriv")
    real = cli_path or str(bundled_cli())
    if setpriv is None or not Path(real).is_file():
        return None
    script = root / "claude-launcher"
    script.write_text(f"#!/bin/sh\nexec {shlex.quote(setpriv)} --pdeathsig KILL -- "
                      f"{shlex.quote(real)} \"$@\"\n")
    script.chmod(0o700)
    return str(script)


def bundled_cli() -> Path:
    import claude_agent_sdk

    return Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"


def _log_stderr(line: str) -> None:
    log.debug("claude: %s", line.rstrip())


def cli_version(cli_path: str | None) -> str | None:
    """The bundled (or configured) CLI's version, without starting it."""
    if cli_path:
        return None
    with contextlib.suppress(OSError):
        return bundled_cli().with_name("claude.version").read_text().strip() or None
    return None
