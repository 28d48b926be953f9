"""Per-key request limits: requests per minute and requests at once.

Requests per minute is a sliding window (a key with ``rpm = 10`` never has more
than ten requests started in any 60 seconds); concurrency counts requests whose
response has not finished. ``Limiter`` is the interface; ``RateLimiter`` keeps the
counts in this process (one replica), ``redis_state.RedisLimiter`` in Redis (shared
by every replica). The in-process one forgets a key's state when it is idle, so
memory stays bounded by the keys in use.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import RateLimited
from .keys import ApiKey


@dataclass
class Verdict:
    """What a limit check decided, with what the x-ratelimit-* headers report."""

    allowed: bool
    reason: str = ""  # "rpm" | "concurrency" when refused
    retry_after: int = 0
    limit: int | None = None  # requests per minute
    remaining: int | None = None
    reset_seconds: float = 0.0  # until the window is empty again

    def headers(self) -> dict[str, str]:
        if self.limit is None or self.remaining is None:
            return {}
        return {"x-ratelimit-limit-requests": str(self.limit),
                "x-ratelimit-remaining-requests": str(self.remaining),
                "x-ratelimit-reset-requests": duration(self.reset_seconds)}


def duration(seconds: float) -> str:
    """OpenAI's reset format: "1s", "6m0s", "0.5s"."""
    if seconds < 1:
        return f"{max(seconds, 0):.3g}s" if seconds > 0 else "0s"
    whole = math.ceil(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


class Limiter(Protocol):
    """A key's requests per minute and at once, wherever the counts are kept."""

    async def acquire(self, key: ApiKey) -> Verdict:
        """Admit one request for ``key`` (call ``release`` when its response ends) or
        say why not."""
        ...

    async def release(self, key: ApiKey) -> None:
        """One of the key's admitted requests has ended."""
        ...

    async def running(self, key_id: str) -> int:
        """The key's requests admitted and not yet released."""
        ...


async def admit(limiter: Limiter, key: ApiKey) -> Verdict:
    """``acquire``, or raise the 429 that says which limit refused the request."""
    verdict = await limiter.acquire(key)
    if verdict.allowed:
        return verdict
    if verdict.reason == "rpm":
        message = (f"Rate limit reached for the API key `{key.name}`: {key.rpm} requests "
                   f"per minute. Retry in {verdict.retry_after}s.")
    else:
        running = f"{key.concurrency} request{'s' if key.concurrency != 1 else ''}"
        message = (f"The API key `{key.name}` already has {running} running, its "
                   "limit. Retry when one finishes.")
    raise RateLimited(message, retry_after=verdict.retry_after,
                      headers={**verdict.headers(), "x-ratelimit-reason": verdict.reason})


@dataclass
class _State:
    starts: deque[float] = field(default_factory=deque)
    running: int = 0


class RateLimiter:
    """The limits of one process (no ``redis.url``)."""

    def __init__(self, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._states: dict[str, _State] = {}

    async def acquire(self, key: ApiKey) -> Verdict:
        now = self._clock()
        state = self._states.setdefault(key.id, _State())
        while state.starts and state.starts[0] <= now - self.window:
            state.starts.popleft()
        if key.rpm is not None and len(state.starts) >= key.rpm:
            wait = state.starts[0] + self.window - now
            return Verdict(False, "rpm", max(1, math.ceil(wait)), *self._window(key, state, now))
        if key.concurrency is not None and state.running >= key.concurrency:
            return Verdict(False, "concurrency", 1, *self._window(key, state, now))
        state.starts.append(now)
        state.running += 1
        return Verdict(True, "", 0, *self._window(key, state, now))

    async def release(self, key: ApiKey) -> None:
        state = self._states.get(key.id)
        if state is None:
            return
        state.running = max(0, state.running - 1)
        if not state.running and (not state.starts or
                                  state.starts[-1] <= self._clock() - self.window):
            del self._states[key.id]

    async def running(self, key_id: str) -> int:
        state = self._states.get(key_id)
        return state.running if state else 0

    def _window(self, key: ApiKey, state: _State, now: float
                ) -> tuple[int | None, int | None, float]:
        if key.rpm is None:
            return None, None, 0.0
        remaining = max(0, key.rpm - len(state.starts))
        reset = state.starts[-1] + self.window - now if state.starts else 0.0
        return key.rpm, remaining, max(0.0, reset)
