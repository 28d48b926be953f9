"""Accounts: the steps every turn takes, whichever way it came in (HTTP or a session)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_code_api.access.accounts import Accounts
from claude_code_api.access.budgets import Budgets
from claude_code_api.access.caller import Caller
from claude_code_api.access.keys import LOCAL, KeyStore
from claude_code_api.access.limits import RateLimiter
from claude_code_api.errors import BudgetExceeded, Forbidden, RateLimited, Unauthorized
from claude_code_api.events import TurnEnd, Usage
from claude_code_api.metrics import Metrics


class NoPool:
    def pool_counts(self) -> dict[str, int]:
        return {}

    def pool_totals(self) -> dict[str, int]:
        return {}


@pytest.fixture
def accounts(tmp_path: Path) -> Iterator[Accounts]:
    keys = KeyStore(tmp_path / "keys.db")
    yield Accounts(keys, Budgets(keys, 0.5), RateLimiter(), Metrics(NoPool()))
    keys.close()


def rejected(accounts: Accounts, reason: str) -> float:
    value = accounts.metrics.registry.get_sample_value(
        "claude_code_api_rejected_requests_total", {"reason": reason})
    return value or 0.0


async def test_a_turn_holds_a_slot_of_its_key_until_it_ends(accounts: Accounts) -> None:
    key, _ = accounts.keys.create("one-at-a-time", concurrency=1)
    caller = Caller(key=accounts.current(key.id))
    await accounts.limit(caller)
    with pytest.raises(RateLimited, match="already has 1 request running"):
        await accounts.limit(caller)
    assert rejected(accounts, "concurrency") == 1
    await accounts.unlimit(caller)
    await accounts.limit(caller)  # the slot is free again


async def test_a_turn_is_refused_by_a_spent_budget_and_charged_to_the_ledger(
        accounts: Accounts) -> None:
    key, _ = accounts.keys.create("budgeted", budget_usd=0.01)
    caller = Caller(key=accounts.current(key.id))
    account = accounts.account(caller, "sonnet")
    await account.admit()
    assert await accounts.budgets.reserved(key.id) == 0.5  # what a first turn is expected to cost
    accounts.charge(caller, "sonnet", TurnEnd("end_turn", Usage(10, 4), "sonnet", 0.02))
    account.end()
    assert await accounts.budgets.reserved(key.id) == 0
    [row] = accounts.keys.usage(key.id)
    assert (row["requests"], row["input_tokens"], row["output_tokens"], row["cost_usd"]) == \
        (1, 10, 4, 0.02)
    spent = Caller(key=accounts.current(key.id))
    with pytest.raises(BudgetExceeded):
        await accounts.limit(spent)
    assert rejected(accounts, "budget") == 1


async def test_a_revoked_key_and_a_model_the_key_may_not_use_are_refused(
        accounts: Accounts) -> None:
    key, _ = accounts.keys.create("haiku-only", models=["haiku"])
    caller = Caller(key=accounts.current(key.id))
    accounts.check_model(caller, "claude-haiku-4-5", "haiku")
    with pytest.raises(Forbidden, match="it may use: haiku"):
        accounts.check_model(caller, "sonnet")
    accounts.keys.revoke(key.id)
    with pytest.raises(Unauthorized, match="revoked"):
        accounts.current(key.id)
    assert accounts.current(LOCAL) is None  # the local user has no key to revoke
