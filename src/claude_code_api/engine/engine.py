"""The engine: runs a neutral ``TurnRequest`` on a warm worker, yields neutral events.

A turn takes a worker from the pool, switches its model live, replays earlier
turns as real turns (user messages with ``shouldQuery: false`` and assistant
messages), sends the new user message and translates what comes back.

How a response ends decides what happens to the worker:
- the turn's result arrived: the worker goes back to the pool (reset there);
- Claude called client tools: the turn is *parked*, paused inside the tool
  handlers, until a request brings the results (``_resume``), a timeout, or the
  pool needs the worker; a request whose results find no parked turn replays
  the history instead and gets the same answer, cold;
- anything else (hang-up, stop sequence, max_tokens, silence): the turn is
  interrupted in the background; the worker returns once the CLI obeys, or is
  killed and replaced.

With several upstream credentials configured, a turn the upstream refuses
(429, 401/403) before anything reached the caller cools that credential down
and runs again, cold, on a worker with the next one (see ``credentials.py``).

Money: the caller's ``Account`` admits the request once it has a worker (a key's
budget may still refuse it then) and hears of every cost no ``TurnEnd`` carries,
exactly once per turn: a turn paused at tool calls is charged whole by the request
that continues it, or, if it never continues, to the request that paused it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import shlex
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claude_agent_sdk import ClaudeAgentOptions, ResultMessage
from claude_agent_sdk.types import SystemPromptFile

from ..errors import (
    GatewayError,
    UpstreamAuthFailed,
    UpstreamError,
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
from .credentials import Credential, Credentials
from .live import LiveSession
from .permissions import AgentKey, Permissions
from .pool import Pool
from .tools import ToolBridge, cli_name, mcp_result
from .turns import StopScanner, TurnTranslator
from .worker import Worker, WorkerKey, assistant_message, user_message

log = logging.getLogger(__name__)

# Set for every CLI unless the operator's configuration says otherwise.
_CLI_ENV_DEFAULTS = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    # Offer exactly the client's tools: no deferred-loading placeholder tool.
    "ENABLE_TOOL_SEARCH": "false",
}
_ABORT_TIMEOUT = 10.0
_INLINE_SYSTEM_PROMPT_BYTES = 32 * 1024


@dataclass(eq=False)
class _Parked:
    """A turn paused inside client tool handlers, waiting for their results."""

    worker: Worker
    ids: frozenset[str]
    usage: Usage
    account: Account | None = None  # the request that paused it
    since: float = field(default_factory=time.monotonic)
    timer: asyncio.Task[None] | None = None


class Engine:
    def __init__(self, settings: ClaudeSettings, line_bytes: int | None = None) -> None:
        self.settings = settings
        self.line_bytes = line_bytes  # the SDK's read buffer; None: its own 1 MiB
        self._own_root = settings.work_root is None
        root = settings.work_root or Path(tempfile.mkdtemp(prefix="claude-code-api-"))
        self.work_dir = root / "chat"
        self.credentials = Credentials(settings.credentials,
                                       settings.credential_cooldown_seconds,
                                       settings.credential_rejected_cooldown_seconds)
        self._in_use: Credential | None = self.credentials.current()
        self.pool = Pool(settings, self.make_worker)
        self.pool.reclaim = self._reclaim
        self.pool.usable = self._usable
        self._aborts: set[asyncio.Task[None]] = set()
        self._parked: dict[str, _Parked] = {}
        self._launcher: str | None = None
        self.stats: Counter[str] = Counter()

    async def start(self) -> None:
        self.prepare()
        await self.pool.start()

    def prepare(self) -> None:
        """The CLI's working directory and launcher, which every worker needs."""
        self.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._launcher = _launcher(self.work_dir.parent, self.settings.cli_path)

    async def close(self) -> None:
        for parked in set(self._parked.values()):
            self._end_parked(parked)
        if self._aborts:
            await asyncio.wait(self._aborts, timeout=_ABORT_TIMEOUT)
        await self.pool.close()
        if self._own_root:
            shutil.rmtree(self.work_dir.parent, ignore_errors=True)

    # -- workers ----------------------------------------------------------------
    def make_worker(self, key: WorkerKey) -> Worker:
        bridge = ToolBridge(key.tools) if key.tools else None
        credential = self.credentials.current()
        permissions = Permissions(key.agent) if key.agent else None
        return Worker(key, self.options_for(key, bridge, credential, permissions), bridge,
                      credential, permissions)

    def options_for(self, key: WorkerKey, bridge: ToolBridge | None = None,
                    credential: Credential | None = None,
                    permissions: Permissions | None = None) -> ClaudeAgentOptions:
        # The credential goes into the process environment only: not into argv, the
        # launcher script or any file.
        env = {**_CLI_ENV_DEFAULTS, **self.settings.env,
               "CLAUDE_CODE_MAX_RETRIES": str(self.settings.max_retries),
               **(credential.env() if credential is not None else {})}
        if key.max_tokens is not None:
            env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] = str(key.max_tokens)
        if key.agent is not None and permissions is not None:
            return self._agent_options(key, key.agent, permissions, bridge, env)
        return ClaudeAgentOptions(
            tools=[],  # chat mode: none of Claude Code's own tools
            system_prompt=self._system_prompt(key.system or ""),
            setting_sources=[],  # no user/project settings, no CLAUDE.md
            strict_mcp_config=True,
            mcp_servers={"client": bridge.server()} if bridge else {},
            allowed_tools=bridge.allowed() if bridge else [],
            cwd=str(self.work_dir),
            cli_path=self._launcher or self.settings.cli_path,
            env=env,
            include_partial_messages=True,
            model=self.settings.default_model,
            effort=key.effort,
            thinking=None if key.thinking else {"type": "disabled"},
            output_format={"type": "json_schema", "schema": json.loads(key.output_schema)}
            if key.output_schema else None,
            stderr=_log_stderr,
            max_buffer_size=self.line_bytes,
            # Chat turns are not kept as transcripts in the operator's ~/.claude;
            # rewind_conversation works the same without them.
            extra_args={"no-session-persistence": None},
        )

    def _agent_options(self, key: WorkerKey, agent: AgentKey, permissions: Permissions,
                       bridge: ToolBridge | None, env: dict[str, str]) -> ClaudeAgentOptions:
        """Claude Code as itself: its system prompt (the client's appended), its tools
        in the conversation's workspace, MCP servers, every call through the policy."""
        servers: dict[str, Any] = json.loads(agent.mcp_servers) if agent.mcp_servers else {}
        if bridge is not None:
            servers["client"] = bridge.server()
        prompt: dict[str, Any] = {"type": "preset", "preset": "claude_code"}
        if key.system:
            prompt["append"] = key.system
        return ClaudeAgentOptions(
            tools=list(agent.tools),
            disallowed_tools=list(agent.disallowed),
            system_prompt=prompt,  # type: ignore[arg-type]
            setting_sources=[],  # the operator's settings and CLAUDE.md stay out
            strict_mcp_config=True,
            mcp_servers=servers,
            allowed_tools=bridge.allowed() if bridge else [],
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
            effort=key.effort,
            stderr=_log_stderr,
            max_buffer_size=self.line_bytes,
            extra_args={"no-session-persistence": None},
        )

    def _system_prompt(self, text: str) -> str | SystemPromptFile:
        """Long prompts go through a file: one argv string is capped at 128 KiB."""
        if len(text.encode()) <= _INLINE_SYSTEM_PROMPT_BYTES:
            return text
        digest = hashlib.sha256(text.encode()).hexdigest()[:32]
        path = self.work_dir.parent / "prompts" / f"{digest}.txt"
        path.parent.mkdir(mode=0o700, exist_ok=True)
        if not path.exists():
            path.write_text(text, encoding="utf-8")
        return {"type": "file", "path": str(path)}

    def server_info(self) -> dict[str, Any]:
        return dict(self.pool.server_info())

    @property
    def parked(self) -> int:
        return len(set(self._parked.values()))

    # -- turns ------------------------------------------------------------------
    async def stream(self, request: TurnRequest, session: Session | None = None,
                     agent: AgentKey | None = None, narrow: frozenset[str] | None = None,
                     account: Account | None = None) -> AsyncGenerator[TurnEvent, None]:
        """The response's events, ending with ``TurnEnd``; errors are raised.

        With a ``session``, a worker whose live session holds exactly this history
        continues it (only the new turn is delivered), and after a complete answer
        the worker keeps the conversation loaded for the next request.

        When the upstream refuses the worker's credential before any event was
        yielded, the request runs again on a worker with the next credential, at
        most once per credential.

        ``account`` admits the request once it has a worker, before anything is
        delivered. A response that ends before the turn's result (max_tokens, a stop
        sequence, the client hanging up) learns the turn's cost only once the CLI has
        stopped: ``account.charge_late`` gets it then.
        """
        key = WorkerKey(request.system, request.max_tokens, request.tools,
                        request.output_schema, request.effort, agent, request.thinking)
        holding = _state(session, request, request.history) if request.history else None
        parked = self._claim(request, key)
        tried: set[Credential] = set()
        while True:
            if parked is not None:
                worker, before = parked.worker, parked.usage
                self._admit_continuation(parked, account)
            else:
                self._check_credentials()
                worker, before = await self.pool.acquire(key, holding), Usage()
                self._admit(worker, account)
            if worker.credential is not None:
                worker.credential.uses += 1
            sent = False
            try:
                async with contextlib.aclosing(self._turn(worker, before, request, session,
                                                          holding, parked is not None,
                                                          narrow, account)) as turn:
                    async for event in turn:
                        sent = True
                        yield event
                return
            except (UpstreamRateLimited, UpstreamAuthFailed):
                if sent or not self._rotate(worker.credential, tried):
                    raise
            parked = None  # the retry replays the history on a fresh worker

    def _admit(self, worker: Worker, account: Account | None) -> None:
        """The pool gave the request a worker: the account may still refuse it."""
        if account is None:
            return
        try:
            account.admit()
        except BaseException:
            self.pool.give_back(worker)
            raise

    def _admit_continuation(self, parked: _Parked, account: Account | None) -> None:
        """Tool results continue a paused turn: this request takes the turn over (its
        end will carry the whole turn's cost), its reservation in place of the pausing
        request's; if it is refused, the paused turn ends, charged to the request that
        paused it."""
        if parked.account is not None:
            parked.account.end()
        if account is None:
            return
        try:
            account.admit()
        except BaseException:
            self._abort(parked.worker, parked.account, parked.usage)
            raise

    async def _turn(self, worker: Worker, before: Usage, request: TurnRequest,
                    session: Session | None, holding: str | None, resume: bool,
                    narrow: frozenset[str] | None = None, account: Account | None = None
                    ) -> AsyncGenerator[TurnEvent, None]:
        """One attempt at the turn on ``worker``; hands the worker back at the end."""
        translator = TurnTranslator(self.settings.retry_after_seconds, before,
                                    tools_visible=request.tool_choice.mode != "none",
                                    structured=request.output_schema is not None,
                                    agent=worker.key.agent is not None)
        end: TurnEnd | None = None
        answer = Answer()
        try:
            if worker.bridge is not None:
                worker.bridge.refuse = request.tool_choice.mode == "none"
            if worker.permissions is not None:
                worker.permissions.narrow = narrow
            if resume:
                self._resume(worker, request)
            else:
                await self._deliver(worker, request, holding)
            async for event in self._events(worker, translator, request):
                answer.feed(event)
                if isinstance(event, TurnEnd):
                    end = event
                yield event
        except (UpstreamRateLimited, UpstreamAuthFailed) as exc:
            if worker.credential is not None:  # before the release below sees the worker
                self._cool(worker.credential, exc)
            raise
        finally:
            if translator.done:
                after = (*request.history, Message("user", request.prompt), answer.message())
                keep = _state(session, request, after) if worker.rewindable else None
                self.pool.release(worker, keep=keep)
                # An error result's cost reached no TurnEnd: it is charged here.
                close_account(account, None if end else translator.result, before)
            elif end is not None and end.stop_reason == "tool_use":
                self._park(worker, frozenset(c[0] for c in answer.calls), before + end.usage,
                           account)
            else:
                self._abort(worker, account, before + end.usage if end else before)

    async def _deliver(self, worker: Worker, request: TurnRequest, holding: str | None) -> None:
        timeout = self.settings.timeout_seconds
        worker.drain()
        warm = holding is not None and worker.holds == holding
        if not warm and worker.holds is not None and not await worker.reset():
            raise WorkerCrashed("could not clear the Claude Code session for this request")
        worker.holds = None  # the session is changing: it holds nothing known until done
        await worker.set_model(request.model)
        if warm:
            self.stats["warm_continuations"] += 1
        else:
            if request.history:
                self.stats["replayed_histories"] += 1
            await self._replay(worker, request.history, timeout)
        await worker.send(user_message(_for_cli(request.prompt)))
        worker.turns += 1

    async def _replay(self, worker: Worker, history: tuple[Message, ...], timeout: float) -> None:
        for message in history:
            content = _for_cli(message.content)
            if message.role == "assistant":
                await worker.send(assistant_message(content))
            else:
                await worker.send(user_message(content, query=False))
                await worker.until_result(timeout)

    async def open_live(self, key: WorkerKey, model: str,
                        narrow: frozenset[str] | None = None) -> LiveSession:
        """A worker of its own for an interactive session, until it is closed."""
        worker = await self.pool.acquire(key)
        try:
            if worker.holds is not None and not await worker.reset():
                raise WorkerCrashed("could not clear a Claude Code session for this one")
            worker.holds = None
            await worker.set_model(model)
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

    # -- upstream credentials -----------------------------------------------------
    def _usable(self, worker: Worker) -> bool:
        """New turns go to workers on the credential in use (all, when none is set)."""
        return worker.credential is self.credentials.current()

    def _check_credentials(self) -> None:
        """Fail fast when every credential is cooling down; when the credential in
        use changed (one cooled down or came back), retire idle workers on the old."""
        credential = self.credentials.pick()
        if credential is not self._in_use:
            self._in_use = credential
            self.pool.retire_unusable()

    def _cool(self, credential: Credential, error: UpstreamError) -> None:
        seconds = self.credentials.cool(credential, error)
        log.warning("upstream credential %s was %s; resting it %gs", credential.label,
                    "rate-limited" if credential.reason == "rate_limited" else "rejected",
                    seconds)
        self._in_use = self.credentials.current()
        self.pool.retire_unusable()

    def _rotate(self, failed: Credential | None, tried: set[Credential]) -> bool:
        """True to retry the request with the next credential (raises when every one
        is cooling down); False when there is none left to try."""
        if failed is None:
            return False
        tried.add(failed)
        following = self.credentials.pick()
        if following is None or following in tried:
            return False
        self.credentials.rotations += 1
        log.info("retrying the request with upstream credential %s", following.label)
        return True

    # -- paused tool turns --------------------------------------------------------
    def _park(self, worker: Worker, ids: frozenset[str], usage: Usage,
              account: Account | None) -> None:
        if worker.bridge is None or not ids:
            self._abort(worker, account, usage)
            return
        parked = _Parked(worker, ids, usage, account)
        for call_id in ids:
            older = self._parked.get(call_id)
            if older is not None:  # ids are the model's, but a client could reuse one
                self._end_parked(older)
            self._parked[call_id] = parked
        parked.timer = asyncio.create_task(self._expire(parked))

    def _claim(self, request: TurnRequest, key: WorkerKey) -> _Parked | None:
        """The parked turn these tool results answer, if it is still paused."""
        results = _tool_result_ids(request.prompt)
        if not results:
            return None
        parked = self._parked.get(next(iter(results)))
        if parked is None:
            return None
        self._unpark(parked)
        only_results = all(b.get("type") == "tool_result" for b in request.prompt)
        if parked.ids <= results and only_results and parked.worker.key == key \
                and parked.worker.alive:
            return parked
        self._end_parked(parked)  # answered differently: replay instead
        return None

    def _resume(self, worker: Worker, request: TurnRequest) -> None:
        assert worker.bridge is not None
        calls = _tool_calls(request.history[-1]) if request.history else {}
        supplied = []
        for block in request.prompt:
            name, args = calls.get(str(block.get("tool_use_id")), ("", {}))
            supplied.append((name, args, mcp_result(block.get("content", ""),
                                                    bool(block.get("is_error")))))
        worker.bridge.supply(supplied)

    def _unpark(self, parked: _Parked) -> None:
        for call_id in parked.ids:
            if self._parked.get(call_id) is parked:
                del self._parked[call_id]
        if parked.timer is not None and parked.timer is not asyncio.current_task():
            parked.timer.cancel()

    def _end_parked(self, parked: _Parked) -> None:
        """End a paused turn whose results will not come (its cost goes to the request
        that paused it)."""
        self._unpark(parked)
        self._abort(parked.worker, parked.account, parked.usage)

    async def _expire(self, parked: _Parked) -> None:
        await asyncio.sleep(self.settings.tool_timeout_seconds)
        log.info("tool results for worker #%s did not arrive in %gs; ending the turn",
                 parked.worker.id, self.settings.tool_timeout_seconds)
        self._end_parked(parked)

    def _reclaim(self) -> bool:
        """The pool is full: end the longest-waiting paused tool turn."""
        if not self._parked:
            return False
        oldest = min(set(self._parked.values()), key=lambda p: p.since)
        log.info("ending the paused tool turn on worker #%s to make room", oldest.worker.id)
        self._end_parked(oldest)
        return True

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
            if worker.bridge is not None:
                worker.bridge.cancel()
            close_account(account, result, reported)
        if result is not None:
            self.pool.release(worker)


def _state(session: Session | None, request: TurnRequest,
           messages: tuple[Message, ...]) -> str | None:
    """The fingerprint of a live session holding ``messages`` for this caller."""
    if session is None:
        return None
    return fingerprint(session.scope, request.system, request.tools, messages)


def _for_cli(blocks: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """Content blocks as the CLI needs them: client tool names get their MCP prefix."""
    return [{**b, "name": cli_name(b["name"])} if b.get("type") == "tool_use" else dict(b)
            for b in blocks]


def _tool_result_ids(blocks: tuple[dict[str, Any], ...]) -> set[str]:
    return {str(b.get("tool_use_id")) for b in blocks if b.get("type") == "tool_result"}


def _tool_calls(message: Message) -> dict[str, tuple[str, dict[str, Any]]]:
    return {str(b["id"]): (str(b["name"]), dict(b.get("input") or {}))
            for b in message.content if b.get("type") == "tool_use"}


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
