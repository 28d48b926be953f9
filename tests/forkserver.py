"""The tests' gateways, forked from one process that has imported the app.

Each `claude-code-api serve` spends about 2.5 s of CPU importing the app before it does
anything (`openai`, `anthropic`, `claude_agent_sdk` and their types), and the suite
starts dozens. This process imports the app once; each gateway is a fork of it that
runs `claude_code_api.cli.main(argv)` with its own environment, working directory and
log, so from the command line on it is the same code as the console script. The
tests of `doctor` run it here too, as a command that ends (``ForkServer.run``). (The
console script itself is started by the tests of `serve`'s own refusals and of `keys`,
and by `.ci/run`'s clean install.)

Spoken over stdin/stdout, a JSON object a line:
- ``{"start": {"argv", "env", "cwd", "log"}}`` -> ``{"pid": N}`` (with ``"err"``, a
  file for stderr apart from the log, which then holds stdout alone);
- ``{"status": N}`` -> ``{"returncode": code or null}`` (null: still running).
A fork's exit status is collected here (its parent), so a gateway's end is seen by the
tests as a ``subprocess.Popen``'s would be (``ForkedProcess`` in conftest).
"""

from __future__ import annotations

import atexit
import gc
import inspect
import json
import os
import signal
import sys
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


def _serve(request: dict[str, Any]) -> NoReturn:
    """In the fork: become the gateway; never returns."""
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


def main() -> None:
    import claude_code_api.app  # noqa: F401  (the imports every gateway shares)
    import claude_code_api.cli  # noqa: F401

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
    for line in sys.stdin:
        request = json.loads(line)
        if "start" in request:
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                _serve(request["start"])
            reply: dict[str, Any] = {"pid": pid}
        else:
            _reap()
            reply = {"returncode": _ended.get(int(request["status"]))}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
