"""Money: each turn is charged what that turn cost, and a key's budget holds under a
burst of concurrent requests.

The CLI reports its process's running total as each result's ``total_cost_usd``;
these tests read the workers' running totals from /health and the keys' ledgers
from /stats, and compare them.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Text, ToolUse
from tests.conftest import Gateway, create_key, keys_cli, team_gateway

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
        # The answer ends with the upstream's response; the CLI's result, which says
        # what the turn cost, is charged a moment later, before the worker is free.
        gw1.wait_idle()
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
        calm(gw2)
        charges.append(spent(gw2, token) - start)
    assert charges[0] > 0
    assert charges == [pytest.approx(charges[0], rel=1e-9)] * 6, charges
    after = running_totals(gw2)
    # Each new conversation found the other worker clean (the first kept its own
    # loaded): both processes served turns...
    assert len(after) == 2 and all(after[w] > before.get(w, 0.0) for w in after)
    # ...and together they report exactly what was charged.
    assert grown(before, after) == pytest.approx(sum(charges), rel=1e-9)


def test_tool_and_interrupted_turns_are_charged_exactly_once(
        gw1: Gateway, one: tuple[Gateway, dict[str, str]], upstream: FakeUpstream) -> None:
    """A tool round trip, a tool call whose results never come, a turn cut at a stop
    sequence: the ledger grows by what the worker's CLI spent, no more (one worker
    serves them all)."""
    token = one[1]["tools"]
    before, start = running_totals(gw1), spent(gw1, token)
    turns = sum(w["turns"] for w in gw1.health()["workers"])
    call = Reply(blocks=[Text("Checking."), ToolUse("get_weather",
                                                    {"city": "Paris"}, id="toolu_m1")],
                 stop_reason="tool_use", input_tokens=100, output_tokens=20)
    upstream.script(call, Reply.text("It is sunny.", input_tokens=300, output_tokens=9))
    ask = {"role": "user", "content": "Weather in Paris?"}
    first = answered(chat(gw1, token, messages=[ask], tools=[WEATHER]))
    assert first["choices"][0]["finish_reason"] == "tool_calls"
    result = {"role": "tool", "tool_call_id": "toolu_m1", "content": "sunny"}
    second = answered(chat(gw1, token, tools=[WEATHER], messages=[
        ask, first["choices"][0]["message"], result]))
    assert second["choices"][0]["message"]["content"] == "It is sunny."

    upstream.script(Reply(blocks=[ToolUse("get_weather", {"city": "Oslo"},
                                          id="toolu_m2")],
                          stop_reason="tool_use", input_tokens=50, output_tokens=70))
    paused = answered(chat(gw1, token, messages=[{"role": "user", "content": "Oslo?"}],
                           tools=[WEATHER]))
    assert paused["choices"][0]["finish_reason"] == "tool_calls"
    # Its results never come; the next request is another.
    upstream.script(Reply.text("one two STOP three four", input_tokens=40, output_tokens=30))
    cut = answered(chat(gw1, token, stop=["STOP"], tools=[WEATHER]))
    assert cut["choices"][0]["message"]["content"] == "one two "
    gw1.wait_idle()
    after = running_totals(gw1)
    assert len(after) == 1 and gw1.health()["workers"][0]["turns"] == turns + 4
    spent_here = settled(gw1, token, start + grown(before, after)) - start
    assert grown(before, after) > 0
    assert spent_here == pytest.approx(grown(before, after), rel=1e-9)


def test_a_turn_that_fails_after_a_tool_call_is_charged_what_it_spent(
        gw1: Gateway, one: tuple[Gateway, dict[str, str]], upstream: FakeUpstream) -> None:
    """The turn paid for the model call that asked for the tool; the call after the
    results fails upstream: the error result's cost is charged, not lost."""
    token = one[1]["tools"]
    before, start = running_totals(gw1), spent(gw1, token)
    upstream.script(Reply(blocks=[ToolUse("get_weather", {"city": "Rome"},
                                          id="toolu_m3")],
                          stop_reason="tool_use", input_tokens=100, output_tokens=20),
                    Reply.error(500, "api_error", "boom"))
    ask = {"role": "user", "content": "Rome?"}
    first = answered(chat(gw1, token, messages=[ask], tools=[WEATHER]))
    failed = chat(gw1, token, tools=[WEATHER], messages=[
        ask, first["choices"][0]["message"],
        {"role": "tool", "tool_call_id": "toolu_m3", "content": "warm"}])
    assert failed.status_code == 503, failed.text
    gw1.wait_idle()
    after = running_totals(gw1)
    assert grown(before, after) > 0
    assert spent(gw1, token) - start == pytest.approx(grown(before, after), rel=1e-9)


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


# -- budgets under a burst ----------------------------------------------------------------------
def burst_request(gateway: Gateway, token: str, index: int) -> httpx.Response:
    """Chat (streaming and not) and Anthropic requests, one of each in turn."""
    if index % 3 == 2:
        return httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": token},
                          timeout=90, json={"model": "sonnet", "max_tokens": 50,
                                            "messages": USER})
    return httpx.post(gateway.base_url + "/chat/completions", headers=auth(token),
                      timeout=90, json={"model": "sonnet", "messages": USER,
                                        "stream": index % 3 == 1})


def refused_as_over_budget(response: httpx.Response) -> bool:
    """A budget refusal in the request's own dialect (and nothing else may happen)."""
    if response.status_code == 200:
        return False
    if response.request.url.path == "/v1/messages":
        assert response.status_code == 402, response.text
        assert response.json() == {"type": "error", "error": {
            "type": "billing_error", "message": response.json()["error"]["message"]}}
    else:
        assert response.status_code == 429, response.text
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    assert "budget" in response.json()["error"]["message"]
    return True


def test_a_budget_holds_under_a_burst(gw2: Gateway, two: tuple[Gateway, dict[str, str]],
                                      upstream: FakeUpstream) -> None:
    # Slow identical turns, so that the burst really overlaps on the two workers.
    upstream.responder = lambda seen: Reply.text("a slow answer", first_delay=0.6)
    probe = two[1]["probe"]
    start = spent(gw2, probe)
    answered(chat(gw2, probe))
    gw2.wait_idle()
    cost = spent(gw2, probe) - start  # what one such turn costs
    assert cost > 0
    budget = 2.5 * cost
    store = Path(gw2.env["CLAUDE_CODE__STORE__PATH"])
    token = create_key(store, "bursty", "--budget-usd", repr(budget))
    gw2.wait_idle()
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda i: burst_request(gw2, token, i), range(12)))
    refused = [r for r in responses if refused_as_over_budget(r)]
    succeeded = len(responses) - len(refused)
    gw2.wait_idle()
    charged = spent(gw2, token)
    workers = 2
    assert charged <= budget + workers * cost * (1 + 1e-9), (charged / cost, succeeded)
    assert charged == pytest.approx(succeeded * cost, rel=1e-9)
    assert succeeded >= 2 and refused
    # Nothing stays reserved once the turns are over: with its spending reset, the key
    # may again start as many turns as its budget allows.
    assert keys_cli(store, "update", "bursty", "--reset-spent").returncode == 0
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        again = list(pool.map(lambda i: chat(gw2, token), range(2)))
    assert [r.status_code for r in again] == [200, 200]
