"""`claude-code-api doctor`, run as a user runs it: a process of its own (forked from the
tests' fork server, which has imported the app: see tests/forkserver.py) with the real
CLI behind it and the fake upstream (or no upstream at all) in front of that."""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply
from tests.conftest import CLI, FORKS, Gateway, free_port

pytestmark = pytest.mark.e2e

KEY = "sk-ant-api03-doctor-" + secrets.token_hex(16)
FIRST = "sk-ant-api03-first-" + secrets.token_hex(16)
SECOND = "sk-ant-oat01-second-" + secrets.token_hex(16)
SECRETS = (KEY, FIRST, SECOND)
NAMES = ["python", "config", "cli", "worker", "credentials", "upstream", "store", "agent",
         "port"]


@dataclass
class Report:
    code: int
    out: str
    seconds: float

    def line(self, name: str) -> str:
        """The line of one check (the mark, then `name: ...`)."""
        found = [line for line in self.out.splitlines() if line[2:].startswith(name + ":")]
        assert len(found) == 1, self.out
        return found[0]

    def marks(self) -> dict[str, str]:
        return {name: self.line(name)[0] for name in NAMES}


def doctor(tmp: Path, base_url: str, *args: str, api_key: str | None = KEY,
           **settings: str) -> Report:
    """`claude-code-api doctor` with the environment a gateway in these tests gets;
    ``settings`` are CLAUDE_CODE__* variables without the prefix."""
    config_dir = tmp / "claude-config"
    config_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLAUDE_CODE__", "ANTHROPIC_", "CLAUDE_CONFIG_DIR"))}
    env.update({"ANTHROPIC_BASE_URL": base_url, "CLAUDE_CONFIG_DIR": str(config_dir),
                "CLAUDE_CODE__CLAUDE__WORK_ROOT": str(tmp / "work"),
                "CLAUDE_CODE__STORE__PATH": str(tmp / "gateway.db")})
    if api_key is not None:
        env["ANTHROPIC_API_KEY"] = api_key
    env.update({f"CLAUDE_CODE__{k.upper()}": v for k, v in settings.items()})
    if "--port" not in args:
        args = (*args, "--port", str(free_port()))
    began = time.monotonic()
    done = FORKS.run([str(CLI), "doctor", *args], env, tmp, timeout=120)
    report = Report(done.returncode, done.stdout, time.monotonic() - began)
    assert done.stderr == ""  # no traceback, no log noise
    assert "Traceback" not in done.stdout
    for secret in SECRETS:
        assert secret not in done.stdout
        assert secret[:-4] not in done.stdout  # at most the last four, as /health shows
    assert not leftovers(tmp), "a CLI started by doctor outlived it"
    return report


def leftovers(tmp: Path) -> list[psutil.Process]:
    """Processes still working in the test's directory (the CLI's cwd is under it)."""
    out = []
    for process in psutil.process_iter():
        try:
            if Path(process.cwd()).is_relative_to(tmp):
                out.append(process)
        except psutil.Error:
            continue
    return out


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_all_checks_pass_against_a_working_upstream(upstream: FakeUpstream,
                                                    tmp_path: Path) -> None:
    upstream.reset()
    report = doctor(tmp_path, upstream.url)
    assert report.code == 0, report.out
    assert report.marks() == {**dict.fromkeys(NAMES, "✓"), "agent": "-"}
    assert report.out.splitlines()[-1] == "all 9 checks passed"
    turns = upstream.message_requests()
    assert len(turns) == 1  # one minimal turn
    assert turns[0].body["max_tokens"] == 32 and turns[0].credential == KEY
    model = turns[0].body["model"]
    assert report.line("upstream").startswith(f"✓ upstream: {model} answered in ")
    assert upstream.url in report.line("upstream")
    assert report.line("credentials") == \
        "✓ credentials: Claude Code uses an API key from ANTHROPIC_API_KEY"
    assert "answered the control handshake" in report.line("worker")
    assert "(bundled with claude-agent-sdk " in report.line("cli")
    assert report.line("store") == f"✓ store: {tmp_path / 'gateway.db'}: writable, " \
        "created just now (schema version 4, 10 tables)"
    assert report.line("agent") == "- agent: skipped: agent mode is off (agent.enabled)"


def test_json_output_and_offline(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reset()
    workspaces = tmp_path / "workspaces"
    report = doctor(tmp_path, upstream.url, "--json", "--offline", agent__enabled="true",
                    agent__workspace_root=str(workspaces))
    assert report.code == 0
    body = json.loads(report.out)
    assert set(body) == {"ok", "checks"} and body["ok"] is True
    assert [c["name"] for c in body["checks"]] == NAMES
    for check in body["checks"]:
        assert set(check) == {"name", "ok", "skipped", "detail", "hint"}
        assert check["ok"] is True and check["hint"] is None
        assert isinstance(check["detail"], str) and check["detail"]
    by_name = {c["name"]: c for c in body["checks"]}
    assert by_name["upstream"] == {"name": "upstream", "ok": True, "skipped": True,
                                   "detail": "--offline", "hint": None}
    assert [c["name"] for c in body["checks"] if c["skipped"]] == ["upstream"]
    assert str(workspaces) in by_name["agent"]["detail"] and workspaces.is_dir()
    assert upstream.requests == []  # offline: nothing went upstream


def test_an_unreachable_upstream_is_named_with_what_to_do(tmp_path: Path) -> None:
    url = closed_port_url()
    report = doctor(tmp_path, url)
    assert report.code == 1
    line = report.line("upstream")
    assert line.startswith(f"✗ upstream: {url} is unreachable: connection refused")
    assert "— nothing listens at ANTHROPIC_BASE_URL" in line
    assert report.marks() == {**dict.fromkeys(NAMES, "✓"), "agent": "-", "upstream": "✗"}
    assert report.out.splitlines()[-1] == "1 of 9 checks failed"


def test_a_rejected_key_says_so(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reset()
    upstream.reject[KEY] = Reply.error(401, "authentication_error", "invalid x-api-key")
    report = doctor(tmp_path, upstream.url)
    assert report.code == 1
    line = report.line("upstream")
    assert line.startswith(f"✗ upstream: {upstream.url} rejected the credentials (401)")
    assert "— replace the API key or token" in line
    assert report.line("credentials").startswith("✓ credentials:")  # present, but refused


def test_no_credentials_at_all(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reset()
    report = doctor(tmp_path, upstream.url, api_key=None)
    assert report.code == 1
    credentials = report.line("credentials")
    assert credentials.startswith("✗ credentials: Claude Code reports no login and no API "
                                  f"key or token (it looked in {tmp_path / 'claude-config'}")
    assert "— log in once with `claude`" in credentials
    assert report.line("upstream").startswith("✗ upstream: not logged in")
    assert upstream.message_requests() == []


def test_configured_credentials_are_named_by_label_only(upstream: FakeUpstream,
                                                        tmp_path: Path) -> None:
    report = doctor(tmp_path, upstream.url, "--offline",
                    claude__credentials=json.dumps([FIRST, SECOND]))
    assert report.code == 0
    assert report.line("credentials") == (
        f"✓ credentials: claude.credentials #1 (api key …{FIRST[-4:]}) (of 2), which "
        "Claude Code uses as an API key from ANTHROPIC_API_KEY")
    assert report.line("upstream") == "- upstream: skipped: --offline"


def test_bad_toml_names_the_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[server]\nport = 8080\n[claude\ndefault_model = "opus"\n')
    report = doctor(tmp_path, closed_port_url(), "--config", str(config))
    assert report.code == 1
    assert report.line("config") == (
        f"✗ config: {config}: not valid TOML: Expected ']' at the end of a table "
        "declaration (at line 3, column 8) — fix the file there (https://toml.io)")
    for name in NAMES[2:]:
        assert report.line(name) == f"✗ {name}: not checked: the settings did not load — " \
            "fix the config check first"


def test_bad_values_name_the_key_and_where_it_came_from(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "local.toml").write_text(
        f'[server]\nport = 70000\n[claude]\ncredentials = ["{FIRST}", " "]\n')
    report = doctor(tmp_path, closed_port_url(), "--port", "8080",
                    claude__max_queue="lots")
    assert report.code == 1
    line = report.line("config")
    assert line.startswith("✗ config: ")
    assert "claude.max_queue in CLAUDE_CODE__CLAUDE__MAX_QUEUE: Input should be a valid " \
        "integer, unable to parse string as an integer (got 'lots')" in line
    assert "claude.credentials.1 in config/local.toml: " in line
    # --port wins over the file, so its 70000 is not what serve would use.
    assert "server.port" not in line


def test_a_misspelt_setting_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("[server]\nprot = 9000\n[agnet]\nenabled = true\n")
    report = doctor(tmp_path, closed_port_url(), "--config", str(config), "--offline")
    assert report.code == 1
    assert report.line("config") == (
        f"✗ config: {config}: unknown setting server.prot, [agnet] (ignored) — check the "
        "spelling against the README's settings table")
    assert report.line("worker").startswith("✓ worker:")  # the rest still ran


def test_unwritable_store_and_agent_workspace(tmp_path: Path) -> None:
    occupied = tmp_path / "occupied"
    occupied.write_text("a file where a directory should be")
    report = doctor(tmp_path, closed_port_url(), "--offline",
                    store__path=str(occupied / "gateway.db"), agent__enabled="true",
                    agent__workspace_root=str(occupied / "workspaces"))
    assert report.code == 1
    assert report.line("store") == (
        f"✗ store: {occupied / 'gateway.db'}: {occupied} is a file, not a directory — point "
        "store.path (CLAUDE_CODE__STORE__PATH) at a writable location, or fix the "
        "permissions")
    assert report.line("agent") == (
        f"✗ agent: agent.workspace_root {occupied / 'workspaces'} is not writable: "
        f"{occupied} is a file, not a directory — point agent.workspace_root at a "
        "directory this user can write, or turn agent.enabled off")
    assert occupied.read_text() == "a file where a directory should be"


def test_an_existing_store_is_opened_and_migrated_not_replaced(tmp_path: Path) -> None:
    import sqlite3

    store = tmp_path / "old.db"
    db = sqlite3.connect(store)
    db.execute("CREATE TABLE api_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, "
               "secret_hash TEXT NOT NULL, rpm INTEGER, concurrency INTEGER, "
               "budget_usd REAL, models TEXT, spent_usd REAL NOT NULL DEFAULT 0, "
               "created_at REAL NOT NULL, last_used_at REAL, revoked_at REAL)")
    db.execute("INSERT INTO api_keys (id, name, secret_hash, created_at) "
               "VALUES ('abc', 'old', 'h', 1)")
    db.commit()
    db.close()
    report = doctor(tmp_path, closed_port_url(), "--offline", store__path=str(store))
    line = report.line("store")
    assert line.startswith(f"✓ store: {store}: writable, schema updated just now from "
                           "version 0 to 4 (added ")
    assert "column api_keys.agent, column api_keys.max_turns" in line
    assert "table conversations" in line
    again = doctor(tmp_path, closed_port_url(), "--offline", store__path=str(store))
    assert again.line("store") == f"✓ store: {store}: writable, schema version 4, current " \
        "(10 tables)"
    db = sqlite3.connect(store)
    assert db.execute("SELECT name FROM api_keys").fetchall() == [("old",)]
    db.close()


def test_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        report = doctor(tmp_path, closed_port_url(), "--offline", "--port", str(port))
    assert report.code == 1
    assert report.line("port") == f"✗ port: 127.0.0.1:{port} is taken by another " \
        "program — stop that program, or serve on another --port"


def test_a_port_taken_by_a_running_gateway_says_so(gateway: Gateway, tmp_path: Path) -> None:
    port = gateway.url.rsplit(":", 1)[1]
    report = doctor(tmp_path, closed_port_url(), "--offline", "--port", port)
    assert report.code == 1
    version = gateway.health()["version"]
    assert report.line("port") == (
        f"✗ port: 127.0.0.1:{port} is taken: a claude-code-api {version} (status ok) "
        "already answers there — it is already running: use it, stop it, or serve this "
        "one on another --port")


def test_a_cli_path_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "bin" / "claude"
    report = doctor(tmp_path, closed_port_url(), "--offline", claude__cli_path=str(missing))
    assert report.code == 1
    assert report.line("cli") == (
        f"✗ cli: claude.cli_path {missing} does not exist — point claude.cli_path at a "
        "claude binary, or remove it to use the one bundled with claude-agent-sdk")
    assert report.line("worker").startswith(
        f"✗ worker: Claude Code did not start: Claude Code not found at: {missing}")
    # Without a CLI to ask, what the environment holds is reported, and said to be so.
    assert report.line("credentials") == "✓ credentials: ANTHROPIC_API_KEY is set (not " \
        "confirmed: Claude Code did not start)"


def test_a_cli_that_never_answers_is_given_up_on_in_bounded_time(tmp_path: Path) -> None:
    hung = tmp_path / "claude"
    hung.write_text('#!/bin/sh\n[ "$1" = "--version" ] && echo "9.9.9 (hung)" && exit 0\n'
                    "exec sleep 120\n")
    hung.chmod(0o755)
    report = doctor(tmp_path, closed_port_url(), "--timeout", "1",
                    claude__cli_path=str(hung))
    assert report.code == 1
    assert report.line("cli") == f"✓ cli: 9.9.9 (hung) at {hung} (claude.cli_path)"
    assert report.line("worker").startswith(
        "✗ worker: Claude Code did not answer the control handshake within 1 s — ")
    assert report.line("upstream") == "✗ upstream: not tried: no worker started — fix the " \
        "worker check first"
    # The SDK alone would wait 60 s for the handshake; stopping the CLI takes up to 5 s.
    assert report.seconds < 30

