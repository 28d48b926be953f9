"""The application factory: routers, error rendering, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import Match

from . import __version__
from .access.caller import caller_of
from .access.middleware import AccessMiddleware
from .batch.router import router as batch_router
from .console.router import router as console_router
from .conversations.router import router as conversations_router
from .dialects.anthropic_messages.router import router as anthropic_router
from .dialects.errors import describe_validation, error_response, gateway_error_response
from .dialects.openai_chat.router import router as openai_router
from .dialects.openai_completions.router import router as completions_router
from .dialects.openai_responses.router import router as responses_router
from .engine.engine import cli_version
from .engine.worker import Worker
from .errors import GatewayError
from .gateway import Gateway
from .openapi import install as install_openapi
from .openapi import openai_errors
from .sessions.router import router as sessions_router
from .settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    gateway = Gateway.build(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        learner = asyncio.create_task(gateway.learn_models(timeout=120))
        try:
            yield
        finally:
            learner.cancel()
            await gateway.close()

    app = FastAPI(
        title="claude-code-api",
        version=__version__,
        description="OpenAI- and Anthropic-compatible API served by Claude Code.",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.include_router(openai_router)
    app.include_router(completions_router)
    app.include_router(responses_router)
    app.include_router(anthropic_router)
    app.include_router(conversations_router)
    app.include_router(sessions_router)
    app.include_router(batch_router)
    app.include_router(console_router)
    app.add_api_route("/health", health, methods=["GET"], tags=["Operations"])
    app.add_api_route("/metrics", metrics, methods=["GET"], tags=["Operations"],
                      response_class=Response, responses={
                          200: {"description": "Prometheus text format 0.0.4",
                                "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **openai_errors(*(() if settings.server.metrics_public else (401,)))})
    app.add_api_route("/stats", stats, methods=["GET"], tags=["Operations"],
                      responses=openai_errors(401))
    install_openapi(app)
    _install_error_handlers(app)
    # Starlette wraps middleware in reverse order: CORS is outermost, so preflight
    # requests and every response (errors included) get its headers.
    app.add_middleware(AccessMiddleware, keys=gateway.keys, limiter=gateway.limiter,
                       cache=gateway.cache, metrics=gateway.metrics,
                       auth_required=settings.auth_required(),
                       metrics_public=settings.server.metrics_public,
                       max_body_bytes=settings.server.max_body_bytes)
    if settings.server.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.server.cors_origins,
            allow_credentials=settings.server.cors_allow_credentials,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"], allow_headers=["*"],
            expose_headers=["X-Request-ID", "X-Conversation-ID", "X-Tools-Ignored", "X-Cache",
                            "Retry-After", "x-ratelimit-limit-requests",
                            "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"])
    return app


async def metrics(request: Request) -> Response:
    """Prometheus exposition (text format 0.0.4)."""
    gateway: Gateway = request.app.state.gateway
    return Response(gateway.metrics.exposition(),
                    media_type="text/plain; version=0.0.4; charset=utf-8")


async def stats(request: Request) -> dict[str, Any]:
    """A summary for humans: traffic, latency, tokens, cost, the pool, and the
    calling key's own usage (without a key, on loopback: every key's)."""
    gateway: Gateway = request.app.state.gateway
    caller = caller_of(request)
    body = gateway.metrics.summary()
    body["pool"] = gateway.pool_counts()
    body["cache"] = {"enabled": gateway.cache.enabled, "entries": len(gateway.cache),
                     **body["cache"]}
    if caller.key is not None:
        body["key"] = {**caller.key.summary(),
                       "running": gateway.limiter.running(caller.key.id),
                       "reserved_usd": gateway.budgets.reserved(caller.key.id),
                       "usage": gateway.keys.usage(caller.key.id)}
    else:
        body["keys"] = [k.summary() for k in gateway.keys.all()]
        body["usage"] = gateway.keys.usage()
    return body


async def health(request: Request) -> dict[str, Any]:
    gateway: Gateway = request.app.state.gateway
    pool = gateway.engine.pool
    info = gateway.engine.server_info()
    counts = gateway.pool_counts()
    status = "ok" if counts["size"] or pool.last_start_error is None else "degraded"
    body: dict[str, Any] = {
        "status": status,
        "version": __version__,
        "cli_version": info.get("claude_code_version") or cli_version(
            gateway.settings.claude.cli_path),
        "account": _account(info),
        "pool": counts,
        "conversations": dict(gateway.engine.stats),
        "workers": [_worker(w) for w in pool.workers],
    }
    body["agent"] = {"enabled": gateway.settings.agent.enabled,
                     "mcp_servers": gateway.agents.mcp_summary()}
    credentials = gateway.engine.credentials
    if credentials:
        body["credentials"] = credentials.status()
        body["credential_rotations"] = credentials.rotations
    if pool.last_start_error:
        body["last_start_error"] = pool.last_start_error
    return body


def _worker(worker: Worker) -> dict[str, Any]:
    out = {"id": worker.id, "state": worker.state, "pid": worker.pid, "turns": worker.turns,
           "model": worker.model, "rss_bytes": worker.rss_bytes(), "cost_usd": worker.cost_usd}
    if worker.credential is not None:
        out["credential"] = worker.credential.label
    return out


def _account(info: dict[str, Any]) -> dict[str, Any]:
    """How the CLI authenticates (the kind of credential, never the credential)."""
    account = info.get("account")
    if not isinstance(account, dict):
        return {}
    return {k: account[k] for k in ("tokenSource", "apiKeySource", "apiProvider")
            if isinstance(account.get(k), str)}


def _allowed_methods(request: Request) -> str:
    """The methods some route answers on this path (each one tried against the routes)."""
    allowed = [method for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
               if any(route.matches({**request.scope, "method": method})[0] is Match.FULL
                      for route in request.app.router.routes)]
    return ", ".join(allowed)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        level = logging.WARNING if exc.status >= 500 else logging.INFO
        log.log(level, "%s %s -> %s: %s", request.method, request.url.path, exc.status,
                exc.message)
        return gateway_error_response(request.url.path, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = describe_validation(exc.errors())
        log.info("%s %s -> 400: %s", request.method, request.url.path, message)
        return error_response(request.url.path, 400, message, "invalid_request_error", param)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # RFC 9110: Allow lists every method of the resource; Starlette's names
            # only those of the first route on the path (GET, not also DELETE).
            headers["Allow"] = _allowed_methods(request)
        return error_response(request.url.path, exc.status_code, str(exc.detail),
                              "invalid_request_error", None, code, headers or None)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request.url.path, 500, "internal error in the gateway")
