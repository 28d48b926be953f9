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

from claude_code_api.engine.launch import bundled_cli
from claude_code_api.testing.fake_upstream import FakeUpstream, Seen
from tests.clients.node import GUIDES, NodeClients, Run, finish_all, prepared
from tests.clients.replies import answer, tool_results
from tests.conftest import Gateway, module_gateway

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

README_ADDRESS = "http://127.0.0.1:8080"
SECRET = "The secret word is pelican."
# The command's output (codex-42) is not in its text: only running it gives it.
COMMAND = "echo codex-$((40+2))"
RESUME = "Thanks. Say it once more"


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


@dataclass
class Codex:
    """Codex in a project (a git repository, as `codex exec` expects), a home per run:
    two Codex processes on one home race to set it up."""

    home: Path
    node: NodeClients
    gateway: Gateway

    @property
    def project(self) -> Path:
        return self.home / "codex-project"

    def env(self, name: str, **extra: str) -> dict[str, str]:
        codex_home = self.home / name / ".codex"
        if not codex_home.exists():
            codex_home.mkdir(parents=True)
            (codex_home / "config.toml").write_text(guide("codex-config.toml", self.gateway))
        path = f"{self.node.bin('codex').parent}{os.pathsep}{os.environ['PATH']}"
        return clean_env(HOME=str(self.home / name), CODEX_HOME=str(codex_home), PATH=path,
                         **extra)

    def first_runs(self) -> dict[str, subprocess.Popen[str]]:
        """The guide, and a turn where Codex runs a shell command itself."""
        self.project.mkdir()
        subprocess.run(["git", "init", "-q", str(self.project)], check=True, timeout=30)
        prompt = f"Run `{COMMAND}` and tell me what it printed"
        return {
            "codex": start(["bash", "-c", guide("codex.sh", self.gateway)], self.project,
                           self.env("codex")),
            "codex-tool": start(["codex", "exec", prompt], self.project,
                                self.env("codex-tool", CLAUDE_CODE_API_KEY="unused")),
        }

    def resume(self) -> dict[str, subprocess.Popen[str]]:
        """The tool session's next turn: Codex sends its whole history again."""
        return {"codex-resume": start(
            ["codex", "exec", "resume", "--last", RESUME], self.project,
            self.env("codex-tool", CLAUDE_CODE_API_KEY="unused"))}


@pytest.fixture(scope="module")
def results(node: NodeClients, agents_gateway: Gateway, upstream: FakeUpstream,
            tmp_path_factory: pytest.TempPathFactory) -> Results:
    home = tmp_path_factory.mktemp("agents")
    codex = Codex(home, node, agents_gateway)
    upstream.reset()
    upstream.responder = answer
    runs = finish_all({**claude_code(home, agents_gateway), **codex.first_runs()})
    runs.update(finish_all(codex.resume()))
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
    assert "exec_command" in offered
    assert any("multi_agent_v1" in name for name in offered), offered
    assert not any("web_search" in name for name in offered), offered


def test_codex_resumes_a_session_with_its_history(results: Results) -> None:
    """A stateless next turn (Codex sends every earlier item again) reaches Claude with
    the earlier turns as real turns: the prompt, the call, its output, the answer."""
    assert results.output("codex-resume").strip().splitlines()[-1] == f"You said: {RESUME}"
    [seen] = results.turns(RESUME)
    blocks = [(message["role"], block) for message in seen.messages
              if message["role"] in ("user", "assistant") and isinstance(message["content"], list)
              for block in message["content"]]
    kinds = [block.get("type") for _, block in blocks]
    assert kinds.index("tool_use") < kinds.index("tool_result")
    assert any("codex-42" in text for text in tool_results_anywhere(seen))
    assert any(role == "assistant" and block.get("type") == "text"
               and block["text"].startswith("The tool says:") and "codex-42" in block["text"]
               for role, block in blocks)

def tool_results_anywhere(seen: Seen) -> list[str]:
    return [json.dumps(block.get("content")) for message in seen.messages
            if message["role"] == "user" and isinstance(message["content"], list)
            for block in message["content"] if block.get("type") == "tool_result"]


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


