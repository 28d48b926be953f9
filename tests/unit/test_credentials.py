"""Upstream credentials: order, cool-downs, labels, the CLI's stand-ins and the headers
the relay puts on a call; no processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from claude_code_api.engine.credentials import Credentials
from claude_code_api.errors import UpstreamRateLimited
from claude_code_api.settings import load_settings

API_KEY = "sk-ant-api03-" + "a" * 30 + "WXYZ"
OAUTH = "sk-ant-oat01-" + "b" * 30 + "OPQR"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(*secrets: str, clock: Clock | None = None) -> Credentials:
    return Credentials([SecretStr(s) for s in secrets], cooldown=60, rejected_cooldown=600,
                       clock=clock or Clock())


def test_none_configured_means_the_clis_own_login() -> None:
    credentials = make()
    assert not credentials
    assert credentials.current() is None
    assert credentials.pick() is None
    assert credentials.status() == []


def test_the_first_healthy_credential_in_order_serves() -> None:
    clock = Clock()
    credentials = make(API_KEY, OAUTH, clock=clock)
    first, second = credentials.items
    assert credentials.pick() is first
    assert credentials.refused(first, 429) == 60  # the setting, not the upstream's
    assert credentials.pick() is second
    clock.now += 59.5
    assert credentials.pick() is second
    clock.now += 0.5
    assert credentials.pick() is first  # back as first choice after its cool-down


def test_a_rejected_credential_rests_longer() -> None:
    clock = Clock()
    credentials = make(API_KEY, OAUTH, clock=clock)
    first = credentials.items[0]
    assert credentials.refused(first, 401) == 600
    clock.now += 300
    assert credentials.status()[0] == {"label": first.label, "state": "rejected",
                                       "cooling_seconds_left": 300, "uses": 0,
                                       "failures": 1}
    assert credentials.status()[1]["state"] == "ok"


def test_all_cooling_fails_fast_with_the_wait_for_the_first_back() -> None:
    clock = Clock()
    credentials = make(API_KEY, OAUTH, clock=clock)
    first, second = credentials.items
    credentials.refused(second, 429)
    clock.now += 10
    credentials.refused(first, 429)
    with pytest.raises(UpstreamRateLimited) as caught:
        credentials.pick()
    assert caught.value.status == 429
    assert caught.value.retry_after == 50  # the second is back first
    assert "all 2 upstream credentials" in caught.value.message
    assert credentials.current() is second


def test_labels_name_the_kind_and_last_four_never_the_secret() -> None:
    credentials = make(API_KEY, OAUTH, "short-key")
    labels = [c.label for c in credentials.items]
    assert labels == ["#1 (api key …WXYZ)", "#2 (oauth token …OPQR)", "#3 (api key)"]
    text = repr(credentials) + repr(credentials.items) + repr(credentials.status())
    for secret in (API_KEY, OAUTH, "short-key", API_KEY[:-4], OAUTH[:-4]):
        assert secret not in text


def test_a_cli_holds_a_stand_in_of_the_kind_never_the_secret() -> None:
    api, oauth = make(API_KEY, OAUTH).items
    assert api.cli_env() == {"ANTHROPIC_API_KEY": "sk-ant-api03-claude-code-api-relay",
                             "CLAUDE_CODE_OAUTH_TOKEN": "", "ANTHROPIC_AUTH_TOKEN": ""}
    assert oauth.cli_env() == {"ANTHROPIC_API_KEY": "", "ANTHROPIC_AUTH_TOKEN": "",
                               "CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-claude-code-api-relay"}


API_CALL = {"x-api-key": "sk-ant-api03-claude-code-api-relay", "anthropic-version": "2023-06-01",
            "anthropic-beta": "claude-code-20250219,effort-2025-11-24"}
OAUTH_CALL = {"authorization": "Bearer sk-ant-oat01-claude-code-api-relay",
              "anthropic-version": "2023-06-01",
              "anthropic-beta": "claude-code-20250219,oauth-2025-04-20,effort-2025-11-24"}


def test_the_relay_puts_the_credential_on_a_call_in_its_kinds_headers() -> None:
    api, oauth = make(API_KEY, OAUTH).items
    assert api.authorize(API_CALL) == {**API_CALL, "x-api-key": API_KEY}
    assert oauth.authorize(OAUTH_CALL) == {**OAUTH_CALL, "authorization": f"Bearer {OAUTH}"}
    # A CLI started for one kind, the call sent with the other (the primary rests).
    assert oauth.authorize(API_CALL) == {
        "anthropic-version": "2023-06-01", "authorization": f"Bearer {OAUTH}",
        "anthropic-beta": "claude-code-20250219,effort-2025-11-24,oauth-2025-04-20"}
    assert api.authorize(OAUTH_CALL) == {
        "anthropic-version": "2023-06-01", "x-api-key": API_KEY,
        "anthropic-beta": "claude-code-20250219,effort-2025-11-24"}


def test_usable_is_none_while_every_credential_rests() -> None:
    clock = Clock()
    credentials = make(API_KEY, OAUTH, clock=clock)
    first, second = credentials.items
    assert credentials.usable() is first
    credentials.refused(first, 403)
    assert credentials.usable() is second
    credentials.refused(second, 429)
    assert credentials.usable() is None
    clock.now += 60
    assert credentials.usable() is second


def test_settings_from_the_environment_keep_secrets_hidden(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_CODE__CLAUDE__CREDENTIALS", f'["{API_KEY}", " {OAUTH} "]')
    monkeypatch.setenv("CLAUDE_CODE__CLAUDE__CREDENTIAL_COOLDOWN_SECONDS", "2")
    claude = load_settings().claude
    assert [s.get_secret_value() for s in claude.credentials] == [API_KEY, OAUTH]
    assert claude.credential_cooldown_seconds == 2
    assert claude.credential_rejected_cooldown_seconds == 600
    assert API_KEY not in repr(claude) and API_KEY not in str(claude.model_dump())


def test_a_blank_credential_is_refused_without_echoing_the_others(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_CODE__CLAUDE__CREDENTIALS", f'["{API_KEY}", "  "]')
    with pytest.raises(ValueError, match=r"credentials\.1") as caught:
        load_settings()
    assert API_KEY not in str(caught.value)


def test_settings_from_the_toml_file(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(f'[claude]\ncredentials = ["{API_KEY}", "{OAUTH}"]\n'
                      "credential_rejected_cooldown_seconds = 30\n")
    claude = load_settings(config).claude
    assert [s.get_secret_value() for s in claude.credentials] == [API_KEY, OAUTH]
    assert claude.credential_rejected_cooldown_seconds == 30
