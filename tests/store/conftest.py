"""Every store test runs twice: on a SQLite file and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_code_api.store import open_database
from claude_code_api.store.database import Database
from tests.postgres import new_schema, temporary_database


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty store's URL (PostgreSQL: a schema of the test's own)."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'gateway.db'}"
    return new_schema(request.getfixturevalue("postgres_url"))


@pytest.fixture
def db(target: str) -> Iterator[Database]:
    database = open_database(target, pool_size=4)
    yield database
    database.close()
