"""The caller of one HTTP request, as the access middleware found it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import Request

from .keys import LOCAL, ApiKey


@dataclass
class Caller:
    key: ApiKey | None = None  # None: no key (allowed on loopback only)
    request_id: str = "-"
    route: str = "other"
    started: float = field(default_factory=time.monotonic)
    completed: bool = False  # a whole answer was produced (not a pause at tool calls)
    cacheable: bool = True  # False for answers that must not be served again (agent mode)
    # Gives the key's concurrency slot back (set by the access middleware when a limit
    # admitted the request): once the turn is over, before its last frames go out, so
    # that a client sending its next request on reading them finds the slot free.
    release: Callable[[], Awaitable[None]] | None = field(default=None, repr=False)

    async def released(self) -> None:
        """The request is over as far as its key's limits go (idempotent)."""
        release, self.release = self.release, None
        if release is not None:
            await release()

    @property
    def owner(self) -> str:
        """Whose conversations, responses and ledger rows these are."""
        return self.key.id if self.key is not None else LOCAL

    def scope(self, user: str | None = None) -> str:
        """Conversations are continued only within one owner and end user."""
        return f"{self.owner}:{user or ''}"

    def owns(self, scope: str) -> bool:
        return scope.startswith(self.owner + ":")


def caller_of(request: Request) -> Caller:
    caller = getattr(request.state, "caller", None)
    return caller if isinstance(caller, Caller) else Caller()
