"""How a worker's CLI is started: the environment the gateway gives it."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_code_api.engine.credentials import Credentials
from claude_code_api.engine.launch import Launch
from claude_code_api.engine.protocol import WorkerKey
from claude_code_api.settings import ClaudeSettings


def cli_env(tmp_path: Path, **settings: object) -> dict[str, str]:
    launch = Launch(ClaudeSettings(**settings), Credentials([], 3.0, 60.0), tmp_path / "work")
    env = launch.options(WorkerKey()).env
    return {k: str(v) for k, v in env.items()}


def test_an_idle_cli_collects_no_garbage_on_a_timer_unless_configured(tmp_path: Path
                                                                      ) -> None:
    assert cli_env(tmp_path)["BUN_GC_TIMER_DISABLE"] == "1"
    assert cli_env(tmp_path, env={"BUN_GC_TIMER_DISABLE": "0"})["BUN_GC_TIMER_DISABLE"] == "0"


def test_the_gateways_own_settings_are_blanked_for_the_cli(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_CODE__CLAUDE__CREDENTIALS", '["sk-ant-secret"]')
    env = cli_env(tmp_path)
    assert env["CLAUDE_CODE__CLAUDE__CREDENTIALS"] == ""
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
