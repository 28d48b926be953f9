"""One replica vs two on one PostgreSQL store: requests per second and p50/p95.

Each replica is `claude-code-api serve` with the same settings (2 warm workers,
store.url on a PostgreSQL database made for the run and dropped after it), in front
of the in-process fake Anthropic API. Clients (threads, one HTTP connection each)
send chat completions with an API key, spread round-robin over the replicas as a
balancer would; every request is a new conversation. On this 2-core machine the
CLIs, the gateways and the clients share the cores, so a second replica adds
workers, not CPU.

    .venv/bin/python bench/bench_replicas.py [--n N] [--clients 4,8] [--output FILE]

PostgreSQL: ``CCA_BENCH_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``, a user that may create databases).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from harness import (
    SERVE,
    GatewayProcess,
    median,
    p95,
    progress,
    run_and_report,
    running_gateway,
    scrub_environment,
    table,
)
from psycopg import sql

from claude_code_api import __version__
from claude_code_api.testing.fake_upstream import FakeUpstream, Reply

RESULTS = Path(__file__).resolve().parent / "results" / "replicas.md"
ADMIN_URL = os.environ.get("CCA_BENCH_POSTGRES_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
WORKERS = 2  # per replica


@dataclass
class Row:
    replicas: int
    clients: int
    latencies: list[float]
    seconds: float
    errors: int


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    n: int = 0
    error: str | None = None
    leftovers: list[str] = field(default_factory=list)


@contextlib.contextmanager
def temporary_database() -> Iterator[str]:
    name = "cca_bench_" + secrets.token_hex(6)
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(ADMIN_URL)._replace(path="/" + name))
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                          .format(sql.Identifier(name)))


def replica_env(root: Path, upstream: FakeUpstream, url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"ANTHROPIC_BASE_URL": upstream.url, "ANTHROPIC_API_KEY": "sk-bench",
                "CLAUDE_CONFIG_DIR": str(root / "config"),
                "CLAUDE_CODE__STORE__URL": url,
                "CLAUDE_CODE__AUTH__REQUIRED": "true",
                "CLAUDE_CODE__CLAUDE__WORK_ROOT": str(root / "work"),
                "CLAUDE_CODE__CLAUDE__MAX_CONCURRENT_SESSIONS": str(WORKERS),
                "CLAUDE_CODE__CLAUDE__MIN_IDLE_WORKERS": str(WORKERS),
                "CLAUDE_CODE__SERVER__LOG_LEVEL": "warning"})
    return env


def load(gateways: list[GatewayProcess], key: str, clients: int, n: int) -> Row:
    """``n`` chat completions from ``clients`` threads, round-robin over ``gateways``."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(n))

    def client(index: int) -> None:
        nonlocal errors
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                url = gateways[i % len(gateways)].base_url + "/v1/chat/completions"
                body = {"model": "sonnet",
                        "messages": [{"role": "user", "content": f"request {index}-{i}"}]}
                start = time.perf_counter()
                ok = http.post(url, json=body).status_code == 200
                took = (time.perf_counter() - start) * 1000
                with lock:
                    if ok:
                        latencies.append(took)
                    else:
                        errors += 1

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Row(len(gateways), clients, latencies, time.perf_counter() - start, errors)


def measure(results: Results, root: Path, upstream: FakeUpstream, url: str,
            client_counts: list[int], say: Callable[[str], None]) -> None:
    env = replica_env(root / "keys", upstream, url)
    key = subprocess.run([str(SERVE), "keys", "create", "--name", "bench", "--rpm", "1000000"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    for replicas in (1, 2):
        with contextlib.ExitStack() as stack:
            gateways = []
            for index in range(replicas):
                home = root / f"{replicas}-{index}"
                home.mkdir(parents=True)
                say(f"starting replica {index + 1} of {replicas}")
                gateways.append(stack.enter_context(running_gateway(
                    home, replica_env(home, upstream, url), idle=WORKERS)))
            load(gateways, key, max(client_counts), 6 * replicas)  # warm-up
            for clients in client_counts:
                say(f"{replicas} replica(s), {clients} clients")
                results.rows.append(load(gateways, key, clients, results.n))


def render(results: Results, client_counts: list[int]) -> str:
    rows = [[str(r.replicas), str(r.replicas * WORKERS), str(r.clients),
             str(len(r.latencies)), str(r.errors), f"{len(r.latencies) / r.seconds:.1f}",
             f"{median(r.latencies):.1f}", f"{p95(r.latencies):.1f}"] for r in results.rows]
    lines = [
        "# Replicas benchmark: one vs two on a shared PostgreSQL store", "",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- CPUs: {os.cpu_count()}; Python {platform.python_version()}; claude-code-api "
        f"{__version__}; {WORKERS} warm workers per replica; N={results.n} requests per row",
        "- Store: PostgreSQL on this machine (a database of the run's own); auth required "
        "(every request looks its key up in PostgreSQL and is charged there)",
        "- Upstream: the scripted fake Messages API, in-process; clients spread "
        "round-robin over the replicas (no balancer process)", "",
        "> The machine is shared and noisy: compare the rows of one run, not runs.", "",
        table(["Replicas", "Workers", "Clients", "OK", "Errors", "Requests/s",
               "p50 ms", "p95 ms"], rows)]
    if results.error:
        lines += ["", f"**The run failed:** {results.error}"]
    if results.leftovers:
        lines += ["", f"**Left running (killed):** {', '.join(results.leftovers)}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=120)
    parser.add_argument("--clients", default="4,8")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    client_counts = [int(c) for c in args.clients.split(",")]
    scrub_environment()
    results = Results(n=args.n)
    upstream = FakeUpstream(Reply.text("Hi there, this is a short answer."))
    upstream.start()
    root = Path(tempfile.mkdtemp(prefix="cca-bench-replicas-"))
    with temporary_database() as url:
        return run_and_report(
            lambda: measure(results, root, upstream, url, client_counts, progress()),
            results, root, upstream, lambda: render(results, client_counts), args.output)


if __name__ == "__main__":
    sys.exit(main())
