"""Configuration sources and the command line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from claude_code_api.catalog import Catalog
from claude_code_api.dialects.errors import _param_path
from claude_code_api.settings import load_settings
from tests.conftest import CLI, FORKS, ROOT


def test_environment_names_follow_section_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_CODE__SERVER__PORT", "9123")
    monkeypatch.setenv("CLAUDE_CODE__CLAUDE__TIMEOUT_SECONDS", "42")
    monkeypatch.setenv("CLAUDE_CODE__CLAUDE__MAX_CONCURRENT_SESSIONS", "7")
    monkeypatch.setenv("CLAUDE_CODE__MODELS__ALIASES", '{"gpt-4o": "opus"}')
    settings = load_settings()
    assert settings.server.port == 9123
    assert settings.claude.timeout_seconds == 42
    assert settings.claude.max_concurrent_sessions == 7
    assert settings.models.aliases == {"gpt-4o": "opus"}


def test_toml_file_then_environment_then_flags(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gw.toml"
    config.write_text('[server]\nport = 7000\nhost = "127.0.0.1"\n\n'
                      '[claude]\nmax_queue = 3\nidle_seconds = 9\n\n'
                      '[models.aliases]\n"gpt-4o-mini" = "haiku"\n')
    monkeypatch.setenv("CLAUDE_CODE__CLAUDE__IDLE_SECONDS", "11")
    settings = load_settings(config, server={"port": 7001})
    assert settings.server.port == 7001  # flag wins
    assert settings.claude.idle_seconds == 11  # environment beats the file
    assert settings.claude.max_queue == 3  # from the file
    assert settings.models.aliases == {"gpt-4o-mini": "haiku"}


def test_a_named_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.toml")


def test_loopback_detection() -> None:
    for host, loopback in (("127.0.0.1", True), ("::1", True), ("localhost", True),
                           ("0.0.0.0", False), ("192.168.1.5", False), ("example.com", False)):
        assert load_settings(server={"host": host}).server.is_loopback() is loopback


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command line ``claude-code-api *args``, forked from the fork server (the
    console script itself: test_access and `.ci/run`'s clean install)."""
    return FORKS.run([str(CLI), *args], env or {"PATH": "/usr/bin:/bin"}, ROOT, timeout=60)


def test_serve_refuses_to_bind_beyond_loopback_without_auth() -> None:
    done = run("serve", "--host", "0.0.0.0", "--port", "0")
    assert done.returncode == 2
    assert "loopback" in done.stderr


def test_serve_reports_a_missing_config_file(tmp_path: Path) -> None:
    done = run("serve", "--config", str(tmp_path / "nope.toml"))
    assert done.returncode == 2
    assert "config file not found" in done.stderr


def keys(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run("keys", *args, env={"CLAUDE_CODE__STORE__PATH": str(store),
                                   "PATH": "/usr/bin:/bin"})


def test_keys_are_named_by_id_name_or_the_whole_key(tmp_path: Path) -> None:
    store = tmp_path / "gateway.db"
    token = keys(store, "create", "--name", "laptop").stdout.strip()
    key_id = token.split("-")[2]
    wrong = token[:-1] + ("0" if token[-1] != "0" else "1")
    refused = keys(store, "revoke", wrong)
    assert refused.returncode == 1 and "no active key" in refused.stderr
    assert token not in refused.stderr and wrong not in refused.stderr  # never echoed
    updated = keys(store, "update", token, "--rpm", "7")
    assert updated.returncode == 0, updated.stderr
    assert json.loads(updated.stdout)["rpm"] == 7
    assert json.loads(keys(store, "update", "laptop", "--rpm", "8").stdout)["rpm"] == 8
    assert json.loads(keys(store, "update", key_id, "--rpm", "9").stdout)["rpm"] == 9
    revoked = keys(store, "revoke", token)
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout) | {"id": key_id, "revoked": True} == \
        json.loads(revoked.stdout)


def test_help_lists_the_serve_flags() -> None:
    done = run("serve", "--help")
    assert done.returncode == 0
    for flag in ("--host", "--port", "--config"):
        assert flag in done.stdout


def test_param_paths_follow_openai_style() -> None:
    assert _param_path(["messages", 0, "user", "content"]) == "messages[0].content"
    assert _param_path(["temperature"]) == "temperature"
    assert _param_path(["messages", 2]) == "messages[2]"


def test_catalog_learns_aliases_from_the_cli() -> None:
    catalog = Catalog({"gpt-4o": "sonnet"})
    catalog.learn({"models": [{"value": "default", "resolvedModel": "claude-x"},
                              {"value": "opus", "resolvedModel": "claude-opus-9"}]})
    assert catalog.resolve("opus") == "opus"
    assert catalog.resolve("gpt-4o") == "sonnet"
    assert catalog.resolve("claude-anything") == "claude-anything"
    ids = [e.id for e in catalog.entries()]
    assert ids == ["opus", "claude-opus-9", "gpt-4o"]
