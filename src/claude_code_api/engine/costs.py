"""What each turn cost, from what the CLI reports.

A result's ``total_cost_usd`` and ``model_usage`` are the running totals of the CLI
process, not the turn's: resetting the conversation does not reset them, and a
worker serves many turns. Each worker therefore meters its results: ``Meter.turn``
hands a result on with the difference from the total seen last, so everything
downstream (turn events, interrupted turns' late costs, live sessions) reads the
turn's own cost. ``usage`` needs no metering: the CLI reports it per turn.

A CLI started with ``resume=`` does not start at zero: it restores the running
total recorded in the transcript's last ``cost-state`` row (a CLI-written
transcript has one; a hand-written one has none and starts at zero).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Protocol, cast

from claude_agent_sdk import ClaudeAgentOptions, ResultMessage

from ..events import Usage
from .turns import usage_of

log = logging.getLogger(__name__)

# The per-model counters of ``model_usage`` that accumulate (the others, such as
# contextWindow or provider, describe the model and are passed on as they are).
_CUMULATIVE = ("inputTokens", "outputTokens", "thinkingTokens", "cacheReadInputTokens",
               "cacheCreationInputTokens", "cacheCreationEphemeral5mInputTokens",
               "cacheCreationEphemeral1hInputTokens", "webSearchRequests", "costUSD")


class Account(Protocol):
    """The money side of one request, as the engine sees it (the gateway keeps it).

    ``admit`` is called when the request is given a worker and may refuse it by
    raising; ``charge_late`` receives cost that no ``TurnEnd`` carried (a turn
    interrupted — at client tool calls, a stop sequence, max_tokens, a hang-up — or one
    that ended in an error); ``end`` is called once the turn is over,
    always, and releases what ``admit`` reserved.
    """

    async def admit(self) -> None: ...

    def charge_late(self, usage: Usage, cost: float) -> None: ...

    def end(self) -> None: ...


class Meter:
    """One CLI process's running total, and the turns' shares of it."""

    def __init__(self, total: float = 0.0,
                 models: dict[str, dict[str, Any]] | None = None) -> None:
        self.total = total
        self._models = models or {}

    @classmethod
    def starting(cls, options: ClaudeAgentOptions) -> Meter:
        """The meter for a CLI about to start with ``options``."""
        if not options.resume:
            return cls()
        row = _last_cost_state(options.resume, _config_dir(options))
        if row is None:
            return cls()
        models = row.get("modelUsage")
        return cls(float(row.get("totalCostUSD") or 0.0),
                   models if isinstance(models, dict) else None)

    def turn(self, result: ResultMessage) -> ResultMessage:
        """``result`` with the cost and per-model usage of its turn alone."""
        if result.total_cost_usd is None:
            return result
        cost = result.total_cost_usd - self.total
        if cost < 0:  # one process's total never falls; never charge a negative amount
            log.warning("the CLI's running cost fell from %s to %s", self.total,
                        result.total_cost_usd)
            cost = 0.0
        self.total = result.total_cost_usd
        models = None
        if result.model_usage is not None:
            totals = cast(dict[str, dict[str, Any]], result.model_usage)
            models = self._turn_models(totals)
            self._models = totals
        return dataclasses.replace(result, total_cost_usd=cost,
                                   model_usage=cast(Any, models))

    def _turn_models(self, totals: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        out = {}
        for model, now in totals.items():
            seen = self._models.get(model, {})
            turn = dict(now)
            for name in _CUMULATIVE:
                if isinstance(now.get(name), int | float):
                    turn[name] = max(0, now[name] - (seen.get(name) or 0))
            if any(turn.get(name) for name in _CUMULATIVE):
                out[model] = turn
        return out


def close_account(account: Account | None, result: ResultMessage | None,
                  reported: Usage) -> None:
    """The turn is over: charge what ``result`` says it cost beyond what its responses
    already reported, then release the account's reservation."""
    if account is None:
        return
    try:
        if result is not None:
            account.charge_late(usage_of(result.usage) - reported,
                                result.total_cost_usd or 0.0)
    except Exception:  # the ledger failing must not keep a worker or a reservation
        log.exception("could not charge the cost of an ended turn")
    finally:
        account.end()

def _config_dir(options: ClaudeAgentOptions) -> Path:
    configured = options.env.get("CLAUDE_CONFIG_DIR") or os.environ.get("CLAUDE_CONFIG_DIR")
    return Path(configured) if configured else Path.home() / ".claude"


def _last_cost_state(session_id: str, config_dir: Path) -> dict[str, Any] | None:
    """The last ``cost-state`` row of the transcript the CLI will resume, if any."""
    if "/" in session_id or "*" in session_id or "?" in session_id or "[" in session_id:
        return None
    last = None
    for path in sorted((config_dir / "projects").glob(f"*/{session_id}.jsonl")):
        try:
            with path.open(encoding="utf-8") as rows:
                for line in rows:
                    if '"cost-state"' not in line:
                        continue
                    row = json.loads(line)
                    if isinstance(row, dict) and row.get("type") == "cost-state":
                        last = row
        except (OSError, ValueError) as exc:
            log.warning("could not read the cost recorded in %s: %s", path.name, exc)
    return last

