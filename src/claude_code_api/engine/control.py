"""The one private claude-agent-sdk call the gateway makes, in one place.

``rewind_conversation`` (cut a live session back to before a user message, ~5 ms)
is a control request the CLI answers but the SDK has no public method for, so it
goes through the SDK's ``ClaudeSDKClient._query._send_control_request``. That is
checked against the pinned SDK range (pyproject: ``claude-agent-sdk>=0.2.187,<0.3``)
by ``tests/unit/test_control.py``, which fails naming the change should an upgrade
move or rename it; at run time a missing method is a clear error, never a silent
no-op.
"""

from __future__ import annotations

from typing import Any

from claude_agent_sdk import ClaudeSDKClient

from ..errors import WorkerCrashed


class ControlUnavailable(WorkerCrashed):
    """This claude-agent-sdk has no private control-request method where we use it."""


def control_sender(client: ClaudeSDKClient) -> Any:
    """The connected client's private control-request method."""
    query = getattr(client, "_query", None)
    send = getattr(query, "_send_control_request", None)
    if send is None:
        raise ControlUnavailable(
            "this claude-agent-sdk has no ClaudeSDKClient._query._send_control_request; "
            "install a version in the range pyproject.toml pins")
    return send


async def rewind(client: ClaudeSDKClient, target: str, last_seen: str,
                 timeout: float) -> dict[str, Any]:
    """Ask the CLI to cut its conversation back to before the user message ``target``
    (``last_seen``: the last user message it has, which it checks); its answer."""
    send = control_sender(client)
    response = await send({"subtype": "rewind_conversation", "target_message_uuid": target,
                           "last_seen_user_message_uuid": last_seen}, timeout)
    return response if isinstance(response, dict) else {"answer": response}
