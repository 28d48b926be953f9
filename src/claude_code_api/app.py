"""The application factory and composition root: it builds the stores, the engine,
the access layer and the services, hands each its collaborators, and keeps them for
the routes (``deps.py``). Nothing is built at import time."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import threading
from collections.abc import AsyncIterator, Iterable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from . import __version__, ops
from .access.accounts import Accounts
from .access.budgets import Budgets
from .access.keys import KeyStore
from .access.middleware import AccessMiddleware
from .access.state import access_state
from .agent import Agents
from .batch.router import router as batch_router
from .batch.runner import Runner
from .batch.service import Batches
from .batch.store import BatchStore
from .catalog import Catalog
from .console.router import router as console_router
from .conversations.responses import Responses
from .conversations.router import router as conversations_router
from .conversations.service import Conversations
from .deps import Services
from .dialects.anthropic_messages.render import LAZY_IMPORTS as ANTHROPIC_IMPORTS
from .dialects.anthropic_messages.router import router as anthropic_router
from .dialects.errors import describe_validation, error_response, gateway_error_response
from .dialects.openai_chat.router import router as openai_router
from .dialects.openai_completions.router import router as completions_router
from .dialects.openai_responses.router import router as responses_router
from .engine.engine import Engine
from .errors import GatewayError
from .gateway import Turns
from .media import MediaResolver
from .metrics import Metrics
from .openapi import install as install_openapi
from .replicas import Replica, default_replica_id
from .sessions.router import router as sessions_router
from .sessions.service import Sessions
from .settings import Settings
from .store import open_database
from .store.conversations import ConversationStore
from .store.warm import WarmStore

log = logging.getLogger(__name__)


def build(settings: Settings) -> Services:
    """Every service of one app, wired to its collaborators. Only the store is opened
    here (and brought to the latest schema): the rest of the I/O is ``start``'s."""
    database = open_database(settings.store.target(), pool_size=settings.store.pool_size)
    engine = Engine(settings.claude, settings.cli_line_bytes())
    catalog = Catalog(settings.models.aliases)
    media = MediaResolver(settings.media)
    keys = KeyStore(database)
    # Limits, reservations and the cache: in process, or in Redis for every replica.
    access = access_state(settings)
    budgets = Budgets(keys, settings.auth.turn_reserve_usd, access.reservations)
    metrics = Metrics(ops.PoolGauges(engine))
    engine.relay.on_call = lambda lane, call: metrics.observe_upstream(
        call.status, call.duration_s, call.first_token_s)
    agents = Agents(settings)
    store = ConversationStore(database)
    conversations = Conversations(store)
    limiter = access.limiter
    # One turn's money and limits, the same for HTTP turns and live-session turns.
    accounts = Accounts(keys, budgets, limiter, metrics)
    turns = Turns(settings, engine, catalog, media, conversations, agents, accounts)
    runner = Runner(turns, keys, settings.claude.max_concurrent_sessions)
    return Services(
        settings=settings, database=database, engine=engine, catalog=catalog, media=media,
        keys=keys, limiter=limiter, budgets=budgets,
        cache=access.cache, access=access, metrics=metrics, agents=agents,
        conversations=conversations, responses=Responses(store), turns=turns,
        sessions=Sessions(settings, engine, catalog, agents, accounts),
        batches=Batches(settings.batch, BatchStore(database), runner, keys,
                        engine.pool.wait_ready),
        replica=Replica(settings.server.replica_id or default_replica_id(settings.server.port),
                        WarmStore(database), lambda: _held(engine)))


def _held(engine: Engine) -> list[str]:
    """The conversation states this process's workers hold warm."""
    return [w.held for w in engine.pool.workers if w.held is not None and w.alive]


async def start(services: Services) -> None:
    await services.engine.start()
    services.sessions.start()
    services.batches.start()
    services.replica.start()


async def learn_models(services: Services, timeout: float) -> None:
    """The CLI's own model names, once its first worker is up."""
    if await services.engine.pool.wait_ready(timeout):
        services.catalog.learn(services.engine.server_info())


def warm(modules: Iterable[str]) -> None:
    """Import, in a thread of its own, what the code imports on first use: the server
    starts without waiting for them, and a first request that needs one waits at most
    for the rest of its import."""
    def run() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # the request that needs it will say why
                log.exception("could not import %s", name)

    threading.Thread(target=run, name="warm-imports", daemon=True).start()


async def close(services: Services) -> None:
    await services.replica.close()
    await services.sessions.close_all()
    await services.batches.close()  # first: their turns are interrupted, not orphaned
    await services.engine.close()
    await services.media.close()
    await services.access.close()
    services.database.close()  # last: the services above may still record a turn


def create_app(settings: Settings) -> FastAPI:
    services = build(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await start(services)
        warm(ANTHROPIC_IMPORTS)
        learner = asyncio.create_task(learn_models(services, timeout=120))
        # What start-up built lives as long as the server: out of the collector's way,
        # so that a full collection (which a long request's many objects set off) does
        # not walk it again and again (~100 ms pauses on a 2000-message request).
        gc.freeze()
        try:
            yield
        finally:
            learner.cancel()
            await close(services)

    app = FastAPI(
        title="claude-code-api",
        version=__version__,
        description="OpenAI- and Anthropic-compatible API served by Claude Code.",
        lifespan=lifespan,
    )
    app.state.services = services
    for router in (openai_router, completions_router, responses_router, anthropic_router,
                   conversations_router, sessions_router, batch_router,
                   ops.router(settings.server.metrics_public), console_router):
        app.include_router(router)
    install_openapi(app)
    _install_error_handlers(app)
    # Starlette wraps middleware in reverse order: CORS is outermost, so preflight
    # requests and every response (errors included) get its headers.
    app.add_middleware(AccessMiddleware, keys=services.keys, limiter=services.limiter,
                       cache=services.cache, metrics=services.metrics,
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
