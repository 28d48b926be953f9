"""The README's Python guides, run as a user runs them: each file of guides/ is shown
verbatim in the README, and runs here (with the gateway's real address in place of
http://127.0.0.1:8080) in .venv-clients, where scripts/test installs the client
libraries of the `clients` extra. One gateway for the module; the guides run at once,
each a process of its own (see run_guides.py).

The fake upstream answers by what it is asked, like a model would: a prompt is echoed
("You said: ..."), a tool result is read back ("Tool said: ..."), a request offering
the structured-output tool or a client tool gets a call to it with Ann's data. So a
guide's output shows that its prompts, tool results and schemas reached Claude.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Seen, ToolUse, content_text
from tests.conftest import ROOT, Gateway, module_gateway

pytestmark = pytest.mark.e2e

GUIDES = Path(__file__).resolve().parent / "guides"
RUNNER = Path(__file__).resolve().parent / "run_guides.py"
PYTHON = ROOT / ".venv-clients" / "bin" / "python"
README = ROOT / "README.md"
PLACEHOLDER = "http://127.0.0.1:8080"
ANN = {"name": "Ann", "age": 31, "city": "Paris"}
GAP = "    return a + b"

PLAIN = "You said: Say hello"
STREAMED = "You said: Count to 3"
TOOL = "Tool said: Sunny, 24 °C in Paris"
PERSON = "name='Ann' age=31"
# What each guide prints, in order (lines of its output; other lines may come between).
EXPECTED: dict[str, list[str]] = {
    "openai_sdk.py": [PLAIN, STREAMED, TOOL, PERSON, GAP],
    "anthropic_sdk.py": [PLAIN, STREAMED, TOOL],
    "anthropic_structured.py": [PERSON],
    "langchain_chatopenai.py": [PLAIN, STREAMED, TOOL, PERSON],
    "langchain_chatanthropic.py": [PLAIN, STREAMED, TOOL, PERSON],
    "langchain_openai_llm.py": [PLAIN, STREAMED],
    "litellm_sdk.py": [PLAIN, STREAMED, TOOL, PERSON] * 2,
    "openai_agents.py": [PLAIN, STREAMED, TOOL, PERSON],
    "pydantic_ai_agent.py": [PLAIN, STREAMED, TOOL, PERSON],
    "instructor_sdk.py": [PERSON, "name=None age=None", PERSON],
    "llama_index_anthropic.py": [PLAIN, STREAMED, TOOL],
    "llama_index_structured.py": [PERSON],
}


def answer(seen: Seen) -> Reply:
    tools = {tool["name"]: tool for tool in seen.body.get("tools", [])}
    last = [m for m in seen.messages if m["role"] == "user"][-1]
    blocks = last["content"] if isinstance(last["content"], list) else \
        [{"type": "text", "text": last["content"]}]
    results = [b for b in blocks if b.get("type") == "tool_result"]
    if results:
        content = results[0]["content"]
        return Reply.text("Tool said: " + (content if isinstance(content, str)
                                           else content_text(content)))
    if "StructuredOutput" in tools:
        return Reply(blocks=[ToolUse("StructuredOutput", {"name": "Ann", "age": 31})],
                     stop_reason="tool_use")
    # In chat mode every other tool is the client's (Claude Code offers none of its own).
    offered = [name for name in tools if name != "StructuredOutput"]
    if offered:
        wanted = tools[offered[0]]["input_schema"].get("properties", {})
        return Reply(blocks=[ToolUse(offered[0], {k: ANN[k] for k in wanted if k in ANN})],
                     stop_reason="tool_use")
    if "fill-in-the-middle" in seen.system_text:
        return Reply.text(GAP)
    # The prompt is the last text block (the CLI puts reminders before it for some models).
    return Reply.text("You said: " + [b for b in blocks if b.get("type") == "text"][-1]["text"])


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from module_gateway(upstream, tmp_path_factory, claude__max_concurrent_sessions="6",
                              claude__min_idle_workers="2")


@pytest.fixture(scope="module")
def outputs(gw: Gateway, upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every guide, run at once against the gateway, each in a process of its own
    (forked by run_guides.py once the guides' imports are loaded): its exit status and
    output."""
    assert PYTHON.exists(), "no .venv-clients: scripts/test installs the client libraries"
    upstream.reset()
    upstream.responder = answer
    home = tmp_path_factory.mktemp("home")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           # LiteLLM fetches its price list from GitHub unless told to use its own copy.
           "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_PROXY": "127.0.0.1"}
    scripts = []
    for name in EXPECTED:
        script = home / name
        script.write_text((GUIDES / name).read_text().replace(PLACEHOLDER, gw.url))
        scripts.append(str(script))
    out = tmp_path_factory.mktemp("outputs")
    runner = subprocess.run([str(PYTHON), str(RUNNER), str(out), *scripts], cwd=home, env=env,
                            capture_output=True, text=True, timeout=240)
    assert runner.returncode == 0, runner.stderr[-3000:]
    done = {}
    for name in EXPECTED:
        code = int((out / f"{name}.code").read_text())
        done[name] = subprocess.CompletedProcess([str(PYTHON), name], code,
                                                 (out / f"{name}.out").read_text(),
                                                 (out / f"{name}.err").read_text())
    return done


def test_every_guide_is_in_the_readme_verbatim() -> None:
    readme = README.read_text()
    guides = sorted(p.name for p in GUIDES.glob("*.py"))
    assert guides == sorted(EXPECTED)
    for name in guides:
        assert f"```python\n{(GUIDES / name).read_text()}```" in readme, name


@pytest.mark.parametrize("name", list(EXPECTED))
def test_the_guide_runs_and_prints_what_claude_answered(
        name: str, outputs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    done = outputs[name]
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    at = 0
    for expected in EXPECTED[name]:
        assert expected in lines[at:], (expected, done.stdout)
        at = lines.index(expected, at) + 1


def test_the_guides_used_each_dialect_and_their_tools(
        outputs: dict[str, subprocess.CompletedProcess[str]], upstream: FakeUpstream) -> None:
    seen: list[dict[str, Any]] = [s.body for s in upstream.message_requests()]
    offered = {t["name"] for body in seen for t in body.get("tools", [])}
    assert "get_weather" in offered and "StructuredOutput" in offered
    results = [b for body in seen for m in body["messages"] if isinstance(m["content"], list)
               for b in m["content"] if b.get("type") == "tool_result"]
    assert any("Sunny, 24 °C in Paris" in str(r["content"]) for r in results)
    # LangChain's OpenAI LLM class came through /v1/completions.
    assert any("text completion engine" in str(body.get("system")) for body in seen)
