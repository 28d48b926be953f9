"""The install a user gets, answering: run with the interpreter of a venv made by a
plain ``pip install .`` (no extras), so only runtime dependencies are importable.

Starts the scripted fake upstream, then ``claude-code-api serve`` with a fresh HOME
and no configuration, asks one chat completion with the openai client, and stops the
server; exits non-zero (with the server's log) if any step fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import openai
import psutil

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"the server did not answer /health:\n{log.read_text()}")


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="cca-smoke-home-"))
    upstream = FakeUpstream()
    upstream.start()
    upstream.script(Reply.text("Hello from a clean install"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "ANTHROPIC_BASE_URL": upstream.url, "ANTHROPIC_API_KEY": "sk-ant-smoke"}
    log = home / "server.log"
    command = [str(Path(sys.executable).parent / "claude-code-api"), "serve", "--port",
               str(port)]
    with log.open("wb") as out:
        server = subprocess.Popen(command, env=env, cwd=home, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        wait_healthy(url, server, log)
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0,
                               timeout=60)
        reply = client.chat.completions.create(
            model="sonnet", messages=[{"role": "user", "content": "Say hello"}])
        answer = reply.choices[0].message.content
        if answer != "Hello from a clean install":
            sys.exit(f"unexpected answer {answer!r}:\n{log.read_text()}")
        print(f"clean install answered: {answer!r}")
        # The console's files are package data: the installed package serves them.
        for path in ("/ui", "/ui/static/js/main.js", "/ui/static/vendor/preact.mjs"):
            with urllib.request.urlopen(url + path, timeout=10) as page:
                if page.status != 200 or not page.read():
                    sys.exit(f"{path} was not served by the installed package")
        print("clean install serves the console at /ui")
    finally:
        try:
            children = psutil.Process(server.pid).children(recursive=True)
        except psutil.NoSuchProcess:  # it exited early; the log was printed
            children = []
        server.terminate()
        server.wait(30)
        upstream.stop()
    if any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE
           for child in children):
        sys.exit("CLI processes outlived the server")


if __name__ == "__main__":
    main()
