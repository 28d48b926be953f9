"""Any warm worker serves any request: each turn's shape reaches the upstream through the
relay, whatever the worker served before."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Seen
from tests.conftest import ONE_WORKER, Gateway, Gateways, module_gateway, ready

pytestmark = pytest.mark.e2e

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
CLOCK = {"name": "get_time", "description": "Time in a city",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
CLI_HEADER = "You are a Claude agent, built on Anthropic's Claude Agent SDK."


@pytest.fixture(scope="module")
def one(gateways: Gateways) -> Gateway:
    """A gateway with a single worker."""
    return gateways.get(**ONE_WORKER)


@pytest.fixture
def gateway(one: Gateway, upstream: FakeUpstream) -> Gateway:
    return ready(one, upstream)


def client_system(seen: Seen) -> list[str]:
    """The system blocks after the CLI's own header."""
    texts = [b["text"] for b in seen.body.get("system", [])]
    return texts[texts.index(CLI_HEADER) + 1:]


def test_one_worker_alternating_shapes_sends_each_turns_own(gateway: Gateway,
                                                            upstream: FakeUpstream) -> None:
    started = gateway.health()["pool"]["started"]
    chat = gateway.client()
    messages = gateway.anthropic(api_key="unused")
    ask = [{"role": "user", "content": "Hello?"}]
    for _ in range(2):
        chat.chat.completions.create(model="sonnet", max_tokens=256, messages=[
            {"role": "system", "content": "You are terse."}, *ask])
        messages.messages.create(model="sonnet", max_tokens=8000, messages=ask,  # type: ignore[arg-type]
                                 tools=[CLOCK])  # type: ignore[list-item]
        chat.chat.completions.create(model="sonnet", messages=ask, tools=[WEATHER],  # type: ignore[arg-type, list-item]
                                     temperature=0.3)
        chat.responses.create(model="sonnet", input="Hello?", instructions="Be kind.",
                              max_output_tokens=1024, reasoning={"effort": "low"})
    seen = upstream.message_requests()
    assert len(seen) == 8
    shapes = [(client_system(s), s.body["max_tokens"],
               [t["name"] for t in s.body.get("tools", [])], s.body.get("temperature"))
              for s in seen]
    default = seen[2].body["max_tokens"]  # no limit asked: the CLI's own, not the last
    assert default not in (256, 8000, 1024)
    assert shapes == 2 * [(["You are terse."], 256, [], None),
                          ([], 8000, ["get_time"], None),
                          ([], default, ["get_weather"], 0.3),
                          (["Be kind."], 1024, [], None)]
    assert [s.body.get("output_config", {}).get("effort") for s in seen[3::4]] == ["low", "low"]
    assert all(s.messages == [{"role": "user", "content": [{"type": "text", "text": "Hello?"}]}]
               for s in seen)
    health = gateway.wait_idle()
    assert health["pool"]["started"] == started and len(gateway.cli_processes()) == 1


def test_turns_start_on_armed_workers_whose_calls_go_upstream_only_with_a_turn(
        gateway: Gateway, upstream: FakeUpstream) -> None:
    chat = gateway.client()
    armed = gateway.health()["conversations"].get("armed_turns", 0)
    models = ["sonnet", "sonnet", "opus", "opus", "sonnet"]
    for n, model in enumerate(models):
        # Idle, the worker waits armed: its next turn's call is held at the relay.
        health = gateway.wait_for(lambda h: all(w["armed"] for w in h["workers"]))
        assert health["workers"] and all(w["model"] == (models[n - 1] if n else "sonnet")
                                         for w in health["workers"])
        upstream.script(Reply.text(f"Answer {n}."))
        answer = chat.chat.completions.create(model=model, messages=[
            {"role": "user", "content": f"Question {n}?"}])
        assert answer.choices[0].message.content == f"Answer {n}."
    seen = upstream.message_requests()
    assert [s.last_user_text() for s in seen] == [f"Question {n}?" for n in range(5)]
    assert [s.body["model"].split("-")[1] for s in seen] == models
    # Armed for the model it last served: a switch withdraws the armed call first.
    health = gateway.health()
    assert health["conversations"]["armed_turns"] - armed == 3
    assert health["pool"]["started"] == 1


def test_a_long_conversation_is_answered_cold_in_one_call(gateway: Gateway,
                                                          upstream: FakeUpstream) -> None:
    history: list[dict[str, Any]] = []
    for i in range(200):
        history += [{"role": "user", "content": f"question {i}"},
                    {"role": "assistant", "content": f"answer {i}"}]
    answer = gateway.client().chat.completions.create(model="sonnet", messages=[
        *history, {"role": "user", "content": "and now?"}])  # type: ignore[list-item]
    assert answer.choices[0].message.content == "Hello from the fake upstream."
    [seen] = upstream.message_requests()
    assert len(seen.messages) == 401
    assert seen.messages[0] == {"role": "user", "content": [{"type": "text",
                                                             "text": "question 0"}]}
    assert seen.messages[-2] == {"role": "assistant", "content": [{"type": "text",
                                                                   "text": "answer 199"}]}


def test_the_relay_is_on_loopback_only(gateway: Gateway) -> None:
    port = int(gateway.url.rsplit(":", 1)[1])
    listening = [c.laddr for c in psutil.Process(gateway.process.pid).net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port != port]
    assert listening and all(a.ip == "127.0.0.1" for a in listening)


@pytest.fixture(scope="module")
def two(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from module_gateway(upstream, tmp_path_factory, claude__max_concurrent_sessions="2",
                              claude__min_idle_workers="2")


def test_concurrent_turns_never_see_each_others_settings(two: Gateway,
                                                         upstream: FakeUpstream) -> None:
    ready(two, upstream)
    two.wait_idle(2)
    def slow(seen: Seen) -> Reply:
        # Answered after a second: both calls are in flight at once.
        return Reply.text(f"system was: {client_system(seen)}", first_delay=1.0)

    upstream.responder = slow
    client = two.client()

    def ask(name: str) -> str:
        completion = client.chat.completions.create(
            model="sonnet", max_tokens=100 + len(name), messages=[
                {"role": "system", "content": f"You are {name}."},
                {"role": "user", "content": name}])
        return completion.choices[0].message.content or ""

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(ask, ["Ann", "Bob"]))
    assert answers == ["system was: ['You are Ann.']", "system was: ['You are Bob.']"]
    for seen in upstream.message_requests():
        name = seen.messages[-1]["content"][0]["text"]
        assert client_system(seen) == [f"You are {name}."]
        assert seen.body["max_tokens"] == 100 + len(name)
    first, second = upstream.message_requests()
    assert abs(first.at - second.at) < 1.0  # they overlapped
    bodies = {s.messages[-1]["content"][0]["text"]: json.dumps(s.body) for s in (first, second)}
    assert "Bob" not in bodies["Ann"] and "Ann" not in bodies["Bob"]
