"""What the gateway layer costs and saves: keys, limits, metrics, the response cache.

One gateway (4 warm workers, cache on, one API key with an rpm limit) in front of
the in-process fake Anthropic API. Measured in one run, so the rows compare:

- GET /v1/models without a key (loopback) and with a key: the access layer alone
  (key lookup in SQLite, limits, metrics, access log);
- a chat completion with a key, answered by Claude Code (cache miss) and the same
  request again (cache hit): what the cache saves.

    .venv/bin/python bench/bench_gateway.py [--n N] [--output FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from claude_code_api import __version__
from claude_code_api.testing.fake_upstream import FakeUpstream, Reply

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "gateway.md"
EXE = REPO / ".venv" / "bin" / "claude-code-api"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed(n: int, call: Callable[[int], None]) -> list[float]:
    for i in range(3):  # warm-up
        call(-1 - i)
    out = []
    for i in range(n):
        start = time.perf_counter()
        call(i)
        out.append((time.perf_counter() - start) * 1000)
    return out


def row(name: str, values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    return f"| {name} | {len(values)} | {statistics.median(values):.1f} | {p95:.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    upstream = FakeUpstream(Reply.text("Hi there, this is a short answer."))
    upstream.start()
    tmp = Path(tempfile.mkdtemp(prefix="cca-bench-gateway-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_CODE__",
                                                                     "ANTHROPIC_"))}
    env.update({"ANTHROPIC_BASE_URL": upstream.url, "ANTHROPIC_API_KEY": "sk-bench",
                "CLAUDE_CONFIG_DIR": str(tmp / "config"),
                "CLAUDE_CODE__STORE__PATH": str(tmp / "gateway.db"),
                "CLAUDE_CODE__CLAUDE__WORK_ROOT": str(tmp / "work"),
                "CLAUDE_CODE__CLAUDE__MIN_IDLE_WORKERS": "4",
                "CLAUDE_CODE__CACHE__ENABLED": "true",
                "CLAUDE_CODE__SERVER__LOG_LEVEL": "warning"})
    key = subprocess.run([str(EXE), "keys", "create", "--name", "bench", "--rpm", "100000"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    port = free_port()
    log = (tmp / "gateway.log").open("wb")
    server = subprocess.Popen([str(EXE), "serve", "--port", str(port)], env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if client.get("/health").json()["pool"]["idle"] >= 4:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            auth = {"Authorization": f"Bearer {key}"}

            def models(headers: dict[str, str]) -> Callable[[int], None]:
                def call(i: int) -> None:
                    client.get("/v1/models", headers=headers).raise_for_status()
                return call

            def chat(i: int, again: bool) -> None:
                body = {"model": "sonnet",
                        "messages": [{"role": "user", "content": f"question {i}"}]}
                response = client.post("/v1/chat/completions", json=body, headers=auth)
                response.raise_for_status()
                assert response.headers["x-cache"] == ("hit" if again else "miss")

            anonymous = timed(args.n, models({}))
            keyed = timed(args.n, models(auth))
            misses = timed(args.n, lambda i: chat(i, False))
            hits = timed(args.n, lambda i: chat(i, True))
    finally:
        server.terminate()
        server.wait(30)
        upstream.stop()

    ratio = statistics.median(misses) / statistics.median(hits)
    layer = statistics.median(keyed) - statistics.median(anonymous)
    lines = [
        "# Gateway layer benchmark",
        "",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- CPUs: {os.cpu_count()}; Python {platform.python_version()}; "
        f"claude-code-api {__version__}; 4 warm workers; N={args.n} per row, 3 warm-up",
        "- Upstream: the scripted fake Messages API, in-process",
        "",
        "> The machine is shared and noisy: compare the rows of one run, not runs.",
        "",
        "| Request | N | median ms | p95 ms |",
        "|---|---:|---:|---:|",
        row("GET /v1/models, no key (loopback)", anonymous),
        row("GET /v1/models, with a key (lookup, rpm limit, metrics)", keyed),
        row("chat completion with a key, answered by Claude Code (cache miss)", misses),
        row("the same chat completion again (cache hit)", hits),
        "",
        f"- Access layer with a key: {layer:+.2f} ms median per request.",
        f"- A cache hit is {ratio:.0f}× faster than the turn it replays.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)


if __name__ == "__main__":
    main()
