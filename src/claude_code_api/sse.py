"""The one SSE encoder."""

from __future__ import annotations

import json
from typing import Any

DONE = b"data: [DONE]\n\n"


def data(payload: Any) -> bytes:
    """A ``data:`` frame (OpenAI style)."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def event(name: str, payload: Any) -> bytes:
    """A named event frame (Anthropic style)."""
    body = json.dumps(payload, separators=(",", ":"))
    return f"event: {name}\ndata: {body}\n\n".encode()
