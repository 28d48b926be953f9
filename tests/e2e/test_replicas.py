"""Three replicas on one PostgreSQL store, one fake upstream, started as users start
them (``claude-code-api serve`` with ``CLAUDE_CODE__STORE__URL``): a key made through
one works on all and its revocation reaches all within a second; a stored Response
made on one continues on another; a conversation and a batch survive a replica
killed with ``kill -9`` mid-turn, losing no answered turn and no batch item.

``Cluster`` is the fixture for N replicas: tests of shared limits and budgets (the
Redis part) start theirs with ``cluster(n, **settings)``.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply
from tests.conftest import Gateway, keys_cli, start_gateway
from tests.e2e.test_batch import answering, chat_body, jsonl, wait_batch
from tests.e2e.test_conversations import turns
from tests.postgres import temporary_database

pytestmark = pytest.mark.e2e

REPLICAS = 3
LEASE_SECONDS = 2.0


@dataclass
class Cluster:
    """N `claude-code-api serve` processes sharing one store and one upstream."""

    upstream: FakeUpstream
    root: Path
    store_url: str
    settings: dict[str, str]
    gateways: list[Gateway] = field(default_factory=list)
    orphans: list[psutil.Process] = field(default_factory=list)

    def __getitem__(self, index: int) -> Gateway:
        return self.gateways[index]

    def __iter__(self) -> Iterator[Gateway]:
        return iter(self.gateways)

    def start(self, index: int) -> Gateway:
        root = self.root / f"r{index}-{time.monotonic_ns()}"
        root.mkdir(parents=True)
        gateway = start_gateway(self.upstream, root, store__url=self.store_url,
                                auth__required="true", server__replica_id=f"r{index}",
                                **self.settings)
        if index < len(self.gateways):
            self.gateways[index] = gateway
        else:
            self.gateways.append(gateway)
        return gateway

    def kill(self, index: int) -> None:
        """``kill -9`` the replica: no shutdown of its own, its CLIs left behind."""
        gateway = self.gateways[index]
        self.orphans += gateway.cli_processes()
        os.kill(gateway.process.pid, signal.SIGKILL)
        gateway.process.wait(10)
        gateway.close_clients()

    def revive(self) -> None:
        """Start again every replica that was killed."""
        for index, gateway in enumerate(self.gateways):
            if gateway.process.poll() is not None:
                self.start(index).wait_idle()

    def stop(self) -> None:
        for gateway in self.gateways:
            gateway.stop()
            assert not gateway.cli_processes(), "a CLI process outlived the server"
        # The CLIs of a killed replica lose their parent's pipes and end; any that
        # did not would be a leak on the machine, so they are ended here.
        _gone, alive = psutil.wait_procs(self.orphans, timeout=10)
        for process in alive:
            process.kill()


@pytest.fixture(scope="module")
def store_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture(scope="module")
def admin_token(store_url: str) -> str:
    made = keys_cli(store_url, "create", "--name", "ops", "--admin")
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


@pytest.fixture(scope="module")
def cluster_of(upstream: FakeUpstream, store_url: str, admin_token: str,
               tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Callable[..., Cluster]]:
    """Start ``n`` replicas with the given settings (stopped after the module)."""
    made: list[Cluster] = []

    def start(n: int, **settings: str) -> Cluster:
        cluster = Cluster(upstream, tmp_path_factory.mktemp("replicas"), store_url, settings)
        made.append(cluster)
        for index in range(n):
            cluster.start(index)
        for gateway in cluster:
            gateway.wait_idle()
        return cluster

    yield start
    for cluster in made:
        cluster.stop()


@pytest.fixture(scope="module")
def three(cluster_of: Callable[..., Cluster]) -> Cluster:
    return cluster_of(REPLICAS, claude__max_concurrent_sessions="2",
                      batch__lease_seconds=str(LEASE_SECONDS))


@pytest.fixture
def cluster(three: Cluster, upstream: FakeUpstream) -> Iterator[Cluster]:
    """The three replicas, all running, with a fresh upstream script."""
    three.revive()
    upstream.reset()
    yield three
    for gateway in three:
        gateway.close_clients()


@pytest.fixture(scope="module")
def token(admin_token: str, store_url: str) -> str:
    made = keys_cli(store_url, "create", "--name", "team")
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def say(gateway: Gateway, token: str, conversation: str, text: str) -> str:
    reply = gateway.client(api_key=token).chat.completions.create(
        model="sonnet", messages=[{"role": "user", "content": text}],
        extra_headers={"X-Conversation-ID": conversation})
    return reply.choices[0].message.content or ""


def holder(gateway: Gateway, token: str, conversation: str) -> dict[str, Any]:
    answer = httpx.get(f"{gateway.base_url}/conversations/{conversation}/replica",
                       headers=bearer(token), timeout=10)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def wait_holder(gateway: Gateway, token: str, conversation: str, replica: str | None,
                timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = holder(gateway, token, conversation)
        if seen["replica"] == replica:
            return
        time.sleep(0.1)
    raise AssertionError(f"the registry says {seen}, not {replica}")


# -- keys ---------------------------------------------------------------------------
def test_a_key_made_through_one_replica_works_on_all_and_its_revocation_reaches_all(
        cluster: Cluster, admin_token: str) -> None:
    made = httpx.post(cluster[0].url + "/ui/api/keys", json={"name": "carol"},
                      headers=bearer(admin_token), timeout=10)
    assert made.status_code == 200, made.text
    carol, key_id = made.json()["token"], made.json()["key"]["id"]
    for gateway in cluster:
        assert [m.id for m in gateway.client(api_key=carol).models.list()]
    revoked = httpx.delete(f"{cluster[1].url}/ui/api/keys/{key_id}",
                           headers=bearer(admin_token), timeout=10)
    assert revoked.status_code == 200, revoked.text
    at = time.monotonic()
    for gateway in cluster:
        while True:
            try:
                gateway.client(api_key=carol).models.list()
            except openai.AuthenticationError:
                break
            assert time.monotonic() - at < 1.0, f"{gateway.url} still takes the key"
            time.sleep(0.05)
    assert time.monotonic() - at < 1.0


# -- stored Responses ------------------------------------------------------------------
def test_a_stored_response_made_on_one_replica_continues_on_another(
        cluster: Cluster, upstream: FakeUpstream, token: str) -> None:
    upstream.script(Reply.text("Noted, teal."), Reply.text("Teal."))
    first = cluster[0].client(api_key=token).responses.create(model="sonnet", input="Colour: teal.")
    assert first.output_text == "Noted, teal."
    follow = cluster[2].client(api_key=token).responses.create(
        model="sonnet", input="Which colour?", previous_response_id=first.id)
    assert follow.output_text == "Teal."
    assert turns(upstream.message_requests()[-1])[:3] == [
        ("user", "Colour: teal."), ("assistant", "Noted, teal."), ("user", "Which colour?")]
    again = cluster[1].client(api_key=token).responses.retrieve(follow.id)
    assert again.output_text == "Teal."


# -- a replica killed mid-conversation ---------------------------------------------------
def _turn_in_flight(gateway: Gateway, token: str, conversation: str, text: str
                    ) -> tuple[threading.Thread, list[BaseException]]:
    failures: list[BaseException] = []

    def run() -> None:
        try:
            say(gateway, token, conversation, text)
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, failures


def _wait_requests(upstream: FakeUpstream, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(upstream.message_requests()) < count:
        assert time.monotonic() < deadline, "the turn never reached the upstream"
        time.sleep(0.05)


def test_a_conversation_continues_on_another_replica_after_its_replica_is_killed(
        cluster: Cluster, upstream: FakeUpstream, token: str) -> None:
    conversation = "trip-" + os.urandom(4).hex()
    upstream.script(Reply.text("Noted, Oslo."), Reply.text("Noted, June."))
    assert say(cluster[0], token, conversation, "Trip: Oslo.") == "Noted, Oslo."
    assert say(cluster[0], token, conversation, "Month: June.") == "Noted, June."
    # Warm on r0, and every replica's registry says so.
    wait_holder(cluster[1], token, conversation, "r0")
    assert holder(cluster[2], token, conversation) == {
        "id": conversation, "object": "conversation.replica", "replica": "r0",
        "answered_by": "r2"}
    # A third turn is under way on r0 when it is killed.
    upstream.script(Reply.text("Budget noted.", first_delay=30))
    thread, failures = _turn_in_flight(cluster[0], token, conversation, "Budget: 900.")
    _wait_requests(upstream, 3)
    cluster.kill(0)
    thread.join(30)
    assert isinstance(failures[0], openai.APIConnectionError)
    # r1 continues it from the store: both answered turns, not the unanswered one.
    upstream.reset()
    upstream.script(Reply.text("Oslo, in June."))
    assert say(cluster[1], token, conversation, "Where and when?") == "Oslo, in June."
    assert turns(upstream.message_requests()[-1]) == [
        ("user", "Trip: Oslo."), ("assistant", "Noted, Oslo."), ("user", "Month: June."),
        ("assistant", "Noted, June."), ("user", "Where and when?")]
    stored = httpx.get(f"{cluster[2].base_url}/conversations/{conversation}",
                       headers=bearer(token), timeout=10).json()
    assert stored["turns"] == 3 and stored["message_count"] == 6
    # r0's rows went stale with it; the registry now names r1.
    wait_holder(cluster[2], token, conversation, "r1")


# -- a replica killed mid-batch ------------------------------------------------------------
def test_a_batch_completes_once_per_item_after_a_replica_running_it_is_killed(
        cluster: Cluster, upstream: FakeUpstream, token: str) -> None:
    answering(upstream, delay=0.6)
    count = 12
    lines = [{"custom_id": f"item-{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": chat_body(f"item-{i}")} for i in range(count)]
    made_on = cluster[0].client(api_key=token)
    uploaded = made_on.files.create(file=("items.jsonl", jsonl(lines)), purpose="batch")
    batch = made_on.batches.create(input_file_id=uploaded.id,
                                   endpoint="/v1/chat/completions", completion_window="24h")
    # r0 made the batch and runs its items; kill it while it has one under way.
    wait_batch(made_on, batch.id, lambda b: b.request_counts.completed >= 2)
    cluster[0].wait_for(lambda h: h["pool"]["busy"] >= 1, timeout=30)
    cluster.kill(0)
    other = cluster[1].client(api_key=token)
    done = wait_batch(other, batch.id, lambda b: b.status == "completed", timeout=120)
    assert (done.request_counts.completed, done.request_counts.failed) == (count, 0)
    output = [json.loads(line) for line in
              other.files.content(done.output_file_id).text.splitlines()]
    ids = [line["custom_id"] for line in output]
    assert sorted(ids) == sorted(f"item-{i}" for i in range(count))  # each exactly once
    assert {line["custom_id"]: line["response"]["body"]["choices"][0]["message"]["content"]
            for line in output} == {f"item-{i}": f"answer item-{i}" for i in range(count)}
