"""Pure rendering of neutral events as legacy completion bodies and chunks.

A streamed chunk has the same shape as the whole body (``text_completion``), as
OpenAI sends it: ``logprobs`` always present and null, ``finish_reason`` null until
the last chunk of the choice. With ``include_usage`` a last chunk has no choices and
the usage; the others leave ``usage`` out (the spec's ``usage`` is not nullable).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from openai.types import Completion, CompletionChoice

from ...events import StopReason, Usage
from ..openai_chat.render import FINISH_REASONS, usage_body


def new_id() -> str:
    return "cmpl-" + uuid.uuid4().hex[:24]


def finish_reason(stop: StopReason) -> str:
    # Nothing here offers tools: a stop at tool use cannot happen.
    return FINISH_REASONS[stop] if stop != "tool_use" else "stop"


def completion_body(cid: str, model: str, choices: list[tuple[str, StopReason]],
                    usage: Usage) -> dict[str, Any]:
    """The body for the choices' (text, stop reason), in prompt order."""
    completion = Completion(
        id=cid, object="text_completion", created=int(time.time()), model=model,
        choices=[CompletionChoice(index=i, text=text, finish_reason=finish_reason(stop))
                 for i, (text, stop) in enumerate(choices)],
        usage=usage_body(usage))
    body = completion.model_dump(mode="json", exclude_none=True)
    for choice in body["choices"]:
        choice["logprobs"] = None
    return body


class CompletionChunkWriter:
    """The chunks of one streamed completion (one prompt, choice 0)."""

    def __init__(self, cid: str, model: str, include_usage: bool, echo: str | None) -> None:
        self.cid = cid
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage
        self.echo = echo

    def _chunk(self, text: str, finish: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = Completion(
            id=self.cid, object="text_completion", created=self.created, model=self.model,
            choices=[]).model_dump(mode="json", exclude_none=True)
        body["choices"] = [{"text": text, "index": 0, "logprobs": None,
                            "finish_reason": finish}]
        return body

    def role(self) -> dict[str, Any] | None:
        return self._chunk(self.echo) if self.echo else None

    def text(self, text: str) -> dict[str, Any] | None:
        return self._chunk(text)

    def reasoning(self, text: str) -> dict[str, Any] | None:
        return None  # a completion is the text only

    def tool_start(self, index: int, call_id: str, name: str) -> dict[str, Any] | None:
        return None

    def tool_arguments(self, index: int, fragment: str) -> dict[str, Any] | None:
        return None

    def finish(self, stop: StopReason) -> dict[str, Any] | None:
        return self._chunk("", finish_reason(stop))

    def usage(self, usage: Usage) -> dict[str, Any] | None:
        body: dict[str, Any] = Completion(
            id=self.cid, object="text_completion", created=self.created, model=self.model,
            choices=[], usage=usage_body(usage)).model_dump(mode="json", exclude_none=True)
        return body
