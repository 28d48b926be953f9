"""Chat completions: latency, throughput and memory of the gateway, fully offline.

Everything talks to the same in-process fake Anthropic Messages API, so what is
measured is the cost of the hops in between: the official ``anthropic`` client
straight to the fake (the floor), the official ``openai`` client through the
gateway (warm CLI workers), and one ``claude`` process per request through
``claude_agent_sdk.query`` (how most peer projects work).

    .venv/bin/python bench/bench_chat.py [--quick]

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
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import psutil
from claude_agent_sdk import ClaudeAgentOptions, ResultMessage, query

from claude_code_api import __version__
from claude_code_api.testing.fake_upstream import FakeUpstream, Reply

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "chat.md"
SERVE = REPO / ".venv" / "bin" / "claude-code-api"
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

    @property
    def median(self) -> float:
        return statistics.median(self.ms)

    @property
    def p95(self) -> float:
        """Nearest-rank 95th percentile."""
        ordered = sorted(self.ms)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


@dataclass
class Level:
    concurrency: int
    seconds: float
    latency: Series
    errors: Counter[str]

    @property
    def requests(self) -> int:
        return len(self.latency.ms) + sum(self.errors.values())

    @property
    def rps(self) -> float:
        return len(self.latency.ms) / self.seconds


@dataclass
class Results:
    plan: Plan
    cli_version: str = "?"
    latency: list[Series] = field(default_factory=list)
    levels: list[Level] = field(default_factory=list)
    memory: list[list[str]] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    error: str | None = None


def ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def timed(call: Callable[[], object], n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append(ms_since(start))
    return samples


async def timed_async(call: Callable[[], Awaitable[object]], n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        await call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        samples.append(ms_since(start))
    return samples


def check_reply(text: str | None) -> None:
    if text != REPLY:
        raise RuntimeError(f"unexpected reply {text!r}")


# -- the measurements ---------------------------------------------------------
def measure_floor(upstream_url: str, plan: Plan) -> Series:
    client = anthropic.Anthropic(base_url=upstream_url, api_key=API_KEY, max_retries=0)

    def call() -> None:
        message = client.messages.create(model="claude-sonnet-4-5", max_tokens=64,
                                         messages=[{"role": "user", "content": PROMPT}])
        block = message.content[0]
        check_reply(block.text if block.type == "text" else None)

    with client:
        samples = timed(call, plan.n, plan.warmup)
    return Series("floor", "floor: `anthropic` client → fake upstream", samples)


def openai_client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0, timeout=60)


def measure_gateway(base_url: str, plan: Plan) -> Series:
    def call() -> None:
        completion = client.chat.completions.create(
            model="sonnet", messages=[{"role": "user", "content": PROMPT}])
        check_reply(completion.choices[0].message.content)

    with openai_client(base_url) as client:
        return Series("gateway", "gateway (warm)", timed(call, plan.n, plan.warmup))


def streamed_turn(client: openai.OpenAI) -> tuple[float, float]:
    """Milliseconds to the first content chunk and to the end of the stream."""
    start = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    stream = client.chat.completions.create(
        model="sonnet", messages=[{"role": "user", "content": PROMPT}], stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first = first if first is not None else ms_since(start)
            parts.append(chunk.choices[0].delta.content)
    check_reply("".join(parts))
    return first or math.nan, ms_since(start)


def measure_streaming(base_url: str, plan: Plan) -> list[Series]:
    with openai_client(base_url) as client:
        for _ in range(plan.warmup):
            streamed_turn(client)
        pairs = [streamed_turn(client) for _ in range(plan.n)]
    return [Series("stream", "gateway (warm), streaming: total", [t for _, t in pairs]),
            Series("first", "gateway (warm), streaming: first content chunk",
                   [f for f, _ in pairs])]


def cli_options(root: Path, upstream_url: str) -> ClaudeAgentOptions:
    cwd = root / "cli-cwd"
    cwd.mkdir(exist_ok=True)
    env = {"ANTHROPIC_BASE_URL": upstream_url, "ANTHROPIC_API_KEY": API_KEY,
           "CLAUDE_CONFIG_DIR": str(root / "cli-config"),
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "CLAUDE_CODE_MAX_RETRIES": "0"}
    return ClaudeAgentOptions(tools=[], system_prompt="", setting_sources=[],
                              strict_mcp_config=True, cwd=str(cwd), env=env, model="sonnet")


async def measure_cli_per_request(options: ClaudeAgentOptions, plan: Plan) -> Series:
    async def call() -> None:
        result: str | None = None
        async for message in query(prompt=PROMPT, options=options):
            if isinstance(message, ResultMessage):
                result = message.result
        check_reply(result)

    samples = await timed_async(call, plan.n_cli, plan.warmup)
    return Series("cli", "one CLI per request (`claude_agent_sdk.query`)", samples)


async def run_level(base_url: str, concurrency: int, total: int) -> Level:
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0,
                                timeout=120)
    tickets = iter(range(total))
    latencies: list[float] = []
    errors: Counter[str] = Counter()

    async def lane() -> None:
        for _ in tickets:  # shared: each lane takes the next request
            start = time.perf_counter()
            try:
                completion = await client.chat.completions.create(
                    model="sonnet", messages=[{"role": "user", "content": PROMPT}])
                check_reply(completion.choices[0].message.content)
            except (openai.APIError, RuntimeError) as exc:
                errors[describe_error(exc)] += 1
                continue
            latencies.append(ms_since(start))

    start = time.perf_counter()
    async with client:
        await asyncio.gather(*(lane() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    latency = Series("level", f"concurrency {concurrency}", latencies)
    return Level(concurrency, seconds, latency, errors)


def describe_error(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    return f"{status} {type(exc).__name__}" if status else type(exc).__name__


async def measure_throughput(base_url: str, plan: Plan) -> list[Level]:
    return [await run_level(base_url, c, plan.per_level) for c in plan.levels]


# -- the gateway process ------------------------------------------------------
@dataclass
class GatewayProcess:
    base_url: str
    proc: subprocess.Popen[bytes]
    log_file: Path

    def health(self) -> dict[str, Any]:
        response = httpx.get(f"{self.base_url}/health", timeout=10)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def gateway_env(root: Path, upstream_url: str) -> dict[str, str]:
    return {**os.environ,
            "ANTHROPIC_BASE_URL": upstream_url, "ANTHROPIC_API_KEY": API_KEY,
            "CLAUDE_CONFIG_DIR": str(root / "config"),
            "CLAUDE_CODE__CLAUDE__MAX_CONCURRENT_SESSIONS": str(WORKERS),
            "CLAUDE_CODE__CLAUDE__MIN_IDLE_WORKERS": str(WORKERS),
            "CLAUDE_CODE__SERVER__LOG_LEVEL": "warning"}


@contextlib.contextmanager
def running_gateway(root: Path, upstream_url: str) -> Iterator[GatewayProcess]:
    """The gateway started as a user would, stopped (terminate, then kill) on exit.

    It runs in ``root`` so that no ``config/local.toml`` of the checkout applies.
    """
    port = free_port()
    log_file = root / "gateway.log"
    with log_file.open("wb") as log:
        proc = subprocess.Popen([str(SERVE), "serve", "--port", str(port)], cwd=root,
                                env=gateway_env(root, upstream_url), stdout=log,
                                stderr=subprocess.STDOUT)
    gateway = GatewayProcess(f"http://127.0.0.1:{port}", proc, log_file)
    try:
        wait_until_warm(gateway)
        yield gateway
    finally:
        stop(proc)


def wait_until_warm(gateway: GatewayProcess, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gateway.proc.poll() is not None:
            raise RuntimeError(f"the gateway exited ({gateway.proc.returncode}):\n"
                               f"{gateway.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if gateway.health()["pool"]["idle"] == WORKERS:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the gateway had not {WORKERS} idle workers after {timeout:g} s:\n"
                       f"{gateway.log_tail()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def our_processes(root: Path) -> list[psutil.Process]:
    """Live processes (other than this one) started for this run: they carry a
    ``CLAUDE_CONFIG_DIR`` inside ``root``."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("CLAUDE_CONFIG_DIR", "").startswith(str(root)):
                found.append(proc)
    return found


def reap_leftovers(root: Path, grace: float = 5.0) -> list[str]:
    """Kill what is still running after ``grace`` seconds; describe it."""
    deadline = time.monotonic() + grace
    while (procs := our_processes(root)) and time.monotonic() < deadline:
        time.sleep(0.2)
    described = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            described.append(f"pid {proc.pid} ({proc.name()})")
            proc.kill()
    psutil.wait_procs(procs, timeout=5)
    return described


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
def scrub_environment() -> None:
    """No inherited Anthropic/Claude settings: the run is the same on every machine."""
    for name in list(os.environ):
        if name.startswith(("ANTHROPIC_", "CLAUDE")):
            del os.environ[name]


def run(plan: Plan, results: Results, root: Path, upstream: FakeUpstream) -> None:
    steps = ["floor", "gateway", "streaming", "one CLI per request", "throughput"]
    say = progress(steps)
    with running_gateway(root, upstream.url) as gateway:
        at_ready = gateway.health()
        results.cli_version = str(at_ready.get("cli_version") or "?")
        say()
        results.latency.append(measure_floor(upstream.url, plan))
        say()
        results.latency.append(measure_gateway(gateway.base_url, plan))
        say()
        results.latency.extend(measure_streaming(gateway.base_url, plan))
        say()
        options = cli_options(root, upstream.url)
        results.latency.append(asyncio.run(measure_cli_per_request(options, plan)))
        say()
        results.levels = asyncio.run(measure_throughput(gateway.base_url, plan))
        results.memory = memory_rows(gateway, at_ready)


def progress(steps: list[str]) -> Callable[[], None]:
    remaining = iter(steps)
    started = time.perf_counter()

    def say() -> None:
        step = next(remaining, None)
        if step is not None:
            print(f"[{time.perf_counter() - started:6.1f} s] {step}...", file=sys.stderr)

    return say


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    plan = QUICK if parser.parse_args(argv).quick else FULL
    scrub_environment()
    results = Results(plan)
    root = Path(tempfile.mkdtemp(prefix="bench-chat-"))
    upstream = FakeUpstream(Reply.text(REPLY))
    upstream.start()
    try:
        run(plan, results, root, upstream)
    except Exception as exc:  # still report what was measured, and clean up
        results.error = f"{type(exc).__name__}: {exc}"
    finally:
        results.leftovers = reap_leftovers(root)
        upstream.stop()
        shutil.rmtree(root, ignore_errors=True)
    report = render(results)
    print(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report)
    return 1 if results.error or results.leftovers else 0


# -- the report ---------------------------------------------------------------
def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


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
        "- Upstream: the scripted fake Messages API (in-process), replying "
        f"\"{REPLY}\"",
        "",
        "> The machine is shared and noisy: absolute numbers move between runs; "
        "compare the rows of one run (the ratio below), not runs with each other.",
    ])


def render_latency(results: Results) -> str:
    if not results.latency:
        return ""
    rows = [[s.name, str(len(s.ms)), f"{s.median:.1f}", f"{s.p95:.1f}"]
            for s in results.latency]
    return "## Latency, sequential (ms)\n\n" + table(["Path", "N", "median", "p95"], rows)


def render_throughput(results: Results) -> str:
    if not results.levels:
        return ""
    rows = [[str(lv.concurrency), str(lv.requests), str(sum(lv.errors.values())),
             f"{lv.rps:.1f}", f"{lv.latency.median:.1f}", f"{lv.latency.p95:.1f}"]
            for lv in results.levels if lv.latency.ms]
    text = (f"## Throughput through the gateway ({WORKERS} workers, `AsyncOpenAI`)\n\n"
            + table(["Concurrency", "Requests", "Errors", "req/s", "median ms", "p95 ms"], rows))
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
    medians = {s.key: s.median for s in results.latency}
    floor, gateway, per_request = (medians.get(k) for k in ("floor", "gateway", "cli"))
    if floor is None or gateway is None or per_request is None or gateway <= floor:
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
