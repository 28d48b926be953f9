"""Codex CLI and Claude Code as clients of the gateway, run as the README shows them.

Codex speaks the Responses API with its default configuration (only the model provider
points at the gateway) and runs shell commands itself; Claude Code speaks Anthropic
Messages through ANTHROPIC_BASE_URL and runs its own tools. The guides name the
gateway at http://127.0.0.1:8080; the tests put this module's gateway there instead.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from claude_code_api.engine.engine import bundled_cli
from claude_code_api.testing.fake_upstream import FakeUpstream, Seen
from tests.clients.node import GUIDES, NodeClients, Run, finish_all, prepared
from tests.clients.replies import answer, tool_results
from tests.conftest import Gateway, module_gateway

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

README_ADDRESS = "http://127.0.0.1:8080"
SECRET = "The secret word is pelican."
# The command's output (codex-42) is not in its text: only running it gives it.
COMMAND = "echo codex-$((40+2))"


@dataclass
class Results:
    runs: dict[str, Run]
    requests: list[Seen]
    home: Path

    def output(self, name: str) -> str:
        run = self.runs[name]
        assert run.returncode == 0, run.explain()
        return run.stdout

    def turns(self, marker: str) -> list[Seen]:
        """The upstream requests of the run whose prompt holds ``marker``."""
        return [seen for seen in self.requests if any(
            marker in block.get("text", "") for message in seen.messages
            if message["role"] == "user" and isinstance(message["content"], list)
            for block in message["content"])]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> NodeClients:
    return prepared(tmp_path_factory.mktemp("node"))


@pytest.fixture(scope="module")
def agents_gateway(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Gateway]:
    yield from module_gateway(upstream, tmp_path_factory)


def guide(name: str, gateway: Gateway) -> str:
    return (GUIDES / name).read_text().replace(README_ADDRESS, gateway.url)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the gateway's or any Claude Code or Codex settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ANTHROPIC_", "CLAUDE_", "CODEX_", "OPENAI_"))}
    return {**env, **extra}


def start(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def claude_code(home: Path, gateway: Gateway) -> dict[str, subprocess.Popen[str]]:
    """The guide, and a turn where Claude Code reads a file itself, at high effort."""
    project = home / "claude-project"
    project.mkdir()
    (project / "notes.txt").write_text(SECRET + "\n")
    env = clean_env(HOME=str(home / "claude-home"),
                    PATH=f"{bundled_cli().parent}{os.pathsep}{os.environ['PATH']}",
                    # Only the gateway: no update checks or telemetry from a test.
                    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1")
    (home / "claude-home").mkdir()
    tool_env = {**env, "ANTHROPIC_BASE_URL": gateway.url, "ANTHROPIC_API_KEY": "unused"}
    return {
        "claude-code": start(["bash", "-c", guide("claude-code.sh", gateway)], project, env),
        "claude-code-tool": start(
            ["claude", "-p", f"Read {project / 'notes.txt'} and tell me what it says",
             "--output-format", "json", "--effort", "high"], project, tool_env),
    }


def codex(home: Path, node: NodeClients, gateway: Gateway) -> dict[str, subprocess.Popen[str]]:
    """The guide, and a turn where Codex runs a shell command itself."""
    project = home / "codex-project"
    project.mkdir()
    # `codex exec` works in a git repository, as in a user's project.
    subprocess.run(["git", "init", "-q", str(project)], check=True, timeout=30)

    def env(name: str, **extra: str) -> dict[str, str]:
        # A Codex home each: two Codex processes on one home race to set it up.
        codex_home = home / name / ".codex"
        codex_home.mkdir(parents=True)
        (codex_home / "config.toml").write_text(guide("codex-config.toml", gateway))
        return clean_env(HOME=str(home / name), CODEX_HOME=str(codex_home),
                         PATH=f"{node.bin('codex').parent}{os.pathsep}{os.environ['PATH']}",
                         **extra)

    prompt = f"Run `{COMMAND}` and tell me what it printed"
    return {
        "codex": start(["bash", "-c", guide("codex.sh", gateway)], project, env("codex")),
        "codex-tool": start(["codex", "exec", prompt], project,
                            env("codex-tool", CLAUDE_CODE_API_KEY="unused")),
    }


@pytest.fixture(scope="module")
def results(node: NodeClients, agents_gateway: Gateway, upstream: FakeUpstream,
            tmp_path_factory: pytest.TempPathFactory) -> Results:
    home = tmp_path_factory.mktemp("agents")
    upstream.reset()
    upstream.responder = answer
    processes = {**claude_code(home, agents_gateway), **codex(home, node, agents_gateway)}
    runs = finish_all(processes)
    requests = list(upstream.requests)
    upstream.reset()
    return Results(runs, requests, home)


def test_codex_guide_gets_an_answer(results: Results) -> None:
    assert results.output("codex").strip().splitlines()[-1] == "You said: Say hello"


def test_codex_runs_a_shell_command_and_sends_its_output_back(results: Results) -> None:
    final = results.output("codex-tool")
    turns = results.turns(COMMAND)
    outputs = [text for seen in turns for text in tool_results(seen)]
    assert any("codex-42" in text for text in outputs), outputs
    assert "The tool says:" in final and "codex-42" in final


def test_codex_default_tools_reach_claude(results: Results) -> None:
    """Its functions and its sub-agent namespace are offered; its hosted web search,
    which the gateway cannot run, is not."""
    [first, *_] = results.turns(COMMAND)
    offered = {tool["name"] for tool in first.body.get("tools", [])}
    assert "mcp__client__exec_command" in offered
    assert any("multi_agent_v1" in name for name in offered), offered
    assert not any("web_search" in name for name in offered), offered


def claude_result(results: Results, name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(results.output(name))
    assert result["is_error"] is False and result["subtype"] == "success", result
    return result


def test_claude_code_guide_gets_an_answer(results: Results) -> None:
    assert claude_result(results, "claude-code")["result"] == "You said: Say hello"


def test_claude_code_runs_its_own_tool(results: Results) -> None:
    result = claude_result(results, "claude-code-tool")
    assert SECRET in result["result"]
    *_, last = results.turns("notes.txt")
    assert any(SECRET in text for text in tool_results(last))


def test_claude_code_effort_reaches_claude(results: Results) -> None:
    """`--effort high` makes Claude Code send output_config.effort; the gateway's CLI
    asks the upstream with that effort."""
    turns = results.turns("notes.txt")
    assert turns and {seen.body.get("output_config", {}).get("effort") for seen in turns} == {
        "high"}

