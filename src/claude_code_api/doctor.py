"""``claude-code-api doctor``: what a working gateway needs, one line per check.

    ✓ name: what was found
    ✗ name: what is wrong — what to do
    - name: skipped: why (counts as passed)

Every check runs behind ``_guarded``: a check that crashes is a ✗ with the
exception's type and message, never a traceback. Secrets (upstream keys and tokens)
are never printed: credentials are named by kind and source, a configured one by
the label /health shows, and every line is scrubbed of the known secrets before it
is printed, in case an error message quotes one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import io
import json
import logging
import os
import socket
import sqlite3
import sys
import tempfile
import tomllib
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from .agent import load_mcp_servers
from .engine.probe import (
    AUTH_VARIABLES,
    LOGIN_HINT,
    Handshake,
    Probe,
    ProbeError,
    describe_account,
    explain_failure,
    find_cli,
)
from .settings import DEFAULT_CONFIG_FILE, Settings, load_settings

NAMES = ("python", "config", "cli", "worker", "credentials", "upstream", "store", "agent",
         "port")
_HEALTH_TIMEOUT = 3.0
_MIN_PYTHON = (3, 11)
_SECRET_FIELDS = (("claude", "credentials"), ("claude", "env"))


@dataclass
class Check:
    name: str
    ok: bool
    skipped: bool
    detail: str
    hint: str | None = None  # what to do, when not ok


def passed(name: str, detail: str) -> Check:
    return Check(name, True, False, detail)


def failed(name: str, detail: str, hint: str) -> Check:
    return Check(name, False, False, detail, hint)


def skipped(name: str, detail: str) -> Check:
    return Check(name, True, True, detail)


def _crashed(name: str, exc: BaseException) -> Check:
    return failed(name, f"the check itself failed: {type(exc).__name__}: {exc}",
                  "report this line as a bug in claude-code-api doctor")


def _guarded(name: str, check: Callable[[], Check]) -> Check:
    try:
        return check()
    except Exception as exc:
        return _crashed(name, exc)


# -- running and printing ------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    """Run every check, print them, and return the exit status (0: all passed)."""
    # Warnings the engine and the SDK log on their way would garble the report.
    logging.getLogger().addHandler(logging.NullHandler())
    try:
        checks, settings = diagnose(args)
    except KeyboardInterrupt:
        print("claude-code-api doctor: interrupted", file=sys.stderr)
        return 130
    _tidy(checks, _secrets(settings))
    ok = all(c.ok for c in checks)
    try:
        if args.json:
            print(json.dumps({"ok": ok, "checks": [asdict(c) for c in checks]}, indent=2))
        else:
            _print(checks)
        sys.stdout.flush()
    except BrokenPipeError:  # piped into `head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0 if ok else 1


def diagnose(args: argparse.Namespace) -> tuple[list[Check], Settings | None]:
    """Every check in order, and the settings they ran with (None: they did not load)."""
    checks = [_guarded("python", check_python)]
    settings: Settings | None = None
    try:
        settings, config = check_config(args)
    except Exception as exc:
        config = _crashed("config", exc)
    checks.append(config)
    if settings is None:
        return checks + [failed(name, "not checked: the settings did not load",
                                "fix the config check first") for name in NAMES[2:]], None
    timeout = args.timeout
    checks.append(_guarded("cli", lambda: check_cli(settings, timeout)))
    try:
        checks += asyncio.run(_claude(settings, args.offline, timeout))
    except Exception as exc:
        checks += [_crashed(name, exc) for name in ("worker", "credentials", "upstream")]
    checks.append(_guarded("store", lambda: check_store(settings.store.target())))
    checks.append(_guarded("agent", lambda: check_agent(settings)))
    checks.append(_guarded("port", lambda: check_port(settings.server.host,
                                                      settings.server.port)))
    return checks, settings


def _print(checks: list[Check]) -> None:
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")
    try:
        "✓✗—".encode(sys.stdout.encoding or "ascii")
        good, bad, dash = "✓", "✗", "—"
    except (UnicodeEncodeError, LookupError):
        good, bad, dash = "+", "x", "--"
    for check in checks:
        if check.skipped:
            print(f"- {check.name}: skipped: {check.detail}")
        elif check.ok:
            print(f"{good} {check.name}: {check.detail}")
        else:
            print(f"{bad} {check.name}: {check.detail} {dash} {check.hint}")
    failures = sum(not c.ok for c in checks)
    print(f"{failures} of {len(checks)} checks failed" if failures
          else f"all {len(checks)} checks passed")


def _secrets(settings: Settings | None) -> set[str]:
    """Every upstream secret this process can see, to keep out of the output."""
    found = {os.environ.get(name, "") for name in AUTH_VARIABLES}
    if settings is not None:
        found |= {s.get_secret_value() for s in settings.claude.credentials}
        found |= {settings.claude.env.get(name, "") for name in AUTH_VARIABLES}
        store = urlsplit(settings.store.url or "")
        found.add(store.password or "")  # a PostgreSQL password in store.url
    return {s for s in found if len(s) >= 8}


def _tidy(checks: list[Check], secrets: set[str]) -> None:
    """Known secrets out of every line, and every line one line (an exception's text
    may hold several)."""
    def clean(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "[secret]")
        return " ".join(text.split())

    for check in checks:
        check.detail = clean(check.detail)
        check.hint = clean(check.hint) if check.hint is not None else None


# -- python and config ----------------------------------------------------------------
def check_python(running: tuple[int, ...] = sys.version_info[:3]) -> Check:
    version = ".".join(str(part) for part in running[:3])
    if running[:2] < _MIN_PYTHON:
        return failed("python", f"{version} is too old",
                      "claude-code-api needs Python 3.11 or newer")
    return passed("python", f"{version} ({sys.executable})")


def check_config(args: argparse.Namespace) -> tuple[Settings | None, Check]:
    """The settings as `serve` would load them, and what is wrong with them if anything."""
    path: Path | None = args.config
    if path is None and DEFAULT_CONFIG_FILE.is_file():
        path = DEFAULT_CONFIG_FILE
    data: dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            return None, failed("config", f"config file not found: {path}",
                                "check the path given to --config")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
            return None, failed("config", f"{path}: not valid TOML: {exc}",
                                "fix the file there (https://toml.io)")
    server = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        settings = load_settings(args.config, **({"server": server} if server else {}))
    except ValidationError as exc:
        problems = [_problem(e, path, data, server) for e in exc.errors()]
        return None, failed("config", "; ".join(problems),
                            "fix the value (the README's settings table lists each one)")
    except ValueError as exc:  # pydantic-settings: a variable that is not valid JSON
        return None, failed("config", str(exc), "CLAUDE_CODE__* variables for lists and "
                            "tables hold JSON, e.g. CLAUDE_CODE__CLAUDE__ENV='{\"A\": \"b\"}'")
    unknown = _unknown_keys(data)
    if unknown:
        return settings, failed("config", f"{path}: unknown setting "
                                f"{', '.join(unknown)} (ignored)",
                                "check the spelling against the README's settings table")
    where = str(path) if path is not None else \
        f"no config file ({DEFAULT_CONFIG_FILE} absent): environment and defaults"
    return settings, passed("config", f"{where}: valid" if path is not None else where)


def _problem(error: Any, path: Path | None, data: dict[str, Any],
             flags: dict[str, Any]) -> str:
    loc = tuple(str(part) for part in error["loc"])
    key = ".".join(loc)
    variable = "CLAUDE_CODE__" + "__".join(p.upper() for p in loc[:2])
    if loc[:1] == ("server",) and len(loc) > 1 and loc[1] in flags:
        source = f"--{loc[1]}"
    elif variable in os.environ:
        source = variable
    elif len(loc) > 1 and isinstance(data.get(loc[0]), dict) and loc[1] in data[loc[0]]:
        source = str(path)
    else:
        source = "settings"
    value = error.get("input")
    shown = loc[:2] not in _SECRET_FIELDS and (
        isinstance(value, int | float | bool) or (isinstance(value, str) and len(value) <= 40))
    got = f" (got {value!r})" if shown else ""
    return f"{key} in {source}: {error['msg']}{got}"


def _unknown_keys(data: dict[str, Any]) -> list[str]:
    """Sections and keys the server would silently ignore (typos, mostly)."""
    unknown = []
    for section, table in data.items():
        field = Settings.model_fields.get(section)
        if field is None:
            unknown.append(f"[{section}]")
            continue
        model = field.annotation
        if isinstance(table, dict) and isinstance(model, type) and \
                issubclass(model, BaseModel):
            unknown += [f"{section}.{key}" for key in table if key not in model.model_fields]
    return unknown


# -- Claude Code: the CLI, a worker, credentials, the upstream ----------------------
def check_cli(settings: Settings, timeout: float) -> Check:
    try:
        cli = find_cli(settings.claude.cli_path, min(timeout, 15.0))
    except ProbeError as exc:
        return failed("cli", exc.message, exc.hint)
    return passed("cli", f"{cli.version} at {cli.path} ({cli.source})")


async def _claude(settings: Settings, offline: bool, timeout: float) -> list[Check]:
    probe = Probe(settings.claude)
    try:
        return await _with_probe(probe, settings, offline, timeout)
    finally:
        with contextlib.suppress(Exception):
            await probe.close()


async def _with_probe(probe: Probe, settings: Settings, offline: bool,
                      timeout: float) -> list[Check]:
    shake = None
    try:
        shake = await probe.handshake(timeout)
        worker = passed("worker", f"Claude Code {shake.version or '?'} (pid {shake.pid}) "
                        f"answered the control handshake in {shake.seconds:.1f} s")
    except ProbeError as exc:
        worker = failed("worker", exc.message, exc.hint)
    except Exception as exc:
        worker = _crashed("worker", exc)
    credentials = _guarded("credentials", lambda: check_credentials(probe, shake))
    if offline:
        upstream = skipped("upstream", "--offline")
    elif shake is None:
        upstream = failed("upstream", "not tried: no worker started",
                          "fix the worker check first")
    else:
        upstream = await _async_guarded("upstream", lambda: check_upstream(probe, settings,
                                                                           timeout))
    return [worker, credentials, upstream]


async def _async_guarded(name: str, check: Callable[[], Awaitable[Check]]) -> Check:
    try:
        return await check()
    except Exception as exc:
        return _crashed(name, exc)


def check_credentials(probe: Probe, shake: Handshake | None) -> Check:
    if shake is None:
        found = probe.credential_sources()
        if found:
            return passed("credentials", "; ".join(found) +
                          " (not confirmed: Claude Code did not start)")
        return failed("credentials", "none found: no claude.credentials, no "
                      "ANTHROPIC_API_KEY/ANTHROPIC_AUTH_TOKEN/CLAUDE_CODE_OAUTH_TOKEN, no "
                      f"login in {probe.config_dir} (a macOS keychain login cannot be seen "
                      "without Claude Code)", LOGIN_HINT)
    kinds = describe_account(shake.account)
    if not kinds:
        return failed("credentials", "Claude Code reports no login and no API key or token "
                      f"(it looked in {probe.config_dir} and its environment)", LOGIN_HINT)
    seen = ", ".join(kinds)
    if shake.credential is not None:
        count = len(probe.engine.credentials.items)
        return passed("credentials", f"claude.credentials {shake.credential} (of {count}), "
                      f"which Claude Code uses as {seen}")
    return passed("credentials", f"Claude Code uses {seen}")


async def check_upstream(probe: Probe, settings: Settings, timeout: float) -> Check:
    outcome = await probe.turn(timeout)
    where = probe.base_url
    if outcome.error is None:
        model = outcome.model or settings.claude.default_model
        return passed("upstream", f"{model} answered in {outcome.seconds:.1f} s ({where})")
    what, hint = explain_failure(outcome, where, settings.claude.default_model)
    said = f" (Claude Code said: {outcome.cli_text})" if outcome.cli_text else ""
    return failed("upstream", what + said, hint)


# -- files and the port --------------------------------------------------------------
def check_store(target: Path | str, pool_size: int = 2) -> Check:
    """Open the store as the server does (``target``: store.url or store.path),
    migrating it, and say at which schema version it is."""
    from .store.database import StoreError, is_postgres, masked, sqlite_path

    text = str(target)
    if not is_postgres(text) and sqlite_path(text) == ":memory:":
        return passed("store", "in memory (:memory:): nothing is kept across restarts")
    path = None if is_postgres(text) else Path(sqlite_path(text))
    where = masked(text) if path is None else str(path)
    try:
        if path is not None:
            _require_writable(path)
        change = _open_stores(text, pool_size)
    except (OSError, sqlite3.Error, StoreError) as exc:
        if path is None:
            return failed("store", str(exc) if isinstance(exc, StoreError) else
                          f"{where}: {exc}", "check store.url (CLAUDE_CODE__STORE__URL): "
                          "is PostgreSQL running there, does the database exist, may this "
                          "user create tables in it?")
        return failed("store", f"{path}: {_os_message(exc, path)}",
                      "point store.path (CLAUDE_CODE__STORE__PATH) at a writable location, "
                      "or fix the permissions")
    return passed("store", f"{where}: writable, {change}")


def _open_stores(target: str, pool_size: int) -> str:
    """Open the store as the server does (creating or migrating it), prove that it can
    be written, and say what opening it changed. Nothing is ever removed."""
    from .store import migrations, open_database

    db = open_database(target, pool_size=pool_size, migrate=False)
    try:
        before_tables = db.tables()
        before = migrations.version(db)
        after_version = migrations.migrate(db)[1]
        with db.transaction() as tx:  # a write: refused on a read-only store
            tx.run("UPDATE schema_version SET name = name WHERE version = ?",
                   (after_version,))
        after = db.tables()
    finally:
        db.close()
    tables = f"{len(after)} tables"
    if not before_tables:
        return f"created just now (schema version {after_version}, {tables})"
    if before == after_version:
        return f"schema version {after_version}, current ({tables})"
    added = [f"table {t}" for t in after if t not in before_tables]
    added += [f"column {t}.{c}" for t in after if t in before_tables
              for c in after[t] - before_tables[t]]
    return (f"schema updated just now from version {before} to {after_version} "
            f"(added {', '.join(sorted(added))})")


def _require_writable(path: Path) -> None:
    """Say who cannot write where SQLite would only say "unable to open database file":
    the file itself, and the directory that gets its -wal and -shm files (or the
    nearest one that exists, where the rest will be made)."""
    directory = next((p for p in path.parents if p.exists()), None)
    for target, mode in ((path, os.W_OK), (directory, os.W_OK | os.X_OK)):
        if target is not None and target.exists() and \
                (target.is_dir() or target == path) and not os.access(target, mode):
            raise PermissionError(errno.EACCES, "not writable by this user", str(target))


def check_agent(settings: Settings) -> Check:
    agent = settings.agent
    if not agent.enabled:
        return skipped("agent", "agent mode is off (agent.enabled)")
    try:
        load_mcp_servers(settings)
    except ValueError as exc:
        return failed("agent", str(exc), "fix mcp.config_file, or turn mcp.enabled off")
    setting = "agent.project_dir" if agent.project_dir is not None else \
        "agent.workspace_root"
    where = Path(agent.project_dir or agent.workspace_root)
    try:
        where.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=where, prefix=".doctor-"):
            pass
    except OSError as exc:
        return failed("agent", f"{setting} {where} is not writable: "
                      f"{_os_message(exc, where)}",
                      f"point {setting} at a directory this user can write, or turn "
                      "agent.enabled off")
    return passed("agent", f"{setting} {where} writable; tools: {', '.join(agent.tools)}")


def check_port(host: str, port: int) -> Check:
    if port == 0:
        return passed("port", f"{host}:0: the system picks a free port")
    try:
        family, kind, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        return failed("port", f"server.host {host!r} does not resolve: {exc.strerror}",
                      "use an IP address or a name this machine resolves")
    with socket.socket(family, kind) as sock:
        # As uvicorn binds: a connection lingering in TIME_WAIT does not block it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return _taken(host, port)
            return failed("port", f"cannot listen on {host}:{port}: {_os_message(exc)}",
                          "use an address of this machine (--host) and a port above 1023 "
                          "(--port)")
    return passed("port", f"{host}:{port} is free")


def _taken(host: str, port: int) -> Check:
    ours = _gateway_at(host, port)
    if ours is not None:
        return failed("port", f"{host}:{port} is taken: a claude-code-api {ours} already "
                      "answers there", "it is already running: use it, stop it, or serve "
                      "this one on another --port")
    return failed("port", f"{host}:{port} is taken by another program",
                  "stop that program, or serve on another --port")


def _gateway_at(host: str, port: int) -> str | None:
    """The version of the claude-code-api answering GET /health there, if one does."""
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    netloc = f"[{target}]" if ":" in target else target
    try:
        with urllib.request.urlopen(f"http://{netloc}:{port}/health",
                                    timeout=_HEALTH_TIMEOUT) as response:
            body = json.loads(response.read(1 << 20))
    except (OSError, ValueError):
        return None
    if isinstance(body, dict) and "pool" in body and isinstance(body.get("version"), str):
        return f"{body['version']} (status {body.get('status')})"
    return None


def _os_message(exc: BaseException, path: Path | None = None) -> str:
    """An OS error in words, naming the file in the way when a directory cannot be
    made because a file has its name."""
    if isinstance(exc, OSError) and exc.errno in (errno.EEXIST, errno.ENOTDIR) and path:
        for parent in [*reversed(path.parents), path]:
            if parent.exists() and not parent.is_dir():
                return f"{parent} is a file, not a directory"
    if isinstance(exc, OSError) and exc.strerror:
        name = f" ({exc.filename})" if exc.filename else ""
        return exc.strerror + name
    return str(exc) or type(exc).__name__
