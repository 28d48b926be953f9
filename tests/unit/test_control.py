"""The one private claude-agent-sdk call (engine/control.py) is where we use it: an SDK
upgrade that moves or renames it fails here, by name, not in a user's session."""

from __future__ import annotations

import inspect

import pytest
from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient

from claude_code_api.engine import control


def test_the_sdks_query_has_the_private_control_request_method() -> None:
    # The contract control.py relies on, read from the installed SDK itself.
    from claude_agent_sdk._internal.query import Query

    send = getattr(Query, "_send_control_request", None)
    assert send is not None, "claude-agent-sdk moved Query._send_control_request"
    assert inspect.iscoroutinefunction(send)
    parameters = list(inspect.signature(send).parameters)
    assert parameters[:3] == ["self", "request", "timeout"]
    source = inspect.getsource(ClaudeSDKClient)
    assert "self._query = Query(" in source, \
        "ClaudeSDKClient no longer keeps its Query in _query"


async def test_rewind_sends_the_request_the_cli_answers() -> None:
    client = ClaudeSDKClient(ClaudeAgentOptions())
    sent: list[tuple[dict[str, object], float]] = []

    class Query:
        async def _send_control_request(self, request: dict[str, object],
                                        timeout: float = 60.0) -> dict[str, object]:
            sent.append((request, timeout))
            return {"rewound": True}

    client._query = Query()  # type: ignore[assignment]
    assert await control.rewind(client, "u1", "u2", 5.0) == {"rewound": True}
    assert sent == [({"subtype": "rewind_conversation", "target_message_uuid": "u1",
                      "last_seen_user_message_uuid": "u2"}, 5.0)]


def test_a_client_without_it_is_a_clear_error() -> None:
    with pytest.raises(control.ControlUnavailable, match="pyproject.toml pins"):
        control.control_sender(ClaudeSDKClient(ClaudeAgentOptions()))
