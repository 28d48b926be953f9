"""The tests' gateways, forked from one process that has imported the app.

Each `claude-code-api serve` spends about 2.5 s of CPU importing the app before it does
anything (`openai`, `anthropic`, `claude_agent_sdk` and their types), and the suite
starts dozens. This process imports the app once; each gateway is a fork of it that
runs `claude_code_api.cli.main(argv)` with its own environment, working directory and
log, so from the command line on it is the same code as the console script. The
tests of `doctor` run it here too, as a command that ends (``ForkServer.run``). (The
console script itself is started by the tests of `serve`'s own refusals and of `keys`,
and by `.ci/run`'s clean install.)

One serves the whole run: pytest's main process starts it (conftest) and every test
process (xdist's workers) connects to its Unix socket, the path it is given. On a
connection, a JSON object a line:
- ``{"start": {"argv", "env", "cwd", "log"}}`` -> ``{"pid": N}`` (with ``"err"``, a
  file for stderr apart from the log, which then holds stdout alone);
- ``{"status": N}`` -> ``{"returncode": code or null}`` (null: still running).
A fork's exit status is collected here (its parent), so a gateway's end is seen by the
tests as a ``subprocess.Popen``'s would be (``ForkedProcess`` in conftest). It ends when
its stdin closes (saving its coverage on the way out).
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import gc
import importlib
import importlib.util
import inspect
import json
import os
import selectors
import signal
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

_ended: dict[int, int] = {}


def _reap(_signum: int = 0, _frame: FrameType | None = None) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _ended[pid] = os.waitstatus_to_exitcode(status)


def _serve(request: dict[str, Any], inherited: list[socket.socket]) -> NoReturn:
    """In the fork: become the gateway; never returns."""
    for sock in inherited:  # ours, not the gateway's
        sock.close()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(request["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) \
        if request.get("err") else log
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(err, 2)
    for fd in {null, log, err}:
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = list(request["argv"])
    from claude_code_api.cli import main

    try:
        code = main(sys.argv[1:])
    except SystemExit as exit_:  # argparse's --help and refusals
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
        code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    # The exit handlers run (coverage saves its data, logging flushes), then the process
    # ends without tearing down its heap: that would touch, and so copy, every page it
    # shares with us (about 0.1 s of CPU a fork).
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _package() -> tuple[list[str], list[str]]:
    """The package's modules, and the modules outside it that their code imports (read
    from its source, without importing it)."""
    spec = importlib.util.find_spec("claude_code_api")
    assert spec is not None and spec.submodule_search_locations is not None
    root = Path(list(spec.submodule_search_locations)[0])
    modules, libraries = [], set()
    for path in sorted(root.rglob("*.py")):
        parts = ("claude_code_api", *path.relative_to(root).with_suffix("").parts)
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                libraries.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                libraries.add(node.module)
    return modules, sorted(n for n in libraries if n.split(".")[0] != "claude_code_api")


def _import_package() -> None:
    """Every module of the package imported: its libraries first, with coverage paused
    (their import under the tracer took 4.3 s of CPU instead of 2.8, and none of their
    lines is measured), then its own modules, measured: their definitions run here once
    for the whole run (the test processes collect the tests untraced: conftest)."""
    import coverage

    modules, libraries = _package()
    measuring = coverage.Coverage.current()
    if measuring is not None:
        measuring.stop()
    for name in libraries:
        with contextlib.suppress(Exception):  # an optional one not installed
            importlib.import_module(name)
    if measuring is not None:
        measuring.start()
    for name in modules:
        importlib.import_module(name)


class _Connection:
    """A test process's connection: its requests, a line each."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = b""

    def answer(self, inherited: list[socket.socket]) -> bool:
        """Answer the whole requests that arrived; False once the peer has gone."""
        data = self.sock.recv(65536)
        if not data:
            return False
        self.pending += data
        while b"\n" in self.pending:
            line, self.pending = self.pending.split(b"\n", 1)
            request = json.loads(line)
            if "start" in request:
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _serve(request["start"], inherited)
                reply: dict[str, Any] = {"pid": pid}
            else:
                _reap()
                reply = {"returncode": _ended.get(int(request["status"]))}
            self.sock.sendall(json.dumps(reply).encode() + b"\n")
        return True


def main() -> None:
    _import_package()

    # Coverage (patch = fork) starts a new collector in each fork, which notes where it
    # was made with inspect.stack(): that maps every loaded module to its file, realpath
    # by realpath, about 0.25 s of CPU a fork unless inspect's cache is filled here once.
    inspect.stack()
    # Every object alive now goes to the collector's permanent generation: a fork's
    # collections then never walk (and so never copy) the pages the fork shares with
    # us. Without it each fork spent about 1.1 s of CPU more (a doctor run: 1.7 s of
    # CPU against 0.6 s).
    gc.collect()
    gc.freeze()
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # pytest's ^C: the tests stop us
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sys.argv[1])
    listener.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(sys.stdin, selectors.EVENT_READ)  # closed: the run is over
    connections: dict[socket.socket, _Connection] = {}
    while True:
        for key, _ in selector.select():
            if key.fileobj is sys.stdin:
                if not sys.stdin.buffer.read1(4096):
                    return
            elif key.fileobj is listener:
                sock, _ = listener.accept()
                connections[sock] = _Connection(sock)
                selector.register(sock, selectors.EVENT_READ)
            else:
                connection = connections[key.fileobj]  # type: ignore[index]
                inherited = [listener, *connections]
                if not connection.answer(inherited):
                    selector.unregister(connection.sock)
                    connection.sock.close()
                    del connections[connection.sock]


if __name__ == "__main__":
    main()
