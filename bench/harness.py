"""What the benchmark scripts share: statistics, the report's tables, and starting,
stopping and cleaning up the processes a run starts.

The scripts run as ``python bench/<script>.py``, so this is imported as ``harness``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

SERVE = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "claude-code-api"


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

    def worker_pids(self) -> list[int]:
        return [w["pid"] for w in self.health()["workers"] if w["pid"]]

    def workers_started(self) -> int:
        """The ``workers_started`` counter of ``/metrics``, once no worker is starting
        (a start the last requests caused counts for them)."""
        deadline = time.monotonic() + 30
        while self.health()["pool"]["starting"] and time.monotonic() < deadline:
            time.sleep(0.05)
        text = httpx.get(f"{self.base_url}/metrics", timeout=10).text
        found = re.search(r"^claude_code_api_workers_started_total (\S+)$", text, re.M)
        if found is None:
            raise RuntimeError("/metrics has no claude_code_api_workers_started_total")
        return int(float(found.group(1)))

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def running_gateway(root: Path, env: dict[str, str], idle: int) -> Iterator[GatewayProcess]:
    """The gateway started as a user would (in ``root``, so no ``config/local.toml``
    of the checkout applies), once ``idle`` workers are ready; stopped (terminate,
    then kill) on exit."""
    port = free_port()
    log_file = root / "gateway.log"
    with log_file.open("wb") as log:
        proc = subprocess.Popen([str(SERVE), "serve", "--port", str(port)], cwd=root,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    gateway = GatewayProcess(f"http://127.0.0.1:{port}", proc, log_file)
    try:
        wait_until_idle(gateway, idle)
        yield gateway
    finally:
        stop(proc)


def wait_until_idle(gateway: GatewayProcess, idle: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gateway.proc.poll() is not None:
            raise RuntimeError(f"the gateway exited ({gateway.proc.returncode}):\n"
                               f"{gateway.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if gateway.health()["pool"]["idle"] >= idle:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the gateway had not {idle} idle workers after {timeout:g} s:\n"
                       f"{gateway.log_tail()}")


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


def run_and_report(run: Callable[[], None], results: Any, root: Path, upstream: Any,
                   render: Callable[[], str], output: Path) -> int:
    """Run the measurements; whatever happens, reap the run's processes (into
    ``results.leftovers``), stop the upstream, remove ``root``, then print and write the
    report. Exit code 1 when the run failed or left processes behind."""
    try:
        run()
    except Exception as exc:  # still report what was measured, and clean up
        results.error = f"{type(exc).__name__}: {exc}"
    finally:
        results.leftovers = reap_leftovers(root)
        upstream.stop()
        shutil.rmtree(root, ignore_errors=True)
    report = render()
    print(report)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report)
    return 1 if results.error or results.leftovers else 0
