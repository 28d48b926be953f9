"""Live sessions over WebSocket: two turns, an interrupt, auth, and a freed process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, ToolUse
from tests.conftest import Gateway, keys_cli, team_gateway

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def team(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[Gateway, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("sessions")
    keys = {"dev": ("--agent",), "other": ("--agent",), "chatty": (), "ledger": (),
            "budgeted": ("--budget-usd", "0.000001"), "limited": ("--rpm", "1"),
            "revocable": ()}
    yield from team_gateway(upstream, tmp, keys, auth__required="true",
                            agent__enabled="true", agent__workspace_root=str(tmp / "ws"),
                            claude__max_concurrent_sessions="3")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create(gateway: Gateway, token: str, **body: Any) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/sessions", headers=auth(token), json=body, timeout=60)


def ws_url(gateway: Gateway, session_id: str) -> str:
    return gateway.url.replace("http://", "ws://") + f"/v1/sessions/{session_id}/ws"


def until_result(ws: ClientConnection) -> list[dict[str, Any]]:
    seen = []
    while True:
        message = json.loads(ws.recv(timeout=60))
        seen.append(message)
        if message["type"] in ("result", "error"):
            return seen


def usage_rows(gateway: Gateway, token: str) -> dict[str, float]:
    """The key's ledger summed over its rows, as /stats shows it to the key."""
    stats = httpx.get(gateway.url + "/stats", headers=auth(token), timeout=10).json()
    totals: dict[str, float] = {}
    for row in stats["key"]["usage"]:
        for name in ("requests", "input_tokens", "output_tokens", "cost_usd"):
            totals[name] = totals.get(name, 0) + row[name]
    return {**totals, "running": stats["key"]["running"],
            "reserved_usd": stats["key"]["reserved_usd"]}


def metric(gateway: Gateway, token: str, name: str, **labels: str) -> float:
    text = httpx.get(gateway.url + "/metrics", headers=auth(token), timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == name
               and all(sample.labels.get(k) == v for k, v in labels.items()))


def send_turn(ws: ClientConnection, content: Any) -> list[dict[str, Any]]:
    ws.send(json.dumps({"type": "user", "content": content}))
    return until_result(ws)


def text_of(messages: list[dict[str, Any]]) -> str:
    return "".join(b.get("text", "") for m in messages if m["type"] == "assistant"
                   for b in m["content"] if b.get("type") == "text")


def test_two_turns_and_an_interrupt(gw: Gateway, tokens: dict[str, str],
                                    upstream: FakeUpstream) -> None:
    created = create(gw, tokens["dev"], model="claude-code")
    assert created.status_code == 200, created.text
    session = created.json()
    assert session["mode"] == "agent" and session["state"] == "idle"
    workspace = Path(session["workspace"])
    assert workspace.is_dir()
    before = len(gw.cli_processes())

    upstream.script(
        Reply(blocks=[ToolUse("Write", {"file_path": str(workspace / "a.txt"),
                                        "content": "first"})], stop_reason="tool_use"),
        Reply.text("wrote a.txt"), Reply.text("second answer"),
        Reply.text("a long answer " * 40, chunk_delay=0.05))
    with connect(ws_url(gw, session["id"]), additional_headers=auth(tokens["dev"])) as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert hello["type"] == "session" and hello["id"] == session["id"]

        ws.send(json.dumps({"type": "user", "content": "write a.txt"}))
        first = until_result(ws)
        assert first[-1]["type"] == "result" and first[-1]["is_error"] is False
        assert text_of(first) == "wrote a.txt"
        uses = [b for m in first if m["type"] == "assistant" for b in m["content"]
                if b.get("type") == "tool_use"]
        assert uses and uses[0]["name"] == "Write"
        assert any(m["type"] == "user" for m in first)  # the tool result
        assert any(m["type"] == "stream_event" for m in first)
        assert (workspace / "a.txt").read_text() == "first"

        ws.send(json.dumps({"type": "user", "content": "and now?"}))
        second = until_result(ws)
        assert text_of(second) == "second answer"
        # The second turn continued the same conversation: the upstream saw turn one.
        last = upstream.message_requests()[-1]
        assert "write a.txt" in json.dumps(last.messages)

        ws.send(json.dumps({"type": "user", "content": "talk for a while"}))
        while json.loads(ws.recv(timeout=30))["type"] != "stream_event":
            pass
        ws.send(json.dumps({"type": "user", "content": "too early"}))
        ws.send(json.dumps({"type": "interrupt"}))
        rest = until_result(ws)
        while rest[-1]["type"] == "error":  # the refused second message
            assert "a turn is running" in rest[-1]["error"]["message"]
            rest = until_result(ws)
        assert rest[-1]["type"] == "result"
        assert rest[-1]["subtype"] != "success" or rest[-1]["is_error"]

        ws.send(json.dumps({"type": "oops"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "error"

    ledger = keys_cli(Path(gw.env["CLAUDE_CODE__STORE__PATH"]), "usage", "dev", "--json")
    rows = json.loads(ledger.stdout)
    assert sum(r["requests"] for r in rows) == 3  # every turn's result, the interrupted too
    assert sum(r["cost_usd"] for r in rows) > 0
    listed = httpx.get(gw.url + "/v1/sessions", headers=auth(tokens["dev"]), timeout=10).json()
    assert [s["id"] for s in listed["data"]] == [session["id"]]
    assert listed["data"][0]["turns"] == 3
    deleted = httpx.delete(gw.url + f"/v1/sessions/{session['id']}",
                           headers=auth(tokens["dev"]), timeout=30)
    assert deleted.json()["deleted"] is True
    gw.wait_for(lambda h: all(w["state"] != "busy" for w in h["workers"]))
    gw.wait_for(lambda h: len(gw.cli_processes()) < before or h["pool"]["size"] < 3)
    assert httpx.get(gw.url + f"/v1/sessions/{session['id']}", headers=auth(tokens["dev"]),
                     timeout=10).status_code == 404


def test_sessions_are_authenticated_and_owned(gw: Gateway, tokens: dict[str, str]) -> None:
    assert httpx.post(gw.url + "/v1/sessions", json={}, timeout=10).status_code == 401
    refused = create(gw, tokens["chatty"], model="claude-code")
    assert refused.status_code == 403 and "agent mode" in refused.json()["error"]["message"]
    session = create(gw, tokens["dev"], model="sonnet").json()
    assert session["mode"] == "chat"
    try:
        with pytest.raises(InvalidStatus) as caught:
            connect(ws_url(gw, session["id"]))
        assert caught.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as caught:  # a session of another key: refused
            connect(ws_url(gw, session["id"]) + f"?api_key={tokens['other']}")
        assert caught.value.response.status_code == 403
        with connect(ws_url(gw, session["id"]) + f"?api_key={tokens['dev']}") as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "session"
        assert httpx.get(gw.url + f"/v1/sessions/{session['id']}", headers=auth(
            tokens["other"]), timeout=10).status_code == 404
    finally:
        httpx.delete(gw.url + f"/v1/sessions/{session['id']}", headers=auth(tokens["dev"]),
                     timeout=30)


def test_live_sessions_are_limited(gw: Gateway, tokens: dict[str, str]) -> None:
    opened = [create(gw, tokens["dev"]).json() for _ in range(2)]
    try:
        third = create(gw, tokens["dev"])
        assert third.status_code == 429 and "live sessions" in third.json()["error"]["message"]
    finally:
        for session in opened:
            httpx.delete(gw.url + f"/v1/sessions/{session['id']}", headers=auth(tokens["dev"]),
                         timeout=30)


def test_a_turn_left_by_a_disconnect_is_stopped_and_charged(gw: Gateway, tokens: dict[str, str],
                                                            upstream: FakeUpstream) -> None:
    store = Path(gw.env["CLAUDE_CODE__STORE__PATH"])

    def requests() -> int:
        rows = json.loads(keys_cli(store, "usage", "other", "--json").stdout)
        return sum(r["requests"] for r in rows)

    before = requests()
    session = create(gw, tokens["other"], model="sonnet").json()
    upstream.script(Reply.text("words " * 200, chunk_delay=0.05))
    try:
        with connect(ws_url(gw, session["id"]), additional_headers=auth(tokens["other"])) as ws:
            ws.recv(timeout=10)
            ws.send(json.dumps({"type": "user", "content": "talk"}))
            while json.loads(ws.recv(timeout=30))["type"] != "stream_event":
                pass
        # The client went away mid-turn: the turn is interrupted, the session idle again.
        gw.wait_for(lambda h: requests() == before + 1, timeout=30)
        state = httpx.get(gw.url + f"/v1/sessions/{session['id']}",
                          headers=auth(tokens["other"]), timeout=10).json()
        assert state["state"] == "idle" and state["connected"] is False
    finally:
        httpx.delete(gw.url + f"/v1/sessions/{session['id']}", headers=auth(tokens["other"]),
                     timeout=30)


def test_text_that_cannot_be_encoded_is_refused_and_the_session_goes_on(
        gw: Gateway, tokens: dict[str, str], upstream: FakeUpstream) -> None:
    session = create(gw, tokens["other"], model="sonnet").json()
    upstream.script(Reply.text("still here"))
    try:
        with connect(ws_url(gw, session["id"]), additional_headers=auth(tokens["other"])) as ws:
            ws.recv(timeout=10)
            # json.dumps escapes the lone surrogate: valid JSON, not text.
            ws.send(json.dumps({"type": "user", "content": [{"type": "text",
                                                             "text": "hi \ud800"}]}))
            refused = json.loads(ws.recv(timeout=30))
            assert refused["type"] == "error"
            assert refused["error"]["type"] == "invalid_request_error"
            assert "'content[0].text'" in refused["error"]["message"]
            ws.send(json.dumps({"type": "user", "content": "hi"}))
            assert text_of(until_result(ws)) == "still here"
        assert [m.last_user_text() for m in upstream.message_requests()][-1].endswith("hi")
    finally:
        httpx.delete(gw.url + f"/v1/sessions/{session['id']}", headers=auth(tokens["other"]),
                     timeout=30)


def test_a_session_whose_process_dies_mid_turn_says_so_and_ends(
        gw: Gateway, tokens: dict[str, str], upstream: FakeUpstream) -> None:
    session = create(gw, tokens["other"], model="sonnet").json()
    upstream.script(Reply.text("one two three", stall_after_deltas=1, stall=30))
    with connect(ws_url(gw, session["id"]), additional_headers=auth(tokens["other"])) as ws:
        ws.recv(timeout=10)
        ws.send(json.dumps({"type": "user", "content": "talk"}))
        while json.loads(ws.recv(timeout=30))["type"] != "stream_event":
            pass
        busy = [w["pid"] for w in gw.health()["workers"] if w["state"] == "busy"]
        assert len(busy) == 1
        psutil.Process(busy[0]).kill()
        ended = until_result(ws)[-1]
        assert ended["type"] == "error" and ended["error"]["type"] == "api_error"
        # The next turn is refused at once, with the reason, instead of never answering.
        ws.send(json.dumps({"type": "user", "content": "are you there?"}))
        refused = until_result(ws)[-1]
        assert refused["type"] == "error" and "new session" in refused["error"]["message"]
    gw.wait_for(lambda h: all(w["pid"] != busy[0] for w in h["workers"]))
    assert not psutil.pid_exists(busy[0]) or \
        psutil.Process(busy[0]).status() == psutil.STATUS_ZOMBIE


RESULT_FIELDS = {"type", "subtype", "is_error", "num_turns", "duration_ms", "duration_api_ms",
                 "stop_reason", "result", "structured_output", "errors", "permission_denials",
                 "total_cost_usd", "usage", "model_usage"}


def test_a_session_turn_is_charged_and_measured_like_a_request(
        gw: Gateway, tokens: dict[str, str], upstream: FakeUpstream) -> None:
    token = tokens["ledger"]
    session = create(gw, token, model="sonnet").json()
    model = session["model"]
    before = usage_rows(gw, token)
    turns = metric(gw, token, "claude_code_api_turns_total", model=model)
    first_tokens = metric(gw, token, "claude_code_api_time_to_first_token_seconds_count",
                          route="/v1/sessions", model=model)
    upstream.script(Reply.text("counted"))
    try:
        with connect(ws_url(gw, session["id"]), additional_headers=auth(token)) as ws:
            ws.recv(timeout=10)
            result = send_turn(ws, "count me")[-1]
        # The protocol's own result: the turn's cost and usage, no CLI-internal ids.
        assert result["type"] == "result" and set(result) == RESULT_FIELDS
        after = usage_rows(gw, token)
        assert after["requests"] == before.get("requests", 0) + 1
        assert after["output_tokens"] - before.get("output_tokens", 0) == \
            result["usage"]["output_tokens"] > 0
        assert after["cost_usd"] - before.get("cost_usd", 0) == \
            pytest.approx(result["total_cost_usd"], rel=1e-9)
        assert result["total_cost_usd"] > 0
        assert (after["running"], after["reserved_usd"]) == (0, 0)  # nothing left held
        assert metric(gw, token, "claude_code_api_turns_total", model=model) == turns + 1
        assert metric(gw, token, "claude_code_api_time_to_first_token_seconds_count",
                      route="/v1/sessions", model=model) == first_tokens + 1
    finally:
        httpx.delete(gw.url + f"/v1/sessions/{session['id']}", headers=auth(token), timeout=30)


def test_a_spent_budget_refuses_the_next_turn_and_the_session_goes_on(
        gw: Gateway, tokens: dict[str, str], upstream: FakeUpstream) -> None:
    token = tokens["budgeted"]
    store = Path(gw.env["CLAUDE_CODE__STORE__PATH"])
    session = create(gw, token, model="sonnet").json()
    upstream.script(Reply.text("the first turn"), Reply.text("after the raise"))
    try:
        with connect(ws_url(gw, session["id"]), additional_headers=auth(token)) as ws:
            ws.recv(timeout=10)
            # Admitted with nothing spent; its cost passes the $0.000001 budget.
            assert text_of(send_turn(ws, "one")) == "the first turn"
            refused = send_turn(ws, "two")
            assert len(refused) == 1, refused  # refused before anything ran
            error = refused[0]["error"]
            assert (error["type"], error["code"]) == ("insufficient_quota",
                                                      "insufficient_quota")
            assert "budget of $0.00" in error["message"]
            assert usage_rows(gw, token)["reserved_usd"] == 0
            assert keys_cli(store, "update", "budgeted", "--budget-usd", "5").returncode == 0
            assert text_of(send_turn(ws, "three")) == "after the raise"
        assert usage_rows(gw, token)["requests"] == 2
        assert len([m for m in upstream.message_requests()
                    if m.last_user_text().endswith("two")]) == 0
    finally:
        httpx.delete(gw.url + f"/v1/sessions/{session['id']}", headers=auth(token), timeout=30)


def test_a_session_turn_counts_against_the_keys_request_limits(
        gw: Gateway, tokens: dict[str, str], upstream: FakeUpstream) -> None:
    token = tokens["limited"]  # one request per minute
    session = create(gw, token, model="sonnet").json()
    upstream.script(Reply.text("the one this minute"))
    try:
        with connect(ws_url(gw, session["id"]), additional_headers=auth(token)) as ws:
            ws.recv(timeout=10)
            assert text_of(send_turn(ws, "one")) == "the one this minute"
            refused = send_turn(ws, "two")[-1]
            assert refused["error"]["type"] == "rate_limit_error"
            assert refused["error"]["code"] == "rate_limit_exceeded"
            assert "1 requests per minute" in refused["error"]["message"]
            assert 0 < refused["error"]["retry_after"] <= 60
        # The HTTP endpoints share the same limit: the session's turn used it up.
        response = httpx.post(gw.base_url + "/chat/completions", headers=auth(token),
                              timeout=30, json={"model": "sonnet", "messages": [
                                  {"role": "user", "content": "x"}]})
        assert response.status_code == 429
    finally:
        httpx.delete(gw.url + f"/v1/sessions/{session['id']}", headers=auth(token), timeout=30)


def test_a_key_revoked_mid_session_gets_no_more_turns(
        gw: Gateway, tokens: dict[str, str], upstream: FakeUpstream) -> None:
    token = tokens["revocable"]
    session = create(gw, token, model="sonnet").json()
    store = Path(gw.env["CLAUDE_CODE__STORE__PATH"])
    with connect(ws_url(gw, session["id"]), additional_headers=auth(token)) as ws:
        ws.recv(timeout=10)
        assert keys_cli(store, "revoke", "revocable").returncode == 0
        refused = send_turn(ws, "still me?")[-1]
        assert refused["error"]["type"] == "authentication_error"
        assert "revoked" in refused["error"]["message"]
    # The session ended with its key: its process is given back.
    gw.wait_for(lambda h: all(w["state"] != "busy" for w in h["workers"]))
    assert not [m for m in upstream.message_requests() if "still me?" in json.dumps(m.messages)]


def test_malformed_messages_get_an_error_naming_the_field_and_the_session_goes_on(
        gw: Gateway, tokens: dict[str, str], upstream: FakeUpstream) -> None:
    bad = create(gw, tokens["other"], model="claude-code", agent={"max_turns": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "agent.max_turns"
    bad = create(gw, tokens["other"], model="sonnet", agent={"tool": ["Read"]})
    assert bad.status_code == 400 and "unknown field in `agent`: tool" in \
        bad.json()["error"]["message"]
    session = create(gw, tokens["other"], model="sonnet").json()
    upstream.script(Reply.text("fine"))
    try:
        with connect(ws_url(gw, session["id"]), additional_headers=auth(tokens["other"])) as ws:
            ws.recv(timeout=10)
            for sent, param, words in (
                    ({"type": "user", "content": [{"text": "no type"}]}, "content[0].type",
                     "Field required"),
                    ({"type": "user", "content": 7}, "content", "non-empty string"),
                    ({"type": "user", "content": []}, "content", "non-empty string"),
                    ({"type": "user"}, "content", "Field required"),
                    ({"content": "hi"}, "type", "`user` or `interrupt`"),
                    ({"type": "oops"}, "type", "unknown message type 'oops'")):
                ws.send(json.dumps(sent))
                error = json.loads(ws.recv(timeout=10))
                assert error["type"] == "error", sent
                assert error["error"]["type"] == "invalid_request_error"
                assert error["error"]["param"] == param, (sent, error)
                assert words in error["error"]["message"], (sent, error)
            ws.send(b"\x00binary")
            error = json.loads(ws.recv(timeout=10))
            assert error["type"] == "error" and "text frames" in error["error"]["message"]
            ws.send("not json")
            assert json.loads(ws.recv(timeout=10))["error"]["message"] == \
                "messages are JSON objects"
            assert text_of(send_turn(ws, [{"type": "text", "text": "hi"}])) == "fine"
    finally:
        httpx.delete(gw.url + f"/v1/sessions/{session['id']}", headers=auth(tokens["other"]),
                     timeout=30)
