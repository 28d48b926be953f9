"""Shared fixtures: the fake Anthropic upstream and real gateways in processes of their
own (forked from ``tests/forkserver.py``, which has imported the app once).

Every end-to-end test runs the real bundled Claude Code CLI (through the gateway)
against the scripted fake upstream on loopback, and calls the gateway over HTTP.
"""

from __future__ import annotations

import sys

# Coverage has started by now (pytest-cov, in every pytest process); what this file
# imports is read with its tracer off, as the tests are collected (pytest_collection).
_TRACER = sys.gettrace()
sys.settrace(None)

import functools
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import httpx._transports.default
import httpx2._transports.default
import openai
import psutil
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Text, ToolUse

if TYPE_CHECKING:
    import anthropic

ROOT = Path(__file__).resolve().parent.parent

# Every httpx client (each httpx.get, each /health poll) and every SDK client (openai's
# and anthropic's are built on httpx2, a fork of httpx) builds an SSL context, parsing
# the system's CA file: about 20 ms of CPU, though the tests speak plain HTTP on
# loopback, and the suite makes thousands. One context per set of arguments serves them
# all (a context is shared by connections anyway).
for _transports in (httpx._transports.default, httpx2._transports.default):
    _transports.create_ssl_context = functools.cache(  # type: ignore[attr-defined]
        _transports.create_ssl_context)  # type: ignore[attr-defined]


class _Lazy:
    """A module imported when one of its public attributes is first used: pytest looks
    at every name of a test module as it collects it (for fixtures, mocks...), which
    loads a plain lazy module (importlib's LazyLoader) at once."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(importlib.import_module(self._name), attr)


def lazy_import(name: str) -> Any:
    """Module ``name``, imported when first used. For the anthropic package (about
    3,700 modules, 1.7 s of CPU): every test process collects every test module, and
    only a few tests call it. A module using it writes ``if TYPE_CHECKING: import
    anthropic`` and otherwise ``anthropic = lazy_import("anthropic")``, so that its
    types are still known to a checker."""
    return sys.modules.get(name) or _Lazy(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_processes(pid: int) -> list[psutil.Process]:
    """The Claude Code CLI processes below a process."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for child in children:
        try:
            if "claude" in child.name() or any("_bundled/claude" in a for a in child.cmdline()):
                out.append(child)
        except psutil.Error:
            continue
    return out


class ForkServer:
    """The run's fork server (``tests/forkserver.py``): pytest's main process starts it
    (``pytest_configure``) and ends it once the tests are over; each test process
    connects to its socket, named by ``$CCA_FORKSERVER``, on first use."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._answers: Any = None
        self._lock = threading.Lock()  # one request at a time on our connection

    def launch(self) -> None:
        """Start it (pytest's main process): it listens once it has imported the app."""
        path = Path(tempfile.mkdtemp(prefix="cca-forks-")) / "socket"
        os.environ["CCA_FORKSERVER"] = str(path)  # xdist's workers inherit it
        self._process = subprocess.Popen([sys.executable, "-m", "tests.forkserver", str(path)],
                                         cwd=ROOT, stdin=subprocess.PIPE)

    def _connect(self) -> None:
        path = os.environ["CCA_FORKSERVER"]
        deadline = time.monotonic() + 120
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() > deadline:
                    raise RuntimeError("the fork server did not start listening") from None
                time.sleep(0.05)
        self._sock, self._answers = sock, sock.makefile("rb")

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self._sock is None:
                self._connect()
            assert self._sock is not None
            self._sock.sendall(json.dumps(request).encode() + b"\n")
            line = self._answers.readline()
        if not line:
            raise RuntimeError("the fork server has gone")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def start(self, argv: list[str], env: dict[str, str], cwd: Path, log: Path
              ) -> ForkedProcess:
        pid = self._ask({"start": {"argv": argv, "env": env, "cwd": str(cwd),
                                   "log": str(log)}})["pid"]
        return ForkedProcess(int(pid), self)

    def run(self, argv: list[str], env: dict[str, str], cwd: Path, timeout: float
            ) -> subprocess.CompletedProcess[str]:
        """A command that ends (``doctor``, ``keys``), run to its end as ``subprocess.run`` with
        ``capture_output`` would."""
        with tempfile.TemporaryDirectory(prefix="cca-run-") as scratch:
            out, err = Path(scratch) / "out", Path(scratch) / "err"
            pid = self._ask({"start": {"argv": argv, "env": env, "cwd": str(cwd),
                                       "log": str(out), "err": str(err)}})["pid"]
            process = ForkedProcess(int(pid), self)
            try:
                code = process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
                raise
            return subprocess.CompletedProcess(argv, code, out.read_text(), err.read_text())

    def returncode(self, pid: int) -> int | None:
        code = self._ask({"status": pid})["returncode"]
        return None if code is None else int(code)

    def close(self) -> None:
        """Hang up; and (pytest's main process) end the server, which then saves its
        coverage."""
        if self._sock is not None:
            self._answers.close()
            self._sock.close()
            self._sock = None
        if self._process is not None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            self._process.wait(30)
            self._process = None
            shutil.rmtree(Path(os.environ["CCA_FORKSERVER"]).parent, ignore_errors=True)


FORKS = ForkServer()


@dataclass
class ForkedProcess:
    """A gateway forked by the fork server, handled as a ``subprocess.Popen``."""

    pid: int
    server: ForkServer
    returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.returncode(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"gateway {self.pid}", timeout or 0)
            time.sleep(0.02)
        return code

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


@dataclass
class Gateway:
    """A `claude-code-api serve` process (forked by ``FORKS``)."""

    url: str
    process: ForkedProcess
    config_dir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    clients: list[openai.OpenAI | anthropic.Anthropic] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    # A test's SDK clients are made here, so that they are closed (close_clients, at the
    # latest when the gateway stops): one left to the garbage collector may have its
    # socket collected before the client, a ResourceWarning that fails whatever test
    # happens to be running then.
    def client(self, api_key: str = "test-key", **kw: Any) -> openai.OpenAI:
        client = openai.OpenAI(base_url=self.base_url, api_key=api_key,
                               **{"max_retries": 0, "timeout": 60, **kw})
        self.clients.append(client)
        return client

    def anthropic(self, api_key: str = "test-key", **kw: Any) -> anthropic.Anthropic:
        import anthropic  # only the modules that use it pay for its import

        client = anthropic.Anthropic(base_url=self.url, api_key=api_key,
                                     **{"max_retries": 0, "timeout": 60, **kw})
        self.clients.append(client)
        return client

    def close_clients(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()

    def health(self) -> dict[str, Any]:
        return dict(httpx.get(self.url + "/health", timeout=10).json())

    def cli_processes(self) -> list[psutil.Process]:
        return cli_processes(self.process.pid)

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> dict[str, Any]:
        """Poll /health until ``predicate(health)`` holds; return that health."""
        deadline = time.monotonic() + timeout
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            health = self.health()
            if predicate(health):
                return health
            time.sleep(0.05)
        raise AssertionError(f"condition not reached; last health: {health}")

    def wait_idle(self, idle: int = 1, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until no turn runs (none is finishing either: a finishing worker may
        still change what the pool holds)."""
        return self.wait_for(lambda h: h["pool"]["idle"] >= idle and settled(h), timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.close_clients()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def settled(health: dict[str, Any]) -> bool:
    """No worker is serving, finishing or being reset (``/health``)."""
    pool = health["pool"]
    return not (pool["busy"] or pool["finishing"] or pool["resetting"])


CLI = Path(sys.executable).parent / "claude-code-api"


def keys_cli(store: Path | str, *args: str, forked: bool = True
             ) -> subprocess.CompletedProcess[str]:
    """`claude-code-api keys ...` on the store at ``store`` (a SQLite file, or a
    PostgreSQL URL given as a string): the command line forked from the fork server;
    ``forked=False``: the console script itself, as an operator runs it (test_access's
    CLI test)."""
    setting = "CLAUDE_CODE__STORE__URL" if isinstance(store, str) else \
        "CLAUDE_CODE__STORE__PATH"
    env = {setting: str(store), "PATH": "/usr/bin:/bin"}
    argv = [str(CLI), "keys", *args]
    if forked:
        return FORKS.run(argv, env, ROOT, timeout=60)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def create_key(store: Path, name: str, *flags: str, forked: bool = True) -> str:
    """A new client API key, made with the CLI (see ``keys_cli``); returns the key it
    printed once."""
    done = keys_cli(store, "create", "--name", name, *flags, forked=forked)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("sk-cca-") and "shown only once" in done.stderr
    return token


def start_gateway(upstream: FakeUpstream, tmp: Path, api_key: str | None = "sk-ant-test",
                  **settings: str) -> Gateway:
    """Start a gateway; ``settings`` are CLAUDE_CODE__* variables without the prefix."""
    port = free_port()
    config_dir = tmp / "claude-config"
    config_dir.mkdir(parents=True, exist_ok=True)
    log_path = tmp / "gateway.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_CODE__",
                                                                     "ANTHROPIC_"))}
    env.update({
        "ANTHROPIC_BASE_URL": upstream.url,
        "CLAUDE_CONFIG_DIR": str(config_dir),
        "CLAUDE_CODE__SERVER__LOG_LEVEL": "info",
        "CLAUDE_CODE__CLAUDE__WORK_ROOT": str(tmp / "work"),
        "CLAUDE_CODE__STORE__PATH": str(tmp / "gateway.db"),
    })
    if api_key is not None:
        env["ANTHROPIC_API_KEY"] = api_key
    env.update({f"CLAUDE_CODE__{k.upper()}": v for k, v in settings.items()})
    process = FORKS.start([str(CLI), "serve", "--port", str(port)], env, tmp, log_path)
    gateway = Gateway(f"http://127.0.0.1:{port}", process, config_dir, log_path, env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited early:\n{gateway.log()}")
        try:
            if httpx.get(gateway.url + "/health", timeout=2).status_code == 200:
                return gateway
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    gateway.stop()
    raise RuntimeError(f"gateway did not start:\n{gateway.log()}")


# Modules that share a gateway of the `gateways` registry other than the shared one:
# under xdist they run in one process, so that the gateway starts once.
TOGETHER: dict[str, str] = {
    "tests/e2e/test_pool.py": "one-worker",
    "tests/e2e/test_relay.py": "one-worker",
    "tests/e2e/test_tools.py": "one-worker",
}


# Seconds each module took in a whole run (setup, tests and teardown), written by
# `CCA_DURATIONS=update scripts/test`: the longest modules are handed out first, so
# that the test processes end together rather than one finishing a long module alone.
# (Only the order depends on it; a module not listed counts 0.1 s a test.)
DURATIONS = ROOT / "tests" / "durations.json"


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile` (scripts/test), with the modules of TOGETHER kept in one process
    (a module's tests always run in one process, as its module-scoped gateway wants;
    xdist's own `loadgroup` cannot do it: it renames test ids, which pytest 9 ignores),
    and the longest work handed out first (DURATIONS)."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    known: dict[str, float] = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}

    class TogetherScheduling(LoadFileScheduling):
        ordered = False

        def _split_scope(self, nodeid: str) -> str:
            module = super()._split_scope(nodeid)
            return TOGETHER.get(module, module)

        def _assign_work_unit(self, node: Any) -> None:
            if not self.ordered:  # the queue is complete by the first assignment
                self.ordered = True
                tests = Counter(nodeid.split("::")[0] for nodeid in self.collection or ())
                weight: Counter[str] = Counter()
                for module, count in tests.items():
                    weight[TOGETHER.get(module, module)] += known.get(module, 0.1 * count)
                for scope in sorted(self.workqueue, key=lambda s: -weight[s]):
                    self.workqueue.move_to_end(scope)
            super()._assign_work_unit(node)

    return TogetherScheduling(config, log)


_SPENT: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    module = report.nodeid.split("::")[0]
    _SPENT[module] = _SPENT.get(module, 0.0) + report.duration


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and not config.option.collectonly:
        FORKS.launch()  # importing the app meanwhile: it listens by the first test


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtestloop(session: pytest.Session) -> Iterator[None]:
    """Once every test has run (and every test process has ended), the fork server
    ends, saving its coverage: inside pytest-cov's wrapper of this hook, which then
    combines the coverage files (one still being written vanishes under it)."""
    try:
        return (yield)
    finally:
        FORKS.close()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if os.environ.get("CCA_DURATIONS") == "update" and not hasattr(session.config,
                                                                    "workerinput"):
        DURATIONS.write_text(json.dumps(
            {m: round(s, 1) for m, s in sorted(_SPENT.items())}, indent=0) + "\n")


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session) -> Iterator[None]:
    """The tests are collected with coverage's tracer off: collecting imports the test
    modules, their libraries and the package, 5.9 s of CPU in each test process, 8.9
    traced. The package's definitions (the lines an import runs) are measured once, in
    the fork server, which imports every module of it."""
    tracer = sys.gettrace()
    sys.settrace(None)
    try:
        return (yield)
    finally:
        sys.settrace(tracer)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """An end-to-end test's own thread runs client libraries (openai, anthropic,
    Playwright, schemathesis and hypothesis), not the package, whose code runs in the
    gateways it calls (measured there) and in the fake upstream's thread (still
    measured): coverage's tracer is off in this thread meanwhile. On Python 3.11 a
    traced thread runs about 1.5 times slower, traced files or not."""
    tracer = sys.gettrace()
    if tracer is None or item.get_closest_marker("e2e") is None:
        return (yield)
    sys.settrace(None)
    try:
        return (yield)
    finally:
        sys.settrace(tracer)


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def session_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cca-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Gateways:
    """The gateways of one test process, one per distinct set of settings: every module
    that asks for the same settings gets the same gateway, started on first use and
    stopped when the session ends (each xdist worker process has its own set)."""

    def __init__(self, upstream: FakeUpstream, root: Path) -> None:
        self.upstream = upstream
        self.root = root
        self.started: dict[tuple[tuple[str, str], ...], Gateway] = {}

    def get(self, **settings: str) -> Gateway:
        key = tuple(sorted(settings.items()))
        if key not in self.started:
            gateway = start_gateway(self.upstream, self.root / f"gateway-{len(self.started)}",
                                    **settings)
            gateway.wait_idle()
            self.started[key] = gateway
        return self.started[key]

    def stop(self) -> None:
        for gateway in self.started.values():
            gateway.stop()
            assert not gateway.cli_processes(), "a CLI process outlived the server"


@pytest.fixture(scope="session")
def gateways(upstream: FakeUpstream, session_tmp: Path) -> Iterator[Gateways]:
    registry = Gateways(upstream, session_tmp)
    yield registry
    registry.stop()


# The settings of the gateway that tests needing no special configuration share.
# (Codex's model name for tests/e2e/test_responses_tools.py.)
SHARED: dict[str, str] = {"models__aliases": '{"gpt-4o": "sonnet", "gpt-5.3-codex": "sonnet"}'}
# A gateway of a single worker, for tests that follow what one process does.
ONE_WORKER: dict[str, str] = {"claude__max_concurrent_sessions": "1"}


@pytest.fixture(scope="session")
def shared_gateway(gateways: Gateways) -> Gateway:
    """One gateway for the tests that need no special configuration."""
    return gateways.get(**SHARED)


def ready(gateway: Gateway, upstream: FakeUpstream) -> Gateway:
    """The gateway with a fresh script and no turn running."""
    upstream.reset()
    gateway.wait_for(lambda h: settled(h) and not h["pool"]["starting"])
    return gateway


def module_gateway(upstream: FakeUpstream, factory: pytest.TempPathFactory,
                   **settings: str) -> Iterator[Gateway]:
    """A gateway of its own for one test module, stopped after it: for settings that
    no other module uses (settings that several modules use: `gateways`)."""
    yield from serving(start_gateway(upstream, factory.mktemp("gateway"), **settings))


def team_gateway(upstream: FakeUpstream, tmp: Path, keys: dict[str, tuple[str, ...]],
                 **settings: str) -> Iterator[tuple[Gateway, dict[str, str]]]:
    """A module's gateway with client API keys made first with the CLI (name -> the
    flags of `keys create`); yields the gateway and each key's token by name."""
    tokens = {name: create_key(tmp / "gateway.db", name, *flags)
              for name, flags in keys.items()}
    for gateway in serving(start_gateway(upstream, tmp, **settings)):
        yield gateway, tokens


def serving(gateway: Gateway, idle: int = 1) -> Iterator[Gateway]:
    """A started gateway for a fixture: yielded once ``idle`` workers are ready, then
    stopped, and no CLI process may outlive it."""
    gateway.wait_idle(idle)
    yield gateway
    gateway.stop()
    assert not gateway.cli_processes(), "a CLI process outlived the server"


@pytest.fixture
def gw(team: tuple[Gateway, dict[str, str]], upstream: FakeUpstream) -> Gateway:
    """The module's `team` gateway, ready for a test."""
    return ready(team[0], upstream)


@pytest.fixture
def tokens(team: tuple[Gateway, dict[str, str]]) -> dict[str, str]:
    """The module's `team` keys by name."""
    return team[1]


@pytest.fixture
def gateway(shared_gateway: Gateway, upstream: FakeUpstream) -> Gateway:
    """The shared gateway, ready for a test."""
    return ready(shared_gateway, upstream)


@pytest.fixture
def client(gateway: Gateway) -> Iterator[openai.OpenAI]:
    yield gateway.client()
    gateway.close_clients()


def raw_stream(gateway: Gateway, path: str, body: dict[str, Any]) -> list[str]:
    """The SSE ``data:`` payloads of a streamed answer from ``/v1<path>``, exactly as
    sent (any other line than blank separators fails)."""
    frames = []
    with httpx.stream("POST", gateway.base_url + path, json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                frames.append(line[len("data: "):])
            else:
                assert line == "", line
    return frames


def structured(value: dict[str, Any], preamble: str = "") -> Reply:
    """Claude's answer under structured output: a call of the StructuredOutput tool the
    relay offers with the client's schema."""
    blocks: list[Any] = [Text(preamble)] if preamble else []
    return Reply(blocks=[*blocks, ToolUse("StructuredOutput", value, id="toolu_so")],
                 stop_reason="tool_use")


def offered_schema(upstream: FakeUpstream) -> dict[str, Any]:
    """The schema the last upstream request offered for the structured answer."""
    tools = upstream.message_requests()[-1].body["tools"]
    [tool] = [t for t in tools if t["name"] == "StructuredOutput"]
    return dict(tool["input_schema"])


sys.settrace(_TRACER)
