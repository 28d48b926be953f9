"""What the benchmark scripts share: statistics, the report's tables, and starting,
stopping and cleaning up the processes a run starts.

The scripts run as ``python bench/<script>.py``, so this is imported as ``harness``.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] if ordered else math.nan


def ms_since(start: float) -> float:
    return (time.monotonic() - start) * 1000


def describe_error(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    return f"{status} {type(exc).__name__}" if status else type(exc).__name__


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


def scrub_environment() -> None:
    """No inherited Anthropic/Claude settings: the run is the same on every machine."""
    for name in list(os.environ):
        if name.startswith(("ANTHROPIC_", "CLAUDE")):
            del os.environ[name]


def progress() -> Callable[[str], None]:
    started = time.monotonic()

    def say(step: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {step}...", file=sys.stderr)

    return say


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
