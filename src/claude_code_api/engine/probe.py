"""What ``claude-code-api doctor`` asks of Claude Code: is the CLI there, does a
worker start and answer the control handshake, which credential does it say it
uses, and does one minimal turn reach the upstream.

The probe's one worker is made by the engine itself (``Engine.make_worker``): the
launcher, environment, upstream credential and chat-mode options of the pool's
workers. Two deliberate differences: its answer is capped at a few tokens (as a
request's ``max_tokens`` is, through ``CLAUDE_CODE_MAX_OUTPUT_TOKENS``), and the
CLI's own upstream retries are off, so that a failing upstream shows in about a
second rather than after minutes of retrying.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import subprocess
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import claude_agent_sdk
from claude_agent_sdk import AssistantMessage, ResultMessage, TextBlock
from claude_agent_sdk import Message as SDKMessage

from ..errors import (
    GatewayError,
    UpstreamAuthFailed,
    UpstreamOverloaded,
    UpstreamRateLimited,
    UpstreamRejected,
    WorkerTimeout,
)
from ..events import TurnEnd
from ..settings import ClaudeSettings
from .engine import Engine
from .launch import bundled_cli
from .relay import Shape
from .turns import TurnTranslator
from .worker import Worker, WorkerKey, user_message

PROMPT = "Reply with the single word OK."
MAX_TOKENS = 32
DEFAULT_BASE_URL = "https://api.anthropic.com"
AUTH_VARIABLES = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
# What the CLI's server info says about authentication: kinds and sources only
# (never its email or organization).
_ACCOUNT_FIELDS = ("tokenSource", "apiKeySource", "apiProvider", "subscriptionType")
_KEY = WorkerKey()
LOGIN_HINT = ("log in once with `claude` (then /login), or set ANTHROPIC_API_KEY for the "
              "server, or list keys in claude.credentials")
# The system error code Claude Code puts in its connection errors: "(ECONNREFUSED)".
_NETWORK_CODE = re.compile(r"\((E[A-Z_]{3,}|CERT_[A-Z_]+|UNABLE_TO_[A-Z_]+)\)")


class ProbeError(Exception):
    """A step failed; ``hint`` says what to do about it."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class CliFound:
    path: str
    version: str
    source: str  # "bundled with claude-agent-sdk X" or "claude.cli_path"


@dataclass(frozen=True)
class Handshake:
    seconds: float
    pid: int | None
    version: str | None
    account: dict[str, str]
    credential: str | None  # the configured credential's label, if any


@dataclass
class TurnOutcome:
    seconds: float = 0.0
    model: str = ""
    error: GatewayError | None = None
    status: int | None = None  # the upstream's HTTP status, with an error
    cli_text: str = ""  # the CLI's own words about an error


def find_cli(cli_path: str | None, timeout: float) -> CliFound:
    """The CLI the workers run, and the version it reports (``claude --version``)."""
    if cli_path:
        found = shutil.which(cli_path)
        if found is None:
            what = "is not an executable file" if Path(cli_path).exists() else \
                "does not exist"
            raise ProbeError(f"claude.cli_path {cli_path} {what}",
                             "point claude.cli_path at a claude binary, or remove it to use "
                             "the one bundled with claude-agent-sdk")
        return CliFound(found, _version(found, timeout), "claude.cli_path")
    bundled = bundled_cli()
    sdk = f"claude-agent-sdk {claude_agent_sdk.__version__}"
    if not bundled.is_file():
        raise ProbeError(f"{sdk} has no bundled claude binary ({bundled})",
                         "install the claude-agent-sdk wheel for this platform (it bundles "
                         "the CLI), or set claude.cli_path to a claude binary")
    return CliFound(str(bundled), _version(str(bundled), timeout), f"bundled with {sdk}")


def _version(path: str, timeout: float) -> str:
    hint = f"run `{path} --version` by hand to see why"
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True,
                              errors="replace", timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ProbeError(f"{path} --version did not answer within {timeout:g} s",
                         hint) from None
    except OSError as exc:
        raise ProbeError(f"cannot run {path}: {exc.strerror or exc}",
                         "check that it is a claude binary for this platform") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        said = done.stderr.strip().splitlines()
        raise ProbeError(f"{path} --version failed (exit code {done.returncode})"
                         + (f": {said[-1][:200]}" if said else ""), hint)
    return lines[0].strip()


class Probe:
    """One worker, started and closed by ``doctor``."""

    def __init__(self, settings: ClaudeSettings) -> None:
        # Retries off: see the module docstring.
        self.engine = Engine(settings.model_copy(update={"max_retries": 0}))
        self.worker: Worker | None = None
        self.stderr: deque[str] = deque(maxlen=3)
        options = self.engine.options_for(_KEY)
        # What the CLI's environment will be: the SDK lays the options' over ours.
        self.env = {**os.environ, **options.env}

    @property
    def base_url(self) -> str:
        """The upstream the CLI calls, without any user:password in it."""
        url = self.env.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
        return parts._replace(netloc=netloc, query="", fragment="").geturl()

    @property
    def config_dir(self) -> Path:
        """Where the CLI keeps its login on Linux."""
        configured = self.env.get("CLAUDE_CONFIG_DIR")
        return Path(configured).expanduser() if configured else Path.home() / ".claude"

    def credential_sources(self) -> list[str]:
        """Credentials visible without starting the CLI (kinds and names only)."""
        found = []
        configured = self.engine.credentials.current()
        if configured is not None:
            found.append(f"claude.credentials ({len(self.engine.credentials.items)}, first "
                         f"{configured.label})")
        found += [f"{name} is set" for name in AUTH_VARIABLES
                  if configured is None and self.env.get(name)]
        if (self.config_dir / ".credentials.json").is_file():
            found.append(f"a Claude login in {self.config_dir}")
        return found

    async def handshake(self, timeout: float) -> Handshake:
        self.engine.prepare()
        await self.engine.relay.start()
        worker = self.engine.make_worker(_KEY)
        assert isinstance(worker, Worker)  # the doctor probes the real CLI
        assert worker.lane is not None
        worker.lane.begin(Shape(max_tokens=MAX_TOKENS))
        # Kept to say why, should the CLI exit at once.
        worker.options = dataclasses.replace(worker.options, stderr=self._stderr)
        self.worker = worker
        began = time.monotonic()
        try:
            await worker.start(timeout)
        except TimeoutError:
            raise ProbeError(f"Claude Code did not answer the control handshake within "
                             f"{timeout:g} s", "a busy machine can be this slow: retry with "
                             "a longer --timeout; else run the CLI by hand") from None
        except Exception as exc:
            raise ProbeError(f"Claude Code did not start: {self._why(exc)}",
                             "fix what it says; the cli check above shows which binary "
                             "runs") from None
        info = worker.server_info
        account = info.get("account")
        account = account if isinstance(account, dict) else {}
        version = info.get("claude_code_version")
        return Handshake(
            time.monotonic() - began, worker.pid, version if isinstance(version, str) else None,
            {k: str(account[k]) for k in _ACCOUNT_FIELDS if isinstance(account.get(k), str)},
            configured.label if (configured := self.engine.credentials.current()) else None)

    async def turn(self, timeout: float) -> TurnOutcome:
        """One minimal turn; its error, if any, is in the outcome, not raised."""
        worker = self.worker
        if worker is None or not worker.alive:
            raise ProbeError("not tried: no worker started", "fix the worker check first")
        outcome = TurnOutcome()
        translator = TurnTranslator()
        began = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                await worker.send(user_message([{"type": "text", "text": PROMPT}]))
                while not translator.done:
                    message = await worker.next_message(timeout)
                    _note(message, outcome)
                    if any(isinstance(e, TurnEnd) for e in translator.feed(message)):
                        break  # an answer, even one cut at max_tokens, is enough
        except GatewayError as exc:
            outcome.error = exc
        except TimeoutError:
            outcome.error = WorkerTimeout(f"no answer within {timeout:g} s")
        outcome.seconds = time.monotonic() - began
        outcome.model = translator.model
        return outcome

    async def close(self) -> None:
        if self.worker is not None:
            await self.worker.close()
        await self.engine.close()

    def _stderr(self, line: str) -> None:
        if line.strip():
            self.stderr.append(line.strip()[:300])

    def _why(self, exc: Exception) -> str:
        lines = str(exc).strip().splitlines()
        why = lines[0][:300] if lines else type(exc).__name__
        return f"{why} (stderr: {self.stderr[-1]})" if self.stderr else why


def _note(message: SDKMessage, outcome: TurnOutcome) -> None:
    if isinstance(message, AssistantMessage) and message.error is not None:
        text = "".join(b.text for b in message.content if isinstance(b, TextBlock))
        outcome.cli_text = text.strip()[:300]
    elif isinstance(message, ResultMessage) and message.is_error:
        outcome.status = message.api_error_status


def describe_account(account: dict[str, str]) -> list[str]:
    """The kinds of credential the CLI says it uses, in words."""
    provider = account.get("apiProvider", "firstParty")
    if provider != "firstParty":
        return [f"{provider} (its credentials come from that provider's own setup)"]
    kinds = []
    if "subscriptionType" in account:
        kinds.append(f"a Claude login ({account['subscriptionType']})")
    token = account.get("tokenSource", "none")
    if token == "claude.ai":
        kinds.append("a Claude login")
    elif token != "none":
        kinds.append(f"a token from {token}")
    if "apiKeySource" in account:
        source = account["apiKeySource"]
        kinds.append("the API key of the Claude login" if source == "/login managed key"
                     else f"an API key from {source}")
    return kinds


def explain_failure(outcome: TurnOutcome, where: str, model: str) -> tuple[str, str]:
    """What went wrong with the turn, and what to do: most specific first."""
    error, status = outcome.error, outcome.status
    network = _NETWORK_CODE.search(outcome.cli_text)
    if isinstance(error, UpstreamAuthFailed):
        if "not logged in" in outcome.cli_text.lower():
            return "not logged in: Claude Code sent no credentials", LOGIN_HINT
        if "billing" in error.message:
            return "the Anthropic account has a billing problem", \
                "settle the account's billing, or use another credential"
        return (f"{where} rejected the credentials ({status or 401})",
                "replace the API key or token (ANTHROPIC_API_KEY, claude.credentials), or "
                "log in again with `claude` (/login)")
    if isinstance(error, UpstreamRateLimited):
        return (f"{where} rate-limits these credentials (429)",
                "wait a minute and retry; to spread the load, list several keys in "
                "claude.credentials")
    if network is not None and network.group(1) == "ECONNREFUSED":
        return (f"{where} is unreachable: connection refused",
                "nothing listens at ANTHROPIC_BASE_URL: start that server, correct the URL, "
                "or unset ANTHROPIC_BASE_URL to use the Anthropic API")
    if network is not None:
        return (f"{where} is unreachable ({network.group(1)})",
                "check the host in ANTHROPIC_BASE_URL, this machine's DNS and network, and "
                "any proxy (HTTPS_PROXY)")
    if isinstance(error, UpstreamOverloaded):
        return (f"{where} is overloaded or failing ({status or 'server error'})",
                "usually temporary: retry in a minute")
    if isinstance(error, UpstreamRejected):
        return (f"{where} refused the request ({status})",
                f"check that claude.default_model ({model}) is a model these credentials "
                "may use")
    if isinstance(error, WorkerTimeout):
        return (f"{where} did not answer: {error.message}",
                "check ANTHROPIC_BASE_URL and any proxy; a busy machine may need a longer "
                "--timeout")
    said = error.message if error is not None else "the turn ended without an answer"
    return said, "run `claude -p hi` with the server's environment to see more"
