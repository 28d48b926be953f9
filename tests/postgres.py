"""A PostgreSQL database of a test run's own, made and dropped by the run.

The server is the one at ``CCA_TEST_POSTGRES_URL`` (default: this project's
machines, ``postgresql://postgres@127.0.0.1:5432/postgres``, trust auth); the URL
names a database to connect to for ``CREATE DATABASE``. Each run makes
``cca_test_<random hex>``, gives tests a schema of their own in it, and drops it
at the end: nothing else on the server is touched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

ADMIN_URL = os.environ.get("CCA_TEST_POSTGRES_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")


def _with_database(url: str, name: str, query: str = "") -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name, query=query))


@contextlib.contextmanager
def temporary_database() -> Iterator[str]:
    """The URL of a new, empty database, dropped (with its connections) afterwards."""
    name = "cca_test_" + secrets.token_hex(6)
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise RuntimeError(f"these tests need PostgreSQL at {ADMIN_URL} (set "
                           f"CCA_TEST_POSTGRES_URL; see the README): {exc}") from exc
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_database(ADMIN_URL, name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                          .format(sql.Identifier(name)))


def new_schema(url: str) -> str:
    """A fresh schema in the database at ``url``, and the URL whose connections use it."""
    schema = "s_" + secrets.token_hex(6)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query=urlencode({"options": f"-csearch_path={schema}"})))
