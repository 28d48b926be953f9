"""How a worker's CLI is started: its options, its environment, the launcher script.

Every CLI talks to the upstream through its lane of the relay (``ANTHROPIC_BASE_URL``,
set by the engine), holds a stand-in of the credential in use (the relay puts the real
one on each call), and starts with ``SYSTEM_PLACEHOLDER`` as its system prompt, which
the relay replaces with each turn's own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
from pathlib import Path
from typing import Any

from claude_agent_sdk import ClaudeAgentOptions

from ..settings import ClaudeSettings
from .credentials import Credentials
from .permissions import AgentKey, Permissions
from .protocol import WorkerKey
from .relay import SYSTEM_PLACEHOLDER

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
    # The CLI's runtime (Bun) collects garbage on a timer while idle: an idle worker
    # spent 7.7 ms of CPU a second (3 % of a core for a pool of four, all day). Without
    # the timer, 0.8 ms; garbage waits for the next turn's allocations, which collect
    # as before (RSS after 300 turns: 291 vs 296 MB; idle, about 15 MB more).
    "BUN_GC_TIMER_DISABLE": "1",
}
_OWN_PREFIX = "CLAUDE_CODE__"  # the gateway's settings in its environment


class Launch:
    def __init__(self, settings: ClaudeSettings, credentials: Credentials, work_dir: Path,
                 line_bytes: int | None = None) -> None:
        self.settings = settings
        self.credentials = credentials
        self.work_dir = work_dir  # chat mode's empty private working directory
        self.line_bytes = line_bytes  # the SDK's read buffer; None: its own 1 MiB
        self.launcher: str | None = None

    def prepare(self) -> None:
        """The CLI's working directory and launcher, which every worker needs."""
        self.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.launcher = _launcher(self.work_dir.parent, self.settings.cli_path)

    def options(self, key: WorkerKey,
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
        # Both modes: no user/project settings or CLAUDE.md, only the MCP servers given,
        # partial messages streamed, and no transcripts in the operator's ~/.claude
        # (rewind_conversation works the same without them).
        common: dict[str, Any] = {
            "setting_sources": [], "strict_mcp_config": True,
            "cli_path": self.launcher or self.settings.cli_path, "env": env,
            "include_partial_messages": True, "model": self.settings.default_model,
            "stderr": _log_stderr, "max_buffer_size": self.line_bytes,
            "extra_args": {"no-session-persistence": None}}
        if key.agent is not None and permissions is not None:
            return self._agent_options(key.agent, permissions, common)
        return ClaudeAgentOptions(
            tools=[],  # chat mode: none of Claude Code's own tools
            system_prompt=SYSTEM_PLACEHOLDER,
            mcp_servers={},
            cwd=str(self.work_dir),
            **common,
        )

    def _agent_options(self, agent: AgentKey, permissions: Permissions,
                       common: dict[str, Any]) -> ClaudeAgentOptions:
        """Claude Code as itself: its system prompt (the client's appended), its tools
        in the conversation's workspace, MCP servers, every call through the policy."""
        servers: dict[str, Any] = json.loads(agent.mcp_servers) if agent.mcp_servers else {}
        prompt: dict[str, Any] = {"type": "preset", "preset": "claude_code",
                                  "append": SYSTEM_PLACEHOLDER}
        return ClaudeAgentOptions(
            tools=list(agent.tools),
            disallowed_tools=list(agent.disallowed),
            system_prompt=prompt,  # type: ignore[arg-type]
            mcp_servers=servers,
            permission_mode=agent.permission_mode,  # type: ignore[arg-type]
            can_use_tool=permissions.can_use_tool,
            hooks=permissions.hooks(),
            cwd=agent.workspace,
            add_dirs=list(agent.extra_dirs),
            max_turns=agent.max_turns,
            max_budget_usd=agent.max_budget_usd,
            **common,
        )

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
