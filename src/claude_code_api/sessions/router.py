"""POST/GET /v1/sessions, GET/DELETE /v1/sessions/{id}, WS /v1/sessions/{id}/ws.

The WebSocket speaks JSON text frames; every message either way is a model of
``protocol.py`` (the README has the table). One turn runs at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Literal

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field

from ..agent import select
from ..deps import CallerDep, SessionsDep, SettingsDep
from ..errors import Conflict, GatewayError, InvalidRequest, Unauthorized
from ..openapi import BODY, openai_errors
from .protocol import (
    ErrorFrame,
    Interrupt,
    SessionFrame,
    SessionInfo,
    UserTurn,
    parse_client,
)
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


class SessionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[SessionInfo]


class SessionDeleted(BaseModel):
    id: str
    object: Literal["session.deleted"] = "session.deleted"
    deleted: bool = True


# 429: the server's live sessions are all open, the pool is full, or the budget spent.
@router.post("/v1/sessions", responses=openai_errors(*BODY, 401, 403, 404, 429, 502))
async def create_session(body: SessionCreate, request: Request, sessions: SessionsDep,
                         settings: SettingsDep, caller: CallerDep) -> SessionInfo:
    default = settings.claude.default_model
    model, agent = select(body.model or default, {"agent": body.agent}, request.headers,
                          default)
    session = await sessions.create(caller, model, body.system, agent)
    return session.summary()


@router.get("/v1/sessions", responses=openai_errors(401))
async def list_sessions(sessions: SessionsDep, caller: CallerDep) -> SessionList:
    return SessionList(data=[s.summary() for s in sessions.all(caller)])


@router.get("/v1/sessions/{session_id}", responses=openai_errors(401, 404))
async def get_session(session_id: str, sessions: SessionsDep,
                      caller: CallerDep) -> SessionInfo:
    return sessions.get(caller, session_id).summary()


@router.delete("/v1/sessions/{session_id}", responses=openai_errors(401, 404))
async def delete_session(session_id: str, sessions: SessionsDep,
                         caller: CallerDep) -> SessionDeleted:
    await sessions.close(sessions.get(caller, session_id))
    return SessionDeleted(id=session_id)


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
    try:
        await _send(websocket, SessionFrame(**session.summary().model_dump()))
        await _converse(websocket, sessions, session)
    except WebSocketDisconnect:
        pass
    finally:
        session.connected = False
        await sessions.settle(session)  # a turn nobody reads any more is stopped


async def _converse(websocket: WebSocket, sessions: Sessions, session: Session) -> None:
    """Take the client's messages until it goes; one turn runs at a time."""
    running: asyncio.Task[None] | None = None
    try:
        while True:
            try:
                message = parse_client(await _receive(websocket))
            except InvalidRequest as exc:
                await _send(websocket, ErrorFrame.of(exc))
                continue
            if isinstance(message, Interrupt):
                await session.live.interrupt()
            elif running is not None and not running.done():
                await _send(websocket, ErrorFrame.of(Conflict(
                    "a turn is running; wait for its result or send an interrupt")))
            else:
                running = await _start(websocket, sessions, session, message)
    finally:
        if running is not None and not running.done():
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await running


async def _receive(websocket: WebSocket) -> str:
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if not isinstance(text, str):
        raise InvalidRequest("messages are JSON text frames, not binary ones")
    return text


async def _start(websocket: WebSocket, sessions: Sessions, session: Session,
                 message: UserTurn) -> asyncio.Task[None] | None:
    """The turn, admitted and running; else the refusal is sent and None returned."""
    try:
        await sessions.begin(session)
    except GatewayError as exc:
        await _send(websocket, ErrorFrame.of(exc))
        if isinstance(exc, Unauthorized):  # the key was revoked: its session ends
            await sessions.close(session)
        return None
    return asyncio.create_task(_pump(websocket, sessions, session, message.blocks()))


async def _pump(websocket: WebSocket, sessions: Sessions, session: Session,
                content: str | list[dict[str, Any]]) -> None:
    try:
        async for frame in sessions.run(session, content):
            await _send(websocket, frame)
    except GatewayError as exc:
        await _send(websocket, ErrorFrame.of(exc))


async def _send(websocket: WebSocket, frame: BaseModel) -> None:
    await websocket.send_json(frame.model_dump(mode="json"))
