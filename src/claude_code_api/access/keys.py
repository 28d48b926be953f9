"""Client API keys and the usage ledger, in the gateway's store (SQLite or PostgreSQL).

A key looks like ``sk-cca-<id>-<secret>``: the 12-hex-digit id is public (it
names the key in logs, metrics and the ledger), the 48-hex-digit secret is shown
once when the key is created and only its SHA-256 is stored. Secrets are random
(192 bits), so a fast hash is enough; the lookup is by id and the hashes are
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import BudgetExceeded
from ..events import Usage
from ..store import Store

KEY_PREFIX = "sk-cca-"
_KEY = re.compile(r"^sk-cca-([0-9a-f]{12})-([0-9a-f]{48})$")
LOCAL = "local"  # the owner of requests made without a key (loopback only)

# The tables are made and changed by store/migrations.py (api_keys, usage).


# Columns qualified by their table: PostgreSQL finds a bare name ambiguous next to
# ``excluded``'s.
_CHARGE = (
    "INSERT INTO usage (key_id, model, day, requests, cached_requests, input_tokens, "
    "output_tokens, cache_read_tokens, cache_creation_tokens, cost_usd) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key_id, model, day) DO UPDATE SET "
    "requests = usage.requests + excluded.requests, "
    "cached_requests = usage.cached_requests + excluded.cached_requests, "
    "input_tokens = usage.input_tokens + excluded.input_tokens, "
    "output_tokens = usage.output_tokens + excluded.output_tokens, "
    "cache_read_tokens = usage.cache_read_tokens + excluded.cache_read_tokens, "
    "cache_creation_tokens = usage.cache_creation_tokens + excluded.cache_creation_tokens, "
    "cost_usd = usage.cost_usd + excluded.cost_usd")


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    rpm: int | None = None
    concurrency: int | None = None
    budget_usd: float | None = None
    models: tuple[str, ...] | None = None
    agent: bool = False  # may use agent mode (when the server enables it)
    max_turns: int | None = None  # agent mode: model calls per turn at most
    spent_usd: float = 0.0
    created_at: float = field(default_factory=time.time)
    last_used_at: float | None = None
    revoked_at: float | None = None
    admin: bool = False  # may use the web console's admin API (/ui/api)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows_model(self, *names: str) -> bool:
        return self.models is None or any(n in self.models for n in names)

    def over_budget(self) -> bool:
        return self.budget_usd is not None and self.spent_usd >= self.budget_usd

    def budget_error(self, reserved: float = 0.0, running: int = 0) -> BudgetExceeded:
        """The refusal for a spent budget; ``reserved`` is what ``running`` turns of the
        key that have not ended yet are expected to cost."""
        held = (f", and ${reserved:.4f} is reserved by {running} turn"
                f"{'s' if running != 1 else ''} still running") if running else ""
        return BudgetExceeded(
            f"The API key `{self.name}` has used its budget of ${self.budget_usd or 0:.2f} "
            f"(spent ${self.spent_usd:.4f}{held}). Ask the operator to raise it "
            "(`claude-code-api keys update`).")

    def budget_left(self) -> float | None:
        return None if self.budget_usd is None else max(0.0, self.budget_usd - self.spent_usd)

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "rpm": self.rpm,
                "concurrency": self.concurrency, "budget_usd": self.budget_usd,
                "spent_usd": round(self.spent_usd, 6),
                "models": list(self.models) if self.models is not None else None,
                "agent": self.agent, "max_turns": self.max_turns, "admin": self.admin,
                "created_at": int(self.created_at),
                "last_used_at": int(self.last_used_at) if self.last_used_at else None,
                "revoked": not self.active}


def looks_like_ours(token: str) -> bool:
    """A token in our key format (so a typo in it is an error, not an anonymous call)."""
    return token.startswith(KEY_PREFIX)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore(Store):
    """Keys and the ledger; safe across threads and across processes (the ``keys``
    command writes while the server runs; replicas share a PostgreSQL store)."""

    # -- keys -------------------------------------------------------------------
    def create(self, name: str, *, rpm: int | None = None, concurrency: int | None = None,
               budget_usd: float | None = None, models: list[str] | None = None,
               agent: bool = False, max_turns: int | None = None,
               admin: bool = False) -> tuple[ApiKey, str]:
        """A new key and its secret token (shown once; only its hash is kept)."""
        if self.find(name) is not None:
            raise ValueError(f"an active key named {name!r} exists")
        key_id, secret = secrets.token_hex(6), secrets.token_hex(24)
        key = ApiKey(key_id, name, rpm, concurrency, budget_usd,
                     tuple(models) if models is not None else None, agent, max_turns,
                     admin=admin)
        self.db.run(
            "INSERT INTO api_keys (id, name, secret_hash, rpm, concurrency, budget_usd, "
            "models, agent, max_turns, admin, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key.id, name, _hash(secret), rpm, concurrency, budget_usd,
             json.dumps(models) if models is not None else None, int(agent), max_turns,
             int(admin), key.created_at))
        return key, f"{KEY_PREFIX}{key_id}-{secret}"

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key this token is, or None."""
        match = _KEY.match(token)
        if match is None:
            return None
        key_id, secret = match.groups()
        row = self.db.run("SELECT secret_hash FROM api_keys WHERE id = ? AND "
                          "revoked_at IS NULL", (key_id,)).first()
        expected = row[0] if row else _hash("")  # compare anyway: same time either way
        if not hmac.compare_digest(_hash(secret), expected) or row is None:
            return None
        return self.get(key_id)

    def get(self, key_id: str) -> ApiKey | None:
        rows = self._keys("SELECT * FROM api_keys WHERE id = ?", (key_id,))
        return rows[0] if rows else None

    def find(self, ref: str) -> ApiKey | None:
        """An active key by id, name, or the whole key (whose secret must match: a
        mistyped key finds nothing rather than its id's key)."""
        if _KEY.match(ref):
            return self.authenticate(ref)
        rows = self._keys("SELECT * FROM api_keys WHERE (id = ? OR name = ?) AND "
                          "revoked_at IS NULL", (ref, ref))
        return rows[0] if rows else None

    def all(self, include_revoked: bool = False) -> list[ApiKey]:
        where = "" if include_revoked else "WHERE revoked_at IS NULL "
        return self._keys(f"SELECT * FROM api_keys {where}ORDER BY created_at", ())

    def any_active(self) -> bool:
        return self.db.run("SELECT 1 FROM api_keys WHERE revoked_at IS NULL "
                           "LIMIT 1").first() is not None

    def revoke(self, ref: str) -> ApiKey | None:
        key = self.find(ref)
        if key is None:
            return None
        self.db.run("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (time.time(), key.id))
        return self.get(key.id)

    def update(self, ref: str, *, reset_spent: bool = False,
               **limits: Any) -> ApiKey | None:
        """Change a key's limits (``rpm``, ``concurrency``, ``budget_usd``, ``models``,
        ``max_turns``, ``agent``, ``admin``; a value of None is left alone, 0 or [] means
        no limit)."""
        key = self.find(ref)
        if key is None:
            return None
        sets: list[str] = []
        args: list[Any] = []
        for name in ("rpm", "concurrency", "budget_usd", "models", "max_turns", "agent",
                     "admin"):
            value = limits.get(name)
            if value is None:
                continue
            sets.append(f"{name} = ?")
            if name in ("agent", "admin"):
                args.append(int(value))
            elif name == "models":
                args.append(json.dumps(value) if value else None)
            else:
                args.append(value or None)
        if reset_spent:
            sets.append("spent_usd = 0")
        if sets:
            self.db.run(f"UPDATE api_keys SET {', '.join(sets)} WHERE id = ?", (*args, key.id))
        return self.get(key.id)

    # -- the ledger ---------------------------------------------------------------
    def charge(self, key_id: str, model: str, usage: Usage, cost_usd: float, *,
               cached: bool = False, counted: bool = True) -> None:
        """Record one finished request against its key (``local`` for no key);
        ``counted=False`` adds cost to a request already recorded."""
        now = time.time()
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        row = (key_id, model, day, int(counted and not cached), int(counted and cached),
               usage.input_tokens,
               usage.output_tokens, usage.cache_read_input_tokens,
               usage.cache_creation_input_tokens, cost_usd)
        with self.db.transaction() as tx:
            tx.run(_CHARGE, row)
            tx.run("UPDATE api_keys SET spent_usd = spent_usd + ?, last_used_at = ? "
                   "WHERE id = ?", (cost_usd, now, key_id))

    def usage(self, key_id: str | None = None) -> list[dict[str, Any]]:
        """Ledger rows per key, model and day (UTC), newest first."""
        sql = "SELECT * FROM usage"
        args: tuple[Any, ...] = ()
        if key_id is not None:
            sql += " WHERE key_id = ?"
            args = (key_id,)
        return self.db.run(sql + " ORDER BY day DESC, key_id, model", args).dicts()

    def _keys(self, sql: str, args: tuple[Any, ...]) -> list[ApiKey]:
        rows = self.db.run(sql, args).dicts()
        return [ApiKey(r["id"], r["name"], r["rpm"], r["concurrency"], r["budget_usd"],
                       tuple(json.loads(r["models"])) if r["models"] else None,
                       bool(r["agent"]), r["max_turns"], r["spent_usd"], r["created_at"],
                       r["last_used_at"], r["revoked_at"], bool(r["admin"]))
                for r in rows]
