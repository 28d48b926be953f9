"""The warm-worker pool: reuse, queueing, back-pressure, disconnects, crashes, hangs."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply
from tests.conftest import ONE_WORKER, Gateway, Gateways, module_gateway, ready, start_gateway

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def small(upstream: FakeUpstream,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One worker at most, no queue, short timeouts; shared by the module's tests, which
    count from where the one before left it."""
    yield from module_gateway(upstream, tmp_path_factory, claude__max_concurrent_sessions="1",
                              claude__max_queue="0", claude__timeout_seconds="3",
                              claude__retry_after_seconds="2")


@pytest.fixture
def small_gateway(small: Gateway, upstream: FakeUpstream) -> Gateway:
    ready(small, upstream)
    small.wait_idle()
    return small


def test_sequential_requests_reuse_one_warm_process(small_gateway: Gateway,
                                                    upstream: FakeUpstream) -> None:
    [worker] = small_gateway.health()["workers"]
    client = small_gateway.client()
    for _ in range(4):
        client.chat.completions.create(model="sonnet", messages=USER)
    health = small_gateway.wait_idle()
    assert [w["pid"] for w in health["workers"]] == [worker["pid"]]
    assert health["workers"][0]["turns"] == worker["turns"] + 4
    pid = worker["pid"]
    assert [p.pid for p in small_gateway.cli_processes()] == [pid]


def test_full_pool_and_queue_answer_429_with_retry_after(small_gateway: Gateway,
                                                         upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("slow answer", first_delay=2.0))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(small_gateway.client().chat.completions.create, model="sonnet",
                           messages=USER)
        small_gateway.wait_for(lambda h: h["pool"]["busy"] == 1)
        response = httpx.post(small_gateway.base_url + "/chat/completions", timeout=30,
                              json={"model": "sonnet", "messages": USER})
        assert response.status_code == 429
        assert response.headers["retry-after"] == "2"
        assert response.json()["error"]["code"] == "gateway_busy"
        assert slow.result().choices[0].message.content == "slow answer"


@pytest.fixture
def one(gateways: Gateways, upstream: FakeUpstream) -> Iterator[Gateway]:
    """The session's gateway of one worker (and a queue of 32, a 300 s silence timeout)."""
    gateway = ready(gateways.get(**ONE_WORKER), upstream)
    gateway.wait_idle()
    yield gateway
    gateway.close_clients()


def test_queued_requests_wait_for_a_worker(one: Gateway, upstream: FakeUpstream) -> None:
    gateway = one
    turns = gateway.health()["workers"][0]["turns"]
    upstream.script(*[Reply.text(f"answer {i}", first_delay=0.3) for i in range(4)])
    client = gateway.client()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client.chat.completions.create, model="sonnet",
                               messages=USER) for _ in range(4)]
        answers = sorted(f.result().choices[0].message.content or "" for f in futures)
    assert answers == [f"answer {i}" for i in range(4)]
    health = gateway.wait_idle()
    assert health["pool"]["size"] == 1 and health["workers"][0]["turns"] == turns + 4


def test_client_disconnect_interrupts_the_turn_and_frees_the_worker(
        small_gateway: Gateway, upstream: FakeUpstream) -> None:
    pid = small_gateway.health()["workers"][0]["pid"]
    upstream.script(Reply.text(" ".join(["word"] * 200), chunk_delay=0.05))
    client = small_gateway.client()
    stream = client.chat.completions.create(model="sonnet", messages=USER, stream=True)
    for received, _chunk in enumerate(stream, 1):
        if received == 5:
            break
    stream.close()  # the client hangs up mid-answer
    # The upstream stream is abandoned long before its 10 s of deltas are over...
    deadline = time.monotonic() + 5
    while upstream.open_streams and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.open_streams == 0
    # ...and the same process is back, idle, ready for the next caller.
    health = small_gateway.wait_idle(timeout=10)
    assert [w["pid"] for w in health["workers"]] == [pid]
    assert [p.pid for p in small_gateway.cli_processes()] == [pid]
    upstream.script(Reply.text("next caller"))
    answer = client.chat.completions.create(model="sonnet", messages=USER)
    assert answer.choices[0].message.content == "next caller"


def test_non_streaming_disconnect_also_interrupts(one: Gateway, upstream: FakeUpstream) -> None:
    gateway = one
    pid = gateway.wait_idle()["workers"][0]["pid"]
    upstream.script(Reply.text("never read", first_delay=60))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gateway.base_url + "/chat/completions", timeout=1.0,
                   json={"model": "sonnet", "messages": USER})
    # Far sooner than the upstream's 60 s or the 300 s silence timeout: the
    # hang-up itself interrupted the turn, and the same process is back.
    health = gateway.wait_idle(timeout=8)
    assert [w["pid"] for w in health["workers"]] == [pid]


def test_a_crashed_cli_is_a_502_and_the_pool_heals(small_gateway: Gateway,
                                                   upstream: FakeUpstream) -> None:
    before = small_gateway.health()
    old_pid = before["workers"][0]["pid"]
    upstream.script(Reply.text("too late", first_delay=2.0))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(httpx.post, small_gateway.base_url + "/chat/completions",
                              json={"model": "sonnet", "messages": USER}, timeout=30)
        small_gateway.wait_for(lambda h: h["pool"]["busy"] == 1)
        time.sleep(0.3)  # the request reached the upstream
        os.kill(old_pid, signal.SIGKILL)
        response = pending.result()
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "worker_crashed"
    health = small_gateway.wait_for(lambda h: h["pool"]["idle"] == 1, timeout=30)
    assert health["pool"]["restarts"] == before["pool"]["restarts"] + 1
    assert health["workers"][0]["pid"] != old_pid
    assert not psutil.pid_exists(old_pid) or \
        psutil.Process(old_pid).status() == psutil.STATUS_ZOMBIE
    upstream.script(Reply.text("healed"))
    answer = small_gateway.client().chat.completions.create(model="sonnet", messages=USER)
    assert answer.choices[0].message.content == "healed"


def test_a_silent_cli_times_out_and_the_worker_recovers(small_gateway: Gateway,
                                                        upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("far too slow", first_delay=20))
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        small_gateway.client().chat.completions.create(model="sonnet", messages=USER)
    assert caught.value.status_code == 504
    assert time.monotonic() - started < 10  # timeout_seconds=3
    small_gateway.wait_idle(timeout=20)
    upstream.script(Reply.text("responsive again"))
    answer = small_gateway.client().chat.completions.create(model="sonnet", messages=USER)
    assert answer.choices[0].message.content == "responsive again"


def test_idle_workers_are_evicted_and_started_on_demand(upstream: FakeUpstream,
                                                        tmp_path: Path) -> None:
    upstream.reset()
    gateway = start_gateway(upstream, tmp_path, claude__min_idle_workers="0",
                            claude__idle_seconds="1")
    try:
        client = gateway.client()
        upstream.script(Reply.text("cold start"))
        answer = client.chat.completions.create(
            model="sonnet", messages=[{"role": "system", "content": "Be terse."}, *USER])
        assert answer.choices[0].message.content == "cold start"
        assert len(gateway.cli_processes()) == 1
        gateway.wait_for(lambda h: h["pool"]["size"] == 0, timeout=15)
        deadline = time.monotonic() + 10
        while gateway.cli_processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gateway.cli_processes() == []
    finally:
        gateway.stop()


def test_different_system_prompts_need_no_workers_of_their_own(upstream: FakeUpstream,
                                                                tmp_path: Path) -> None:
    upstream.reset()
    gateway = start_gateway(upstream, tmp_path, claude__max_concurrent_sessions="2",
                            claude__min_idle_workers="1")
    try:
        gateway.wait_idle()
        client = gateway.client()
        for system in ("You are A.", "You are B.", "You are A."):
            client.chat.completions.create(model="sonnet", messages=[
                {"role": "system", "content": system}, *USER])
            assert system in upstream.message_requests()[-1].system_text
        health = gateway.wait_for(lambda h: h["pool"]["idle"] == h["pool"]["size"]
                                  and not h["pool"]["starting"])
        # The first worker, and the one spare min_idle_workers keeps beside the
        # conversation it holds: no process per system prompt.
        assert health["pool"]["started"] == 2
        assert len(gateway.cli_processes()) == 2
    finally:
        gateway.stop()


def test_shutdown_closes_every_cli_process(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reset()
    gateway = start_gateway(upstream, tmp_path, claude__min_idle_workers="2")
    gateway.wait_idle(idle=2)
    pids = [p.pid for p in gateway.cli_processes()]
    assert len(pids) == 2
    gateway.process.send_signal(signal.SIGTERM)
    gateway.process.wait(30)
    time.sleep(0.2)
    alive = [p for p in pids if psutil.pid_exists(p)
             and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []


def test_a_worker_that_dies_while_idle_is_replaced_at_once(small_gateway: Gateway,
                                                           upstream: FakeUpstream) -> None:
    before = small_gateway.health()
    old_pid = before["workers"][0]["pid"]
    os.kill(old_pid, signal.SIGKILL)
    # Well before the 5 s sweep: the death itself triggers the replacement.
    health = small_gateway.wait_for(
        lambda h: h["pool"]["idle"] == 1 and h["workers"][0]["pid"] != old_pid, timeout=4)
    assert health["pool"]["restarts"] == before["pool"]["restarts"] + 1
    upstream.script(Reply.text("still serving"))
    answer = small_gateway.client().chat.completions.create(model="sonnet", messages=USER)
    assert answer.choices[0].message.content == "still serving"



def test_a_session_the_cli_cannot_rewind_is_not_handed_to_the_next_caller(
        one: Gateway, upstream: FakeUpstream) -> None:
    # A first message of only a tool result (for a call the gateway never saw) is
    # answered; the CLI then refuses to rewind that session ("target splits a tool
    # call"), so the next caller on the only worker must get a clean one, not a 502.
    upstream.responder = lambda seen: Reply.text("answered")
    gateway = one
    orphan = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x",
                                           "content": "42"}]}
    for message in (orphan, {"role": "user", "content": "hi"}):
        response = httpx.post(gateway.url + "/v1/messages", timeout=60, json={
            "model": "sonnet", "max_tokens": 64, "messages": [message]})
        assert response.status_code == 200, response.text
        assert response.json()["content"][0]["text"] == "answered"
        gateway.wait_idle()
