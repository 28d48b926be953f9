"""Runs the items of a batch concurrently, each through ``Turns.run``.

Limits: a batch runs at most ``min(claude.max_concurrent_sessions, its
max_concurrency, its key's concurrency limit)`` items at once, and all batches
together at most ``claude.max_concurrent_sessions``: batch items never crowd the
pool's queue so that other callers get 429 (they wait in the normal queue at
worst). Each item runs with its own ``Caller`` for the batch's key, so the key's
model list, budget and ledger apply per item; the key's requests-per-minute
limit was applied once, to the request that made the batch.

An item's failure is its own result (status and OpenAI error body), never the
batch's; cancelling a run interrupts its running turns.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..access.caller import Caller
from ..access.keys import KeyStore
from ..dialects.errors import describe_validation
from ..dialects.openai_chat.completion import complete, conversation_id
from ..dialects.openai_chat.models import ChatCompletionRequest
from ..dialects.openai_chat.render import error_body
from ..errors import (
    BudgetExceeded,
    GatewayError,
    InvalidRequest,
    NotFound,
    Overloaded,
    Unauthorized,
)
from ..gateway import Turns
from ..logs import request_id
from .models import CHAT, BatchItem

log = logging.getLogger(__name__)
OVERLOADED_RETRIES = 3  # a batch is not in a hurry: a full pool queue is waited out


@dataclass(frozen=True)
class Outcome:
    """The result of one item: the body its endpoint answered with, or an error body."""

    index: int
    custom_id: str
    status_code: int
    body: dict[str, Any]
    request_id: str

    @property
    def ok(self) -> bool:
        return self.status_code == 200

    def result(self) -> dict[str, Any]:
        """The item's entry in a ``POST /v1/batch`` answer."""
        key = "body" if self.ok else "error"
        value = self.body if self.ok else self.body["error"]
        return {"custom_id": self.custom_id, "status_code": self.status_code, key: value}

    def line(self) -> dict[str, Any]:
        """The item's line in a batch output (or error) file, as OpenAI writes it."""
        return {"id": "batch_req_" + uuid.uuid4().hex, "custom_id": self.custom_id,
                "response": {"status_code": self.status_code, "request_id": self.request_id,
                             "body": self.body},
                "error": None}


def _cancelled() -> bool:
    """Whether this task was asked to stop, even if the request was swallowed below
    (Python 3.11's ``asyncio.wait_for`` can lose one, e.g. in an image fetch)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Runner:
    def __init__(self, turns: Turns, keys: KeyStore, pool_size: int) -> None:
        self.turns = turns
        self.keys = keys
        self.pool_size = pool_size
        # Shared by every batch: together they hold at most one pool's worth of turns.
        self.slots = asyncio.Semaphore(pool_size)

    def limit(self, caller: Caller, wanted: int | None = None) -> int:
        """How many of one batch's items may run at once."""
        bounds = [self.pool_size, wanted,
                  caller.key.concurrency if caller.key is not None else None]
        return min(b for b in bounds if b)

    async def run(self, caller: Caller, items: Iterable[tuple[int, BatchItem]], limit: int,
                  done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
        """Run ``(index, item)`` pairs, ``limit`` at a time; the outcomes in index order.
        ``done`` hears of each outcome as it comes (the Batch API stores it)."""
        pending = iter(items)
        outcomes: list[Outcome] = []

        async def lane() -> None:
            # The lanes share one iterator: each item is taken exactly once.
            for index, item in pending:
                async with self.slots:
                    outcome = await self.item(caller, index, item)
                outcomes.append(outcome)
                if done is not None:
                    done(outcome)
                if _cancelled():
                    raise asyncio.CancelledError

        async with asyncio.TaskGroup() as group:
            for _ in range(limit):
                group.create_task(lane())
        return sorted(outcomes, key=lambda o: o.index)

    async def item(self, caller: Caller, index: int, item: BatchItem) -> Outcome:
        rid = "req_" + uuid.uuid4().hex
        token = request_id.set(rid)  # the item's log lines carry its own id
        try:
            body = await self._attempts(caller, item, rid)
            return Outcome(index, item.custom_id, 200, body, rid)
        except ValidationError as exc:
            message, param = describe_validation(exc.errors())
            body = error_body(message, "invalid_request_error", param, None)
            return Outcome(index, item.custom_id, 400, body, rid)
        except GatewayError as exc:
            body = error_body(exc.message, exc.type, exc.param, exc.code)
            return Outcome(index, item.custom_id, exc.status, body, rid)
        except Exception:
            log.exception("batch item %s failed", item.custom_id)
            body = error_body("internal error in the gateway", "api_error", None, None)
            return Outcome(index, item.custom_id, 500, body, rid)
        finally:
            request_id.reset(token)

    async def _attempts(self, caller: Caller, item: BatchItem, rid: str) -> dict[str, Any]:
        for attempt in range(OVERLOADED_RETRIES + 1):
            try:
                return await self._call(caller, item, rid)
            except Overloaded as exc:
                if attempt == OVERLOADED_RETRIES:
                    raise
                await asyncio.sleep(exc.retry_after or 1)
        raise AssertionError("unreachable")

    async def _call(self, caller: Caller, item: BatchItem, rid: str) -> dict[str, Any]:
        if item.method.upper() != "POST":
            raise InvalidRequest("batch requests use method POST", param="method")
        if item.url != CHAT:
            raise NotFound(f"`{item.url}` cannot be batched; batch items call {CHAT}",
                           param="url")
        body = ChatCompletionRequest.model_validate(item.body)
        if body.stream:
            raise InvalidRequest("stream is not available in a batch: each item's answer "
                                 "is returned whole", param="stream")
        if body.model_extra:
            log.info("batch chat item: unknown fields %s", sorted(body.model_extra))
        explicit = conversation_id(body, None)
        return await complete(self.turns, body, self._caller(caller, rid), explicit)

    def _caller(self, caller: Caller, rid: str) -> Caller:
        """The item's own caller, with the key as it is now: a key revoked or over its
        budget while the batch runs stops its remaining items."""
        if caller.key is None:
            return Caller(request_id=rid, route=CHAT)
        key = self.keys.get(caller.key.id)
        if key is None or not key.active:
            raise Unauthorized(f"The API key `{caller.key.name}` was revoked while its "
                               "batch ran.")
        if key.over_budget():
            raise BudgetExceeded(f"The API key `{key.name}` has used its budget of "
                                 f"${key.budget_usd:.2f} (spent ${key.spent_usd:.4f}).")
        return Caller(key=key, request_id=rid, route=CHAT)
