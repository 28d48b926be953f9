"""`doctor`'s pieces that need no CLI: the check boundary, wording, config errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from claude_code_api import doctor
from claude_code_api.doctor import Check, check_config, check_python, run
from claude_code_api.engine.probe import TurnOutcome, describe_account, explain_failure
from claude_code_api.errors import (
    UpstreamAuthFailed,
    UpstreamOverloaded,
    UpstreamRateLimited,
    UpstreamRejected,
    WorkerTimeout,
)

URL = "http://127.0.0.1:9"


def args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {"config": None, "host": None, "port": 0, "offline": True,
                               "json": False, "timeout": 5.0}
    return argparse.Namespace(**{**base, **kw})


def test_python_older_than_3_11_fails_with_what_to_do() -> None:
    old = check_python((3, 10, 12))
    assert (old.ok, old.detail, old.hint) == (
        False, "3.10.12 is too old", "claude-code-api needs Python 3.11 or newer")
    assert check_python((3, 11, 0)).ok


async def _claude_ok(*_: object) -> list[Check]:
    return [doctor.passed(name, "fine") for name in ("worker", "credentials", "upstream")]


def test_a_check_that_crashes_is_a_failed_line_not_a_traceback(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLAUDE_CODE__STORE__PATH", str(tmp_path / "gw.db"))
    monkeypatch.setattr(doctor, "_claude", _claude_ok)

    def on_fire(path: Path) -> Check:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(doctor, "check_store", on_fire)
    assert run(args()) == 1
    out, err = capsys.readouterr()
    assert "✗ store: the check itself failed: RuntimeError: disk on fire — report this " \
        "line as a bug in claude-code-api doctor" in out.splitlines()
    assert "Traceback" not in out + err
    assert out.splitlines()[-1] == "1 of 9 checks failed"


def test_a_crash_in_the_claude_checks_fails_those_three(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLAUDE_CODE__STORE__PATH", str(tmp_path / "gw.db"))

    async def broken(*_: object) -> list[Check]:
        raise OSError("no more processes")

    monkeypatch.setattr(doctor, "_claude", broken)
    assert run(args(json=True)) == 1
    body = json.loads(capsys.readouterr().out)
    failed = {c["name"]: c["detail"] for c in body["checks"] if not c["ok"]}
    assert failed == dict.fromkeys(("worker", "credentials", "upstream"),
                                   "the check itself failed: OSError: no more processes")


def test_secrets_are_scrubbed_from_every_line(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    secret = "sk-ant-api03-leaky-0123456789abcdef"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLAUDE_CODE__STORE__PATH", str(tmp_path / "gw.db"))
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)

    async def quoting(*_: object) -> list[Check]:
        return [doctor.failed("worker", f"the CLI said {secret}", f"not {secret}"),
                doctor.passed("credentials", "fine"), doctor.passed("upstream", "fine")]

    monkeypatch.setattr(doctor, "_claude", quoting)
    run(args())
    out = capsys.readouterr().out
    assert secret not in out
    assert "✗ worker: the CLI said [secret] — not [secret]" in out


def test_a_store_directory_this_user_cannot_write(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    # Root writes anywhere, so the permission is refused the way os.access would.
    monkeypatch.setattr(doctor.os, "access", lambda path, mode: Path(path) != tmp_path)
    check = doctor.check_store(tmp_path / "gw.db")
    assert (check.ok, check.detail) == (
        False, f"{tmp_path / 'gw.db'}: not writable by this user ({tmp_path})")
    assert not (tmp_path / "gw.db").exists()  # refused before anything was made


def test_an_environment_variable_that_is_not_json(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLAUDE_CODE__CLAUDE__ENV", "{not json")
    settings, check = check_config(args())
    assert settings is None and not check.ok
    assert check.detail == 'error parsing value for field "claude" from source ' \
        '"EnvSettingsSource"'
    assert check.hint is not None and "hold JSON" in check.hint


def test_a_named_config_file_that_does_not_exist(tmp_path: Path) -> None:
    settings, check = check_config(args(config=tmp_path / "nope.toml"))
    assert settings is None
    assert (check.ok, check.detail) == (False,
                                        f"config file not found: {tmp_path / 'nope.toml'}")


@pytest.mark.parametrize(("account", "words"), [
    ({"subscriptionType": "Claude Max", "apiProvider": "firstParty"},
     ["a Claude login (Claude Max)"]),
    ({"tokenSource": "claude.ai"}, ["a Claude login"]),
    ({"tokenSource": "CLAUDE_CODE_OAUTH_TOKEN"}, ["a token from CLAUDE_CODE_OAUTH_TOKEN"]),
    ({"tokenSource": "none", "apiKeySource": "ANTHROPIC_API_KEY"},
     ["an API key from ANTHROPIC_API_KEY"]),
    ({"apiKeySource": "/login managed key"}, ["the API key of the Claude login"]),
    ({"apiProvider": "bedrock"}, ["bedrock (its credentials come from that provider's own "
                                  "setup)"]),
    ({"tokenSource": "none", "apiProvider": "firstParty"}, []),
])
def test_the_credential_kinds_claude_code_reports(account: dict[str, str],
                                                  words: list[str]) -> None:
    assert describe_account(account) == words


@pytest.mark.parametrize(("outcome", "what", "hint"), [
    (TurnOutcome(error=UpstreamRateLimited("x"), status=429),
     f"{URL} rate-limits these credentials (429)", "wait a minute"),
    (TurnOutcome(error=UpstreamOverloaded("x"), status=529),
     f"{URL} is overloaded or failing (529)", "usually temporary"),
    (TurnOutcome(error=UpstreamOverloaded("x"),
                 cli_text="API Error: Can't reach the API server (ENOTFOUND)"),
     f"{URL} is unreachable (ENOTFOUND)", "check the host in ANTHROPIC_BASE_URL"),
    (TurnOutcome(error=UpstreamRejected("x"), status=404),
     f"{URL} refused the request (404)", "check that claude.default_model (sonnet)"),
    (TurnOutcome(error=UpstreamAuthFailed("the account behind this server has a billing "
                                          "problem")),
     "the Anthropic account has a billing problem", "settle the account's billing"),
    (TurnOutcome(error=WorkerTimeout("no answer within 5 s")),
     f"{URL} did not answer: no answer within 5 s", "check ANTHROPIC_BASE_URL"),
])
def test_turn_failures_in_words(outcome: TurnOutcome, what: str, hint: str) -> None:
    said, todo = explain_failure(outcome, URL, "sonnet")
    assert said == what
    assert todo.startswith(hint)
