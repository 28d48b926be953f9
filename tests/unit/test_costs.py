"""The per-worker meter: the CLI's running totals become each turn's own cost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import ClaudeAgentOptions, ResultMessage

from claude_code_api.engine.costs import Meter


def result(total: float | None, models: dict[str, Any] | None = None) -> ResultMessage:
    return ResultMessage(subtype="success", duration_ms=1, duration_api_ms=1, is_error=False,
                         num_turns=1, session_id="s", total_cost_usd=total,
                         usage={"input_tokens": 10, "output_tokens": 5},
                         model_usage=models)  # type: ignore[arg-type]


def sonnet(tokens_in: int, tokens_out: int, cost: float) -> dict[str, Any]:
    return {"claude-sonnet-5-5": {"inputTokens": tokens_in, "outputTokens": tokens_out,
                                  "costUSD": cost, "contextWindow": 1_000_000,
                                  "provider": "firstParty"}}


def test_running_totals_become_each_turns_cost() -> None:
    meter = Meter()
    costs = [meter.turn(result(total)).total_cost_usd for total in (0.00007, 0.00014, 0.00021)]
    assert costs == [pytest.approx(0.00007)] * 3
    assert meter.total == 0.00021
    # A result without a total (none reported) charges nothing and moves nothing.
    assert meter.turn(result(None)).total_cost_usd is None
    assert meter.turn(result(0.00031)).total_cost_usd == pytest.approx(0.0001)


def test_usage_per_model_is_the_turns_and_descriptions_pass_through() -> None:
    meter = Meter()
    first = meter.turn(result(0.5, sonnet(10, 5, 0.5)))
    assert first.model_usage == sonnet(10, 5, 0.5)
    both = {**sonnet(30, 9, 0.7), "claude-haiku": {"inputTokens": 4, "costUSD": 0.1}}
    second = meter.turn(result(0.8, both))
    assert second.model_usage == {**sonnet(20, 4, pytest.approx(0.2)),
                                  "claude-haiku": {"inputTokens": 4, "costUSD": 0.1}}
    # A model the turn did not use is left out of the turn's usage.
    third = meter.turn(result(0.9, {**sonnet(30, 9, 0.7),
                                    "claude-haiku": {"inputTokens": 9, "costUSD": 0.2}}))
    assert third.model_usage is not None and list(third.model_usage) == ["claude-haiku"]


def test_a_falling_total_is_never_a_negative_charge() -> None:
    meter = Meter(1.0)
    assert meter.turn(result(0.25)).total_cost_usd == 0.0
    assert meter.turn(result(0.5)).total_cost_usd == pytest.approx(0.25)


def transcript(config: Path, session_id: str, rows: list[dict[str, Any]]) -> None:
    project = config / "projects" / "-work-chat"
    project.mkdir(parents=True)
    (project / f"{session_id}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_resumed_cli_starts_from_the_total_its_transcript_recorded(tmp_path: Path) -> None:
    """Measured: a CLI resumed from a transcript with cost-state rows reports the last
    row's total plus its turn; one without them starts at zero."""
    config = tmp_path / "config"
    sid = "0b6f3f0e-8b1c-4d7e-9a55-5d1f0c2a7e11"
    models = {"claude-sonnet-5-5": {"inputTokens": 40, "costUSD": 1.5}}
    transcript(config, sid, [
        {"type": "user", "uuid": "u1", "message": {"role": "user", "content": "cost-state"}},
        {"type": "cost-state", "sessionId": sid, "totalCostUSD": 1.25},
        {"type": "cost-state", "sessionId": sid, "totalCostUSD": 1.5, "modelUsage": models}])
    options = ClaudeAgentOptions(resume=sid, env={"CLAUDE_CONFIG_DIR": str(config)})
    meter = Meter.starting(options)
    assert meter.total == 1.5
    turn = meter.turn(result(1.50007, {"claude-sonnet-5-5": {"inputTokens": 50,
                                                             "costUSD": 1.50007}}))
    assert turn.total_cost_usd == pytest.approx(0.00007)
    assert turn.model_usage == {"claude-sonnet-5-5": {"inputTokens": 10,
                                                      "costUSD": pytest.approx(0.00007)}}

    handwritten = "5b0d1f7c-7a39-4b6e-8f8e-8f2b4d3c2a10"
    transcript(config / "other", handwritten, [{"type": "user", "uuid": "u1"}])
    other = ClaudeAgentOptions(resume=handwritten,
                               env={"CLAUDE_CONFIG_DIR": str(config / "other")})
    assert Meter.starting(other).total == 0.0
    assert Meter.starting(ClaudeAgentOptions(env={"CLAUDE_CONFIG_DIR": str(config)})).total \
        == 0.0
    missing = ClaudeAgentOptions(resume="not-there", env={"CLAUDE_CONFIG_DIR": str(config)})
    assert Meter.starting(missing).total == 0.0
