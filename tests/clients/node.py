"""The Node clients the guides run with.

`package-lock.json` pins them; `npm ci` installs them once per lock file into a cache
folder outside the repository (``$XDG_CACHE_HOME/claude-code-api/node-clients/<hash>``),
so a second run, and every other worktree, starts at once. Node 20 or newer is required:
without it the tests fail and say so (no silent skip).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
GUIDES = HERE / "guides"
MIN_NODE = 20
NPM_TIMEOUT = 900
INSTALL_FILES = ("package.json", "package-lock.json", ".npmrc")
PRUNE_DAYS = 14


class NodeMissing(Exception):
    """Node.js or npm is missing or too old for the client tests."""


def check_node() -> str:
    """The version of `node` on PATH; NodeMissing when it cannot run the clients."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise NodeMissing(f"the Node client tests need Node.js >= {MIN_NODE} with npm on PATH "
                          f"(node: {node or 'missing'}, npm: {npm or 'missing'})")
    version = subprocess.run([node, "--version"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    match = re.match(r"v(\d+)\.", version)
    if match is None or int(match.group(1)) < MIN_NODE:
        raise NodeMissing(f"the Node client tests need Node.js >= {MIN_NODE}; "
                          f"{node} is {version or 'unknown'}")
    return version


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "claude-code-api" / "node-clients"


def lock_digest() -> str:
    digest = hashlib.sha256()
    for name in INSTALL_FILES:
        digest.update((HERE / name).read_bytes())
    return digest.hexdigest()[:16]


def prune(root: Path, keep: Path) -> None:
    """Remove installs of other lock files unused for PRUNE_DAYS (about 0.5 GB each);
    other worktrees' recent ones stay."""
    cutoff = time.time() - PRUNE_DAYS * 86400
    for other in root.iterdir():
        if other == keep or not other.is_dir():
            continue
        marker = other / ".installed"
        if (marker if marker.exists() else other).stat().st_mtime < cutoff:
            shutil.rmtree(other, ignore_errors=True)


def install() -> Path:
    """The folder holding `node_modules` for this lock file, installed if needed.

    Several test processes may ask at once: one installs under a file lock while the
    others wait, and a half-finished install (a killed run) is redone, never used.
    """
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / lock_digest()
    done = target / ".installed"
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        prune(root, keep=target)
        if done.exists():
            done.touch()  # in use: not pruned
            return target
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        for name in INSTALL_FILES:
            shutil.copy2(HERE / name, target / name)
        run = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                             cwd=target, capture_output=True, text=True, timeout=NPM_TIMEOUT)
        if run.returncode != 0:
            raise RuntimeError(f"npm ci failed in {target}:\n{run.stdout}\n{run.stderr}")
        done.write_text(lock_digest())
    return target


def prepared(workdir: Path) -> NodeClients:
    """The clients for a test module's fixture; a clear failure when Node is missing."""
    try:
        return NodeClients.prepare(workdir)
    except NodeMissing as missing:
        problem = str(missing)
    pytest.fail(problem, pytrace=False)


@dataclass
class NodeClients:
    """Installed clients and a folder where guides run beside their `node_modules`."""

    home: Path
    workdir: Path

    @classmethod
    def prepare(cls, workdir: Path) -> NodeClients:
        check_node()
        home = install()
        workdir.mkdir(parents=True, exist_ok=True)
        # ES modules resolve packages from the script's own folder upwards.
        link = workdir / "node_modules"
        if not link.exists():
            link.symlink_to(home / "node_modules", target_is_directory=True)
        return cls(home, workdir)

    def bin(self, name: str) -> Path:
        return self.home / "node_modules" / ".bin" / name

    def start(self, name: str, guides: list[str], env: dict[str, str]
              ) -> subprocess.Popen[str]:
        """Run guides exactly as the README shows them, one after the other in one
        module (a provider's set-up, then the calls that use it), as ``name``."""
        script = self.workdir / name
        script.write_text("\n".join((GUIDES / guide).read_text() for guide in guides))
        return subprocess.Popen(["node", str(script)], cwd=self.workdir,
                                env={**os.environ, **env, "NO_COLOR": "1"},
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

@dataclass
class Run:
    """What a finished client process printed."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    def explain(self) -> str:
        return (f"exit {self.returncode} after {self.seconds:.1f} s\nstdout:\n{self.stdout}\n"
                f"stderr:\n{self.stderr[-4000:]}")


def finish_all(processes: dict[str, subprocess.Popen[str]], timeout: float = 300
               ) -> dict[str, Run]:
    """Wait for processes running at once; each is killed after ``timeout`` seconds."""
    started = time.monotonic()

    def finish(process: subprocess.Popen[str]) -> Run:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            stderr += f"\n[killed after {timeout} s]"
        return Run(process.returncode, stdout, stderr, time.monotonic() - started)

    with ThreadPoolExecutor(max(1, len(processes))) as pool:
        return dict(zip(processes, pool.map(finish, processes.values()), strict=True))
