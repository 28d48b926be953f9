"""A scripted fake of the Anthropic Messages API, for tests and benchmarks.

The real Claude Code CLI talks to whatever ``ANTHROPIC_BASE_URL`` names; pointed
here it runs fully offline. Each test scripts the replies it wants (text,
thinking and tool_use blocks, delays between deltas, HTTP errors) and reads back
the requests the CLI actually sent upstream.

    upstream = FakeUpstream()
    upstream.start()
    upstream.script(Reply.text("Hello there", chunk_delay=0.05))
    upstream.responder = lambda seen: Reply.text(seen.last_user_text().upper())
    ...  # run the CLI with ANTHROPIC_BASE_URL=upstream.url
    assert upstream.requests[-1].body["messages"][-1]["role"] == "user"
    upstream.stop()

``reject`` answers every request made with a given credential with an error, as
the real API does for a rate-limited or revoked key:

    upstream.reject["sk-ant-api-first"] = Reply.error(429, "rate_limit_error")
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

_ids = itertools.count(1)


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Thinking:
    thinking: str
    signature: str = "sig-fake"


@dataclass(frozen=True)
class ToolUse:
    name: str
    input: dict[str, Any]
    id: str = ""


Block = Text | Thinking | ToolUse


@dataclass
class Reply:
    """One scripted upstream answer: content blocks, or an HTTP error."""

    blocks: list[Block] = field(default_factory=list)
    stop_reason: str = "end_turn"
    input_tokens: int = 10
    output_tokens: int = 5
    cache_read_input_tokens: int = 0
    first_delay: float = 0.0
    chunk_delay: float = 0.0
    status: int = 200
    error_type: str = ""
    error_message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    # Hold the connection open this long after the last event (slow upstream).
    hang: float = 0.0
    # Break off the stream with an SSE ``error`` event after this many deltas.
    fail_after_deltas: int | None = None
    fail_type: str = "overloaded_error"
    # Go silent this long after this many deltas (an upstream that stalls mid-answer).
    stall_after_deltas: int | None = None
    stall: float = 0.0

    @classmethod
    def text(cls, text: str, **kw: Any) -> Reply:
        return cls(blocks=[Text(text)], **kw)

    @classmethod
    def error(cls, status: int, error_type: str, message: str = "", **kw: Any) -> Reply:
        return cls(status=status, error_type=error_type, error_message=message or error_type, **kw)


@dataclass
class Served:
    """A file the fake serves under /files/<name> (images for image-URL tests)."""

    body: bytes = b""
    content_type: str = "image/png"
    status: int = 200
    location: str | None = None  # a redirect
    delay: float = 0.0


@dataclass
class Seen:
    """A request the fake received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float

    @property
    def credential(self) -> str | None:
        """The API key (``x-api-key``) or token (``Authorization: Bearer``) it carried."""
        if self.headers.get("x-api-key"):
            return self.headers["x-api-key"]
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" and token else None

    @property
    def is_probe(self) -> bool:
        """The CLI's own start-up check (max_tokens 1, "Hi"), not a turn."""
        return self.body.get("max_tokens") == 1

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def system_text(self) -> str:
        system = self.body.get("system", "")
        if isinstance(system, str):
            return system
        return "\n".join(b.get("text", "") for b in system if isinstance(b, dict))

    def last_user_text(self) -> str:
        """All text of the last user message, system reminders included."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return content_text(message.get("content"))
        return ""


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if isinstance(block, dict) and block.get("type") == "text":
            parts.append(block.get("text", ""))
    return "\n".join(parts)


def _words(text: str) -> list[str]:
    """Split text into stream deltas of about a word each, keeping spaces."""
    out: list[str] = []
    for i, word in enumerate(text.split(" ")):
        out.append(word if i == 0 else " " + word)
    return [w for w in out if w]


def _canonical(value: Any) -> str:
    """JSON without cache hints, which do not change what the model reads."""
    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "cache_control"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return json.dumps(strip(value), sort_keys=True, separators=(",", ":"))


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class FakeUpstream:
    """The fake Messages API: a Starlette app served by uvicorn in a thread."""

    def __init__(self, default: Reply | None = None, *, prompt_cache: bool = False) -> None:
        self.default = default or Reply.text("Hello from the fake upstream.")
        self.requests: list[Seen] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        # A request counts as "main" (consumes a scripted reply) when this says so.
        # Side requests the CLI makes on its own get the default reply.
        self.is_main: Callable[[Seen], bool] = lambda seen: not seen.is_probe
        # Credential -> the error every request made with it gets (probes too); a
        # rejected request consumes no scripted reply.
        self.reject: dict[str, Reply] = {}
        # Answers main requests when the script is empty: a reply computed from the
        # request, for concurrent turns whose order of arrival is not known.
        self.responder: Callable[[Seen], Reply] | None = None
        self.open_streams = 0
        self.files: dict[str, Served] = {}
        # Emulated prompt caching: usage is computed from each request (about four
        # characters a token), and the longest message prefix seen before counts as
        # cache reads, as Anthropic's prompt cache would bill it.
        self.prompt_cache = prompt_cache
        self._prefixes: set[str] = set()
        self.fetched: list[str] = []
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- scripting ---------------------------------------------------------
    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.responder = None
            self.requests.clear()
            self.files.clear()
            self.fetched.clear()
            self.reject.clear()

    @property
    def pending(self) -> int:
        return len(self._script)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def message_requests(self) -> list[Seen]:
        """The turns' requests (without the CLI's start-up probes)."""
        return [r for r in self.requests if r.path.endswith("/v1/messages") and not r.is_probe]

    def _next_reply(self, seen: Seen) -> Reply:
        with self._lock:
            self.requests.append(seen)
            rejection = self.reject.get(seen.credential or "")
            if rejection is not None:
                return rejection
            if self.is_main(seen) and self._script:
                return self._script.popleft()
            if self.is_main(seen) and self.responder is not None:
                return self.responder(seen)
        return self.default

    # -- serving -----------------------------------------------------------
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/messages", self._messages, methods=["POST"]),
                Route("/v1/messages/count_tokens", self._count_tokens, methods=["POST"]),
                Route("/files/{name}", self._file, methods=["GET"]),
                Route("/{path:path}", self._other, methods=["GET", "POST", "HEAD"]),
            ]
        )

    async def _other(self, request: Request) -> Response:
        return JSONResponse({"type": "error", "error": {"type": "not_found_error",
                                                         "message": "not found"}}, 404)

    async def _file(self, request: Request) -> Response:
        self.fetched.append(request.path_params["name"])
        served = self.files.get(request.path_params["name"])
        if served is None:
            return Response(status_code=404)
        if served.delay:
            await asyncio.sleep(served.delay)
        headers = {"Location": served.location} if served.location else None
        return Response(served.body, served.status, headers=headers,
                        media_type=served.content_type)

    async def _count_tokens(self, request: Request) -> Response:
        body = await request.json()
        return JSONResponse({"input_tokens": max(1, len(json.dumps(body)) // 4)})

    async def _messages(self, request: Request) -> Response:
        body = await request.json()
        seen = Seen(request.url.path, dict(request.headers), body, time.monotonic())
        reply = self._next_reply(seen)
        if reply.first_delay:
            await asyncio.sleep(reply.first_delay)
        if reply.status != 200:
            payload = {"type": "error", "error": {"type": reply.error_type,
                                                  "message": reply.error_message}}
            return JSONResponse(payload, reply.status, headers=reply.headers)
        model = str(body.get("model", "claude-fake"))
        if self.prompt_cache:
            reply = self._cached_usage(reply, body)
        if body.get("stream"):
            return StreamingResponse(self._stream(reply, model), media_type="text/event-stream",
                                     headers=reply.headers)
        return JSONResponse(self._message(reply, model), headers=reply.headers)

    def _message(self, reply: Reply, model: str) -> dict[str, Any]:
        content = [self._block_json(b) for b in reply.blocks]
        return {"id": f"msg_fake{next(_ids)}", "type": "message", "role": "assistant",
                "model": model, "content": content, "stop_reason": reply.stop_reason,
                "stop_sequence": None, "usage": self._usage(reply)}

    def _cached_usage(self, reply: Reply, body: dict[str, Any]) -> Reply:
        digest = hashlib.sha256(_canonical([body.get("system"), body.get("tools")]).encode())
        size, cached = len(_canonical([body.get("system"), body.get("tools")])), 0
        prefixes = []
        for message in body.get("messages", []):
            text = _canonical(message)
            digest.update(text.encode())
            size += len(text)
            prefixes.append(digest.hexdigest())
            if prefixes[-1] in self._prefixes:
                cached = size
        with self._lock:
            self._prefixes.update(prefixes)
        return dataclasses.replace(reply, input_tokens=(size - cached) // 4,
                                   cache_read_input_tokens=cached // 4)

    def _usage(self, reply: Reply) -> dict[str, int]:
        return {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens,
                "cache_read_input_tokens": reply.cache_read_input_tokens,
                "cache_creation_input_tokens": 0}

    @staticmethod
    def _block_json(block: Block) -> dict[str, Any]:
        if isinstance(block, Text):
            return {"type": "text", "text": block.text}
        if isinstance(block, Thinking):
            return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
        return {"type": "tool_use", "id": block.id or f"toolu_fake{next(_ids)}",
                "name": block.name, "input": block.input}

    async def _stream(self, reply: Reply, model: str) -> AsyncIterator[bytes]:
        self.open_streams += 1
        try:
            async for frame in self._frames(reply, model):
                yield frame
        finally:
            self.open_streams -= 1

    async def _frames(self, reply: Reply, model: str) -> AsyncIterator[bytes]:
        usage = self._usage(reply)
        start: dict[str, Any] = {
            "id": f"msg_fake{next(_ids)}", "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1}}
        yield _sse("message_start", {"type": "message_start", "message": start})
        yield _sse("ping", {"type": "ping"})
        deltas = 0
        for index, block in enumerate(reply.blocks):
            for event, data in self._block_events(index, block):
                if event == "content_block_delta":
                    if deltas == reply.fail_after_deltas:
                        error = {"type": reply.fail_type, "message": "scripted failure"}
                        yield _sse("error", {"type": "error", "error": error})
                        return
                    if deltas == reply.stall_after_deltas:
                        await asyncio.sleep(reply.stall)
                    deltas += 1
                    if reply.chunk_delay:
                        await asyncio.sleep(reply.chunk_delay)
                yield _sse(event, data)
        delta = {"type": "message_delta",
                 "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                 "usage": {"output_tokens": reply.output_tokens}}
        yield _sse("message_delta", delta)
        yield _sse("message_stop", {"type": "message_stop"})
        if reply.hang:
            await asyncio.sleep(reply.hang)

    def _block_events(self, index: int, block: Block) -> list[tuple[str, dict[str, Any]]]:
        events: list[tuple[str, dict[str, Any]]] = []

        def delta(d: dict[str, Any]) -> None:
            events.append(("content_block_delta",
                           {"type": "content_block_delta", "index": index, "delta": d}))

        start: dict[str, Any]
        if isinstance(block, Text):
            start = {"type": "text", "text": ""}
        elif isinstance(block, Thinking):
            start = {"type": "thinking", "thinking": "", "signature": ""}
        else:
            start = {"type": "tool_use", "id": block.id or f"toolu_fake{next(_ids)}",
                     "name": block.name, "input": {}}
        events.append(("content_block_start",
                       {"type": "content_block_start", "index": index, "content_block": start}))
        if isinstance(block, Text):
            for piece in _words(block.text):
                delta({"type": "text_delta", "text": piece})
        elif isinstance(block, Thinking):
            for piece in _words(block.thinking):
                delta({"type": "thinking_delta", "thinking": piece})
            delta({"type": "signature_delta", "signature": block.signature})
        else:
            raw = json.dumps(block.input)
            for i in range(0, len(raw), 8):
                delta({"type": "input_json_delta", "partial_json": raw[i:i + 8]})
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        return events

    def start(self, port: int = 0) -> None:
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only
        # for sockets that say they are TCP; without it every response body waits
        # ~40 ms for the client's delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app(), log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        daemon=True, name="fake-upstream")
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake upstream did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True  # do not wait for scripted delays to end
        if self._thread is not None:
            self._thread.join(timeout=10)
