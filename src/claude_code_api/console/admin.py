"""``/ui/api``: what the console reads and changes — keys, the usage ledger, every
owner's conversations. Every route needs an admin (see ``access.admin``); a stored
key's secret is never sent back, only the new key's, once, when it is made."""

from __future__ import annotations

import csv
import io
import re
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from .. import __version__
from ..access.caller import Caller
from ..access.keys import LOCAL, ApiKey
from ..errors import Conflict, InvalidRequest, NotFound
from ..store.conversations import Conversation
from .access import admin, gateway_of

router = APIRouter(prefix="/ui/api")
Admin = Annotated[Caller, Depends(admin)]
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_USAGE_COLUMNS = ("day", "key_id", "key_name", "model", "requests", "cached_requests",
                  "input_tokens", "output_tokens", "cache_read_tokens",
                  "cache_creation_tokens", "cost_usd")


class Limits(BaseModel):
    """A key's limits; 0 (or an empty list) means none."""

    model_config = ConfigDict(extra="forbid")
    rpm: int | None = Field(None, ge=0, le=1_000_000)
    concurrency: int | None = Field(None, ge=0, le=10_000)
    budget_usd: float | None = Field(None, ge=0, le=1e9)
    models: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = \
        Field(None, max_length=100)
    agent: bool | None = None
    max_turns: int | None = Field(None, ge=0, le=10_000)
    admin: bool | None = None


class NewKey(Limits):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")


@router.get("/session")
async def session(request: Request, caller: Admin) -> dict[str, Any]:
    """Who the console is signed in as, and what the playground can offer."""
    gateway = gateway_of(request)
    return {"admin": caller.key.name if caller.key else None,
            "auth_required": gateway.settings.auth_required(), "version": __version__,
            "models": [entry.id for entry in gateway.catalog.entries()]}


@router.get("/keys")
async def list_keys(request: Request, _: Admin) -> dict[str, Any]:
    keys = gateway_of(request).keys.all(include_revoked=True)
    return {"data": [k.summary() for k in reversed(keys)]}


@router.post("/keys")
async def create_key(body: NewKey, request: Request, _: Admin) -> dict[str, Any]:
    """A new key; its token is in this answer and nowhere else, ever."""
    try:
        key, token = gateway_of(request).keys.create(
            body.name.strip(), rpm=body.rpm or None, concurrency=body.concurrency or None,
            budget_usd=body.budget_usd or None, models=body.models or None,
            agent=bool(body.agent), max_turns=body.max_turns or None, admin=bool(body.admin))
    except ValueError as exc:
        raise Conflict(str(exc), param="name") from None
    return {"key": key.summary(), "token": token}


@router.post("/keys/{key_id}")
async def update_key(key_id: str, body: Limits, request: Request, _: Admin) -> dict[str, Any]:
    key = gateway_of(request).keys.update(_active(request, key_id).id,
                                          **body.model_dump(exclude_none=True))
    assert key is not None  # it was active a moment ago; revoking keeps the row
    return key.summary()


@router.delete("/keys/{key_id}")
async def revoke_key(key_id: str, request: Request, caller: Admin) -> dict[str, Any]:
    key = _active(request, key_id)
    if caller.key is not None and caller.key.id == key.id:
        raise InvalidRequest("this is the key the console is signed in with; revoke it "
                             "with another admin key or `claude-code-api keys revoke`")
    revoked = gateway_of(request).keys.revoke(key.id)
    assert revoked is not None
    return revoked.summary()


def _active(request: Request, key_id: str) -> ApiKey:
    key = gateway_of(request).keys.get(key_id)
    if key is None or not key.active:
        raise NotFound(f"no active key `{key_id[:40]}`")
    return key


# -- the usage ledger --------------------------------------------------------------
@router.get("/usage")
async def usage(request: Request, _: Admin, key: str | None = None, model: str | None = None,
                since: str | None = None, until: str | None = None) -> dict[str, Any]:
    """Ledger rows per key, model and day (UTC), newest first, with the key's name."""
    return {"data": _usage_rows(request, key, model, since, until)}


@router.get("/usage.csv")
async def usage_csv(request: Request, _: Admin, key: str | None = None,
                    model: str | None = None, since: str | None = None,
                    until: str | None = None) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, _USAGE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(_usage_rows(request, key, model, since, until))
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": 'attachment; filename="claude-code-api-usage.csv"'})


def _usage_rows(request: Request, key: str | None, model: str | None, since: str | None,
                until: str | None) -> list[dict[str, Any]]:
    _check_day("since", since)
    _check_day("until", until)
    keys = gateway_of(request).keys
    names = {k.id: k.name for k in keys.all(include_revoked=True)}
    rows = []
    for row in keys.usage(key or None):
        if (model and row["model"] != model) or (since and row["day"] < since) or \
                (until and row["day"] > until):
            continue
        rows.append({**row, "key_name": names.get(row["key_id"], _owner_name(row["key_id"])),
                     "cost_usd": round(row["cost_usd"], 6)})
    return rows


def _check_day(name: str, day: str | None) -> None:
    if day is not None and not _DAY.match(day):
        raise InvalidRequest(f"`{name}` is a day: YYYY-MM-DD", param=name)


def _owner_name(owner: str) -> str:
    return "(no key)" if owner == LOCAL else owner


# -- conversations, every owner's ------------------------------------------------------
@router.get("/conversations")
async def conversations(request: Request, _: Admin, key: str | None = None,
                        model: str | None = None, since: str | None = None,
                        limit: int = 200) -> dict[str, Any]:
    """Every owner's conversations (or one key's), newest first."""
    _check_day("since", since)
    gateway = gateway_of(request)
    names = {k.id: k.name for k in gateway.keys.all(include_revoked=True)}
    found = gateway.conversations.store.recent(owner=key or None,
                                               limit=max(1, min(limit, 1000)))
    data = []
    for conversation in found:
        owner = conversation.scope.split(":", 1)[0]
        # A model filter is typed by hand: "sonnet" finds claude-sonnet-….
        if (model and model not in conversation.model) or \
                (since and _day(conversation.updated_at) < since):
            continue
        data.append({**_summary(conversation), "key_id": owner,
                     "key_name": names.get(owner, _owner_name(owner))})
    return {"data": data}


@router.get("/conversations/{conversation_id}")
async def conversation(conversation_id: str, request: Request, _: Admin) -> dict[str, Any]:
    found = gateway_of(request).conversations.get(conversation_id)
    return {**_summary(found), "system": found.system,
            "messages": [{"role": m.role, "content": list(m.content)}
                         for m in found.messages]}


@router.delete("/conversations/{conversation_id}")
async def delete_conversation(conversation_id: str, request: Request,
                              _: Admin) -> dict[str, Any]:
    gateway = gateway_of(request)
    found = gateway.conversations.delete(conversation_id)
    gateway.engine.forget(found.fingerprint)  # a worker holding it lets it go
    return {"id": found.id, "deleted": True}


def _summary(conversation: Conversation) -> dict[str, Any]:
    first = next((m for m in conversation.messages if m.role == "user"), None)
    return {"id": conversation.id, "model": conversation.model, "turns": conversation.turns,
            "created_at": int(conversation.created_at),
            "updated_at": int(conversation.updated_at),
            "title": _text_of(first.content)[:120] if first else ""}


def _text_of(content: tuple[dict[str, Any], ...]) -> str:
    return " ".join(b.get("text", "") for b in content if b.get("type") == "text").strip()


def _day(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(timestamp))
