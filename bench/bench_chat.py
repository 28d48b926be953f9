"""Chat completions: latency, throughput and memory of the gateway, fully offline.

Everything talks to the same in-process fake Anthropic Messages API, so what is
measured is the cost of the hops in between: the official ``anthropic`` client
straight to the fake (the floor), the official ``openai`` client through the
gateway (warm CLI workers), and one ``claude`` process per request through
``claude_agent_sdk.query`` (how most peer projects work).

    .venv/bin/python bench/bench_chat.py [--quick] [--output FILE]

The output (markdown) is printed and written to ``bench/results/chat.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import math
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import openai
import psutil
from claude_agent_sdk import ClaudeAgentOptions, ResultMessage, query
from harness import (
    GatewayProcess,
    describe_error,
    median,
    ms_since,
    p95,
    progress,
    run_and_report,
    running_gateway,
    scrub_environment,
    table,
)

from claude_code_api import __version__
from claude_code_api.testing.fake_upstream import FakeUpstream, Reply

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "chat.md"
WORKERS = 4
TARGET_RATIO = 10.0
PROMPT = "Say hi"
REPLY = "Hi there, this is a short answer."
API_KEY = "sk-bench"
MB = 1024 * 1024


@dataclass(frozen=True)
class Plan:
    name: str
    n: int
    n_cli: int
    per_level: int
    warmup: int = 3
    levels: tuple[int, ...] = (1, 4, 16)


FULL = Plan("full", n=40, n_cli=15, per_level=48)
QUICK = Plan("quick", n=10, n_cli=5, per_level=16)


# -- statistics ---------------------------------------------------------------
@dataclass
class Series:
    key: str
    name: str
    ms: list[float]
    # Milliseconds from sending the request to the upstream receiving its request.
    to_upstream: list[float] = field(default_factory=list)


@dataclass
class Level:
    concurrency: int
    seconds: float
    latency: list[float]
    errors: Counter[str]
    # CPU milliseconds per request: the gateway process, its workers together.
    cpu_gateway: float = math.nan
    cpu_workers: float = math.nan

    @property
    def requests(self) -> int:
        return len(self.latency) + sum(self.errors.values())

    @property
    def rps(self) -> float:
        return len(self.latency) / self.seconds


@dataclass
class Results:
    plan: Plan
    upstream: str
    cli_version: str = "?"
    latency: list[Series] = field(default_factory=list)
    levels: list[Level] = field(default_factory=list)
    memory: list[list[str]] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Stopwatch:
    """Times requests, and when the fake upstream saw each one's first request.

    ``time.monotonic`` is the clock ``FakeUpstream`` stamps requests with."""

    upstream: FakeUpstream
    totals: list[float] = field(default_factory=list)
    to_upstream: list[float] = field(default_factory=list)

    @contextlib.contextmanager
    def lap(self) -> Iterator[None]:
        mark, start = len(self.upstream.requests), time.monotonic()
        yield
        self.totals.append(ms_since(start))
        seen = self.upstream.requests[mark:]
        self.to_upstream.append((seen[0].at - start) * 1000 if seen else math.nan)

    def series(self, key: str, name: str) -> Series:
        return Series(key, name, self.totals, self.to_upstream)


def check_reply(text: str | None) -> None:
    if text != REPLY:
        raise RuntimeError(f"unexpected reply {text!r}")


# -- the upstream -------------------------------------------------------------
# -- sequential latency -------------------------------------------------------
# The paths, in report order. They are measured interleaved, round by round, so
# that a noisy neighbour slows them all alike.
PATHS = {
    "floor": "floor: `anthropic` client → fake upstream",
    "gateway": "gateway (warm)",
    "stream": "gateway (warm), streaming: whole answer",
    "cli": "one CLI per request (`claude_agent_sdk.query`)",
}


def openai_client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0, timeout=60)


def floor_turn(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="claude-sonnet-4-6", max_tokens=64,
                                     messages=[{"role": "user", "content": PROMPT}])
    block = message.content[0]
    check_reply(block.text if block.type == "text" else None)


def gateway_turn(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="sonnet", messages=[{"role": "user", "content": PROMPT}])
    check_reply(completion.choices[0].message.content)


def streamed_turn(client: openai.OpenAI) -> float:
    """Streams one answer; milliseconds to its first content chunk."""
    start = time.monotonic()
    first = math.nan
    parts: list[str] = []
    stream = client.chat.completions.create(
        model="sonnet", messages=[{"role": "user", "content": PROMPT}], stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first = ms_since(start) if math.isnan(first) else first
            parts.append(chunk.choices[0].delta.content)
    check_reply("".join(parts))
    return first


def cli_options(root: Path, upstream_url: str) -> ClaudeAgentOptions:
    cwd = root / "cli-cwd"
    cwd.mkdir(exist_ok=True)
    env = {"ANTHROPIC_BASE_URL": upstream_url, "ANTHROPIC_API_KEY": API_KEY,
           "CLAUDE_CONFIG_DIR": str(root / "cli-config"),
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "CLAUDE_CODE_MAX_RETRIES": "0"}
    return ClaudeAgentOptions(tools=[], system_prompt="", setting_sources=[],
                              strict_mcp_config=True, cwd=str(cwd), env=env, model="sonnet")


async def one_cli_turn(options: ClaudeAgentOptions) -> None:
    result: str | None = None
    async for message in query(prompt=PROMPT, options=options):
        if isinstance(message, ResultMessage):
            result = message.result
    check_reply(result)


def schedule(plan: Plan) -> list[list[str]]:
    """``plan.n`` rounds of every path; the slow CLI path in ``n_cli`` of them, spread out."""
    rounds = []
    for i in range(plan.n):
        cli = (i + 1) * plan.n_cli // plan.n > i * plan.n_cli // plan.n
        rounds.append(["floor", "gateway", "stream"] + (["cli"] if cli else []))
    return rounds


def latency_calls(stack: contextlib.ExitStack, base_url: str, upstream_url: str,
                  options: ClaudeAgentOptions,
                  firsts: list[float]) -> dict[str, Callable[[], object]]:
    direct = stack.enter_context(
        anthropic.Anthropic(base_url=upstream_url, api_key=API_KEY, max_retries=0))
    client = stack.enter_context(openai_client(base_url))
    runner = stack.enter_context(asyncio.Runner())
    return {"floor": lambda: floor_turn(direct),
            "gateway": lambda: gateway_turn(client),
            "stream": lambda: firsts.append(streamed_turn(client)),
            "cli": lambda: runner.run(one_cli_turn(options))}


def measure_latency(base_url: str, upstream: FakeUpstream, options: ClaudeAgentOptions,
                    plan: Plan) -> list[Series]:
    firsts: list[float] = []
    watches = {key: Stopwatch(upstream) for key in PATHS}
    with contextlib.ExitStack() as stack:
        calls = latency_calls(stack, base_url, upstream.url, options, firsts)
        for _ in range(plan.warmup):
            for call in calls.values():
                call()
        firsts.clear()
        for keys in schedule(plan):
            for key in keys:
                with watches[key].lap():
                    calls[key]()
    series = [watches[key].series(key, name) for key, name in PATHS.items()]
    series.insert(3, Series("first", "gateway (warm), streaming: first content chunk", firsts))
    return series


# -- concurrent requests ------------------------------------------------------
async def run_level(base_url: str, concurrency: int, total: int) -> Level:
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0,
                                timeout=120)
    tickets = iter(range(total))
    latencies: list[float] = []
    errors: Counter[str] = Counter()

    async def lane() -> None:
        for _ in tickets:  # shared: each lane takes the next request
            start = time.monotonic()
            try:
                completion = await client.chat.completions.create(
                    model="sonnet", messages=[{"role": "user", "content": PROMPT}])
                check_reply(completion.choices[0].message.content)
            except (openai.APIError, RuntimeError) as exc:
                errors[describe_error(exc)] += 1
                continue
            latencies.append(ms_since(start))

    start = time.monotonic()
    async with client:
        await asyncio.gather(*(lane() for _ in range(concurrency)))
    return Level(concurrency, time.monotonic() - start, latencies, errors)


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def measure_throughput(gateway: GatewayProcess, plan: Plan) -> list[Level]:
    levels = []
    for concurrency in plan.levels:
        workers = gateway.worker_pids()
        before = cpu_seconds([gateway.proc.pid]), cpu_seconds(workers)
        level = asyncio.run(run_level(gateway.base_url, concurrency, plan.per_level))
        done = max(1, len(level.latency))
        level.cpu_gateway = (cpu_seconds([gateway.proc.pid]) - before[0]) * 1000 / done
        level.cpu_workers = (cpu_seconds(workers) - before[1]) * 1000 / done
        levels.append(level)
    return levels


def measure_fresh_workers(gateway: GatewayProcess) -> Series:
    """One request per worker, all at once, right after start: every CLI's first turn."""
    level = asyncio.run(run_level(gateway.base_url, WORKERS, WORKERS))
    if level.errors:
        raise RuntimeError(f"first turns failed: {dict(level.errors)}")
    return Series("fresh", f"gateway, first turn of each fresh worker ({WORKERS} at once)",
                  level.latency)


# -- the gateway process ------------------------------------------------------
def gateway_env(root: Path, upstream_url: str) -> dict[str, str]:
    return {**os.environ,
            "ANTHROPIC_BASE_URL": upstream_url, "ANTHROPIC_API_KEY": API_KEY,
            "CLAUDE_CONFIG_DIR": str(root / "config"),
            "CLAUDE_CODE__CLAUDE__MAX_CONCURRENT_SESSIONS": str(WORKERS),
            "CLAUDE_CODE__CLAUDE__MIN_IDLE_WORKERS": str(WORKERS),
            "CLAUDE_CODE__STORE__PATH": str(root / "gateway.db"),
            "CLAUDE_CODE__SERVER__LOG_LEVEL": "warning"}


# -- memory -------------------------------------------------------------------
def memory_rows(gateway: GatewayProcess, at_ready: dict[str, Any]) -> list[list[str]]:
    now = gateway.health()
    ready_rss = {w["pid"]: w["rss_bytes"] for w in at_ready["workers"]}
    own = psutil.Process(gateway.proc.pid).memory_info().rss
    rows = [["gateway (Python)", str(gateway.proc.pid), "–", "–", f"{own / MB:.0f}"]]
    total = own
    for worker in now["workers"]:
        before = ready_rss.get(worker["pid"])
        rows.append([f"worker #{worker['id']} (`claude`)", str(worker["pid"]),
                     str(worker["turns"]), f"{before / MB:.0f}" if before else "–",
                     f"{worker['rss_bytes'] / MB:.0f}"])
        total += worker["rss_bytes"]
    rows.append(["**total**", "", "", "", f"**{total / MB:.0f}**"])
    return rows


# -- the run ------------------------------------------------------------------
def run(results: Results, root: Path, upstream: FakeUpstream) -> None:
    plan = results.plan
    say = progress()
    with running_gateway(root, gateway_env(root, upstream.url), WORKERS) as gateway:
        at_ready = gateway.health()
        results.cli_version = str(at_ready.get("cli_version") or "?")
        say("first turns of fresh workers")
        fresh = measure_fresh_workers(gateway)
        say("sequential latency: floor, gateway, streaming, one CLI per request")
        options = cli_options(root, upstream.url)
        results.latency = measure_latency(gateway.base_url, upstream, options, plan)
        results.latency.append(fresh)
        say("throughput")
        results.levels = measure_throughput(gateway, plan)
        results.memory = memory_rows(gateway, at_ready)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--output", type=Path, default=RESULTS, metavar="FILE",
                        help=f"where the report goes (default {RESULTS.relative_to(REPO)})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scrub_environment()
    results = Results(QUICK if args.quick else FULL, FakeUpstream.__name__)
    root = Path(tempfile.mkdtemp(prefix="bench-chat-"))
    upstream = FakeUpstream(Reply.text(REPLY))
    upstream.start()
    return run_and_report(lambda: run(results, root, upstream), results, root, upstream,
                          lambda: render(results), args.output)


# -- the report ---------------------------------------------------------------
def fmt(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.1f}"


def render(results: Results) -> str:
    parts = [render_header(results), render_latency(results), render_throughput(results),
             render_memory(results), render_ratio(results), render_cleanup(results)]
    return "\n\n".join(p for p in parts if p) + "\n"


def render_header(results: Results) -> str:
    plan = results.plan
    return "\n".join([
        "# Chat completions benchmark",
        "",
        f"- Date: {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- Mode: {plan.name} (N={plan.n}, one-CLI N={plan.n_cli}, {plan.warmup} warm-up "
        f"requests each, {plan.per_level} requests per throughput level)",
        f"- CPUs: {os.cpu_count()}; Python {platform.python_version()} on {platform.system()} "
        f"{platform.machine()}",
        f"- Claude Code CLI: {results.cli_version}; claude-code-api {__version__}; "
        f"{WORKERS} warm workers",
        f"- Upstream: the scripted fake Messages API, in-process ({results.upstream}), "
        f"replying \"{REPLY}\"",
        "",
        "> The machine is shared and noisy: absolute numbers move between runs; "
        "compare the rows of one run (the ratio below), not runs with each other.",
    ])


def render_latency(results: Results) -> str:
    if not results.latency:
        return ""
    rows = [[s.name, str(len(s.ms)), fmt(median(s.ms)), fmt(p95(s.ms)),
             fmt(median(s.to_upstream))] for s in results.latency]
    return ("## Latency, sequential (ms)\n\n"
            + table(["Path", "N", "median", "p95", "to upstream (median)"], rows)
            + "\n\n*to upstream*: from sending the request until the fake upstream "
              "receives the Messages API call it causes.")


def render_throughput(results: Results) -> str:
    if not results.levels:
        return ""
    rows = [[str(lv.concurrency), str(lv.requests), str(sum(lv.errors.values())),
             f"{lv.rps:.1f}", fmt(median(lv.latency)), fmt(p95(lv.latency)),
             f"{lv.cpu_gateway:.0f}", f"{lv.cpu_workers:.0f}"] for lv in results.levels]
    headers = ["Concurrency", "Requests", "Errors", "req/s", "median ms", "p95 ms",
               "gateway CPU ms/req", "workers CPU ms/req"]
    text = (f"## Throughput through the gateway ({WORKERS} workers, `AsyncOpenAI`)\n\n"
            + table(headers, rows))
    errors = sum((lv.errors for lv in results.levels), Counter[str]())
    if errors:
        text += "\n\nErrors: " + ", ".join(f"{k} × {v}" for k, v in errors.items())
    return text


def render_memory(results: Results) -> str:
    if not results.memory:
        return ""
    return ("## Memory (RSS, MB)\n\n"
            + table(["Process", "PID", "Turns", "at ready", "after the run"], results.memory))


def overhead_ratio(results: Results) -> float | None:
    medians = {s.key: median(s.ms) for s in results.latency}
    floor, gateway, per_request = (medians.get(k) for k in ("floor", "gateway", "cli"))
    if floor is None or gateway is None or per_request is None or not gateway > floor:
        return None
    return (per_request - floor) / (gateway - floor)


def render_ratio(results: Results) -> str:
    ratio = overhead_ratio(results)
    if ratio is None:
        return "## Overhead ratio\n\nnot available (a measurement is missing)"
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    return ("## Overhead ratio\n\n"
            "(one CLI per request − floor) / (gateway warm − floor), medians: "
            f"**{ratio:.1f}×** → **{verdict}** (target ≥ {TARGET_RATIO:g}×)")


def render_cleanup(results: Results) -> str:
    lines = ["## Clean-up", ""]
    if results.leftovers:
        lines.append("Left running and killed: " + ", ".join(results.leftovers))
    else:
        lines.append("No gateway or `claude` process was left running.")
    if results.error:
        lines += ["", f"**The run failed:** {results.error}"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
