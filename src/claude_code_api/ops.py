"""The operations routes: ``/health``, ``/metrics`` (Prometheus) and ``/stats``, and
the pool's gauges that ``/metrics`` reads when scraped."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from . import __version__
from .deps import (
    AgentsDep,
    BudgetsDep,
    CacheDep,
    CallerDep,
    EngineDep,
    KeysDep,
    LimiterDep,
    MetricsDep,
    SettingsDep,
)
from .engine.engine import Engine
from .engine.launch import cli_version
from .engine.protocol import Worker
from .openapi import openai_errors


class PoolGauges:
    """The engine's pool as the metrics read it (``metrics.PoolView``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def pool_counts(self) -> dict[str, int]:
        pool = self.engine.pool
        return {**pool.counts(),
                "holding_conversations": sum(1 for w in pool.workers if w.held)}

    def pool_totals(self) -> dict[str, int]:
        return {"restarts": self.engine.pool.restarts,
                "started": self.engine.pool.started_total,
                "credential_rotations": self.engine.credentials.rotations}


def router(metrics_public: bool) -> APIRouter:
    """The routes; ``/metrics`` answers 401 to a caller without a key unless public."""
    ops = APIRouter(tags=["Operations"])
    ops.add_api_route("/health", health, methods=["GET"])
    ops.add_api_route("/metrics", metrics, methods=["GET"], response_class=Response,
                      responses={
                          200: {"description": "Prometheus text format 0.0.4",
                                "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **openai_errors(*(() if metrics_public else (401,)))})
    ops.add_api_route("/stats", stats, methods=["GET"], responses=openai_errors(401))
    return ops


async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus exposition (text format 0.0.4)."""
    return Response(metrics.exposition(),
                    media_type="text/plain; version=0.0.4; charset=utf-8")


async def stats(metrics: MetricsDep, engine: EngineDep, cache: CacheDep, keys: KeysDep,
                limiter: LimiterDep, budgets: BudgetsDep, caller: CallerDep
                ) -> dict[str, Any]:
    """A summary for humans: traffic, latency, tokens, cost, the pool, and the
    calling key's own usage (without a key, on loopback: every key's)."""
    body = metrics.summary()
    body["pool"] = PoolGauges(engine).pool_counts()
    body["cache"] = {"enabled": cache.enabled, "entries": await cache.entries(),
                     **body["cache"]}
    if caller.key is not None:
        body["key"] = {**caller.key.summary(), "running": await limiter.running(caller.key.id),
                       "reserved_usd": await budgets.reserved(caller.key.id),
                       "usage": keys.usage(caller.key.id)}
    else:
        body["keys"] = [k.summary() for k in keys.all()]
        body["usage"] = keys.usage()
    return body


async def health(engine: EngineDep, settings: SettingsDep, agents: AgentsDep
                 ) -> dict[str, Any]:
    pool = engine.pool
    info = engine.server_info()
    counts = PoolGauges(engine).pool_counts()
    status = "ok" if counts["size"] or pool.last_start_error is None else "degraded"
    body: dict[str, Any] = {
        "status": status,
        "version": __version__,
        "cli_version": info.get("claude_code_version") or cli_version(
            settings.claude.cli_path),
        "account": _account(info),
        "pool": counts,
        "conversations": dict(engine.stats),
        "workers": [_worker(w) for w in pool.workers],
    }
    body["agent"] = {"enabled": settings.agent.enabled,
                     "mcp_servers": agents.mcp_summary()}
    credentials = engine.credentials
    if credentials:
        body["credentials"] = credentials.status()
        body["credential_rotations"] = credentials.rotations
    if pool.last_start_error:
        body["last_start_error"] = pool.last_start_error
    return body


def _worker(worker: Worker) -> dict[str, Any]:
    return {"id": worker.id, "state": worker.state, "pid": worker.pid, "turns": worker.turns,
            "model": worker.model, "armed": worker.ready, "rss_bytes": worker.rss_bytes(),
            "cost_usd": worker.cost_usd}


def _account(info: dict[str, Any]) -> dict[str, Any]:
    """How the CLI authenticates (the kind of credential, never the credential)."""
    account = info.get("account")
    if not isinstance(account, dict):
        return {}
    return {k: account[k] for k in ("tokenSource", "apiKeySource", "apiProvider")
            if isinstance(account.get(k), str)}
