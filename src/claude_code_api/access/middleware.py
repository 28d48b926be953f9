"""The access middleware: every request passes here before any route.

In order: a request id (the client's ``X-Request-ID`` if sane, else a new one),
the caller (API key from ``Authorization: Bearer`` or ``x-api-key``), and for
model calls the key's limits (requests per minute, requests at once, budget)
and the response cache; then the body is read, within ``server.max_body_bytes``
and checked for text that cannot be encoded (see ``body.py``), before any route
parses it. On the way out it adds ``X-Request-ID``,
``x-ratelimit-*`` and ``X-Cache`` headers, records metrics and writes one
access log line. It is plain ASGI so that a streaming response passes through
untouched and the key's concurrency slot is held until the answer is over (it is
given back just before the last bytes go out, see ``Caller.release``).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from starlette.datastructures import Headers

from ..body import check_text, read_within
from ..dialects.errors import gateway_error_response, is_anthropic
from ..errors import GatewayError, StateUnavailable, Unauthorized
from ..events import Usage
from ..logs import request_id
from ..metrics import Metrics, route_of
from .cache import CACHED_ROUTES, Cached, ResponseCache, request_key
from .caller import Caller
from .keys import ApiKey, KeyStore, looks_like_ours
from .limits import Limiter, Verdict, admit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("claude_code_api.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
_ALWAYS_PUBLIC = frozenset({"/health", "/docs", "/redoc", "/openapi.json",
                            "/docs/oauth2-redirect", "/ui", "/ui/"})
# The console's page and files hold no data (its /ui/api needs an admin key).
_PUBLIC_PREFIX = "/ui/static/"
# A batch is admitted once (one request against requests per minute), then its items
# run within the runner's limits; see batch/runner.py.
MODEL_CALLS = CACHED_ROUTES | {"/v1/messages/count_tokens", "/v1/batch", "/v1/batches"}
_QUIET = frozenset({"/health", "/metrics"})
# Uploads have their own limit (batch.max_file_bytes) and the route spools them to
# disk: their bodies are not read here.
_UPLOADS = frozenset({"/v1/files"})


@dataclass
class _Exchange:
    """What the middleware learns about one request while it is served."""

    caller: Caller
    path: str
    method: str
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    status: int = 0
    body: list[bytes] = field(default_factory=list)
    size: int = 0
    finished: bool = False  # the last body chunk went out
    cache: str | None = None  # "hit" | "miss" when the cache was consulted
    # Run just before the last body chunk goes out (the response cache stores the answer
    # then: the same request sent on reading the last byte must find it, on any replica).
    before_end: Callable[[], Awaitable[None]] | None = None


class AccessMiddleware:
    def __init__(self, app: ASGIApp, *, keys: KeyStore, limiter: Limiter,
                 cache: ResponseCache, metrics: Metrics, auth_required: bool,
                 metrics_public: bool, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.keys = keys
        self.limiter = limiter
        self.cache = cache
        self.metrics = metrics
        self.auth_required = auth_required
        self.public = _ALWAYS_PUBLIC | ({"/metrics"} if metrics_public else set())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        rid = _request_id(headers)
        path = scope["path"]
        caller = Caller(request_id=rid, route=route_of(path))
        scope.setdefault("state", {})["caller"] = caller
        exchange = _Exchange(caller, path, scope["method"])
        token = request_id.set(rid)
        try:
            await self._serve(scope, receive, send, headers, exchange)
        finally:
            self._account(exchange)
            request_id.reset(token)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, headers: Headers,
                     exchange: _Exchange) -> None:
        caller = exchange.caller
        extra = [("x-request-id", caller.request_id)]
        try:
            if exchange.method != "OPTIONS" and exchange.path not in self.public \
                    and not exchange.path.startswith(_PUBLIC_PREFIX):
                caller.key = self._authenticate(headers)
            if exchange.method == "POST" and exchange.path in MODEL_CALLS \
                    and caller.key is not None:
                verdict = await self._admit(caller.key)
                extra += _ratelimit_headers(verdict, exchange.path)
                # Given back when the stream loop ends the turn, else just before the
                # last body chunk goes out, else when the exchange ends without one.
                caller.release = functools.partial(self.limiter.release, caller.key)
            body: bytes | None = None
            if exchange.method == "POST" and exchange.path not in _UPLOADS:
                body = await read_within(receive, self.max_body_bytes,
                                         headers.get("content-length"))
                check_text(body)
                receive = _replaying(body, receive)
            if self.cache.enabled and body is not None and exchange.path in CACHED_ROUTES:
                await self._cached(scope, receive, send, headers, exchange, extra, body)
                return
            await self.app(scope, receive, self._sender(send, exchange, extra))
        except GatewayError as exc:
            self._rejected(exc)
            response = gateway_error_response(exchange.path, exc, dict(extra))
            await response(scope, receive, self._sender(send, exchange, []))
        except Exception:
            exchange.status = exchange.status or 500
            raise
        finally:
            await caller.released()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket is authenticated like a request: a key in the headers, or for
        browsers (which cannot set them) an ``api_key`` query parameter. A refused
        handshake is closed with 1008, which clients see as HTTP 403."""
        headers = Headers(scope=scope)
        rid = _request_id(headers)
        token = request_id.set(rid)
        try:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            supplied = _token(headers) or (query.get("api_key") or [None])[0]
            try:
                key = self._authenticate_token(supplied)
            except Unauthorized as exc:
                self._rejected(exc)
                log.info("websocket %s refused: %s", scope["path"], exc.code)
                await send({"type": "websocket.close", "code": 1008})
                return
            scope.setdefault("state", {})["caller"] = Caller(key=key, request_id=rid,
                                                             route=route_of(scope["path"]))
            await self.app(scope, receive, send)
        finally:
            request_id.reset(token)

    # -- who, and how much -------------------------------------------------------
    def _authenticate(self, headers: Headers) -> ApiKey | None:
        return self._authenticate_token(_token(headers))

    def _authenticate_token(self, token: str | None) -> ApiKey | None:
        if token:
            key = self.keys.authenticate(token)
            if key is not None:
                return key
            if self.auth_required or looks_like_ours(token):
                raise Unauthorized("Incorrect API key provided. Keys are created with "
                                   "`claude-code-api keys create`; a revoked key stops "
                                   "working at once.")
            return None  # any placeholder key is fine on loopback without auth
        if self.auth_required:
            raise Unauthorized("You didn't provide an API key. Send it as "
                               "`Authorization: Bearer <key>` or `x-api-key: <key>`.",
                               code="missing_api_key")
        return None

    async def _admit(self, key: ApiKey) -> Verdict:
        if key.over_budget():
            raise key.budget_error()
        return await admit(self.limiter, key)

    def _rejected(self, exc: GatewayError) -> None:
        self.metrics.refused(exc)

    # -- the response cache --------------------------------------------------------
    async def _cached(self, scope: Scope, receive: Receive, send: Send, headers: Headers,
                      exchange: _Exchange, extra: list[tuple[str, str]], body: bytes) -> None:
        control = headers.get("cache-control", "").lower()
        key = request_key(exchange.path, self.cache.owner_part(exchange.caller.owner),
                          headers.get("x-conversation-id"), body)
        if key is None or "no-store" in control:
            await self.app(scope, receive, self._sender(send, exchange, extra))
            return
        hit = None if "no-cache" in control else await self._lookup(key)
        if hit is not None:
            exchange.cache = "hit"
            self.metrics.cache.labels("hit").inc()
            self.keys.charge(exchange.caller.owner, _model_of(body), Usage(), 0.0,
                             cached=True)
            sender = self._sender(send, exchange, [*extra, ("x-cache", "hit"), *hit.headers])
            await sender({"type": "http.response.start", "status": 200,
                          "headers": [(b"content-type", hit.media_type.encode())]})
            await sender({"type": "http.response.body", "body": hit.body})
            return
        exchange.cache = "miss"
        self.metrics.cache.labels("miss").inc()
        exchange.before_end = functools.partial(self._store, exchange, key)
        await self.app(scope, receive, self._sender(send, exchange, [*extra, ("x-cache", "miss")],
                                                   capture=True))

    async def _store(self, exchange: _Exchange, key: str) -> None:
        """Keep a whole answer (called as its last chunk is about to go out); one larger
        than an entry may be was not captured whole, and is not kept."""
        caller = exchange.caller
        whole = exchange.size <= self.cache.settings.max_entry_bytes
        if exchange.status == 200 and exchange.finished and whole and caller.completed and \
                caller.cacheable:
            response_headers = Headers(raw=exchange.headers)
            kept = tuple((name, response_headers[name])
                         for name in ("x-conversation-id", "x-tools-ignored")
                         if name in response_headers)
            try:
                await self.cache.put(key, b"".join(exchange.body),
                                     response_headers.get("content-type", "application/json"),
                                     kept)
            except StateUnavailable:  # the answer still goes out; it is just not kept
                log.warning("the response cache could not store an answer")

    async def _lookup(self, key: str) -> Cached | None:
        """A stored answer; a cache that cannot be reached is a miss, not an error."""
        try:
            return await self.cache.get(key)
        except StateUnavailable:
            log.warning("the response cache could not be read")
            return None

    def _sender(self, send: Send, exchange: _Exchange, extra: list[tuple[str, str]],
                capture: bool = False) -> Send:
        limit = self.cache.settings.max_entry_bytes

        async def sender(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                raw = list(message.get("headers", []))
                raw += [(k.encode(), v.encode()) for k, v in extra]
                exchange.headers = raw
                message = {**message, "headers": raw}
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                exchange.size += len(chunk)
                if capture and exchange.size <= limit:
                    exchange.body.append(chunk)
                if not message.get("more_body", False):
                    exchange.finished = True
                    await exchange.caller.released()
                    before_end, exchange.before_end = exchange.before_end, None
                    if before_end is not None:
                        await before_end()
            await send(message)

        return sender

    # -- afterwards ------------------------------------------------------------------
    def _account(self, exchange: _Exchange) -> None:
        caller = exchange.caller
        seconds = time.monotonic() - caller.started
        status = exchange.status or 499  # nothing was sent: the client went away
        self.metrics.observe_request(caller.route, exchange.method, status, seconds,
                                     caller.owner, exchange.path)
        # Health checks and scrapes come every few seconds: debug, not info.
        level = logging.DEBUG if caller.route in _QUIET else logging.INFO
        log.log(level, "%s %s %s %.0fms", exchange.method, exchange.path, status,
                seconds * 1000, extra={"http_method": exchange.method, "path": exchange.path,
                        "status": status, "duration_ms": round(seconds * 1000, 1),
                        "key": caller.owner, "cache": exchange.cache})


def _request_id(headers: Headers) -> str:
    """The client's X-Request-ID if it is a sane one, else a new id."""
    given = headers.get("x-request-id", "")
    return given if _REQUEST_ID.match(given) else "req_" + uuid.uuid4().hex


def _token(headers: Headers) -> str | None:
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return headers.get("x-api-key") or None


def _ratelimit_headers(verdict: Verdict, path: str) -> list[tuple[str, str]]:
    out = list(verdict.headers().items())
    if out and is_anthropic(path):
        # Anthropic's clients read their own names for the same numbers.
        reset = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                              time.gmtime(time.time() + verdict.reset_seconds))
        out += [("anthropic-ratelimit-requests-limit", str(verdict.limit)),
                ("anthropic-ratelimit-requests-remaining", str(verdict.remaining)),
                ("anthropic-ratelimit-requests-reset", reset)]
    return out


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body read already, then the real channel
    (the routes watch it for the client hanging up)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _model_of(body: bytes) -> str:
    try:
        model = json.loads(body).get("model")
    except (ValueError, AttributeError):
        return ""
    return model if isinstance(model, str) else ""

