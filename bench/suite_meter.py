"""What the test suite spends, by test module: a pytest plugin.

    .venv/bin/pytest -p bench.suite_meter -n 2 --dist loadfile      # as scripts/test runs

prints, after the run, one row per module: the gateway subprocesses and Claude Code
CLI processes its tests started, the CPU seconds those used, and the CPU seconds of
the pytest process itself while the module ran (client libraries, guides and other
subprocesses are in the totals only). Under xdist each worker measures its own
modules and the controller prints the table. A process is counted for the module
that was running when it was first seen (polled every 0.1 s, so a process that lives
shorter than that can be missed); a gateway shared by several modules counts for the
first. bench/results/suite.md keeps the before/after figures of issue 17.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil
import pytest

FIELDS = ("gateways", "clis", "gateway_cpu", "cli_cpu", "pytest_cpu")


class Meter:
    """Polls this process's descendants and charges each new one to the running module."""

    def __init__(self) -> None:
        self.module = "(start)"
        self.seen: dict[tuple[int, float], list[Any]] = {}  # -> [kind, module, cpu]
        self.own: dict[str, float] = defaultdict(float)
        self.mark = self.cpu()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)
        self.thread.start()

    @staticmethod
    def cpu() -> float:
        times = psutil.Process().cpu_times()
        return float(times.user + times.system)

    def enter(self, module: str) -> None:
        now = self.cpu()
        self.own[self.module] += now - self.mark
        self.mark, self.module = now, module

    def poll(self) -> None:
        me = psutil.Process()
        while not self.stopped.wait(0.1):
            for child in me.children(recursive=True):
                try:
                    self.observe(child)
                except psutil.Error:
                    continue

    def observe(self, child: psutil.Process) -> None:
        key = (child.pid, child.create_time())
        if key not in self.seen:
            line = " ".join(child.cmdline())
            kind = ("gateway" if "claude-code-api" in line and " serve" in line else
                    "cli" if "_bundled/claude" in line else None)
            self.seen[key] = [kind, self.module, 0.0]
        record = self.seen[key]
        if record[0] is not None:
            times = child.cpu_times()
            record[2] = times.user + times.system

    def rows(self) -> dict[str, dict[str, float]]:
        self.stopped.set()
        self.thread.join(1)
        self.enter("(end)")
        table: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(FIELDS, 0.0))
        for kind, module, cpu in self.seen.values():
            if kind is not None:
                table[module][f"{kind}s"] += 1
                table[module][f"{kind}_cpu"] += cpu
        for module, cpu in self.own.items():
            table[module]["pytest_cpu"] += cpu
        return dict(table)


_meter: Meter | None = None  # in the process that runs the tests


def pytest_configure(config: pytest.Config) -> None:
    global _meter
    worker = hasattr(config, "workerinput")
    if not worker:  # the xdist controller, or a run without xdist
        os.environ["SUITE_METER_DIR"] = tempfile.mkdtemp(prefix="suite-meter-")
    if worker or not config.getoption("numprocesses", None):
        _meter = Meter()


def pytest_runtest_logstart(nodeid: str) -> None:
    if _meter is not None:
        _meter.enter(nodeid.split("::")[0])


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    if _meter is None:
        return
    times = psutil.Process().cpu_times()
    rows = _meter.rows()
    rows["(process total)"] = {**dict.fromkeys(FIELDS, 0.0),
                               "pytest_cpu": times.user + times.system,
                               "cli_cpu": 0.0}
    name = os.environ.get("PYTEST_XDIST_WORKER", "main")
    Path(os.environ["SUITE_METER_DIR"], f"{name}.json").write_text(json.dumps(rows))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    merged: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(FIELDS, 0.0))
    for path in sorted(Path(os.environ["SUITE_METER_DIR"]).glob("*.json")):
        for module, row in json.loads(path.read_text()).items():
            for field in FIELDS:
                merged[module][field] += row[field]
    write = terminalreporter.write_line
    write("")
    write(f"{'module':48} {'gateways':>8} {'CLIs':>5} {'gw CPU s':>9} {'CLI CPU s':>9} "
          f"{'pytest CPU s':>12}")
    for module, row in sorted(merged.items(), key=lambda m: -sum(m[1][f] for f in FIELDS[2:])):
        write(f"{module:48} {row['gateways']:8.0f} {row['clis']:5.0f} {row['gateway_cpu']:9.1f} "
              f"{row['cli_cpu']:9.1f} {row['pytest_cpu']:12.1f}")
    total = {f: sum(r[f] for m, r in merged.items() if m != "(process total)") for f in FIELDS}
    write(f"{'total (modules)':48} {total['gateways']:8.0f} {total['clis']:5.0f} "
          f"{total['gateway_cpu']:9.1f} {total['cli_cpu']:9.1f} {total['pytest_cpu']:12.1f}")
