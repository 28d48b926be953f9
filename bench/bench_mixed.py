"""Mixed traffic: CLI starts and latency when requests differ in shape (issue 14).

A CLI worker is bound at launch to one request shape (system prompt, max_tokens,
tool set, output schema, effort: ``WorkerKey``). This measures what that costs
when traffic mixes shapes, against the same gateway serving one shape, and
against one ``claude`` process per request. Everything talks to the in-process
fake Anthropic Messages API; the gateway runs as a user would run it
(``claude-code-api serve``, its default settings but for the pool size).

At each concurrency level (1, 3, 8), in this order:

- floor: the ``anthropic`` client straight to the fake upstream;
- uniform: chat completions of one shape (no system prompt, no max_tokens),
  after a warm-up that fills the pool with workers of that shape;
- mixed: a seeded random mix of chat completions (with and without a system
  prompt, a tool set, a json_schema ``response_format``, a reasoning effort),
  ``/v1/messages`` (with and without ``system``) and ``/v1/responses`` (with
  ``instructions``), ``max_tokens`` drawn from 256 to 32000; after a warm-up of
  the same mix;
- one CLI per request: the first requests of the same mix, each answered by its
  own ``claude_agent_sdk.query()`` with that request's shape.

CLI starts are read from the gateway's ``/metrics`` (``workers_started``).
Then the cold rebuild: conversations of 10, 50, 200 and 1000 earlier turns sent
as full chat-completions history to a gateway whose workers do not hold them,
and the next turn of each (a warm continuation) for comparison.

    .venv/bin/python bench/bench_mixed.py [--quick] [--pool N] [--seed N] [--output FILE]

The output (markdown) is printed and written to ``bench/results/mixed.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
from claude_agent_sdk import (
    ClaudeAgentOptions,
    ResultMessage,
    create_sdk_mcp_server,
    query,
    tool,
)
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
from claude_code_api.settings import ClaudeSettings
from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Seen, ToolUse

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "mixed.md"
DEFAULT_POOL: int = ClaudeSettings.model_fields["max_concurrent_sessions"].default
API_KEY = "sk-bench"
REPLY = "Hi there, this is a short answer."
DOCUMENT = {"city": "Lyon", "celsius": 21}

# The targets.
TARGET_STARTS = 10.0  # CLI starts per 100 mixed requests, at most
TARGET_MIXED = 1.5  # mixed p50 / uniform p50, at most
TARGET_OVERHEAD = 15.0  # (one-CLI p50 − floor) / (mixed p50 − floor), at least
TARGET_REBUILD_MS = 1500.0  # cold rebuild of 200 earlier turns, at most
TARGET_FLAT = 1.5  # cold / warm turn at the same history length, at most


@dataclass(frozen=True)
class Plan:
    name: str
    per_level: int  # uniform and mixed requests measured per level
    per_level_cli: int  # one-CLI-per-request requests per level
    levels: tuple[int, ...] = (1, 3, 8)
    histories: tuple[int, ...] = (10, 50, 200, 1000)
    history_runs: int = 3


FULL = Plan("full", per_level=72, per_level_cli=24)
QUICK = Plan("quick", per_level=12, per_level_cli=3, levels=(1, 3), histories=(10, 200),
             history_runs=1)


# -- the mix ------------------------------------------------------------------
KINDS = ("chat", "chat+system", "chat+tools", "chat+schema", "chat+effort",
         "messages", "messages+system", "responses")
SYSTEMS = ("You are a terse assistant. Answer in one sentence.",
           "You are a support agent for a weather service. Be polite and brief.")
MAX_TOKENS = (None, 256, 1024, 4096, 32000)
EFFORTS = ("low", "high")
WEATHER_TOOL = {"name": "get_weather", "description": "Current weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"]}}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"},
                                           "celsius": {"type": "integer"}},
          "required": ["city", "celsius"], "additionalProperties": False}


@dataclass(frozen=True)
class Shape:
    """One request of the mix: its endpoint and everything that binds a worker today."""

    kind: str
    system: str | None = None
    max_tokens: int | None = None
    effort: str | None = None

    @property
    def endpoint(self) -> str:
        return self.kind.split("+")[0]


UNIFORM = Shape("chat")


def mixed_traffic(n: int, seed: int) -> list[Shape]:
    """``n`` requests drawn from the mix; the same ``seed`` gives the same requests."""
    rng = random.Random(seed)
    shapes = []
    for _ in range(n):
        kind = rng.choice(KINDS)
        system = rng.choice(SYSTEMS) if kind.endswith("+system") or kind == "responses" \
            else None
        max_tokens = rng.choice(MAX_TOKENS)
        if kind.startswith("messages") and max_tokens is None:  # required there
            max_tokens = rng.choice(MAX_TOKENS[1:])
        effort = rng.choice(EFFORTS) if kind == "chat+effort" else None
        shapes.append(Shape(kind, system, max_tokens, effort))
    return shapes


def answer(seen: Seen) -> Reply:
    """The fake upstream: the document when the CLI offers StructuredOutput (until
    the tool's result comes back), short text otherwise (tools offered or not)."""
    offered = any(t.get("name") == "StructuredOutput" for t in seen.body.get("tools", []))
    messages = seen.messages
    last = messages[-1].get("content") if messages else None
    answered = isinstance(last, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in last)
    if offered and not answered:
        return Reply(blocks=[ToolUse("StructuredOutput", DOCUMENT)], stop_reason="tool_use")
    return Reply.text(REPLY)


# -- statistics ---------------------------------------------------------------
@dataclass
class Block:
    """One traffic kind at one concurrency level."""

    latency: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    starts: int = 0

    @property
    def requests(self) -> int:
        return len(self.latency) + sum(self.errors.values())

    @property
    def starts_per_100(self) -> float:
        return 100 * self.starts / self.requests if self.requests else math.nan


@dataclass
class Level:
    concurrency: int
    floor: Block = field(default_factory=Block)
    uniform: Block = field(default_factory=Block)
    mixed: Block = field(default_factory=Block)
    cli: Block = field(default_factory=Block)

    def blocks(self) -> dict[str, Block]:
        return {"floor": self.floor, "uniform": self.uniform, "mixed": self.mixed,
                "cli": self.cli}


@dataclass
class Rebuild:
    turns: int
    cold: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)
    # How the gateway served them (its /health counters): replayed, warm.
    replayed: int = 0
    continued: int = 0


@dataclass
class Results:
    plan: Plan
    pool: int
    seed: int
    cli_version: str = "?"
    mix: Counter[str] = field(default_factory=Counter)
    levels: list[Level] = field(default_factory=list)
    rebuilds: list[Rebuild] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    error: str | None = None


async def lanes(concurrency: int, shapes: list[Shape],
                send: Callable[[Shape, int], Awaitable[None]], block: Block) -> None:
    """``concurrency`` lanes take the next request of ``shapes`` until none is left."""
    tickets = iter(enumerate(shapes))

    async def lane() -> None:
        for i, shape in tickets:
            start = time.monotonic()
            try:
                await send(shape, i)
            except (openai.APIError, anthropic.APIError, RuntimeError) as exc:
                block.errors[describe_error(exc)] += 1
                continue
            block.latency.append(ms_since(start))

    await asyncio.gather(*(lane() for _ in range(concurrency)))


def check(text: str | None, expected: str = REPLY) -> None:
    if text != expected:
        raise RuntimeError(f"unexpected answer {text!r}")


# -- requests through the gateway ---------------------------------------------
@dataclass
class Clients:
    chat: openai.AsyncOpenAI
    messages: anthropic.AsyncAnthropic

    @classmethod
    def to(cls, base_url: str) -> Clients:
        return cls(openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0,
                                      timeout=300),
                   anthropic.AsyncAnthropic(base_url=base_url, api_key="x", max_retries=0,
                                            timeout=300))

    async def close(self) -> None:
        await self.chat.close()
        await self.messages.close()


def prompt(i: int) -> str:
    return f"Say hi (request {i})"


async def send_gateway(clients: Clients, shape: Shape, i: int) -> None:
    if shape.endpoint == "messages":
        await send_messages(clients.messages, shape, i)
    elif shape.endpoint == "responses":
        response = await clients.chat.responses.create(
            model="sonnet", instructions=shape.system, input=prompt(i),
            **({"max_output_tokens": shape.max_tokens} if shape.max_tokens else {}))
        check(response.output_text)
    else:
        await send_chat(clients.chat, shape, i)


async def send_chat(client: openai.AsyncOpenAI, shape: Shape, i: int) -> None:
    messages: list[Any] = [{"role": "user", "content": prompt(i)}]
    if shape.system:
        messages.insert(0, {"role": "system", "content": shape.system})
    extra: dict[str, Any] = {}
    if shape.max_tokens:
        extra["max_tokens"] = shape.max_tokens
    if shape.kind == "chat+tools":
        extra["tools"] = [{"type": "function", "function": WEATHER_TOOL}]
    if shape.kind == "chat+schema":
        extra["response_format"] = {"type": "json_schema",
                                    "json_schema": {"name": "weather", "schema": SCHEMA}}
    if shape.effort:
        extra["reasoning_effort"] = shape.effort
    completion = await client.chat.completions.create(model="sonnet", messages=messages,
                                                      **extra)
    content = completion.choices[0].message.content
    if shape.kind == "chat+schema":
        check(json.dumps(json.loads(content or "null")), json.dumps(DOCUMENT))
    else:
        check(content)


async def send_messages(client: anthropic.AsyncAnthropic, shape: Shape, i: int) -> None:
    extra: dict[str, Any] = {"system": shape.system} if shape.system else {}
    message = await client.messages.create(
        model="sonnet", max_tokens=shape.max_tokens or 1024,
        messages=[{"role": "user", "content": prompt(i)}], **extra)
    block = message.content[0] if message.content else None
    check(block.text if block is not None and block.type == "text" else None)


# -- the floor and one CLI per request ----------------------------------------
async def floor_level(upstream_url: str, concurrency: int, n: int) -> Block:
    block = Block()
    async with anthropic.AsyncAnthropic(base_url=upstream_url, api_key=API_KEY,
                                        max_retries=0) as client:
        await lanes(concurrency, [Shape("messages", max_tokens=64)] * n,
                    lambda shape, i: send_messages(client, shape, i), block)
    return block


def cli_options(root: Path, upstream_url: str, shape: Shape) -> ClaudeAgentOptions:
    """The options the gateway gives a worker for this shape, for a one-off CLI."""
    cwd = root / "cli-cwd"
    cwd.mkdir(exist_ok=True)
    env = {"ANTHROPIC_BASE_URL": upstream_url, "ANTHROPIC_API_KEY": API_KEY,
           "CLAUDE_CONFIG_DIR": str(root / "cli-config"),
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "CLAUDE_CODE_MAX_RETRIES": "0"}
    if shape.max_tokens:
        env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] = str(shape.max_tokens)
    servers: dict[str, Any] = {}
    if shape.kind == "chat+tools":
        servers["client"] = create_sdk_mcp_server("client", tools=[weather_tool()])
    schema = {"type": "json_schema", "schema": SCHEMA} if shape.kind == "chat+schema" else None
    return ClaudeAgentOptions(
        tools=[], system_prompt=shape.system or "", setting_sources=[],
        strict_mcp_config=True, mcp_servers=servers, cwd=str(cwd), env=env, model="sonnet",
        effort=shape.effort, output_format=schema,  # type: ignore[arg-type]
        extra_args={"no-session-persistence": None})


def weather_tool() -> Any:
    @tool(WEATHER_TOOL["name"], WEATHER_TOOL["description"], WEATHER_TOOL["parameters"])
    async def get_weather(args: dict[str, Any]) -> dict[str, Any]:
        return {"content": [{"type": "text", "text": "sunny"}]}

    return get_weather


async def one_cli(root: Path, upstream_url: str, shape: Shape, i: int) -> None:
    result: ResultMessage | None = None
    async for message in query(prompt=prompt(i), options=cli_options(root, upstream_url,
                                                                     shape)):
        if isinstance(message, ResultMessage):
            result = message
    if result is None:
        raise RuntimeError("no result")
    if shape.kind == "chat+schema":
        check(json.dumps(result.structured_output), json.dumps(DOCUMENT))
    else:
        check(result.result)


# -- the gateway process ------------------------------------------------------
def gateway_env(root: Path, upstream_url: str, pool: int) -> dict[str, str]:
    return {**os.environ,
            "ANTHROPIC_BASE_URL": upstream_url, "ANTHROPIC_API_KEY": API_KEY,
            "CLAUDE_CONFIG_DIR": str(root / "config"),
            "CLAUDE_CODE__CLAUDE__MAX_CONCURRENT_SESSIONS": str(pool),
            "CLAUDE_CODE__CLAUDE__WORK_ROOT": str(root / "work"),
            "CLAUDE_CODE__STORE__PATH": str(root / "gateway.db"),
            "CLAUDE_CODE__SERVER__LOG_LEVEL": "warning"}


# -- traffic levels -----------------------------------------------------------
async def gateway_block(gateway: GatewayProcess, concurrency: int,
                        shapes: list[Shape]) -> Block:
    block = Block()
    clients = Clients.to(gateway.base_url)
    try:
        before = gateway.workers_started()
        await lanes(concurrency, shapes, lambda s, i: send_gateway(clients, s, i), block)
        block.starts = gateway.workers_started() - before
    finally:
        await clients.close()
    return block


async def measure_level(gateway: GatewayProcess, root: Path, upstream_url: str,
                        results: Results, concurrency: int) -> Level:
    plan, pool = results.plan, results.pool
    level = Level(concurrency)
    mix = mixed_traffic(plan.per_level, results.seed)
    level.floor = await floor_level(upstream_url, concurrency, plan.per_level)
    # Warm-ups, not counted: the pool full of uniform workers, then the mix going.
    await gateway_block(gateway, pool, [UNIFORM] * (2 * pool))
    level.uniform = await gateway_block(gateway, concurrency, [UNIFORM] * plan.per_level)
    await gateway_block(gateway, concurrency, mixed_traffic(2 * pool, results.seed + 1))
    level.mixed = await gateway_block(gateway, concurrency, mix)
    cli = mix[:plan.per_level_cli]
    await lanes(concurrency, cli, lambda s, i: one_cli(root, upstream_url, s, i), level.cli)
    level.cli.starts = level.cli.requests
    return level


# -- cold rebuild against history length --------------------------------------
def conversation(turns: int, tag: str) -> list[Any]:
    """``turns`` earlier user/assistant turns and a new question, unique to ``tag``."""
    messages: list[Any] = []
    for t in range(turns):
        messages += [{"role": "user", "content": f"[{tag}] question {t}: what is {t} + 1?"},
                     {"role": "assistant", "content": f"{t} + 1 is {t + 1}."}]
    messages.append({"role": "user", "content": f"[{tag}] and now, say hi"})
    return messages


def timed_chat(client: httpx.Client, messages: list[Any], user: str) -> float:
    """One chat completion posted as ready JSON: the gateway's time, not the client
    library's (the openai SDK alone spends hundreds of ms preparing 2000 messages)."""
    body = json.dumps({"model": "sonnet", "messages": messages, "user": user}).encode()
    start = time.monotonic()
    response = client.post("/v1/chat/completions", content=body,
                           headers={"content-type": "application/json"})
    elapsed = ms_since(start)
    response.raise_for_status()
    check(response.json()["choices"][0]["message"]["content"])
    return elapsed


def engine_counts(gateway: GatewayProcess) -> tuple[int, int]:
    """(replayed histories, warm continuations) as the gateway counts them."""
    counts = gateway.health()["conversations"]
    return int(counts.get("replayed_histories", 0)), int(counts.get("warm_continuations", 0))


def measure_rebuilds(gateway: GatewayProcess, plan: Plan) -> list[Rebuild]:
    rebuilds = [Rebuild(turns) for turns in plan.histories]
    with httpx.Client(base_url=gateway.base_url, timeout=600,
                      headers={"authorization": "Bearer x"}) as client:
        for run in range(plan.history_runs):  # every length once per run: drift hits all
            for rebuild in rebuilds:
                tag = f"run {run}, {rebuild.turns} turns"
                messages = conversation(rebuild.turns, tag)
                before = engine_counts(gateway)
                rebuild.cold.append(timed_chat(client, messages, tag))
                middle = engine_counts(gateway)
                messages += [{"role": "assistant", "content": REPLY},
                             {"role": "user", "content": f"[{tag}] once more"}]
                rebuild.warm.append(timed_chat(client, messages, tag))
                after = engine_counts(gateway)
                rebuild.replayed += middle[0] - before[0]
                rebuild.continued += after[1] - middle[1]
    return rebuilds


# -- the run ------------------------------------------------------------------
def run(results: Results, root: Path, upstream: FakeUpstream) -> None:
    say = progress()
    with running_gateway(root, gateway_env(root, upstream.url, results.pool),
                         1) as gateway:
        results.cli_version = str(gateway.health().get("cli_version") or "?")
        for concurrency in results.plan.levels:
            say(f"concurrency {concurrency}: floor, uniform, mixed, one CLI per request")
            results.levels.append(asyncio.run(
                measure_level(gateway, root, upstream.url, results, concurrency)))
        say("cold rebuild against history length")
        asyncio.run(gateway_block(gateway, results.pool, [UNIFORM] * (2 * results.pool)))
        results.rebuilds = measure_rebuilds(gateway, results.plan)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"a short smoke run: concurrency {QUICK.levels}, "
                             f"{QUICK.per_level} requests per kind and level, histories "
                             f"{QUICK.histories}")
    parser.add_argument("--pool", type=int, default=DEFAULT_POOL, metavar="N",
                        help="the gateway's claude.max_concurrent_sessions (default "
                             f"{DEFAULT_POOL}, the gateway's own default)")
    parser.add_argument("--seed", type=int, default=14, help="seed of the mix (default 14)")
    parser.add_argument("--output", type=Path, default=RESULTS, metavar="FILE",
                        help=f"where the report goes (default {RESULTS.relative_to(REPO)})")
    args = parser.parse_args(argv)
    if args.pool < 1:
        parser.error("--pool must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scrub_environment()
    plan = QUICK if args.quick else FULL
    results = Results(plan, args.pool, args.seed,
                      mix=Counter(s.kind for s in mixed_traffic(plan.per_level, args.seed)))
    root = Path(tempfile.mkdtemp(prefix="bench-mixed-"))
    upstream = FakeUpstream(Reply.text(REPLY))
    upstream.responder = answer
    upstream.start()
    return run_and_report(lambda: run(results, root, upstream), results, root, upstream,
                          lambda: render(results), args.output)


# -- the report ---------------------------------------------------------------
def fmt(value: float, digits: int = 1) -> str:
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 and not math.isnan(a) else math.nan


def overhead(level: Level) -> float:
    """(one-CLI p50 − floor p50) / (mixed p50 − floor p50), as bench_chat's ratio."""
    floor = median(level.floor.latency)
    return ratio(median(level.cli.latency) - floor, median(level.mixed.latency) - floor)


def render(results: Results) -> str:
    parts = [render_header(results), render_levels(results), render_ratios(results),
             render_rebuilds(results), render_targets(results), render_cleanup(results)]
    return "\n\n".join(p for p in parts if p) + "\n"


def render_header(results: Results) -> str:
    plan = results.plan
    mix = ", ".join(f"{kind} {results.mix[kind]}" for kind in KINDS)
    return "\n".join([
        "# Mixed traffic benchmark (issue 14)",
        "",
        f"- Date: {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- Mode: {plan.name}: concurrency {', '.join(map(str, plan.levels))}; "
        f"{plan.per_level} uniform and {plan.per_level} mixed requests per level "
        f"(after warm-ups), {plan.per_level_cli} one-CLI requests per level; histories "
        f"of {', '.join(map(str, plan.histories))} turns × {plan.history_runs}",
        f"- CPUs: {os.cpu_count()}; Python {platform.python_version()} on {platform.system()} "
        f"{platform.machine()}",
        f"- Claude Code CLI: {results.cli_version}; claude-code-api {__version__}; pool of "
        f"{results.pool} workers (`claude.max_concurrent_sessions`), other settings default",
        f"- Mix (seed {results.seed}): {mix}; max_tokens from "
        f"{{unset, 256, 1024, 4096, 32000}}, {len(SYSTEMS)} system prompts, efforts "
        f"{'/'.join(EFFORTS)}",
        "- Upstream: the scripted fake Messages API, in-process, replying "
        f"\"{REPLY}\" (a json_schema request gets the document {json.dumps(DOCUMENT)})",
        "",
        "> The machine is shared and noisy: compare the rows of one run (the ratios), "
        "not runs with each other.",
    ])


BLOCK_NAMES = {"floor": "floor: `anthropic` client → fake upstream",
               "uniform": "uniform: one shape (chat completions)",
               "mixed": "mixed: the mix above",
               "cli": "one CLI per request (`query()`, the mix's shapes)"}


def render_levels(results: Results) -> str:
    rows = []
    for level in results.levels:
        for key, block in level.blocks().items():
            starts = "–" if key == "floor" else fmt(block.starts_per_100, 0)
            rows.append([str(level.concurrency), BLOCK_NAMES[key], str(block.requests),
                         str(sum(block.errors.values())), starts, fmt(median(block.latency)),
                         fmt(p95(block.latency))])
    if not rows:
        return ""
    text = ("## Traffic (latency in ms)\n\n"
            + table(["Concurrency", "Traffic", "Requests", "Errors", "CLI starts / 100 req",
                     "p50", "p95"], rows))
    errors = sum((b.errors for lv in results.levels for b in lv.blocks().values()),
                 Counter[str]())
    if errors:
        text += "\n\nErrors: " + ", ".join(f"{k} × {v}" for k, v in errors.items())
    return text + ("\n\nCLI starts: the gateway's `workers_started` counter over the "
                   "measured requests (warm-ups excluded); one per request for `query()`.")


def render_ratios(results: Results) -> str:
    rows = [[str(lv.concurrency),
             fmt(ratio(median(lv.mixed.latency), median(lv.uniform.latency)), 2),
             fmt(ratio(median(lv.cli.latency), median(lv.mixed.latency)), 2),
             fmt(overhead(lv), 1)] for lv in results.levels]
    if not rows:
        return ""
    return ("## Ratios (p50)\n\n"
            + table(["Concurrency", "mixed / uniform", "one-CLI / mixed",
                     "overhead ratio (one-CLI − floor) / (mixed − floor)"], rows))


def render_rebuilds(results: Results) -> str:
    if not results.rebuilds:
        return ""
    rows = [[str(r.turns), str(len(r.cold)), fmt(median(r.cold)), fmt(max(r.cold)),
             fmt(median(r.warm)), fmt(max(r.warm)),
             fmt(ratio(median(r.cold), median(r.warm)), 2), f"{r.replayed} / {r.continued}"]
            for r in results.rebuilds]
    return ("## Cold rebuild against history length (chat completions, ms)\n\n"
            + table(["Earlier turns", "N", "cold p50", "cold max", "warm next turn p50",
                     "warm max", "cold / warm", "replayed / warm (gateway's count)"], rows)
            + "\n\n*cold*: the whole history sent to a gateway none of whose workers "
              "holds it; *warm next turn*: the same caller's next request (history + "
              "answer + a new question). The last column is how the gateway says it "
              "served them (`replayed_histories`, `warm_continuations` in `/health`). "
              "Posted as ready JSON with httpx, so the time is the gateway's: the openai "
              "SDK's own preparation of a 2000-message request adds hundreds of ms on the "
              "client.")


def verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("PASS" if ok else "FAIL")


def target_rows(results: Results) -> list[list[str]]:
    rows = []
    for lv in results.levels:
        c = lv.concurrency
        starts = lv.mixed.starts_per_100
        mixed = ratio(median(lv.mixed.latency), median(lv.uniform.latency))
        over = overhead(lv)
        rows += [
            [f"CLI starts per 100 mixed requests, c={c}", f"≤ {TARGET_STARTS:g}",
             fmt(starts, 0), verdict(None if math.isnan(starts) else starts <= TARGET_STARTS)],
            [f"mixed p50 / uniform p50, c={c}", f"≤ {TARGET_MIXED:g}×", fmt(mixed, 2),
             verdict(None if math.isnan(mixed) else mixed <= TARGET_MIXED)],
            [f"overhead vs one CLI per request (mixed), c={c}", f"≥ {TARGET_OVERHEAD:g}×",
             fmt(over, 1), verdict(None if math.isnan(over) else over >= TARGET_OVERHEAD)],
        ]
    by_turns = {r.turns: median(r.cold) for r in results.rebuilds}
    if 200 in by_turns:
        ms = by_turns[200]
        rows.append(["cold rebuild of 200 earlier turns", f"≤ {TARGET_REBUILD_MS:g} ms",
                     fmt(ms, 0), verdict(ms <= TARGET_REBUILD_MS)])
    if len(by_turns) > 1:
        # The rebuild is what a cold conversation costs beyond a warm one of the same
        # length: flat means no length makes cold dearer than warm by more than this.
        worst = max(results.rebuilds, key=lambda r: ratio(median(r.cold), median(r.warm)))
        flat = ratio(median(worst.cold), median(worst.warm))
        rows.append([f"rebuild flat: cold / warm at the same length, worst ({worst.turns} "
                     "turns)", f"≤ {TARGET_FLAT:g}×", fmt(flat, 2),
                     verdict(None if math.isnan(flat) else flat <= TARGET_FLAT)])
        shortest, longest = min(by_turns), max(by_turns)
        growth = ratio(by_turns[longest], by_turns[shortest])
        rows.append([f"cold {longest} turns / cold {shortest} turns (request size: warm "
                     "turns grow alike)", "–", fmt(growth, 1), "–"])
    return rows


def render_targets(results: Results) -> str:
    rows = target_rows(results)
    if not rows:
        return ""
    return "## Targets (issue 14)\n\n" + table(["Target", "goal", "measured", "verdict"],
                                                rows)


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
