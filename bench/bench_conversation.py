"""Turn 10 of a conversation: warm continuation vs rebuilding the history.

Each run builds a 9-turn conversation through the gateway (official ``openai``
client, full history resent every time, as OpenAI clients do), then asks turn
10 twice with the same history:

- warm: the caller who built it, whose live session holds the history, so the
  gateway delivers only the new turn;
- rebuilt: another caller (``user`` differs), whose request finds no session,
  so the gateway replays the nine turns into a clean worker first.

The fake upstream replies with a thinking block and text (as Claude does with
thinking on) and emulates prompt caching: the longest message prefix it has
seen before is billed as cache reads. Clients never send thinking back, so a
rebuilt history differs from what the upstream saw and misses the cache.

    .venv/bin/python bench/bench_conversation.py [--runs N]

Prints a markdown table and writes it to bench/results/conversation.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Text, Thinking

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "conversation.md"
SERVE = REPO / ".venv" / "bin" / "claude-code-api"
TURNS = 10


@dataclass
class Sample:
    latency_ms: float
    input_tokens: int
    cached_tokens: int


@dataclass
class Results:
    warm: list[Sample] = field(default_factory=list)
    rebuilt: list[Sample] = field(default_factory=list)
    cli_version: str = "?"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def gateway(upstream: FakeUpstream, root: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_CODE__",
                                                                     "ANTHROPIC_"))}
    env.update({"ANTHROPIC_BASE_URL": upstream.url, "ANTHROPIC_API_KEY": "sk-bench",
                "CLAUDE_CONFIG_DIR": str(root / "config"),
                "CLAUDE_CODE__STORE__PATH": str(root / "gateway.db"),
                "CLAUDE_CODE__CLAUDE__WORK_ROOT": str(root / "work"),
                "CLAUDE_CODE__CLAUDE__MAX_CONCURRENT_SESSIONS": "2",
                "CLAUDE_CODE__CLAUDE__MIN_IDLE_WORKERS": "1",
                "CLAUDE_CODE__SERVER__LOG_LEVEL": "warning"})
    process = subprocess.Popen([str(SERVE), "serve", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            health = httpx.get(url + "/health", timeout=2).json()
            if health["pool"]["idle"] >= 1:
                return
        time.sleep(0.1)
    raise RuntimeError("gateway did not become ready")


def reply(turn: int) -> Reply:
    thought = f"The user is on turn {turn}; I should answer briefly and consistently. " * 4
    return Reply(blocks=[Thinking(thought, signature=f"sig-{turn}"),
                         Text(f"Answer number {turn}: " + "details " * 30)])


def ask(client: openai.OpenAI, messages: list[Any], user: str) -> tuple[Sample, str]:
    started = time.perf_counter()
    completion = client.chat.completions.create(model="sonnet", messages=messages, user=user)
    latency = (time.perf_counter() - started) * 1000
    assert completion.usage is not None
    details = completion.usage.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details else 0
    sample = Sample(latency, completion.usage.prompt_tokens - cached, cached)
    return sample, completion.choices[0].message.content or ""


def one_run(client: openai.OpenAI, upstream: FakeUpstream, run: int, results: Results) -> None:
    owner = f"owner-{run}"
    messages: list[Any] = []
    for turn in range(1, TURNS):
        messages.append({"role": "user", "content": f"Run {run}, question {turn}: tell me "
                                                    f"something about the number {turn}."})
        upstream.script(reply(turn))
        _, text = ask(client, messages, owner)
        messages.append({"role": "assistant", "content": text})
    messages.append({"role": "user", "content": f"Run {run}, question {TURNS}: summarise."})
    upstream.script(reply(TURNS), reply(TURNS))
    warm, _ = ask(client, messages, owner)
    rebuilt, _ = ask(client, messages, f"stranger-{run}")
    results.warm.append(warm)
    results.rebuilt.append(rebuilt)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(results: Results, runs: int) -> str:
    def row(name: str, samples: list[Sample]) -> str:
        return (f"| {name} | {len(samples)} | {median([s.latency_ms for s in samples]):.1f} | "
                f"{max(s.latency_ms for s in samples):.1f} | "
                f"{median([float(s.input_tokens) for s in samples]):.0f} | "
                f"{median([float(s.cached_tokens) for s in samples]):.0f} |")

    warm_ms = median([s.latency_ms for s in results.warm])
    rebuilt_ms = median([s.latency_ms for s in results.rebuilt])
    warm_in = median([float(s.input_tokens) for s in results.warm])
    rebuilt_in = median([float(s.input_tokens) for s in results.rebuilt])
    return "\n".join([
        "# Conversation benchmark: turn 10, warm continuation vs rebuilt history",
        "",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {runs} runs",
        f"- CPUs: {os.cpu_count()}; Python {platform.python_version()}; "
        f"Claude Code CLI {results.cli_version}",
        "- Upstream: the scripted fake Messages API with prompt-cache emulation "
        "(~4 characters a token; the longest message prefix seen before is billed as "
        "cache reads); every answer carries a thinking block, as Claude's do with "
        "thinking on.",
        "",
        "> The machine is shared and noisy: compare the rows of one run.",
        "",
        "| Turn 10 | N | median ms | max ms | uncached prompt tokens (median) | "
        "cache-read tokens (median) |",
        "|---|---:|---:|---:|---:|---:|",
        row("warm continuation (only the new turn delivered)", results.warm),
        row("rebuilt (nine turns replayed into a clean worker)", results.rebuilt),
        "",
        f"Warm continuation is **{rebuilt_ms / warm_ms:.1f}×** faster at turn 10 and sends "
        f"**{rebuilt_in / max(warm_in, 1):.0f}×** fewer uncached prompt tokens upstream "
        f"({warm_in:.0f} vs {rebuilt_in:.0f}).",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-conversation-"))
    upstream = FakeUpstream(prompt_cache=True)
    upstream.start()
    results = Results()
    try:
        with gateway(upstream, root) as url, openai.OpenAI(
                base_url=url + "/v1", api_key="x", max_retries=0, timeout=120) as client:
            results.cli_version = httpx.get(url + "/health", timeout=5).json()["cli_version"]
            for run in range(args.runs):
                one_run(client, upstream, run, results)
    finally:
        upstream.stop()
        shutil.rmtree(root, ignore_errors=True)
    text = report(results, args.runs)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
