"""Prometheus metrics (``/metrics``) and the numbers behind ``/stats``.

Each gateway has its own registry (nothing global). Counters and histograms are
updated on the request path; the pool's state is read when scraped.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .errors import (
    BudgetExceeded,
    GatewayError,
    Overloaded,
    RateLimited,
    Unauthorized,
    UpstreamError,
)
from .events import TurnEnd, Usage

PREFIX = "claude_code_api"
_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_KNOWN_ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/responses",
                 "/v1/messages/count_tokens", "/v1/messages", "/v1/models",
                 "/v1/conversations", "/v1/batch", "/v1/batches", "/v1/files",
                 "/v1/sessions", "/health", "/metrics", "/stats")


def route_of(path: str) -> str:
    """A bounded label for a path: the route it belongs to, else "other"."""
    for route in _KNOWN_ROUTES:
        if path == route or path.startswith(route + "/"):
            return route
    return "other"


class PoolView(Protocol):
    """What the metrics read from the engine when scraped."""

    def pool_counts(self) -> dict[str, int]: ...
    def pool_totals(self) -> dict[str, int]: ...


class _PoolCollector(Collector):
    def __init__(self, view: PoolView) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        counts = self.view.pool_counts()
        workers = GaugeMetricFamily(f"{PREFIX}_pool_workers", "Claude Code processes by "
                                    "state", labels=["state"])
        for state in ("idle", "busy", "finishing", "starting", "resetting"):
            workers.add_metric([state], counts.get(state, 0))
        yield workers
        yield GaugeMetricFamily(f"{PREFIX}_pool_max_workers", "Most processes the pool "
                                "may run", value=counts.get("max", 0))
        yield GaugeMetricFamily(f"{PREFIX}_pool_queued_requests", "Requests waiting for a "
                                "worker", value=counts.get("queued", 0))
        yield GaugeMetricFamily(f"{PREFIX}_live_conversations", "Workers holding a "
                                "conversation for a warm continuation",
                                value=counts.get("holding_conversations", 0))
        totals = self.view.pool_totals()
        yield CounterMetricFamily(f"{PREFIX}_worker_restarts", "Workers replaced after "
                                  "dying or failing", value=totals.get("restarts", 0))
        yield CounterMetricFamily(f"{PREFIX}_workers_started", "Claude Code processes "
                                  "started", value=totals.get("started", 0))
        yield CounterMetricFamily(f"{PREFIX}_credential_rotations", "Switches to another "
                                  "upstream credential after a 429 or a rejection",
                                  value=totals.get("credential_rotations", 0))


class Metrics:
    def __init__(self, view: PoolView) -> None:
        self.registry = CollectorRegistry()
        self.started = time.time()
        r = self.registry
        self.requests = Counter(f"{PREFIX}_requests", "HTTP requests answered",
                                ["route", "method", "status", "key"], registry=r)
        self.latency = Histogram(f"{PREFIX}_request_duration_seconds", "From request to "
                                 "the last byte of the response", ["route"],
                                 buckets=_LATENCY, registry=r)
        self.ttft = Histogram(f"{PREFIX}_time_to_first_token_seconds", "From request to "
                              "the first piece of the answer", ["route", "model"],
                              buckets=_LATENCY, registry=r)
        self.turns = Counter(f"{PREFIX}_turns", "Answers by how they ended",
                             ["model", "stop_reason"], registry=r)
        self.tokens = Counter(f"{PREFIX}_tokens", "Tokens reported by Claude Code",
                              ["model", "kind"], registry=r)
        self.cost = Counter(f"{PREFIX}_cost_usd", "Cost of the turns as Claude Code "
                            "reports it, in US dollars", ["model", "key"], registry=r)
        self.upstream_errors = Counter(f"{PREFIX}_upstream_errors", "Errors from Claude "
                                       "Code or the API behind it", ["type"], registry=r)
        self.rejected = Counter(f"{PREFIX}_rejected_requests", "Requests refused before a "
                                "turn started", ["reason"], registry=r)
        self.cache = Counter(f"{PREFIX}_cache_lookups", "Response cache lookups",
                             ["result"], registry=r)
        self.upstream_calls = Counter(f"{PREFIX}_upstream_calls", "Calls the CLIs made to "
                                      "the Messages API, through the relay", ["status"],
                                      registry=r)
        self.upstream_latency = Histogram(f"{PREFIX}_upstream_duration_seconds", "One "
                                          "upstream call, from request to its last byte",
                                          buckets=_LATENCY, registry=r)
        self.upstream_ttft = Histogram(f"{PREFIX}_upstream_time_to_first_token_seconds",
                                       "One upstream call, from request to its first "
                                       "content delta", buckets=_LATENCY, registry=r)
        r.register(_PoolCollector(view))
        self._recent: dict[str, deque[float]] = {}
        # The last API requests, for the console's live view (/ui, Live).
        self.last_requests: deque[dict[str, Any]] = deque(maxlen=50)

    def observe_request(self, route: str, method: str, status: int, seconds: float,
                        key: str, path: str | None = None) -> None:
        self.requests.labels(route, method, str(status), key).inc()
        self.latency.labels(route).observe(seconds)
        self._recent.setdefault(route, deque(maxlen=1000)).append(seconds)
        if path is not None and path.startswith("/v1/"):
            self.last_requests.append({"at": round(time.time(), 3), "method": method,
                                       "path": path, "status": status, "key": key,
                                       "ms": round(seconds * 1000, 1)})

    def refused(self, exc: GatewayError) -> None:
        """Count a request or turn refused or failed, by why."""
        if isinstance(exc, Unauthorized):
            self.rejected.labels(exc.code or "unauthorized").inc()
        elif isinstance(exc, RateLimited):
            self.rejected.labels(exc.headers.get("x-ratelimit-reason", "rate")).inc()
        elif isinstance(exc, BudgetExceeded):
            self.rejected.labels("budget").inc()
        elif isinstance(exc, Overloaded):
            self.rejected.labels("gateway_busy").inc()
        elif isinstance(exc, UpstreamError):
            self.upstream_errors.labels(exc.code or "upstream_error").inc()

    def observe_turn(self, end: TurnEnd, model: str, key: str) -> None:
        self.turns.labels(model, end.stop_reason).inc()
        self.observe_cost(end.usage, end.cost_usd, model, key)

    def observe_cost(self, usage: Usage, cost: float, model: str, key: str) -> None:
        """Tokens and cost of (part of) a turn."""
        for kind, count in (("input", usage.input_tokens), ("output", usage.output_tokens),
                            ("cache_read", usage.cache_read_input_tokens),
                            ("cache_creation", usage.cache_creation_input_tokens)):
            if count:
                self.tokens.labels(model, kind).inc(count)
        if cost:
            self.cost.labels(model, key).inc(cost)

    def observe_upstream(self, status: int, seconds: float, first_token: float | None) -> None:
        self.upstream_calls.labels(str(status)).inc()
        self.upstream_latency.observe(seconds)
        if first_token is not None:
            self.upstream_ttft.observe(first_token)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def summary(self) -> dict[str, Any]:
        """The counters for humans: totals, and latency percentiles of recent requests."""
        routes: dict[str, dict[str, Any]] = {}
        for route, status, count in self._samples("requests", ("route", "status")):
            entry = routes.setdefault(route, {"requests": 0, "errors": 0})
            entry["requests"] += int(count)
            if not status.startswith("2"):
                entry["errors"] += int(count)
        for route, entry in routes.items():
            recent = sorted(self._recent.get(route, ()))
            if recent:
                entry["p50_ms"] = round(recent[len(recent) // 2] * 1000, 1)
                entry["p95_ms"] = round(recent[int(len(recent) * 0.95)] * 1000, 1)
        return {
            "uptime_seconds": int(time.time() - self.started),
            "routes": routes,
            "turns": self._totals("turns", "stop_reason"),
            "tokens": self._totals("tokens", "kind"),
            "cost_usd": round(sum(c for *_, c in self._samples("cost_usd", ())), 6),
            "rejected_requests": self._totals("rejected_requests", "reason"),
            "upstream_errors": self._totals("upstream_errors", "type"),
            "cache": self._totals("cache_lookups", "result"),
        }

    def _samples(self, name: str, labels: tuple[str, ...]) -> Iterator[tuple[Any, ...]]:
        full = f"{PREFIX}_{name}_total"
        for metric in self.registry.collect():
            for sample in metric.samples:
                if sample.name == full:
                    yield (*(sample.labels.get(label, "") for label in labels), sample.value)

    def _totals(self, name: str, label: str) -> dict[str, int | float]:
        out: dict[str, int | float] = {}
        for value, count in self._samples(name, (label,)):
            out[value] = out.get(value, 0) + count
        return {k: int(v) if float(v).is_integer() else round(v, 6) for k, v in out.items()}
