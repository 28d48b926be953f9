"""The upstream relay: every CLI's Messages API calls pass through the gateway.

Each worker's CLI is started with ``ANTHROPIC_BASE_URL`` pointing at a *lane* of
this relay, ``http://127.0.0.1:PORT/w/<secret>``. The CLI sends its calls there
(``POST /w/<secret>/v1/messages?beta=true``) with its own headers and
credentials; the relay rewrites the body for the turn being served and streams
the upstream's answer back unbuffered. Because the body is rewritten per call, a
CLI process is bound to no request *shape*: the turn's system prompt,
``max_tokens``, effort, sampling parameters, stop sequences, earlier turns and
the client's exact message content are applied here (see docs/relay.md for the
probes this rests on).

The CLI never sees a client's content: the engine sends it a placeholder user
message per turn, and the relay puts the real content (text, images, tool
results, as the client sent them) in its place, and the conversation's earlier
turns (which the CLI never saw either) before the first of them. So a cold
conversation costs one turn whatever its length.

The relay listens on loopback only; a request whose path holds no live lane's
secret gets 404, and only the Messages API paths are forwarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..events import Effort, ToolChoice, ToolSpec
from .credentials import Credential, Credentials

log = logging.getLogger(__name__)

DEFAULT_UPSTREAM = "https://api.anthropic.com"
STRUCTURED_OUTPUT = "StructuredOutput"
RELAY_END = "relay_end"  # the last item of a call's events (``Lane.listen``)
# Launch-time system prompt of every worker: the relay puts each turn's own in its place.
# ASCII, so that it reads the same in any JSON encoding.
SYSTEM_PLACEHOLDER = "[claude-code-api:system-prompt]"
SYSTEM_MARK = SYSTEM_PLACEHOLDER.encode()
_FORWARDED_PATHS = ("v1/messages", "v1/messages/count_tokens")
# Headers that describe one hop, not the message (RFC 9110 §7.6.1), and the ones the
# relay sets itself.
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "host", "content-length",
        "accept-encoding", "content-encoding"}


@dataclass(frozen=True)
class Shape:
    """What one turn asks of the model, applied to each of its upstream calls."""

    system: str | None = None
    max_tokens: int | None = None
    effort: Effort | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[ToolSpec, ...] = ()  # the client's functions, offered to the model
    tool_choice: ToolChoice = ToolChoice()
    parallel_tools: bool = True
    # The answer must be one JSON document matching this schema (canonical JSON text).
    output_schema: str | None = None
    thinking: bool = True  # False: no extended thinking (legacy completions)

    @property
    def tool_names(self) -> frozenset[str]:
        """Tools the CLI does not have whose calls end the turn. (With tool_choice
        "none" a call the model makes anyway gets the CLI's "no such tool" answer, and
        the model goes on to answer without it.)"""
        names = frozenset(t.name for t in self.tools) if self.tool_choice.mode != "none" \
            else frozenset()
        return names | {STRUCTURED_OUTPUT} if self.output_schema is not None else names


@dataclass
class Call:
    """One upstream call the relay forwarded, as measured there."""

    status: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    first_token_s: float | None = None  # time to the first content delta
    duration_s: float = 0.0


@dataclass(eq=False)
class Lane:
    """One worker's path through the relay, and what its current turn asks for.

    Between turns a worker is *armed*: its CLI was sent the next turn's placeholder
    ahead of time and its call waits here (``held``) until a turn ``begin``s, so a
    request does not wait for the CLI to prepare its call (most of a warm turn's
    time). ``disarm`` answers the waiting call with an error instead."""

    secret: str
    url: str
    chat: bool = True  # chat mode: the CLI's own environment notes are left out
    shape: Shape | None = None
    # The conversation's turns the CLI never saw, sent before its first message.
    prefix: list[dict[str, Any]] = field(default_factory=list)
    # Placeholder text -> the client's content for that user message.
    content: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    live: bool = False  # a turn is being served: its calls go upstream
    # Set once a response ended at the client's tool calls: the CLI's next call (it
    # answers "no such tool" itself) is held, never sent, until the turn is ended.
    halted: bool = False
    # Set once that next call has reached the relay: the CLI has read the response that
    # ended at the tool calls, and counted what it cost.
    blocked: asyncio.Event = field(default_factory=asyncio.Event)
    armed: str | None = None  # the placeholder whose call is awaited (see ``wait``)
    held: asyncio.Event = field(default_factory=asyncio.Event)  # an armed call waits
    # The turn's upstream events as they pass, for an engine that answers from them
    # (``listen``); each call ends with a ``relay_end`` item.
    events: asyncio.Queue[dict[str, Any]] | None = None
    _go: asyncio.Event = field(default_factory=asyncio.Event)

    def begin(self, shape: Shape) -> None:
        """A turn starts (or a live session's settings change)."""
        self.shape = shape
        self.calls = []  # this turn's calls
        self.halted = False
        self.blocked.clear()
        self.live = True
        self.armed = None
        self._wake()

    def end(self) -> None:
        """The turn is over: the CLI's next call waits for the next turn."""
        self.live = False
        self.events = None

    def listen(self) -> asyncio.Queue[dict[str, Any]]:
        """The coming turn's upstream events, each as the relay passes it on."""
        self.events = asyncio.Queue()
        return self.events

    def arm(self, marker: str) -> None:
        """The CLI is being sent ``marker`` ahead of its turn: hold its call."""
        self.armed = marker
        self.held.clear()

    def disarm(self) -> None:
        """Answer a waiting call with an error (its turn ends at once)."""
        self.live = False
        self.armed = None
        self._wake()

    def forget(self) -> None:
        """The worker's conversation was emptied."""
        self.prefix = []
        self.content.clear()
        self.shape = None
        self.halted = False
        self.blocked.clear()
        self.events = None
        self.disarm()

    def release(self) -> None:
        """Let a call held while a turn runs go on with it."""
        self._wake()

    def _wake(self) -> None:
        self.held.clear()
        self._go.set()
        self._go = asyncio.Event()

    def placeholder(self, content: list[dict[str, Any]] | None = None) -> str:
        """A new placeholder; its content may be given later, when its turn begins."""
        marker = f"[claude-code-api:turn:{secrets.token_hex(8)}]"
        if content is not None:
            self.content[marker] = content
        return marker

    async def wait(self, gone: asyncio.Future[Any] | None = None) -> bool:
        """Hold a turn's call until the lane's next turn begins or it is disarmed;
        True when it may go upstream. ``gone`` (the CLI hanging up) ends the wait too."""
        if not self.halted and self.armed is None:
            return False  # a call nobody expects (a withdrawn turn's): refused now
        armed = not self.halted
        go = self._go
        if armed:
            self.held.set()
        else:
            self.blocked.set()
        woken = asyncio.ensure_future(go.wait())
        waiting: set[asyncio.Future[Any]] = {woken} if gone is None else {woken, gone}
        try:
            await asyncio.wait(waiting, timeout=None if armed else 60,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            if armed and not go.is_set():
                self.held.clear()  # the CLI gave up on this call
        return armed and go.is_set() and self.live


class Relay:
    def __init__(self, upstream: str | None = None,
                 on_call: Callable[[Lane, Call], None] | None = None,
                 credentials: Credentials | None = None) -> None:
        self.upstream = (upstream or DEFAULT_UPSTREAM).rstrip("/")
        self.on_call = on_call
        # Configured credentials: put on each call in place of the CLI's stand-in.
        self.credentials = credentials
        self.port = 0
        self.lanes: dict[str, Lane] = {}
        self.calls = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    # -- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        if self._server is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        app = Starlette(routes=[Route("/w/{secret}/{path:path}", self._forward,
                                      methods=["GET", "POST"])])
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                timeout_keep_alive=75, ws="none")
        self._server = _Embedded(config)
        # No read timeout: the engine's own silence timeout ends a stalled turn (and
        # the CLI's hang-up then closes the upstream call).
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=30.0),
                                         limits=httpx.Limits(max_keepalive_connections=32))
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]),
                                         name="upstream-relay")
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._task, 5)
        if self._client is not None:
            await self._client.aclose()
        self._server = self._task = self._client = None

    def open_lane(self, *, chat: bool = True) -> Lane:
        secret = secrets.token_urlsafe(24)
        lane = Lane(secret, f"http://127.0.0.1:{self.port}/w/{secret}", chat=chat)
        self.lanes[secret] = lane
        return lane

    def close_lane(self, lane: Lane) -> None:
        self.lanes.pop(lane.secret, None)
        lane.disarm()

    # -- forwarding -----------------------------------------------------------------
    async def _forward(self, request: Request) -> Response:
        lane = self.lanes.get(request.path_params["secret"])
        path = request.path_params["path"]
        if lane is None or path not in _FORWARDED_PATHS or request.method != "POST":
            return JSONResponse({"type": "error", "error": {"type": "not_found_error",
                                                            "message": "not found"}}, 404)
        raw = await request.body()
        # An armed call (it goes on when its turn begins), or the CLI's call after the
        # client's tool calls ended a response (held until the gateway has interrupted
        # the CLI, then refused: it never goes upstream).
        if path == "v1/messages" and SYSTEM_MARK in raw and (lane.halted or not lane.live) \
                and not await self._held(lane, request):
            return JSONResponse({"type": "error", "error": {
                "type": "invalid_request_error",
                "message": "no turn is being served on this lane"}}, 400)
        # A turn's call: its events go to the engine too, when it listens.
        sink = lane.events if path == "v1/messages" and lane.live and SYSTEM_MARK in raw \
            else None
        if path == "v1/messages":
            raw = rewrite_raw(raw, lane)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers["accept-encoding"] = "identity"
        url = f"{self.upstream}/{path}"
        if request.url.query:
            url += "?" + request.url.query
        started = time.monotonic()
        try:
            upstream = await self._send(url, headers, raw)
        except httpx.HTTPError as exc:
            # Named as Node names network errors, so the CLI's message says which.
            code = _network_code(exc)
            log.warning("relay: the upstream could not be reached (%s)", code)
            if sink is not None:
                sink.put_nowait({"type": RELAY_END, "status": 502, "complete": False})
            return JSONResponse({"type": "error", "error": {
                "type": "api_error",
                "message": f"the upstream could not be reached ({code})"}}, 502)
        self.calls += 1
        call = Call(status=upstream.status_code)
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
        return StreamingResponse(self._stream(upstream, lane, call, started, sink),
                                 status_code=upstream.status_code, headers=out_headers)

    @staticmethod
    async def _held(lane: Lane, request: Request) -> bool:
        # The body was read: the next ASGI message is the CLI's disconnect.
        gone = asyncio.ensure_future(request.receive())
        try:
            return await lane.wait(gone)
        finally:
            gone.cancel()

    async def _send(self, url: str, headers: dict[str, str], raw: bytes) -> httpx.Response:
        """The call sent upstream with the credential in use; one the upstream refuses
        (429, 401, 403) is sent again with the next usable credential, each tried at
        most once, so the CLI sees a refusal only when every credential is resting."""
        assert self._client is not None
        tried: set[Credential] = set()
        while True:
            credential = self.credentials.usable() if self.credentials else None
            sent = credential.authorize(headers) if credential is not None else headers
            upstream = await self._client.send(
                self._client.build_request("POST", url, headers=sent, content=raw),
                stream=True)
            if credential is None:
                return upstream
            credential.uses += 1
            if upstream.status_code not in (401, 403, 429):
                return upstream
            tried.add(credential)
            self._rest(credential, upstream.status_code)
            following = self.credentials.usable() if self.credentials else None
            if following is None or following in tried:
                return upstream
            await upstream.aclose()
            assert self.credentials is not None
            self.credentials.rotations += 1
            log.info("relay: sending the call again with upstream credential %s",
                     following.label)

    def _rest(self, credential: Credential, status: int) -> None:
        assert self.credentials is not None
        seconds = self.credentials.refused(credential, status)
        log.warning("upstream credential %s was %s (%s); resting it %gs", credential.label,
                    "rate-limited" if status == 429 else "rejected", status, seconds)

    async def _stream(self, upstream: httpx.Response, lane: Lane, call: Call,
                      started: float, sink: asyncio.Queue[dict[str, Any]] | None = None
                      ) -> AsyncIterator[bytes]:
        meter = _SseMeter(call, started, sink)
        client_tools = lane.shape.tool_names if lane.shape is not None else frozenset()
        try:
            async for chunk in upstream.aiter_bytes():
                meter.feed(chunk)
                if meter.stop_reason == "tool_use" and meter.tools & client_tools:
                    lane.halted = True
                yield chunk
        finally:
            await upstream.aclose()
            if sink is not None:
                sink.put_nowait({"type": RELAY_END, "status": call.status,
                                 "complete": meter.complete})
            call.duration_s = time.monotonic() - started
            lane.calls.append(call)
            if self.on_call is not None:
                self.on_call(lane, call)


def _network_code(exc: BaseException) -> str:
    """ECONNREFUSED, ENOTFOUND, ETIMEDOUT…: the OS error behind an httpx error."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return "ENOTFOUND"
        if isinstance(seen, OSError) and seen.errno is not None \
                and seen.errno in errno.errorcode:
            return errno.errorcode[seen.errno]
        seen = seen.__cause__ or seen.__context__
    return "ETIMEDOUT" if isinstance(exc, httpx.TimeoutException) else "ECONNRESET"


class _Embedded(uvicorn.Server):
    """A server inside the gateway's own: the signals stay the gateway's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _SseMeter:
    """Reads usage and the first token's time from the SSE stream going by."""

    def __init__(self, call: Call, started: float,
                 sink: asyncio.Queue[dict[str, Any]] | None = None) -> None:
        self.call = call
        self.started = started
        self.sink = sink
        self.complete = False  # message_stop went by
        self.tools: set[str] = set()  # names of the tools called
        self.stop_reason: str | None = None
        self._buffer = b""

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if line.startswith(b"data:"):
                self._event(line[5:])

    def _event(self, data: bytes) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        if self.sink is not None:
            self.sink.put_nowait(event)
        kind = event.get("type")
        self.complete = self.complete or kind == "message_stop"
        usage: Any = None
        if kind == "message_start":
            usage = (event.get("message") or {}).get("usage")
        elif kind == "message_delta":
            usage = event.get("usage")
            self.stop_reason = (event.get("delta") or {}).get("stop_reason")
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                self.tools.add(str(block.get("name")))
        elif kind == "content_block_delta" and self.call.first_token_s is None:
            self.call.first_token_s = time.monotonic() - self.started
        if isinstance(usage, dict):
            for name in ("input_tokens", "output_tokens", "cache_read_input_tokens",
                         "cache_creation_input_tokens"):
                value = usage.get(name)
                if isinstance(value, int) and value:
                    setattr(self.call, name, value)


def rewrite_raw(raw: bytes, lane: Lane) -> bytes:
    """A call's body for the lane's turn; calls that are not a turn's (the CLI's own
    start-up check carries its own system text) pass untouched."""
    if lane.shape is None or SYSTEM_MARK not in raw:
        return raw
    try:
        body = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(body, dict):
        return raw
    return json.dumps(rewrite(body, lane), ensure_ascii=False).encode()


def rewrite(body: dict[str, Any], lane: Lane) -> dict[str, Any]:
    """The CLI's request body as the turn asks for it."""
    shape = lane.shape
    assert shape is not None
    body["system"] = _system(body.get("system"), shape.system)
    if not body["system"]:
        del body["system"]
    messages = [m for m in body.get("messages", [])
                if not (lane.chat and isinstance(m, dict) and m.get("role") == "system")]
    body["messages"] = list(lane.prefix) + [_substitute(m, lane.content) for m in messages]
    if shape.max_tokens is not None:
        body["max_tokens"] = shape.max_tokens
        _fit_thinking(body, shape.max_tokens)
    if shape.effort is not None and isinstance(body.get("output_config"), dict) \
            and "effort" in body["output_config"]:
        # Only where the CLI sent one: it knows which models take an effort.
        body["output_config"]["effort"] = shape.effort
        for message in body["messages"]:
            if isinstance(message, dict) and isinstance(message.get("output_config"), dict):
                message["output_config"]["effort"] = shape.effort
    sampling = {k: v for k, v in (("temperature", shape.temperature), ("top_p", shape.top_p),
                                  ("top_k", shape.top_k)) if v is not None}
    if sampling:
        if shape.effort is None:
            # The model accepts sampling parameters only without extended thinking;
            # a caller who set them and asked for no reasoning gets them for real.
            _thinking_off(body)
            body.update(sampling)
        else:
            log.debug("sampling parameters dropped: they do not apply with reasoning on")
    if not shape.thinking:
        _thinking_off(body)
    if shape.stop:
        body["stop_sequences"] = list(shape.stop)
    _tools(body, shape)
    if shape.output_schema is not None:
        _structured(body, shape)
    return body


def _structured(body: dict[str, Any], shape: Shape) -> None:
    """The answer as the input of a ``StructuredOutput`` tool whose schema is the
    client's (any JSON schema: the API's own JSON outputs take only a subset). Without
    client tools or reasoning the call is forced."""
    assert shape.output_schema is not None
    body["tools"] = [t for t in body.get("tools", []) if not (
        isinstance(t, dict) and t.get("name") == STRUCTURED_OUTPUT)] + [{
            "name": STRUCTURED_OUTPUT, "input_schema": json.loads(shape.output_schema),
            "description": "Give your final answer by calling this tool once, with the "
                           "answer as its input; it must match the input schema exactly."}]
    if not shape.tools and shape.effort is None:
        body["tool_choice"] = {"type": "tool", "name": STRUCTURED_OUTPUT}
        _thinking_off(body)


def _tools(body: dict[str, Any], shape: Shape) -> None:
    """The client's functions next to the CLI's own tools (none in chat mode). The CLI
    cannot run them, and need not: the response ends at their calls and the client's
    results come with the next request."""
    if not shape.tools:
        return
    taken = {t.get("name") for t in body.get("tools", []) if isinstance(t, dict)}
    body["tools"] = list(body.get("tools", [])) + [
        {"name": t.name, "description": t.description or t.name, "input_schema": t.parameters}
        for t in shape.tools if t.name not in taken]
    choice = shape.tool_choice
    if choice.mode == "none":
        body["tool_choice"] = {"type": "none"}
    elif choice.mode in ("required", "named"):
        body["tool_choice"] = {"type": "any"} if choice.mode == "required" else \
            {"type": "tool", "name": choice.name}
        _thinking_off(body)
    if not shape.parallel_tools and choice.mode != "none":
        body["tool_choice"] = {**body.get("tool_choice", {"type": "auto"}),
                               "disable_parallel_tool_use": True}


def _thinking_off(body: dict[str, Any]) -> None:
    """The API takes a forced tool call, and sampling parameters, only without
    extended thinking; a completion's few tokens are all for its text."""
    body["thinking"] = {"type": "disabled"}
    body.pop("context_management", None)  # its edits are about thinking blocks
    if isinstance(body.get("output_config"), dict):
        body["output_config"].pop("effort", None)
        if not body["output_config"]:
            del body["output_config"]


def _system(system: Any, text: str | None) -> list[dict[str, Any]]:
    """The CLI's system blocks with the turn's prompt in the placeholder's place."""
    if isinstance(system, str):
        system = [{"type": "text", "text": system}]
    if not isinstance(system, list):
        return []
    out = []
    for block in system:
        if isinstance(block, dict) and isinstance(block.get("text"), str) \
                and SYSTEM_PLACEHOLDER in block["text"]:
            block = {**block, "text": block["text"].replace(SYSTEM_PLACEHOLDER, text or "")}
            if not block["text"].strip():
                continue
        out.append(block)
    return out


def _substitute(message: Any, content: dict[str, list[dict[str, Any]]]) -> Any:
    """A user message the CLI sent in a placeholder's name, with the client's content."""
    if not isinstance(message, dict) or message.get("role") != "user":
        return message
    blocks = message.get("content")
    if isinstance(blocks, str):
        real = content.get(blocks)
        return message if real is None else {**message, "content": real}
    if not isinstance(blocks, list):
        return message
    for block in blocks:
        if isinstance(block, dict) and block.get("type") == "text":
            real = content.get(str(block.get("text", "")).strip())
            if real is not None:
                return {**message, "content": real}
    return message


def _fit_thinking(body: dict[str, Any], max_tokens: int) -> None:
    """A fixed thinking budget must stay below max_tokens (the API refuses it otherwise)."""
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, int) and budget >= max_tokens:
            if max_tokens > 1024:
                thinking["budget_tokens"] = max(1024, max_tokens - 1)
            else:
                body["thinking"] = {"type": "disabled"}
