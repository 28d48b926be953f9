"""Several upstream credentials: rotation at the relay away from a rate-limited or
rejected key (no worker restarted), its return after the cool-down, failing fast when
all rest, and secrets kept secret, from the CLIs too."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply
from tests.conftest import Gateway, module_gateway, start_gateway
from tests.e2e.test_errors import assert_error, post

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "hi"}]
FIRST = "sk-ant-api03-first-" + secrets.token_hex(16)
SECOND = "sk-ant-api03-second-" + secrets.token_hex(16)
OAUTH = "sk-ant-oat01-third-" + secrets.token_hex(16)
# The operator's own key in the server's environment: configured credentials win.
OPERATOR = "sk-ant-api03-operator-" + secrets.token_hex(16)
SECRETS = (FIRST, SECOND, OAUTH, OPERATOR)
# Longer than a turn takes on a busy machine (the rate-limited state is read after one);
# every test after one that rested a key waits this long for it.
COOLDOWN = 3
STARTED = time.time()

RATE_LIMITED = Reply.error(429, "rate_limit_error", "slow down",
                           headers={"retry-after": "30"})
REJECTED = Reply.error(401, "authentication_error", "invalid x-api-key")


@pytest.fixture(scope="module")
def rotating(upstream: FakeUpstream,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    upstream.reset()
    yield from module_gateway(
        upstream, tmp_path_factory, api_key=OPERATOR,
        claude__credentials=json.dumps([FIRST, SECOND, OAUTH]),
        claude__credential_cooldown_seconds=str(COOLDOWN),
        claude__credential_rejected_cooldown_seconds=str(COOLDOWN))


@pytest.fixture
def gateway(rotating: Gateway, upstream: FakeUpstream) -> Gateway:
    """The module's gateway with every credential usable again and a fresh script."""
    upstream.reset()
    rotating.wait_for(lambda h: all(c["state"] == "ok" for c in h["credentials"]),
                      timeout=COOLDOWN + 10)
    rotating.wait_idle()
    return rotating


def turns_credentials(upstream: FakeUpstream) -> list[str | None]:
    return [r.credential for r in upstream.message_requests()]


def states(health: dict[str, Any]) -> list[str]:
    return [c["state"] for c in health["credentials"]]


def test_a_rate_limited_key_is_rotated_away_from(gateway: Gateway,
                                                 upstream: FakeUpstream) -> None:
    before = gateway.health()
    rotations, pool = before["credential_rotations"], before["pool"]
    upstream.reject[FIRST] = RATE_LIMITED
    upstream.script(Reply.text("Served with the second key."))
    answer = gateway.client().chat.completions.create(model="sonnet", messages=USER)
    assert answer.choices[0].message.content == "Served with the second key."
    assert turns_credentials(upstream) == [FIRST, SECOND]
    health = gateway.health()
    first, second, third = health["credentials"]
    assert first["state"] == "rate_limited" and 0 < first["cooling_seconds_left"] <= COOLDOWN
    assert first["label"].startswith("#1 (api key …")
    assert first["failures"] >= 1
    assert second["state"] == "ok" and second["uses"] >= 1 and second["failures"] == 0
    assert third["state"] == "ok" and third["label"].startswith("#3 (oauth token …")
    assert health["credential_rotations"] == rotations + 1
    # The relay sent the call again: no worker was started or replaced for it.
    assert (health["pool"]["started"], health["pool"]["restarts"]) == \
        (pool["started"], pool["restarts"])


def test_the_first_key_serves_again_after_its_cool_down(gateway: Gateway,
                                                        upstream: FakeUpstream) -> None:
    client = gateway.client()
    upstream.reject[FIRST] = RATE_LIMITED
    client.chat.completions.create(model="sonnet", messages=USER)
    assert turns_credentials(upstream) == [FIRST, SECOND]
    del upstream.reject[FIRST]  # the rate limit is over
    gateway.wait_for(lambda h: states(h)[0] == "ok", timeout=COOLDOWN + 5)
    upstream.script(Reply.text("The first key again."))
    answer = client.chat.completions.create(model="sonnet", messages=USER)
    assert answer.choices[0].message.content == "The first key again."
    assert turns_credentials(upstream) == [FIRST, SECOND, FIRST]


def test_a_rejected_key_rotates_too_and_a_stream_never_notices(
        gateway: Gateway, upstream: FakeUpstream) -> None:
    upstream.reject[FIRST] = REJECTED
    upstream.script(Reply.text("Streamed with the second key."))
    stream = gateway.client().chat.completions.create(model="sonnet", messages=USER,
                                                      stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Streamed with the second key."
    assert turns_credentials(upstream) == [FIRST, SECOND]
    assert states(gateway.health())[:2] == ["rejected", "ok"]


def test_an_oauth_token_is_sent_as_a_bearer_token_alone(gateway: Gateway,
                                                        upstream: FakeUpstream) -> None:
    upstream.reject[FIRST] = RATE_LIMITED
    upstream.reject[SECOND] = REJECTED
    upstream.script(Reply.text("Served with the OAuth token."))
    answer = gateway.client().chat.completions.create(model="sonnet", messages=USER)
    assert answer.choices[0].message.content == "Served with the OAuth token."
    assert turns_credentials(upstream) == [FIRST, SECOND, OAUTH]
    last = upstream.message_requests()[-1]
    assert last.headers["authorization"] == f"Bearer {OAUTH}"
    assert "x-api-key" not in last.headers  # the operator's ANTHROPIC_API_KEY is not sent
    # The CLI was started for an API key (the first): the relay added the token's beta.
    assert "oauth-2025-04-20" in last.headers["anthropic-beta"].split(",")


def test_no_cli_process_holds_a_secret(gateway: Gateway, upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("Served."))
    gateway.client().chat.completions.create(model="sonnet", messages=USER)
    assert turns_credentials(upstream) == [FIRST]  # the relay put the first key on it
    pids = [w["pid"] for w in gateway.health()["workers"] if w["pid"]]
    assert pids
    for pid in pids:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"ANTHROPIC_API_KEY=sk-ant-api03-claude-code-api-relay\0" in environ
        for secret in SECRETS:
            assert secret.encode() not in environ


def test_all_keys_refused_is_a_429_with_retry_after_and_then_fails_fast(
        upstream: FakeUpstream, tmp_path: Path) -> None:
    # A gateway of its own, with a cool-down no slow machine outlasts.
    upstream.reset()
    gateway = start_gateway(upstream, tmp_path, api_key=OPERATOR,
                            claude__credentials=json.dumps([FIRST, SECOND, OAUTH]),
                            claude__credential_cooldown_seconds="120")
    try:
        gateway.wait_idle()
        for secret in (FIRST, SECOND, OAUTH):
            upstream.reject[secret] = RATE_LIMITED
        response = post(gateway, {"model": "sonnet", "messages": USER})
        error = assert_error(response, 429, code="rate_limit_exceeded")
        assert error["type"] == "rate_limit_error"
        assert "all 3 upstream credentials" in error["message"]
        assert 100 < int(response.headers["retry-after"]) <= 120
        assert turns_credentials(upstream) == [FIRST, SECOND, OAUTH]
        # While every key rests, requests are refused without calling the upstream.
        with pytest.raises(openai.RateLimitError) as caught:
            gateway.client().chat.completions.create(model="sonnet", messages=USER)
        assert caught.value.code == "rate_limit_exceeded"
        assert len(upstream.message_requests()) == 3
        assert states(gateway.health()) == ["rate_limited"] * 3
    finally:
        gateway.stop()
        upstream.reset()


def test_secrets_appear_in_no_log_health_or_file(gateway: Gateway) -> None:
    health = httpx.get(gateway.url + "/health", timeout=10).text
    assert gateway.log()  # the log has lines about the rotations above
    assert "upstream credential #1 (api key …" in gateway.log()
    roots = [gateway.config_dir.parent, Path(tempfile.gettempdir())]
    leaks = [str(path) for root in roots for path in files_containing(root, SECRETS)]
    assert leaks == []
    for secret in SECRETS:
        for text in (health, gateway.log()):
            assert secret not in text and secret[:-4] not in text


def files_containing(root: Path, needles: tuple[str, ...]) -> Iterator[Path]:
    """Files under ``root`` written since this module started that hold a needle."""
    wanted = [n.encode() for n in needles]
    # os.walk, not rglob: other test processes make and remove folders under /tmp
    # meanwhile, and a folder gone mid-walk is skipped rather than an error.
    paths = (Path(top) / name for top, _, names in os.walk(root) for name in names)
    for path in paths:
        try:
            info = path.lstat()
            if not path.is_file() or path.is_symlink() or info.st_mtime < STARTED \
                    or info.st_size > 20_000_000:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if any(n in data for n in wanted):
            yield path
