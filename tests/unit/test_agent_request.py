"""The `agent` object of a request: validated by its model, a bad one refused with a
400 naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from claude_code_api.agent import AgentRequest, select
from claude_code_api.errors import InvalidRequest


def test_the_ways_a_request_selects_agent_mode() -> None:
    assert select("sonnet", {}, {}, "opus") == ("sonnet", None)
    assert select("claude-code", {}, {}, "opus") == ("opus", AgentRequest())
    assert select("claude-code/haiku", None, {}, "opus") == ("haiku", AgentRequest())
    assert select("sonnet", {}, {"x-claude-code-mode": "Agent"}, "o") == ("sonnet",
                                                                          AgentRequest())
    assert select("sonnet", {"agent": True}, {}, "o")[1] == AgentRequest()
    assert select("sonnet", {"agent": False}, {}, "o")[1] is None
    _, narrowed = select("sonnet", {"agent": {"tools": ["Read"], "disallowed_tools": None,
                                              "max_turns": 3, "max_budget_usd": 1}}, {}, "o")
    assert narrowed == AgentRequest(tools=["Read"], max_turns=3, max_budget_usd=1.0)


@pytest.mark.parametrize(("agent", "param", "words"), [
    ("yes", "agent", "an object or true"),
    ({"max_turns": 0}, "agent.max_turns", "greater than or equal to 1"),
    ({"max_turns": True}, "agent.max_turns", "valid integer"),
    ({"max_turns": 2.5}, "agent.max_turns", "valid integer"),
    ({"max_budget_usd": 0}, "agent.max_budget_usd", "greater than 0"),
    ({"max_budget_usd": "1"}, "agent.max_budget_usd", "valid number"),
    ({"tools": "Read"}, "agent.tools", "valid list"),
    ({"disallowed_tools": ["Bash", 3]}, "agent.disallowed_tools[1]", "valid string"),
    ({"tool": ["Read"]}, "agent.tool", "unknown field in `agent`: tool"),
])
def test_a_bad_agent_object_is_a_400_naming_the_field(agent: Any, param: str,
                                                     words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        select("sonnet", {"agent": agent}, {}, "opus")
    assert caught.value.status == 400
    assert caught.value.param == param
    assert words in caught.value.message
