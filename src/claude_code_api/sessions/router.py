"""POST/GET /v1/sessions, GET/DELETE /v1/sessions/{id}, WS /v1/sessions/{id}/ws.

The WebSocket speaks JSON text frames. The client sends
``{"type": "user", "content": "..." | [blocks]}`` or ``{"type": "interrupt"}``;
the server sends ``{"type": "session", ...}`` once, then every message of the
CLI as it comes (``stream_event``, ``assistant``, ``user`` with tool results,
``system``, ``result``), and ``{"type": "error", "error": {...}}`` for a
message it cannot take. One turn runs at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field

from ..agent import select
from ..body import check_text
from ..deps import CallerDep, SessionsDep, SettingsDep
from ..errors import GatewayError, InvalidRequest
from ..openapi import BODY, openai_errors
from .service import Session, Sessions

log = logging.getLogger(__name__)
router = APIRouter(tags=["Sessions"])


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"model": "sonnet", "system": "Be brief."}]})

    model: str | None = Field(None, description="a model, or claude-code[/model] for "
                                                "agent mode")
    system: str | None = Field(None, description="system prompt (appended to Claude "
                                                 "Code's own in agent mode)")
    agent: dict[str, Any] | bool | None = Field(None, description="agent mode and its "
                                                "narrowing, as for the other endpoints")


# 429: the server's live sessions are all open, the pool is full, or the budget spent.
@router.post("/v1/sessions", responses=openai_errors(*BODY, 401, 403, 404, 429, 502))
async def create_session(body: SessionCreate, request: Request, sessions: SessionsDep,
                         settings: SettingsDep, caller: CallerDep) -> dict[str, Any]:
    default = settings.claude.default_model
    model, agent = select(body.model or default, {"agent": body.agent}, request.headers,
                          default)
    session = await sessions.create(caller, model, body.system, agent)
    return session.summary()


@router.get("/v1/sessions", responses=openai_errors(401))
async def list_sessions(sessions: SessionsDep, caller: CallerDep) -> dict[str, Any]:
    return {"object": "list", "data": [s.summary() for s in sessions.all(caller)]}


@router.get("/v1/sessions/{session_id}", responses=openai_errors(401, 404))
async def get_session(session_id: str, sessions: SessionsDep,
                      caller: CallerDep) -> dict[str, Any]:
    return sessions.get(caller, session_id).summary()


@router.delete("/v1/sessions/{session_id}", responses=openai_errors(401, 404))
async def delete_session(session_id: str, sessions: SessionsDep,
                         caller: CallerDep) -> dict[str, Any]:
    await sessions.close(sessions.get(caller, session_id))
    return {"id": session_id, "object": "session.deleted", "deleted": True}


@router.websocket("/v1/sessions/{session_id}/ws")
async def session_socket(websocket: WebSocket, session_id: str, sessions: SessionsDep,
                         caller: CallerDep) -> None:
    try:
        session = sessions.get(caller, session_id)
    except GatewayError:
        await websocket.close(code=4404, reason="session not found")
        return
    if session.connected:
        await websocket.close(code=4409, reason="the session already has a client")
        return
    await websocket.accept()
    session.connected = True
    running: asyncio.Task[None] | None = None
    try:
        await websocket.send_json({"type": "session", **session.summary()})
        while True:
            message = await _receive(websocket)
            if message is None:
                continue
            kind = message.get("type")
            if kind == "interrupt":
                await session.live.interrupt()
            elif kind == "user":
                if running is not None and not running.done():
                    await _error(websocket, "a turn is running; wait for its result or "
                                            "send an interrupt")
                    continue
                content = message.get("content")
                if not _valid_content(content):
                    await _error(websocket, "`content` must be a string or a list of "
                                            "content blocks")
                    continue
                try:
                    sessions.admit(session)
                except GatewayError as exc:
                    await _error(websocket, exc.message, exc.type)
                    continue
                session.last_active = time.monotonic()
                running = asyncio.create_task(_pump(websocket, sessions, session, content))
            else:
                await _error(websocket, f"unknown message type {kind!r}; send `user` or "
                                        "`interrupt`")
    except WebSocketDisconnect:
        pass
    finally:
        session.connected = False
        if running is not None and not running.done():
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await running
        await sessions.settle(session)  # nobody reads this turn any more


async def _receive(websocket: WebSocket) -> dict[str, Any] | None:
    text = await websocket.receive_text()
    try:
        message = json.loads(text)
    except ValueError:
        await _error(websocket, "messages are JSON objects")
        return None
    if not isinstance(message, dict):
        await _error(websocket, "messages are JSON objects")
        return None
    try:
        check_text(text, message)
    except InvalidRequest as exc:
        await _error(websocket, exc.message)
        return None
    return message


def _valid_content(content: Any) -> bool:
    if isinstance(content, str):
        return bool(content)
    return isinstance(content, list) and bool(content) and \
        all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in content)


async def _pump(websocket: WebSocket, sessions: Sessions, session: Session,
                content: Any) -> None:
    try:
        async for message in session.live.turn(content):
            if message["type"] == "result":
                sessions.charge(session, message)
            await websocket.send_json(message)
    except GatewayError as exc:
        sessions.release(session)  # the turn ended without a result
        await _error(websocket, exc.message, exc.type)
    finally:
        session.last_active = time.monotonic()


async def _error(websocket: WebSocket, message: str,
                 error_type: str = "invalid_request_error") -> None:
    await websocket.send_json({"type": "error", "error": {"type": error_type,
                                                          "message": message}})
