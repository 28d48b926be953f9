"""Pure parts of the access layer: keys, limits, cache, masking."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from claude_code_api.access.budgets import Budgets
from claude_code_api.access.cache import MemoryCache, request_key
from claude_code_api.access.keys import ApiKey, KeyStore
from claude_code_api.access.limits import RateLimiter, duration
from claude_code_api.access.middleware import AccessMiddleware
from claude_code_api.errors import BudgetExceeded
from claude_code_api.events import Usage
from claude_code_api.logs import JsonFormatter, mask
from claude_code_api.metrics import Metrics
from claude_code_api.settings import CacheSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_keys_are_hashed_and_checked(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.db")
    key, token = store.create("ci", rpm=5, models=["haiku"])
    assert store.authenticate(token) == store.get(key.id)
    assert store.authenticate(token[:-1] + ("0" if token[-1] != "0" else "1")) is None
    assert store.authenticate(token.replace(key.id, "0" * 12)) is None
    assert store.authenticate("sk-ant-api03-something") is None
    assert token.rsplit("-", 1)[1].encode() not in (tmp_path / "keys.db").read_bytes()
    revoked = store.revoke("ci")
    assert revoked is not None and not revoked.active
    assert store.authenticate(token) is None
    assert not store.any_active()
    store.close()


def test_ledger_sums_per_key_model_and_day(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.db")
    key, _ = store.create("team", budget_usd=0.05)
    store.charge(key.id, "claude-sonnet", Usage(10, 5, 100, 0), 0.02)
    store.charge(key.id, "claude-sonnet", Usage(1, 1), 0.04)
    store.charge(key.id, "claude-sonnet", Usage(), 0.0, cached=True)
    (row,) = store.usage(key.id)
    assert (row["requests"], row["cached_requests"], row["input_tokens"], row["output_tokens"],
            row["cache_read_tokens"]) == (2, 1, 11, 6, 100)
    assert row["cost_usd"] == pytest.approx(0.06)
    charged = store.get(key.id)
    assert charged is not None and charged.over_budget()
    reset = store.update("team", reset_spent=True, budget_usd=1.0)
    assert reset is not None and reset.spent_usd == 0 and reset.budget_usd == 1.0
    store.close()


async def test_rpm_window_slides() -> None:
    clock = Clock()
    limiter = RateLimiter(60.0, clock)
    key = ApiKey("k1", "k", rpm=2)
    first = await limiter.acquire(key)
    assert first.allowed and first.headers()["x-ratelimit-remaining-requests"] == "1"
    await limiter.release(key)
    clock.now += 30
    assert (await limiter.acquire(key)).allowed
    await limiter.release(key)
    refused = await limiter.acquire(key)
    assert not refused.allowed and refused.reason == "rpm" and refused.retry_after == 30
    clock.now += 30.5  # the first request left the window
    assert (await limiter.acquire(key)).allowed


async def test_concurrency_counts_until_release() -> None:
    limiter = RateLimiter(60.0, Clock())
    key = ApiKey("k2", "k", concurrency=1)
    assert (await limiter.acquire(key)).allowed
    refused = await limiter.acquire(key)
    assert (refused.allowed, refused.reason, refused.retry_after) == (False, "concurrency", 1)
    assert refused.headers() == {}  # no rpm limit, so no x-ratelimit-* numbers
    await limiter.release(key)
    assert (await limiter.acquire(key)).allowed


def test_openai_reset_durations() -> None:
    assert [duration(s) for s in (0, 0.5, 1, 59.2, 60, 361)] == \
        ["0s", "0.5s", "1s", "1m0s", "1m0s", "6m1s"]


def test_cache_key_is_canonical_and_scoped() -> None:
    a = request_key("/v1/chat/completions", "k1", None, b'{"model":"x","n":1}')
    assert a == request_key("/v1/chat/completions", "k1", None, b'{ "n": 1, "model": "x" }')
    assert a != request_key("/v1/chat/completions", "k2", None, b'{"model":"x","n":1}')
    assert a != request_key("/v1/responses", "k1", None, b'{"model":"x","n":1}')
    assert a != request_key("/v1/chat/completions", "k1", "conv", b'{"model":"x","n":1}')
    assert request_key("/v1/chat/completions", "k1", None, b"[1]") is None
    assert request_key("/v1/chat/completions", "k1", None, b"{nope") is None


async def test_cache_ttl_and_lru() -> None:
    clock = Clock()
    cache = MemoryCache(CacheSettings(enabled=True, ttl_seconds=10, max_entries=2,
                                      max_entry_bytes=5), clock)
    assert await cache.put("a", b"1", "application/json")
    assert not await cache.put("big", b"123456", "application/json")
    await cache.put("b", b"2", "application/json")
    assert await cache.get("a") is not None  # a is now the most recent
    await cache.put("c", b"3", "application/json")
    assert await cache.get("b") is None and await cache.get("a") is not None
    clock.now += 11
    assert await cache.get("a") is None and await cache.entries() == 0  # c expired too
    assert (cache.hits, cache.misses) == (2, 2)


def test_secrets_are_masked_in_log_lines() -> None:
    token = "sk-cca-0123456789ab-" + "f" * 48
    line = mask(f"got {token} and Bearer abc.def and sk-ant-api03-XYZ_secret-1 x-api-key: s3")
    assert "f" * 48 not in line and "abc.def" not in line and "XYZ_secret" not in line
    assert "s3" not in line and "sk-cca-0123456789ab-***" in line
    record = logging.makeLogRecord({"msg": "hello %s", "args": ("world",), "name": "t",
                                    "levelname": "INFO", "path": "/v1/x"})
    formatted = JsonFormatter().format(record)
    assert '"message": "hello world"' in formatted and '"path": "/v1/x"' in formatted


async def test_turns_reserve_their_share_of_a_budget_until_charged(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.db")
    key, _ = store.create("burst", budget_usd=0.25)
    budgets = Budgets(store, first_turn_usd=0.5)
    budgets.record("someone", "sonnet", 0.125)  # another key's turn: what a turn costs
    first = await budgets.admit(key, "sonnet")
    second = await budgets.admit(key, "sonnet")
    assert first is not None and second is not None
    assert await budgets.reserved(key.id) == 0.25 and await budgets.running(key.id) == 2
    # Nothing spent yet, but the two running turns are expected to use the budget up.
    with pytest.raises(BudgetExceeded) as refused:
        await budgets.admit(key, "sonnet")
    assert "$0.2500 is reserved by 2 turns still running" in refused.value.message
    store.charge(key.id, "sonnet", Usage(), 0.1)  # the first turn's real cost...
    budgets.record(key.id, "sonnet", 0.1)
    first.release()  # ...replaces its reservation
    first.release()  # (twice changes nothing)
    assert await budgets.running(key.id) == 1
    third = await budgets.admit(key, "sonnet")  # 0.1 spent + 0.125 reserved < 0.25
    assert third is not None and third.amount == 0.1  # the key's own mean
    second.release()
    third.release()
    assert await budgets.reserved(key.id) == 0
    store.update("burst", budget_usd=0.1)  # lowered while running: refused at once
    with pytest.raises(BudgetExceeded):
        await budgets.admit(key, "sonnet")
    store.close()


async def test_what_a_turn_is_expected_to_cost() -> None:
    budgets = Budgets(KeyStore(":memory:"), first_turn_usd=0.1)
    assert budgets.expected("k", "opus") == 0.1  # nothing known: the configured default
    budgets.record("other", "opus", 0.3)
    budgets.record("other", "opus", 0.0)  # a turn that cost nothing says nothing
    assert budgets.expected("k", "opus") == pytest.approx(0.3)  # all keys' turns of opus
    for cost in [1.0] * 30 + [0.2] * 20:
        budgets.record("k", "opus", cost)
    assert budgets.expected("k", "opus") == pytest.approx(0.2)  # its recent turns only
    assert budgets.expected("k", "haiku") == 0.1
    assert await budgets.admit(None, "opus") is None  # no key, no budget: nothing held
    assert await budgets.admit(ApiKey("free", "free"), "opus") is None


class _NoPool:
    def pool_counts(self) -> dict[str, int]:
        return {}

    def pool_totals(self) -> dict[str, int]:
        return {}


def _middleware(app: Any, store: KeyStore, limiter: RateLimiter | None = None,
                cache: MemoryCache | None = None) -> AccessMiddleware:
    return AccessMiddleware(app, keys=store, limiter=limiter or RateLimiter(60.0, Clock()),
                            cache=cache or MemoryCache(CacheSettings(enabled=False)),
                            metrics=Metrics(_NoPool()), auth_required=True,
                            metrics_public=False, max_body_bytes=1024)


def _post(path: str, token: str, body: bytes) -> tuple[dict[str, Any], Any]:
    """An HTTP POST's scope and receive, as uvicorn hands them to the app."""
    scope = {"type": "http", "method": "POST", "path": path, "query_string": b"",
             "headers": [(b"authorization", f"Bearer {token}".encode()),
                         (b"content-length", str(len(body)).encode())]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return scope, receive


async def test_a_concurrency_slot_is_free_before_the_last_byte_goes_out(tmp_path: Path
                                                                        ) -> None:
    """A client that sends its next request as soon as it has read the last byte of a
    streamed answer must not find its one slot still taken (a 429 it did nothing to
    earn); a response that never ends gives the slot back too."""
    store = KeyStore(tmp_path / "keys.db")
    key, token = store.create("one-at-a-time", concurrency=1)
    limiter = RateLimiter(60.0, Clock())

    async def streamed(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        if scope["path"] == "/v1/messages":
            raise OSError("the client went away")
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    gateway = _middleware(streamed, store, limiter)
    running_at: list[tuple[bool, int]] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            running_at.append((message.get("more_body", False),
                               await limiter.running(key.id)))

    await gateway(*_post("/v1/chat/completions", token, b"{}"), send)
    assert running_at == [(True, 1), (False, 0)]
    with pytest.raises(OSError):
        await gateway(*_post("/v1/messages", token, b"{}"), send)
    assert await limiter.running(key.id) == 0


async def test_an_answer_is_cached_before_its_last_byte_and_only_whole(tmp_path: Path
                                                                        ) -> None:
    """The same request sent on reading the last byte is a hit; an answer larger than
    a cache entry may be (captured only in part) is never kept, so never served cut."""
    store = KeyStore(tmp_path / "keys.db")
    _, token = store.create("cached")
    cache = MemoryCache(CacheSettings(enabled=True, max_entry_bytes=64))

    async def answer(scope: Any, receive: Any, send: Any) -> None:
        scope["state"]["caller"].completed = True
        size = 40 if scope["path"] == "/v1/chat/completions" else 40_000
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"[" + b"1," * (size // 2),
                    "more_body": True})
        await send({"type": "http.response.body", "body": b"1]"})

    gateway = _middleware(answer, store, cache=cache)
    kept_at_end: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            kept_at_end.append(await cache.entries())

    await gateway(*_post("/v1/chat/completions", token, b'{"model": "sonnet"}'), send)
    assert kept_at_end == [1]  # stored before the last chunk went out
    await gateway(*_post("/v1/messages", token, b'{"model": "sonnet"}'), send)
    assert kept_at_end == [1, 1]  # 40 kB: not kept, not even its first 64 bytes
