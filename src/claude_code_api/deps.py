"""The services as typed FastAPI dependencies.

``app.py`` builds one ``Services`` and keeps it on ``app.state``; a route names the
services it uses as parameters (``turns: TurnsDep``) and gets exactly those. Nothing
else reads ``app.state``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from .access.budgets import Budgets
from .access.cache import ResponseCache
from .access.caller import Caller
from .access.keys import KeyStore
from .access.limits import Limiter
from .access.state import AccessState
from .agent import Agents
from .batch.service import Batches
from .catalog import Catalog
from .conversations.responses import Responses
from .conversations.service import Conversations
from .engine.engine import Engine
from .gateway import Turns
from .media import MediaResolver
from .metrics import Metrics
from .replicas import Replica
from .sessions.service import Sessions
from .settings import Settings
from .store.database import Database


@dataclass(frozen=True)
class Services:
    """Everything the routes use, built once per app by ``app.build``."""

    settings: Settings
    database: Database  # every store's, closed last
    engine: Engine
    catalog: Catalog
    media: MediaResolver
    keys: KeyStore
    limiter: Limiter
    budgets: Budgets
    cache: ResponseCache
    access: AccessState  # where limiter, reservations and cache keep their state
    metrics: Metrics
    agents: Agents
    conversations: Conversations
    responses: Responses
    turns: Turns
    sessions: Sessions
    batches: Batches
    replica: Replica


def services(connection: HTTPConnection) -> Services:
    found = connection.app.state.services
    assert isinstance(found, Services)
    return found


def _caller(connection: HTTPConnection) -> Caller:
    # Set by the access middleware (for WebSockets too); none: the local user.
    caller = connection.scope.get("state", {}).get("caller")
    return caller if isinstance(caller, Caller) else Caller()


def _settings(connection: HTTPConnection) -> Settings:
    return services(connection).settings


def _turns(connection: HTTPConnection) -> Turns:
    return services(connection).turns


def _catalog(connection: HTTPConnection) -> Catalog:
    return services(connection).catalog


def _agents(connection: HTTPConnection) -> Agents:
    return services(connection).agents


def _conversations(connection: HTTPConnection) -> Conversations:
    return services(connection).conversations


def _responses(connection: HTTPConnection) -> Responses:
    return services(connection).responses


def _sessions(connection: HTTPConnection) -> Sessions:
    return services(connection).sessions


def _batches(connection: HTTPConnection) -> Batches:
    return services(connection).batches


def _engine(connection: HTTPConnection) -> Engine:
    return services(connection).engine


def _metrics(connection: HTTPConnection) -> Metrics:
    return services(connection).metrics


def _keys(connection: HTTPConnection) -> KeyStore:
    return services(connection).keys


def _limiter(connection: HTTPConnection) -> Limiter:
    return services(connection).limiter


def _budgets(connection: HTTPConnection) -> Budgets:
    return services(connection).budgets


def _cache(connection: HTTPConnection) -> ResponseCache:
    return services(connection).cache


def _replica(connection: HTTPConnection) -> Replica:
    return services(connection).replica


CallerDep = Annotated[Caller, Depends(_caller)]
SettingsDep = Annotated[Settings, Depends(_settings)]
TurnsDep = Annotated[Turns, Depends(_turns)]
CatalogDep = Annotated[Catalog, Depends(_catalog)]
AgentsDep = Annotated[Agents, Depends(_agents)]
ConversationsDep = Annotated[Conversations, Depends(_conversations)]
ResponsesDep = Annotated[Responses, Depends(_responses)]
SessionsDep = Annotated[Sessions, Depends(_sessions)]
BatchesDep = Annotated[Batches, Depends(_batches)]
EngineDep = Annotated[Engine, Depends(_engine)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
KeysDep = Annotated[KeyStore, Depends(_keys)]
LimiterDep = Annotated[Limiter, Depends(_limiter)]
BudgetsDep = Annotated[Budgets, Depends(_budgets)]
CacheDep = Annotated[ResponseCache, Depends(_cache)]
ReplicaDep = Annotated[Replica, Depends(_replica)]
