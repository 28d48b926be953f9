"""Two gateway processes sharing one Redis (``redis.url``) and one store, as two
replicas behind a load balancer: limits and budget reservations hold across them
exactly, a slot held by a replica that is killed comes back within a lease, an
answer cached by one serves the other, and a revoked key is refused by both within
a second."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply
from tests.conftest import Gateway, create_key, keys_cli, ready, start_gateway
from tests.shared_redis import REDIS_URL, drop, keys_under

pytestmark = pytest.mark.e2e
Replicas = tuple[list[Gateway], dict[str, str], Path, dict[str, str]]

KEYS = {"rpm4": ("--rpm", "4"), "single": ("--concurrency", "1"), "leaving": (),
        "alice": (), "doomed": ("--concurrency", "1"), "budget": ("--budget-usd", "0.000001")}
LEASE = 1.0  # seconds (30 by default): a dead replica's slots come back this soon


@pytest.fixture(scope="module")
def prefix() -> Iterator[str]:
    prefix = f"cca-test-{secrets.token_hex(6)}:"
    yield prefix
    drop(prefix)


@pytest.fixture(scope="module")
def replicas(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory, prefix: str
             ) -> Iterator[Replicas]:
    tmp = tmp_path_factory.mktemp("replicas")
    store = tmp / "shared.db"
    tokens = {name: create_key(store, name, *flags) for name, flags in KEYS.items()}
    shared = {"store__path": str(store), "redis__url": REDIS_URL, "redis__prefix": prefix,
              "auth__required": "true", "cache__enabled": "true",
              "claude__max_concurrent_sessions": "2", "redis__lease_seconds": str(LEASE)}
    gateways: list[Gateway] = []
    try:
        for name in ("a", "b"):
            gateways.append(start_gateway(upstream, tmp / name, **shared))
        for gateway in gateways:
            gateway.wait_idle()
        yield gateways, tokens, store, shared
    finally:
        for gateway in gateways:
            gateway.stop()
            assert not gateway.cli_processes(), "a CLI process outlived the server"
    # A replica that shuts down gives its slots back: no running request is left.
    assert not [k for k in keys_under(prefix) if b":run:" in k]


@pytest.fixture
def pair(replicas: Replicas, upstream: FakeUpstream
         ) -> tuple[Gateway, Gateway]:
    a, b = replicas[0]
    return ready(a, upstream), ready(b, upstream)


@pytest.fixture
def tokens(replicas: Replicas) -> dict[str, str]:
    return replicas[1]


def chat(gateway: Gateway, token: str, text: str, **headers: str) -> httpx.Response:
    body: dict[str, Any] = {"model": "sonnet",
                            "messages": [{"role": "user", "content": text}]}
    return httpx.post(gateway.base_url + "/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {token}", **headers})


def test_an_rpm_limit_across_two_replicas_admits_exactly_n(
        pair: tuple[Gateway, Gateway], tokens: dict[str, str]) -> None:
    answers = [chat(pair[i % 2], tokens["rpm4"], f"question {i}") for i in range(8)]
    assert [r.status_code for r in answers] == [200] * 4 + [429] * 4
    refused = answers[4:]
    assert all(r.json()["error"]["code"] == "rate_limit_exceeded" for r in refused)
    assert all("4 requests per minute" in r.json()["error"]["message"] for r in refused)
    assert [r.headers["x-ratelimit-remaining-requests"] for r in answers[:4]] == \
        ["3", "2", "1", "0"]


def test_a_concurrency_limit_is_shared(pair: tuple[Gateway, Gateway], tokens: dict[str, str],
                                       upstream: FakeUpstream) -> None:
    a, b = pair
    token = tokens["single"]
    words = "a slow answer that runs longer than two leases"
    upstream.script(Reply.text(words, chunk_delay=0.4))
    client = a.client(api_key=token)
    with client.chat.completions.create(
            model="sonnet", messages=[{"role": "user", "content": "slow"}], stream=True,
            extra_headers={"Cache-Control": "no-store"}) as stream:
        chunks = iter(stream)
        text = ""
        started = time.monotonic()
        while time.monotonic() - started < 2 * LEASE:  # the slot outlives its lease...
            chunk = next(chunks)
            text += "".join(c.delta.content or "" for c in chunk.choices)
        refused = chat(b, token, "meanwhile")  # ...because replica a renews it
        assert refused.status_code == 429
        assert "already has 1 request running" in refused.json()["error"]["message"]
        assert refused.headers["x-ratelimit-reason"] == "concurrency"
        text += "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    client.close()
    assert text == words
    assert chat(b, token, "now").status_code == 200  # the slot came back on replica a


def test_an_answer_cached_by_one_replica_serves_the_other(
        pair: tuple[Gateway, Gateway], tokens: dict[str, str], upstream: FakeUpstream) -> None:
    a, b = pair
    upstream.script(Reply.text("cached once"))
    first = chat(a, tokens["alice"], "what is cached?")
    assert first.status_code == 200 and first.headers["x-cache"] == "miss"
    again = chat(b, tokens["alice"], "what is cached?")
    assert again.status_code == 200 and again.headers["x-cache"] == "hit"
    assert again.json() == first.json()
    assert len(upstream.message_requests()) == 1  # the second never reached a CLI


def test_a_key_revoked_on_the_shared_store_is_refused_by_both_within_a_second(
        pair: tuple[Gateway, Gateway], tokens: dict[str, str],
        replicas: Replicas) -> None:
    token = tokens["leaving"]
    assert all(chat(g, token, f"hello {i}").status_code == 200 for i, g in enumerate(pair))
    done = keys_cli(replicas[2], "revoke", "leaving")
    assert done.returncode == 0, done.stderr
    revoked_at = time.monotonic()
    for gateway in pair:
        while (status := chat(gateway, token, "still there?").status_code) != 401:
            assert status == 200
            assert time.monotonic() - revoked_at < 1.0, "the revocation took over a second"
            time.sleep(0.05)


def test_a_budget_reservation_on_one_replica_holds_the_other(
        pair: tuple[Gateway, Gateway], tokens: dict[str, str], upstream: FakeUpstream) -> None:
    a, b = pair
    token = tokens["budget"]  # $0.000001: what one turn reserves is more than that
    upstream.script(Reply.text("an answer that takes its time", chunk_delay=0.3))
    client = a.client(api_key=token)
    no_store = {"Cache-Control": "no-store"}
    with client.chat.completions.create(
            model="sonnet", messages=[{"role": "user", "content": "spend"}], stream=True,
            extra_headers=no_store) as stream:
        chunks = iter(stream)
        next(chunks)  # the turn has its worker: its reservation is held
        refused = chat(b, token, "me too", **no_store)
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert error["code"] == "insufficient_quota"
        assert "spent $0.0000, and $" in error["message"]
        assert "is reserved by 1 turn still running" in error["message"]
        list(chunks)
    client.close()
    deadline = time.monotonic() + 5  # the turn is charged and its reservation given back
    while "reserved" in (message := chat(b, token, "now?", **no_store).json()["error"]
                         ["message"]):
        assert time.monotonic() < deadline, "the reservation was never given back"
        time.sleep(0.1)
    assert "spent $0.0000)" not in message  # the turn's real cost is what stops it now


def test_a_slot_held_by_a_killed_replica_comes_back_within_a_lease(
        pair: tuple[Gateway, Gateway], tokens: dict[str, str], upstream: FakeUpstream,
        replicas: Replicas, tmp_path: Path) -> None:
    token = tokens["doomed"]
    doomed = start_gateway(upstream, tmp_path / "c", **replicas[3])
    try:
        doomed.wait_idle()
        cli_pids = [p.pid for p in doomed.cli_processes()]
        upstream.script(Reply.text("never delivered", first_delay=30))
        # The client stays connected (one that hangs up gets its slot given back).
        waiting = threading.Thread(target=_ask_and_lose, args=(doomed, token), daemon=True)
        waiting.start()
        deadline = time.monotonic() + 10
        while upstream.pending:  # the reply was taken: the turn is at the upstream
            assert time.monotonic() < deadline, "the turn never reached the upstream"
            time.sleep(0.05)
        assert chat(pair[1], token, "blocked?").status_code == 429  # c holds the slot
        os.kill(doomed.process.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        doomed.process.wait(10)
        while (status := chat(pair[1], token, "free?").status_code) != 200:
            assert status == 429
            assert time.monotonic() - killed_at < LEASE + 1.0, "the lease never ended"
            time.sleep(0.1)
        waiting.join(10)
    finally:
        doomed.stop()
    deadline = time.monotonic() + 10  # the killed gateway's CLIs end with their stdin
    while any(_running(pid) for pid in cli_pids):
        assert time.monotonic() < deadline, "a CLI outlived its killed gateway"
        time.sleep(0.2)


def _ask_and_lose(gateway: Gateway, token: str) -> None:
    """A request whose gateway dies under it."""
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(gateway.base_url + "/chat/completions", timeout=60,
                   headers={"Authorization": f"Bearer {token}"},
                   json={"model": "sonnet", "messages": [{"role": "user", "content": "x"}]})


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
