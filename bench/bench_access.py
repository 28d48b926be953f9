"""The access layer with its state in Redis (``redis.url``) against in process.

Two measurements, each in process and in Redis:

- the access layer alone: what one request waits for (its rpm and concurrency
  check, a response-cache lookup, its budget reservation, giving its slot back),
  one request at a time and 16 at once, against the real Redis on loopback;
- through the gateway: a chat completion with a key answered from the response
  cache (authentication, limits and the cache lookup, and no CLI), with the
  ``openai`` client, against a gateway started as a user would.

The target is at most 1 ms of added median latency for Redis.

    .venv/bin/python bench/bench_access.py [--quick] [--redis URL] [--output FILE]

The report (markdown) is printed and written to ``bench/results/access.md``. The run
uses its own Redis key prefix and deletes its keys at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import openai
import redis
from harness import median, ms_since, p95, progress, run_and_report, running_gateway, table

from claude_code_api import __version__
from claude_code_api.access.keys import ApiKey, KeyStore
from claude_code_api.access.state import AccessState, access_state
from claude_code_api.settings import CacheSettings, RedisSettings, Settings
from claude_code_api.testing.fake_upstream import FakeUpstream, Reply

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "access.md"
TARGET_MS = 1.0
CONCURRENT = 16


@dataclass
class Results:
    direct: dict[str, list[float]] = field(default_factory=dict)  # row -> ms per request
    rounds: dict[str, list[float]] = field(default_factory=dict)  # ms per round of 16
    http: dict[str, list[float]] = field(default_factory=dict)
    redis_version: str = ""
    error: str | None = None
    leftovers: list[str] = field(default_factory=list)


# -- the access layer alone ------------------------------------------------------------
async def one_request(state: AccessState, key: ApiKey, n: int) -> float:
    """What a request waits for in the access layer, in ms."""
    started = time.perf_counter()
    verdict = await state.limiter.acquire(key)
    assert verdict.allowed, verdict
    await state.cache.get(f"miss-{n}")
    reservation = await state.reservations.reserve(key, 0.0001)
    reservation.release()  # in Redis: in the background, as when a turn ends
    await state.limiter.release(key)
    return ms_since(started)


async def direct(settings: Settings, n: int
                 ) -> tuple[list[float], list[float], list[float]]:
    state = access_state(settings)
    key = ApiKey("bench-" + secrets.token_hex(4), "bench", rpm=10**9, concurrency=10**6,
                 budget_usd=10**6)
    try:
        for i in range(50):  # connections, scripts loaded
            await one_request(state, key, i)
        alone = [await one_request(state, key, i) for i in range(n)]
        together: list[float] = []
        rounds: list[float] = []
        for round_ in range(max(1, n // CONCURRENT)):
            started = time.perf_counter()
            together += await asyncio.gather(*(one_request(state, key, round_ * 100 + i)
                                               for i in range(CONCURRENT)))
            rounds.append(ms_since(started))
        return alone, together, rounds
    finally:
        await state.close()


# -- through the gateway ----------------------------------------------------------------
def gateway_env(upstream: FakeUpstream, root: Path, extra: dict[str, str]) -> dict[str, str]:
    store = root / "gateway.db"
    return {**os.environ, "ANTHROPIC_BASE_URL": upstream.url, "ANTHROPIC_API_KEY": "sk-bench",
            "CLAUDE_CONFIG_DIR": str(root / "claude"), "CLAUDE_CODE__STORE__PATH": str(store),
            "CLAUDE_CODE__CLAUDE__WORK_ROOT": str(root / "work"),
            "CLAUDE_CODE__CACHE__ENABLED": "true", "CLAUDE_CODE__AUTH__REQUIRED": "true",
            "CLAUDE_CODE__SERVER__LOG_LEVEL": "warning", **extra}


def cache_hits(upstream: FakeUpstream, root: Path, places: dict[str, dict[str, str]], n: int
               ) -> dict[str, list[float]]:
    """Cache hits through one gateway per place, started together and asked in turn (so
    that the machine's load falls on both alike)."""
    keys = KeyStore(root / "gateway.db")  # one store: both gateways know the key
    _, token = keys.create("bench", rpm=10**6, concurrency=1000)
    keys.close()
    messages = [{"role": "user", "content": "cache me"}]
    with contextlib.ExitStack() as stack:
        clients = {}
        for name, extra in places.items():
            home = root / name.replace(" ", "-")
            home.mkdir()
            env = gateway_env(upstream, home, extra)
            env["CLAUDE_CODE__STORE__PATH"] = str(root / "gateway.db")
            gateway = stack.enter_context(running_gateway(home, env, idle=1))
            clients[name] = stack.enter_context(openai.OpenAI(
                base_url=gateway.base_url + "/v1", api_key=token, max_retries=0))
            upstream.script(Reply.text("a cached answer"))
            clients[name].chat.completions.create(model="sonnet",
                                                  messages=messages)  # type: ignore[arg-type]
        times: dict[str, list[float]] = {name: [] for name in places}
        for i in range(n + 10):
            for name, client in clients.items():
                started = time.perf_counter()
                raw = client.chat.completions.with_raw_response.create(
                    model="sonnet", messages=messages)  # type: ignore[arg-type]
                assert raw.headers["x-cache"] == "hit", raw.headers
                if i >= 10:
                    times[name].append(ms_since(started))
        return times


def run(results: Results, url: str, prefix: str, root: Path, upstream: FakeUpstream,
        quick: bool) -> None:
    say = progress()
    n = 300 if quick else 2000
    with redis.Redis.from_url(url) as client:
        results.redis_version = str(client.info("server")["redis_version"])
    for name, redis_url in (("in process", None), ("Redis", url)):
        say(f"access layer, {name}")
        settings = Settings(redis=RedisSettings(url=redis_url, prefix=prefix),
                            cache=CacheSettings(enabled=True))
        alone, together, rounds = asyncio.run(direct(settings, n))
        results.direct[f"{name}, one request at a time"] = alone
        results.direct[f"{name}, {CONCURRENT} at once"] = together
        results.rounds[name] = rounds
    say("cache hits through two gateways, in process and Redis")
    results.http = cache_hits(upstream, root, {
        "in process": {}, "Redis": {"CLAUDE_CODE__REDIS__URL": url,
                                    "CLAUDE_CODE__REDIS__PREFIX": prefix}},
        100 if quick else 500)


def render(results: Results, args: argparse.Namespace) -> str:
    lines = ["# Access layer: in process vs Redis", "",
             f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
             f"- CPUs: {os.cpu_count()}; Python {platform.python_version()}; claude-code-api "
             f"{__version__}; Redis {results.redis_version or '?'} on loopback",
             "- A request's access work: rpm and concurrency check, a cache lookup (miss), a "
             "budget reservation (given back in the background), its slot given back", "",
             "> The machine is shared and noisy: compare the rows of one run, not runs.", ""]
    rows = [[name, str(len(v)), f"{median(v):.3f}", f"{p95(v):.3f}"]
            for name, v in results.direct.items()]
    lines += ["## The access layer alone", "",
              table(["Access state", "N", "median ms", "p95 ms"], rows), ""]
    for name, rounds in results.rounds.items():
        lines.append(f"- {name}, {CONCURRENT} at once: a request's time includes waiting for "
                     f"the other {CONCURRENT - 1} on the one event loop; a round of "
                     f"{CONCURRENT} took {median(rounds):.2f} ms median "
                     f"({median(rounds) / CONCURRENT:.3f} ms a request).")
    lines.append("")
    rows = [[name, str(len(v)), f"{median(v):.2f}", f"{p95(v):.2f}"]
            for name, v in results.http.items()]
    lines += ["## A cache hit with a key, through the gateway (openai client)", "",
              table(["Access state", "N", "median ms", "p95 ms"], rows), ""]
    added = _added(results)
    if added is not None:
        verdict = "meets" if added <= TARGET_MS else "misses"
        lines.append(f"- Redis adds {added:.3f} ms median per request to the access layer "
                     f"({verdict} the target of ≤ {TARGET_MS:g} ms).")
    if "Redis" in results.http and "in process" in results.http:
        delta = median(results.http["Redis"]) - median(results.http["in process"])
        lines.append(f"- Through the gateway: {delta:+.2f} ms median per cache hit.")
    if results.error:
        lines.append(f"- The run failed: {results.error}")
    if results.leftovers:
        lines.append(f"- Processes left behind: {results.leftovers}")
    lines.append(f"- Command: `.venv/bin/python bench/bench_access.py{' --quick' * args.quick}`")
    return "\n".join(lines) + "\n"


def _added(results: Results) -> float | None:
    redis_rows = results.direct.get("Redis, one request at a time")
    local_rows = results.direct.get("in process, one request at a time")
    if not redis_rows or not local_rows:
        return None
    return median(redis_rows) - median(local_rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    for name in list(os.environ):
        if name.startswith(("ANTHROPIC_", "CLAUDE")):
            del os.environ[name]
    prefix = f"cca-bench-{secrets.token_hex(6)}:"
    root = Path(tempfile.mkdtemp(prefix="cca-bench-access-"))
    upstream = FakeUpstream()
    upstream.start()
    results = Results()

    def measure() -> None:
        try:
            run(results, args.redis, prefix, root, upstream, args.quick)
        finally:
            with redis.Redis.from_url(args.redis) as client:
                for key in list(client.scan_iter(match=prefix + "*", count=500)):
                    client.delete(key)

    return run_and_report(measure, results, root, upstream, lambda: render(results, args),
                          args.output)


if __name__ == "__main__":
    sys.exit(main())
