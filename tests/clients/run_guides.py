"""Runs the README's Python guides in .venv-clients, each in a process of its own, as a
user runs a script, without each paying for its imports (about 31 s of CPU for the
twelve, litellm alone 5 s; the suite runs on two cores).

The modules the guides import (read from their import statements) are imported here
once; each guide is then a fork of this process that runs the script's file as
``__main__`` (``runpy.run_path``), with its stdout and stderr in files of their own. So
every line of a guide runs as written; only its imports find their modules loaded.

    run_guides.py OUT GUIDE.py [GUIDE.py ...]

writes OUT/<guide>.out, OUT/<guide>.err and OUT/<guide>.code (the exit status).
"""

from __future__ import annotations

import ast
import gc
import importlib
import os
import runpy
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path


def imported(scripts: list[Path]) -> Iterator[str]:
    for script in scripts:
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.Import):
                yield from (alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                yield node.module


def run(script: Path, out: Path) -> None:
    """In the fork: run the guide; never returns."""
    code = 1
    try:
        for fd, suffix in ((1, ".out"), (2, ".err")):
            target = os.open(out / (script.name + suffix), os.O_WRONLY | os.O_CREAT, 0o644)
            os.dup2(target, fd)
            os.close(target)
        sys.argv = [str(script)]
        try:
            runpy.run_path(str(script), run_name="__main__")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    out, scripts = Path(sys.argv[1]), [Path(arg) for arg in sys.argv[2:]]
    for name in sorted(set(imported(scripts))):
        importlib.import_module(name)
    # Forks then never walk (and copy) the heap they share with this process.
    gc.collect()
    gc.freeze()
    sys.stdout.flush()
    sys.stderr.flush()
    running = {}
    for script in scripts:
        pid = os.fork()
        if pid == 0:
            run(script, out)
        running[pid] = script
    while running:
        pid, status = os.wait()
        script = running.pop(pid)
        (out / (script.name + ".code")).write_text(str(os.waitstatus_to_exitcode(status)))


if __name__ == "__main__":
    main()
