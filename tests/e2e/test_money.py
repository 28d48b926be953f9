"""Money: each turn is charged what that turn cost.

The CLI reports its process's running total as each result's ``total_cost_usd``;
these tests read the workers' running totals from /health and the keys' ledgers
from /stats, and compare them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply
from tests.conftest import Gateway, team_gateway

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "the same question"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


@pytest.fixture(scope="module")
def one(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[Gateway, dict[str, str]]]:
    """A gateway with a single warm worker: every turn runs on the same process."""
    yield from team_gateway(upstream, tmp_path_factory.mktemp("one"),
                            {"meter": (), "tools": (), "sessions": ()},
                            claude__max_concurrent_sessions="1", auth__required="true")


@pytest.fixture(scope="module")
def two(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[Gateway, dict[str, str]]]:
    yield from team_gateway(upstream, tmp_path_factory.mktemp("two"),
                            {"pair": (), "probe": ()},
                            claude__max_concurrent_sessions="2", auth__required="true")


@pytest.fixture
def gw1(one: tuple[Gateway, dict[str, str]], upstream: FakeUpstream) -> Gateway:
    upstream.reset()
    one[0].wait_idle()
    return one[0]


@pytest.fixture
def gw2(two: tuple[Gateway, dict[str, str]], upstream: FakeUpstream) -> Gateway:
    upstream.reset()
    calm(two[0])
    return two[0]


def calm(gateway: Gateway) -> dict[str, Any]:
    """Wait until every worker is idle: none running, starting or being reset."""
    return gateway.wait_for(lambda h: h["pool"]["idle"] == h["pool"]["size"] > 0)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def spent(gateway: Gateway, token: str) -> float:
    """The key's ledger: every cost charged to it (unrounded)."""
    stats = httpx.get(gateway.url + "/stats", headers=auth(token), timeout=10).json()
    return float(sum(row["cost_usd"] for row in stats["key"]["usage"]))


def running_totals(gateway: Gateway) -> dict[int, float]:
    """Each worker's running total, as its CLI reported it, by worker id."""
    return {w["id"]: w["cost_usd"] for w in gateway.health()["workers"]}


def grown(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(total - before.get(worker, 0.0) for worker, total in after.items())


def chat(gateway: Gateway, token: str, **extra: Any) -> httpx.Response:
    body = {"model": "sonnet", "messages": USER, **extra}
    return httpx.post(gateway.base_url + "/chat/completions", json=body, headers=auth(token),
                      timeout=60)


def answered(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return dict(response.json())


def settled(gateway: Gateway, token: str, expected: float, timeout: float = 20) -> float:
    """The key's spending once it reaches ``expected`` (costs of interrupted turns arrive
    when the CLI has stopped them), or whatever it is after ``timeout``."""
    deadline = time.monotonic() + timeout
    value = spent(gateway, token)
    while value != pytest.approx(expected, rel=1e-9) and time.monotonic() < deadline:
        time.sleep(0.1)
        value = spent(gateway, token)
    return value


# -- each turn charged what it cost ---------------------------------------------------------
def test_identical_turns_on_one_warm_worker_are_each_charged_the_same(
        gw1: Gateway, one: tuple[Gateway, dict[str, str]], upstream: FakeUpstream) -> None:
    token = one[1]["meter"]
    before = gw1.health()["workers"]
    upstream.responder = lambda seen: Reply.text("the same answer")
    charges = []
    for _ in range(5):
        start = spent(gw1, token)
        assert answered(chat(gw1, token))["choices"][0]["message"]["content"] == \
            "the same answer"
        charges.append(spent(gw1, token) - start)
    assert charges[0] > 0
    assert charges == [pytest.approx(charges[0], rel=1e-9)] * 5, charges
    after = gw1.wait_idle()["workers"]
    # One process served all five (no restart), and its running total grew by
    # exactly what the key was charged.
    assert [(w["id"], w["pid"]) for w in after] == [(w["id"], w["pid"]) for w in before]
    assert after[0]["turns"] == before[0]["turns"] + 5
    assert after[0]["cost_usd"] - before[0]["cost_usd"] == pytest.approx(sum(charges),
                                                                         rel=1e-9)


def test_identical_turns_on_two_workers_are_each_charged_the_same(
        gw2: Gateway, two: tuple[Gateway, dict[str, str]], upstream: FakeUpstream) -> None:
    token = two[1]["pair"]
    before = running_totals(gw2)
    upstream.responder = lambda seen: Reply.text("the same answer")
    charges = []
    for _ in range(6):
        start = spent(gw2, token)
        answered(chat(gw2, token))
        charges.append(spent(gw2, token) - start)
        calm(gw2)
    assert charges[0] > 0
    assert charges == [pytest.approx(charges[0], rel=1e-9)] * 6, charges
    after = running_totals(gw2)
    # Each new conversation found the other worker clean (the first kept its own
    # loaded): both processes served turns...
    assert len(after) == 2 and all(after[w] > before.get(w, 0.0) for w in after)
    # ...and together they report exactly what was charged.
    assert grown(before, after) == pytest.approx(sum(charges), rel=1e-9)


def test_a_live_session_turn_is_charged_its_own_cost(
        gw1: Gateway, one: tuple[Gateway, dict[str, str]], upstream: FakeUpstream) -> None:
    """The session takes the only worker, which served others before: its turns are
    charged (and report) their own cost, not the process's total."""
    token = one[1]["sessions"]
    upstream.responder = lambda seen: Reply.text("the same answer")
    answered(chat(gw1, one[1]["meter"]))  # someone else's turn on that worker first
    gw1.wait_idle()
    before, start = running_totals(gw1), spent(gw1, token)
    session = httpx.post(gw1.url + "/v1/sessions", headers=auth(token), timeout=60,
                         json={"model": "sonnet"}).json()
    url = gw1.url.replace("http://", "ws://") + f"/v1/sessions/{session['id']}/ws"
    reported = []
    try:
        with connect(url, additional_headers=auth(token)) as ws:
            ws.recv(timeout=10)
            for _ in range(2):
                ws.send(json.dumps({"type": "user", "content": "hello"}))
                while (message := json.loads(ws.recv(timeout=60)))["type"] != "result":
                    pass
                reported.append(message["total_cost_usd"])
        charged = spent(gw1, token) - start
        assert running_totals(gw1).keys() == before.keys()  # the same process
        assert charged == pytest.approx(grown(before, running_totals(gw1)), rel=1e-9)
        assert reported == [pytest.approx(charged / 2, rel=1e-9)] * 2
    finally:
        httpx.delete(gw1.url + f"/v1/sessions/{session['id']}", headers=auth(token),
                     timeout=30)
