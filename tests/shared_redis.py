"""The machine's Redis for tests: each test gets a key prefix of its own
(``cca-test-<hex>:``) and deletes exactly the keys under it afterwards (SCAN and
DEL, never FLUSHDB: the Redis may hold other data)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
import redis

REDIS_URL = os.environ.get("CLAUDE_CODE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def drop(prefix: str) -> None:
    """Delete every key under ``prefix``."""
    with redis.Redis.from_url(REDIS_URL) as client:
        batch = list(client.scan_iter(match=prefix + "*", count=500))
        while batch:
            client.delete(*batch[:500])
            batch = batch[500:]


def keys_under(prefix: str) -> list[bytes]:
    with redis.Redis.from_url(REDIS_URL) as client:
        return list(client.scan_iter(match=prefix + "*", count=500))


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2) as client:
            client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"these tests need Redis at {REDIS_URL} (set CLAUDE_CODE_TEST_REDIS_URL; "
                    f"see the README's 'Several replicas'): {exc}")
    prefix = f"cca-test-{secrets.token_hex(6)}:"
    yield prefix
    drop(prefix)
