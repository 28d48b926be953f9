"""The engine: runs a neutral ``TurnRequest`` on a warm worker, yields neutral events.

A turn takes a worker from the pool, switches its model live, replays earlier
turns as real turns (user messages with ``shouldQuery: false`` and assistant
messages), sends the new user message and translates what comes back. A turn
that ends early (client hung up, stop sequence, silence) is interrupted in the
background and the worker goes back to the pool only once the CLI has answered
the interrupt; otherwise the process is killed and replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import shutil
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

from claude_agent_sdk import ClaudeAgentOptions
from claude_agent_sdk.types import SystemPromptFile

from ..errors import GatewayError, WorkerTimeout
from ..events import TextDelta, TurnEnd, TurnEvent, TurnRequest
from ..settings import ClaudeSettings
from .pool import Pool
from .turns import StopScanner, TurnTranslator
from .worker import Worker, WorkerKey, assistant_message, user_message

log = logging.getLogger(__name__)

# Set for every CLI unless the operator's configuration says otherwise.
_CLI_ENV_DEFAULTS = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
}
_ABORT_TIMEOUT = 10.0
_INLINE_SYSTEM_PROMPT_BYTES = 32 * 1024


class Engine:
    def __init__(self, settings: ClaudeSettings) -> None:
        self.settings = settings
        self._own_root = settings.work_root is None
        root = settings.work_root or Path(tempfile.mkdtemp(prefix="claude-code-api-"))
        self.work_dir = root / "chat"
        self.pool = Pool(settings, self.options_for)
        self._aborts: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self.pool.start()

    async def close(self) -> None:
        if self._aborts:
            await asyncio.wait(self._aborts, timeout=_ABORT_TIMEOUT)
        await self.pool.close()
        if self._own_root:
            shutil.rmtree(self.work_dir.parent, ignore_errors=True)

    def options_for(self, key: WorkerKey) -> ClaudeAgentOptions:
        env = {**_CLI_ENV_DEFAULTS, **self.settings.env,
               "CLAUDE_CODE_MAX_RETRIES": str(self.settings.max_retries)}
        if key.max_tokens is not None:
            env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] = str(key.max_tokens)
        return ClaudeAgentOptions(
            tools=[],  # chat mode: none of Claude Code's own tools
            system_prompt=self._system_prompt(key.system or ""),
            setting_sources=[],  # no user/project settings, no CLAUDE.md
            strict_mcp_config=True,
            cwd=str(self.work_dir),
            cli_path=self.settings.cli_path,
            env=env,
            include_partial_messages=True,
            model=self.settings.default_model,
            stderr=_log_stderr,
            # Chat turns are not kept as transcripts in the operator's ~/.claude;
            # rewind_conversation works the same without them.
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

    async def stream(self, request: TurnRequest) -> AsyncGenerator[TurnEvent, None]:
        """The turn's events, ending with ``TurnEnd``; errors are raised."""
        worker = await self.pool.acquire(WorkerKey(request.system, request.max_tokens))
        translator = TurnTranslator(self.settings.retry_after_seconds)
        try:
            await self._deliver(worker, request)
            async for event in self._events(worker, translator, request):
                yield event
        finally:
            if translator.done:
                self.pool.release(worker)
            else:
                self._abort(worker)

    async def _deliver(self, worker: Worker, request: TurnRequest) -> None:
        timeout = self.settings.timeout_seconds
        worker.drain()
        await worker.set_model(request.model)
        for message in request.history:
            content = list(message.content)
            if message.role == "assistant":
                await worker.send(assistant_message(content))
            else:
                await worker.send(user_message(content, query=False))
                await worker.until_result(timeout)
        await worker.send(user_message(list(request.prompt)))
        worker.turns += 1

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
                    return  # before the result only when cut short: then interrupted
                yield event

    def _abort(self, worker: Worker) -> None:
        task = asyncio.create_task(self._interrupt(worker))
        self._aborts.add(task)
        task.add_done_callback(self._aborts.discard)

    async def _interrupt(self, worker: Worker) -> None:
        """End a turn the client no longer wants; keep the process if it obeys."""
        try:
            await asyncio.wait_for(worker.interrupt(), _ABORT_TIMEOUT)
            await worker.until_result(_ABORT_TIMEOUT)
        except (GatewayError, Exception) as exc:
            reason = "silent" if isinstance(exc, WorkerTimeout) else type(exc).__name__
            log.warning("worker #%s did not stop cleanly (%s); replacing it", worker.id, reason)
            worker.kill()
            self.pool.release(worker, healthy=False)
            return
        self.pool.release(worker)


def _log_stderr(line: str) -> None:
    log.debug("claude: %s", line.rstrip())


def cli_version(cli_path: str | None) -> str | None:
    """The bundled (or configured) CLI's version, without starting it."""
    if cli_path:
        return None
    with contextlib.suppress(Exception):
        import claude_agent_sdk

        version_file = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude.version"
        return version_file.read_text().strip() or None
    return None
