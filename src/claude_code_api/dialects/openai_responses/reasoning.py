"""``encrypted_content`` of a reasoning item: Claude's signed thinking, carried by the client.

A stateless client (``store: false``, ``include: ["reasoning.encrypted_content"]``)
sends its reasoning items back with the next request. The content is the thinking
block itself — text and Anthropic's signature — so a replayed history gives Claude
its own thinking back, as the Messages API expects before a tool call's result.
It is opaque to the client, not secret (the Chat dialect shows the same text), and
the signature is what Anthropic checks; anything we did not write is dropped.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

_PREFIX = "cca1."


def seal(thinking: str, signature: str) -> str:
    data = json.dumps({"thinking": thinking, "signature": signature}, ensure_ascii=False,
                      separators=(",", ":"))
    return _PREFIX + base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


def unseal(content: str | None) -> dict[str, Any] | None:
    """The thinking block ``seal`` wrote into ``content``; None for anything else."""
    if not content or not content.startswith(_PREFIX):
        return None
    raw = content[len(_PREFIX):]
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("thinking"), str) or \
            not isinstance(data.get("signature"), str) or not data["signature"]:
        return None
    return {"type": "thinking", "thinking": data["thinking"], "signature": data["signature"]}
