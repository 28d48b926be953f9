"""Upstream credentials: several Anthropic API keys or OAuth tokens, rotated at the relay.

The CLIs never hold a configured secret: each is started with a stand-in of the
credential's kind (``cli_env``: an API key, or an OAuth token, so the CLI sends
the matching headers and betas), and the relay (``relay.py``) puts the real
credential on each upstream call (``authorize``). The first healthy credential
in configured order serves every call (primary with failover). When the upstream
rate-limits (429) or rejects (401/403) a credential, it cools down for a while
and the relay sends the same call again with the next one, before the CLI sees
anything; once the cool-down is over it is the first choice again. No worker is
restarted for any of this. A credential is named by its ``label``
(``#2 (api key …wxyz)``) in logs, /health and errors, never by its secret.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import SecretStr

from ..errors import UpstreamRateLimited

Kind = Literal["api key", "oauth token"]

_OAUTH_PREFIX = "sk-ant-oat"
# What a CLI holds instead of a configured credential: shaped like one of its kind
# (the CLI does not check it; it never leaves the machine, the relay replaces it).
_STAND_IN: dict[Kind, str] = {"api key": "sk-ant-api03-claude-code-api-relay",
                              "oauth token": "sk-ant-oat01-claude-code-api-relay"}
_OAUTH_BETA = "oauth-2025-04-20"
# Every variable the CLI authenticates with: the one not chosen is set empty (the CLI
# treats an empty value as unset), so the operator's own environment, which the SDK
# merges under the worker's, cannot take precedence over the chosen credential.
_AUTH_VARIABLES = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")


class Credential:
    """One secret and its health: usable, or cooling down until ``until``."""

    def __init__(self, number: int, secret: SecretStr) -> None:
        self.number = number
        self._secret = secret
        self.kind: Kind = "oauth token" if secret.get_secret_value().startswith(
            _OAUTH_PREFIX) else "api key"
        self.until = 0.0  # time.monotonic() at which a cool-down ends
        self.reason: str | None = None
        self.uses = 0  # upstream calls sent with it
        self.failures = 0  # times the upstream refused it

    @property
    def label(self) -> str:
        value = self._secret.get_secret_value()
        tail = f" …{value[-4:]}" if len(value) >= 20 else ""
        return f"#{self.number} ({self.kind}{tail})"

    def __repr__(self) -> str:
        return f"<Credential {self.label}>"

    def cli_env(self) -> dict[str, str]:
        """A CLI's authentication variables: a stand-in of this credential's kind, the
        others empty."""
        chosen = "CLAUDE_CODE_OAUTH_TOKEN" if self.kind == "oauth token" \
            else "ANTHROPIC_API_KEY"
        env = dict.fromkeys(_AUTH_VARIABLES, "")
        env[chosen] = _STAND_IN[self.kind]
        return env

    def authorize(self, headers: dict[str, str]) -> dict[str, str]:
        """A CLI call's headers with this credential in place of the stand-in: an API
        key as ``x-api-key``, a token as a bearer token with the OAuth beta."""
        out = {k: v for k, v in headers.items() if k.lower() not in ("x-api-key",
                                                                     "authorization")}
        betas = [b.strip() for k, v in headers.items() if k.lower() == "anthropic-beta"
                 for b in v.split(",") if b.strip()]
        out = {k: v for k, v in out.items() if k.lower() != "anthropic-beta"}
        secret = self._secret.get_secret_value()
        if self.kind == "oauth token":
            out["authorization"] = f"Bearer {secret}"
            betas += [] if _OAUTH_BETA in betas else [_OAUTH_BETA]
        else:
            out["x-api-key"] = secret
            betas = [b for b in betas if b != _OAUTH_BETA]
        if betas:
            out["anthropic-beta"] = ",".join(betas)
        return out

    def cooling(self, now: float) -> float:
        """Seconds until the cool-down ends; 0 when usable."""
        return max(0.0, self.until - now)


class Credentials:
    """The configured credentials in order; empty when the CLI's own login is used."""

    def __init__(self, secrets: Sequence[SecretStr], cooldown: float,
                 rejected_cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.items = [Credential(n, s) for n, s in enumerate(secrets, 1)]
        self.cooldown = cooldown
        self.rejected_cooldown = rejected_cooldown
        self.clock = clock
        self.rotations = 0  # calls sent again with another credential

    def __bool__(self) -> bool:
        return bool(self.items)

    def __repr__(self) -> str:
        now = self.clock()
        return f"<Credentials {[(c.label, round(c.cooling(now))) for c in self.items]}>"

    def current(self) -> Credential | None:
        """The credential in use: the first usable one, or when all are cooling the
        first to be back; None when none is configured (the CLI's own login)."""
        if not self.items:
            return None
        now = self.clock()
        for credential in self.items:
            if not credential.cooling(now):
                return credential
        return min(self.items, key=lambda c: c.until)

    def pick(self) -> Credential | None:
        """The credential a request should use; raises ``UpstreamRateLimited`` when
        every one is cooling down, with ``retry_after`` until the first is back."""
        credential = self.current()
        if credential is None:
            return None
        wait = credential.cooling(self.clock())
        if wait:
            raise UpstreamRateLimited(
                f"all {len(self.items)} upstream credentials are rate-limited or rejected "
                f"by the Anthropic API; the first is usable again in {math.ceil(wait)} s",
                retry_after=math.ceil(wait))
        return credential

    def usable(self) -> Credential | None:
        """The credential the next call should use; None when every one is cooling."""
        credential = self.current()
        return credential if credential is not None and \
            not credential.cooling(self.clock()) else None

    def refused(self, credential: Credential, status: int) -> float:
        """The upstream refused ``credential`` with ``status``: rest it, ``cooldown``
        seconds after a rate limit (429), ``rejected_cooldown`` after a 401/403.
        Returns the seconds.

        The upstream's own Retry-After would be better for a 429, but the rest must
        cover every call the credential would serve, not the one refused."""
        if status == 429:
            seconds, credential.reason = self.cooldown, "rate_limited"
        else:
            seconds, credential.reason = self.rejected_cooldown, "rejected"
        credential.until = max(credential.until, self.clock() + seconds)
        credential.failures += 1
        return seconds

    def status(self) -> list[dict[str, Any]]:
        """For /health: state and counters, never a secret."""
        now = self.clock()
        out = []
        for credential in self.items:
            left = credential.cooling(now)
            out.append({"label": credential.label,
                        "state": credential.reason if left else "ok",
                        "cooling_seconds_left": math.ceil(left),
                        "uses": credential.uses, "failures": credential.failures})
        return out
