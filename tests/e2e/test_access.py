"""Running it for a team: keys made with the CLI, auth in each dialect, limits,
budgets from Claude Code's reported cost, the ledger, metrics, request ids, logs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply
from tests.conftest import (
    CLI,
    FORKS,
    Gateway,
    create_key,
    free_port,
    keys_cli,
    lazy_import,
    start_gateway,
    team_gateway,
)

if TYPE_CHECKING:
    import anthropic
else:
    anthropic = lazy_import("anthropic")

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "hi"}]
WINDOW = 3.0  # the gateway's rpm window in this module (60 s in production)


@pytest.fixture(scope="module")
def team(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[Gateway, dict[str, str]]]:
    keys = {"alice": (), "bob": (), "limited": ("--rpm", "2"),
            "single": ("--concurrency", "1"), "haiku-only": ("--models", "haiku"),
            "tiny-budget": ("--budget-usd", "0.000001"),
            "cutter": ("--budget-usd", "0.000001")}
    yield from team_gateway(upstream, tmp_path_factory.mktemp("team"), keys,
                            auth__required="true", auth__rpm_window_seconds=str(WINDOW),
                            server__log_format="json",
                            server__cors_origins='["https://app.example"]')


def store_of(gateway: Gateway) -> Path:
    return Path(gateway.env["CLAUDE_CODE__STORE__PATH"])


def chat(gateway: Gateway, token: str | None, **extra: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(extra.pop("headers", {}))
    body = {"model": "sonnet", "messages": USER, **extra}
    return httpx.post(gateway.base_url + "/chat/completions", json=body, headers=headers,
                      timeout=60)


def metrics(gateway: Gateway, token: str) -> dict[str, float]:
    text = httpx.get(gateway.url + "/metrics", timeout=10,
                     headers={"Authorization": f"Bearer {token}"}).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    want = [f"{k}={v}" for k, v in labels.items()]
    return sum(v for k, v in samples.items()
               if k.startswith(name + "{") and all(w in k for w in want))


# -- keys from the CLI --------------------------------------------------------------
def test_key_created_used_and_revoked_from_the_cli(gw: Gateway, upstream: FakeUpstream
                                                   ) -> None:
    store = store_of(gw)
    token = create_key(store, "carol", forked=False)  # the console script, as installed
    listed = json.loads(keys_cli(store, "list", "--json", forked=False).stdout)
    carol = next(k for k in listed if k["name"] == "carol")
    assert token.split("-")[2] == carol["id"]
    assert token not in json.dumps(listed)
    secret = token.rsplit("-", 1)[1]
    assert secret.encode() not in store.read_bytes()  # only the hash is kept

    client = gw.client(api_key=token)
    upstream.script(Reply.text("hello carol"))
    answer = client.chat.completions.create(model="sonnet", messages=USER)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "hello carol"

    revoked = keys_cli(store, "revoke", "carol", forked=False)
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["revoked"] is True
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="sonnet", messages=USER)  # type: ignore[arg-type]
    assert caught.value.status_code == 401
    table = keys_cli(store, "list", "--all", forked=False).stdout
    assert "carol" in table and "True" in table
    assert "carol" not in keys_cli(store, "list", forked=False).stdout
    assert keys_cli(store, "revoke", "carol", forked=False).returncode == 1  # already revoked


def test_duplicate_active_name_is_refused(gw: Gateway) -> None:
    done = keys_cli(store_of(gw), "create", "--name", "alice")
    assert done.returncode == 1 and "alice" in done.stderr and not done.stdout


# -- auth in each dialect's shape ------------------------------------------------------
@pytest.mark.parametrize("token", [None, "not-a-key", "sk-cca-000000000000-" + "0" * 48])
def test_openai_dialects_refuse_without_a_valid_key(gw: Gateway, token: str | None) -> None:
    for path, body in (("/chat/completions", {"model": "sonnet", "messages": USER}),
                       ("/responses", {"model": "sonnet", "input": "hi"})):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx.post(gw.base_url + path, json=body, headers=headers, timeout=30)
        assert response.status_code == 401, response.text
        error = response.json()["error"]
        assert error["type"] == "authentication_error"
        assert error["code"] == ("missing_api_key" if token is None else "invalid_api_key")
        assert response.headers["x-request-id"]
    listing = httpx.get(gw.base_url + "/models", timeout=10)
    assert listing.status_code == 401


def test_anthropic_dialect_refuses_in_its_own_shape(gw: Gateway, tokens: dict[str, str],
                                                    upstream: FakeUpstream) -> None:
    bad = gw.anthropic(api_key="sk-cca-bad")
    with pytest.raises(anthropic.AuthenticationError) as caught:
        bad.messages.create(model="sonnet", max_tokens=50, messages=USER)  # type: ignore[arg-type]
    assert caught.value.status_code == 401
    assert caught.value.body == {"type": "error", "error": {
        "type": "authentication_error", "message": caught.value.body["error"]["message"]}}
    good = gw.anthropic(api_key=tokens["alice"])
    upstream.script(Reply.text("hi from x-api-key"))
    message = good.messages.create(model="sonnet", max_tokens=50, messages=USER)  # type: ignore[arg-type]
    assert message.content[0].text == "hi from x-api-key"  # type: ignore[union-attr]


def test_health_stays_public(gw: Gateway) -> None:
    assert httpx.get(gw.url + "/health", timeout=10).status_code == 200


def test_a_key_limited_to_models(gw: Gateway, tokens: dict[str, str],
                                 upstream: FakeUpstream) -> None:
    refused = chat(gw, tokens["haiku-only"])
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"
    assert refused.json()["error"]["param"] == "model"
    upstream.script(Reply.text("haiku here"))
    allowed = chat(gw, tokens["haiku-only"], model="haiku")
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["choices"][0]["message"]["content"] == "haiku here"
    listed = httpx.get(gw.base_url + "/models", timeout=10,
                       headers={"Authorization": f"Bearer {tokens['haiku-only']}"}).json()
    assert "haiku" in [m["id"] for m in listed["data"]]
    assert not {"sonnet", "opus"} & {m["id"] for m in listed["data"]}


# -- limits ---------------------------------------------------------------------------
def test_requests_per_minute_tripped_and_reset(gw: Gateway, tokens: dict[str, str],
                                               upstream: FakeUpstream) -> None:
    token = tokens["limited"]  # used by this test alone: its window starts empty
    first, second = chat(gw, token), chat(gw, token)
    assert first.status_code == second.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    refused = chat(gw, token)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert "2 requests per minute" in refused.json()["error"]["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= WINDOW
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    client = gw.client(api_key=token)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="sonnet", messages=USER)  # type: ignore[arg-type]
    time.sleep(float(refused.headers["retry-after"]) + 0.2)
    assert chat(gw, token).status_code == 200  # the window moved on
    assert chat(gw, tokens["alice"]).status_code == 200  # other keys never limited


def test_concurrent_requests_tripped_and_reset(gw: Gateway, tokens: dict[str, str],
                                               upstream: FakeUpstream) -> None:
    token = tokens["single"]
    upstream.script(Reply.text("a slow answer in five words", chunk_delay=0.4))
    client = gw.client(api_key=token)
    with client.chat.completions.create(model="sonnet", messages=USER,  # type: ignore[arg-type]
                                        stream=True) as stream:
        refused = chat(gw, token)
        assert refused.status_code == 429
        assert "already has 1 request running" in refused.json()["error"]["message"]
        assert refused.headers["retry-after"] == "1"
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "a slow answer in five words"
    assert chat(gw, token).status_code == 200  # the slot came back with the last byte


def test_budget_exhausted_by_reported_cost(gw: Gateway, tokens: dict[str, str],
                                           upstream: FakeUpstream) -> None:
    token = tokens["tiny-budget"]
    upstream.script(Reply.text("the one answer this key can afford"))
    first = chat(gw, token)
    assert first.status_code == 200  # checked before: nothing spent yet
    gw.wait_idle()  # the turn's cost is charged when the CLI reports it, after the answer
    usage = json.loads(keys_cli(store_of(gw), "usage", "tiny-budget", "--json").stdout)
    assert len(usage) == 1 and usage[0]["requests"] == 1
    assert usage[0]["cost_usd"] > 0.000001  # what Claude Code reported for the turn
    assert usage[0]["input_tokens"] > 0 and usage[0]["output_tokens"] > 0
    refused = chat(gw, token)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "insufficient_quota" and error["code"] == "insufficient_quota"
    assert "budget" in error["message"]
    anthropic_refused = httpx.post(gw.url + "/v1/messages", headers={"x-api-key": token},
                                   json={"model": "sonnet", "max_tokens": 10,
                                         "messages": USER}, timeout=30)
    assert anthropic_refused.status_code == 402
    assert anthropic_refused.json()["error"]["type"] == "billing_error"
    stats = httpx.get(gw.url + "/stats", headers={"Authorization": f"Bearer {token}"},
                      timeout=10).json()
    assert stats["key"]["name"] == "tiny-budget"
    assert stats["key"]["spent_usd"] == pytest.approx(usage[0]["cost_usd"], rel=1e-3)
    assert "keys" not in stats  # a key sees its own usage only

    raised = keys_cli(store_of(gw), "update", "tiny-budget", "--reset-spent")
    assert raised.returncode == 0 and json.loads(raised.stdout)["spent_usd"] == 0
    assert chat(gw, token).status_code == 200


def test_an_answer_cut_short_is_still_charged(gw: Gateway, tokens: dict[str, str],
                                             upstream: FakeUpstream) -> None:
    """A stop sequence ends the response before Claude Code reports the turn's cost;
    the cost is charged when the interrupted turn's result arrives."""
    token = tokens["cutter"]
    upstream.script(Reply.text("one two STOP three four"))
    cut = chat(gw, token, stop=["STOP"])
    assert cut.status_code == 200 and cut.json()["choices"][0]["finish_reason"] == "stop"
    assert cut.json()["choices"][0]["message"]["content"] == "one two "
    deadline = time.monotonic() + 20
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = json.loads(keys_cli(store_of(gw), "usage", "cutter", "--json").stdout)
        if rows and rows[0]["cost_usd"] > 0:
            break
        time.sleep(0.2)
    assert rows and rows[0]["cost_usd"] > 0 and rows[0]["requests"] == 1
    assert chat(gw, token).status_code == 429  # the budget is spent


# -- whose conversations ------------------------------------------------------------------
def test_conversations_and_responses_belong_to_their_key(gw: Gateway, tokens: dict[str, str],
                                                         upstream: FakeUpstream) -> None:
    alice = gw.client(api_key=tokens["alice"])
    bob = {"Authorization": f"Bearer {tokens['bob']}"}
    upstream.script(Reply.text("alice's secret plan"), Reply.text("stored answer"))
    answer = alice.chat.completions.with_raw_response.create(
        model="sonnet", messages=[{"role": "user", "content": "my plan?"}])
    conversation = answer.headers["x-conversation-id"]
    response = alice.responses.create(model="sonnet", input="store me")
    assert httpx.get(f"{gw.base_url}/conversations/{conversation}", headers=bob,
                     timeout=10).status_code == 404
    assert httpx.delete(f"{gw.base_url}/conversations/{conversation}", headers=bob,
                        timeout=10).status_code == 404
    listed = httpx.get(f"{gw.base_url}/conversations", headers=bob, timeout=10).json()
    assert conversation not in [c["id"] for c in listed["data"]]
    assert httpx.get(f"{gw.base_url}/responses/{response.id}", headers=bob,
                     timeout=10).status_code == 404
    follow = httpx.post(f"{gw.base_url}/responses", headers=bob, timeout=30, json={
        "model": "sonnet", "input": "and?", "previous_response_id": response.id})
    assert follow.status_code == 404
    own = httpx.get(f"{gw.base_url}/conversations/{conversation}", timeout=10,
                    headers={"Authorization": f"Bearer {tokens['alice']}"})
    assert own.status_code == 200 and own.json()["messages"][-1]["content"][0]["text"] == \
        "alice's secret plan"
    assert alice.responses.retrieve(response.id).id == response.id


# -- observability ------------------------------------------------------------------------
def test_metrics_parse_and_move(gw: Gateway, tokens: dict[str, str],
                                upstream: FakeUpstream) -> None:
    token = tokens["alice"]
    assert httpx.get(gw.url + "/metrics", timeout=10).status_code == 401
    before = metrics(gw, token)
    upstream.script(Reply.text("counted"), Reply.error(500, "api_error", "boom"))
    assert chat(gw, token).status_code == 200
    assert chat(gw, token).status_code in (502, 503)
    assert chat(gw, None).status_code == 401
    gw.wait_idle()  # the answered turn's cost is counted when the CLI reports it
    after = metrics(gw, token)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    route = "/v1/chat/completions"
    assert moved("claude_code_api_requests_total", route=route, status="200") == 1
    assert moved("claude_code_api_requests_total", route=route, status="401") == 1
    assert moved("claude_code_api_request_duration_seconds_count", route=route) == 3
    assert moved("claude_code_api_time_to_first_token_seconds_count", route=route) == 1
    assert moved("claude_code_api_turns_total", stop_reason="end_turn") == 1
    assert moved("claude_code_api_tokens_total", kind="output") > 0
    assert moved("claude_code_api_cost_usd_total") > 0
    assert moved("claude_code_api_upstream_errors_total") == 1
    assert moved("claude_code_api_rejected_requests_total", reason="missing_api_key") == 1
    assert total(after, "claude_code_api_pool_workers", state="idle") >= 1
    assert total(after, "claude_code_api_pool_max_workers") == 4
    assert "claude_code_api_workers_started_total{}" in after
    stats = httpx.get(gw.url + "/stats", headers={"Authorization": f"Bearer {token}"},
                      timeout=10).json()
    assert stats["routes"][route]["requests"] >= 3 and stats["routes"][route]["p50_ms"] > 0
    assert stats["pool"]["max"] == 4 and stats["cost_usd"] > 0


def test_request_id_echoed_generated_and_logged(gw: Gateway, tokens: dict[str, str]) -> None:
    given = chat(gw, tokens["alice"], headers={"X-Request-ID": "trace-abc.123"})
    assert given.headers["x-request-id"] == "trace-abc.123"
    made = chat(gw, tokens["alice"], headers={"X-Request-ID": "bad id\twith spaces"})
    assert made.headers["x-request-id"].startswith("req_")
    lines = [json.loads(line) for line in gw.log().splitlines() if line.startswith("{")]
    mine = [entry for entry in lines if entry["request_id"] == "trace-abc.123"]
    access = [e for e in mine if e["logger"] == "claude_code_api.access"]
    assert access and access[0]["status"] == 200 and access[0]["key"] != "local"
    assert access[0]["path"] == "/v1/chat/completions" and access[0]["duration_ms"] > 0


def test_secrets_never_logged(gw: Gateway, tokens: dict[str, str]) -> None:
    log = gw.log()
    assert log.strip(), "the gateway wrote no log"
    for token in tokens.values():
        assert token.rsplit("-", 1)[1] not in log
    assert "sk-ant-test" not in log  # the upstream key the CLI was given


def test_cors_preflight_and_headers(gw: Gateway, tokens: dict[str, str]) -> None:
    preflight = httpx.options(gw.base_url + "/chat/completions", timeout=10, headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    answered = chat(gw, tokens["alice"], headers={"Origin": "https://app.example"})
    assert answered.headers["access-control-allow-origin"] == "https://app.example"
    exposed = answered.headers["access-control-expose-headers"].lower()
    assert "x-request-id" in exposed and "x-tools-ignored" in exposed
    refused = chat(gw, None, headers={"Origin": "https://app.example"})
    assert refused.status_code == 401  # errors carry CORS headers too, so browsers see them
    assert refused.headers["access-control-allow-origin"] == "https://app.example"
    stranger = httpx.options(gw.base_url + "/chat/completions", timeout=10, headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in stranger.headers


# -- binding beyond loopback -----------------------------------------------------------------
def test_beyond_loopback_needs_a_key_to_exist(tmp_path: Path, upstream: FakeUpstream) -> None:
    store = tmp_path / "gateway.db"
    env = {"CLAUDE_CODE__STORE__PATH": str(store), "PATH": "/usr/bin:/bin",
           "CLAUDE_CODE__CLAUDE__WORK_ROOT": str(tmp_path / "work")}
    refused = FORKS.run([str(CLI), "serve", "--host", "0.0.0.0", "--port",
                         str(free_port())], env, tmp_path, timeout=60)
    assert refused.returncode == 2
    assert "keys create" in refused.stderr
    token = create_key(store, "ops")
    gateway = start_gateway(upstream, tmp_path, server__host="0.0.0.0")
    try:
        assert chat(gateway, None).status_code == 401
        assert chat(gateway, "sk-anything").status_code == 401  # no anonymous placeholder
        upstream.script(Reply.text("reachable"))
        answered = chat(gateway, token)
        assert answered.status_code == 200, answered.text
    finally:
        gateway.stop()
