"""Admin keys: the flag the console's admin API checks, kept with the key, and added
to a store made before it existed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from claude_code_api.access.keys import KeyStore
from claude_code_api.cli import main

# The api_keys table as the first releases made it (before agent, max_turns, admin).
_OLD_SCHEMA = """
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, secret_hash TEXT NOT NULL, rpm INTEGER,
    concurrency INTEGER, budget_usd REAL, models TEXT, spent_usd REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, last_used_at REAL, revoked_at REAL);
INSERT INTO api_keys (id, name, secret_hash, created_at)
    VALUES ('0123456789ab', 'old', 'x', 1700000000);
"""


def test_admin_is_stored_with_the_key_and_can_change(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.db")
    ops, token = store.create("ops", admin=True)
    app, _ = store.create("app")
    assert ops.admin and not app.admin
    found = store.authenticate(token)
    assert found is not None and found.admin and found.summary()["admin"] is True
    store.update("app", admin=True)
    store.update("ops", admin=False)
    assert store.find("app").admin and not store.find("ops").admin  # type: ignore[union-attr]
    store.update("app", rpm=5)  # other changes leave it alone
    assert store.find("app").admin  # type: ignore[union-attr]
    store.close()


def test_a_store_made_before_admin_keys_gets_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(_OLD_SCHEMA)
    store = KeyStore(path)
    old = store.find("old")
    assert old is not None and old.admin is False
    store.update("old", admin=True)
    assert store.find("old").admin  # type: ignore[union-attr]
    store.close()


def test_keys_create_and_update_admin_from_the_command_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLAUDE_CODE__STORE__PATH", str(tmp_path / "gateway.db"))
    assert main(["keys", "create", "--name", "ops", "--admin"]) == 0
    assert main(["keys", "create", "--name", "app"]) == 0
    capsys.readouterr()
    assert main(["keys", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    admin = header.index("admin")
    rows = {line.split()[1]: line.split()[admin] for line in lines[1:]}
    assert rows == {"ops": "True", "app": "False"}
    assert main(["keys", "update", "app", "--admin"]) == 0
    assert '"admin": true' in capsys.readouterr().out
    assert main(["keys", "update", "ops", "--no-admin"]) == 0
    assert '"admin": false' in capsys.readouterr().out
