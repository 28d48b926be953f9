"""Agent mode: Claude Code's own tools in per-conversation workspaces, under the
gateway's permission policy, with MCP servers, progress visible to the caller."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from claude_code_api.settings import AGENT_TOOLS
from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Text, ToolUse
from tests.conftest import Gateway, ready, serving, start_gateway

pytestmark = pytest.mark.e2e

CALC = Path(__file__).parent / "servers" / "calc_mcp.py"


@pytest.fixture(scope="module")
def agent_gateway(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("agent")
    (tmp / "shared").mkdir()
    (tmp / "shared" / "notes.txt").write_text("shared notes\n")
    config = tmp / "mcp_config.json"
    config.write_text(json.dumps({"mcpServers": {"calc": {
        "type": "stdio", "command": sys.executable, "args": [str(CALC)]}}}))
    # A home of its own, with a canary in it, for the `~` tests.
    (tmp / "home").mkdir()
    (tmp / "home" / "HOME-NAME-CANARY.txt").write_text("HOME-CONTENT-CANARY\n")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HOME", str(tmp / "home"))
        gateway = start_gateway(upstream, tmp, agent__enabled="true",
                                agent__workspace_root=str(tmp / "ws"),
                                file_access__additional_dirs=json.dumps([str(tmp / "shared")]),
                                mcp__enabled="true", mcp__config_file=str(config))
    yield from serving(gateway)


@pytest.fixture
def gw(agent_gateway: Gateway, upstream: FakeUpstream) -> Gateway:
    return ready(agent_gateway, upstream)


def workspace(gateway: Gateway, conversation: str) -> Path:
    return Path(gateway.env["CLAUDE_CODE__AGENT__WORKSPACE_ROOT"]) / "local" / conversation


def step(*blocks: Any) -> Reply:
    return Reply(blocks=list(blocks), stop_reason="tool_use")


def run_agent(gateway: Gateway, conversation: str, prompt: str, **extra: Any
              ) -> tuple[str, str]:
    """Stream an agent turn with the openai client: (progress, answer)."""
    client = gateway.client()
    stream = client.chat.completions.create(
        model="claude-code", stream=True, messages=[{"role": "user", "content": prompt}],
        extra_headers={"X-Conversation-ID": conversation}, extra_body=extra or None)
    progress, answer = "", ""
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        progress += getattr(delta, "reasoning_content", None) or ""
        answer += delta.content or ""
    return progress, answer


def tool_results(upstream: FakeUpstream) -> list[dict[str, Any]]:
    """The tool_result blocks the CLI sent upstream."""
    out = []
    for seen in upstream.message_requests():
        for message in seen.messages:
            if isinstance(message.get("content"), list):
                out += [b for b in message["content"] if b.get("type") == "tool_result"]
    return out


def result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        return " ".join(str(c.get("text", "")) for c in content)
    return str(content)


def test_agent_writes_a_file_in_its_workspace(gw: Gateway, upstream: FakeUpstream) -> None:
    target = workspace(gw, "conv-write") / "hello.txt"
    upstream.script(step(Text("I'll write the file."),
                         ToolUse("Write", {"file_path": str(target), "content": "hi there\n"})),
                    Reply.text("Wrote hello.txt."))
    progress, answer = run_agent(gw, "conv-write", "write hello.txt")
    assert target.read_text() == "hi there\n"
    assert f"[Write] {target}" in progress
    assert "[Write] done" in progress
    assert answer == "I'll write the file.\n\nWrote hello.txt."
    offered = {t["name"] for t in upstream.message_requests()[0].body["tools"]}
    assert {"Read", "Write", "Edit", "Glob", "Grep"} <= offered
    assert not {"Bash", "WebFetch", "WebSearch"} & offered  # off unless configured


def test_reading_outside_the_workspace_is_denied_and_reported(gw: Gateway,
                                                              upstream: FakeUpstream,
                                                              tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CANARY\n")
    upstream.script(step(ToolUse("Read", {"file_path": str(secret)})),
                    Reply.text("I could not read it."))
    progress, answer = run_agent(gw, "conv-outside", "read my secret")
    assert "[Read] failed: Permission denied" in progress
    assert "outside this conversation's workspace" in progress
    assert answer == "I could not read it."
    (result,) = tool_results(upstream)
    assert result.get("is_error") is True
    assert "outside this conversation's workspace" in result_text(result)
    assert all("TOP-SECRET-CANARY" not in json.dumps(s.body)
               for s in upstream.message_requests())


def test_additional_dirs_are_readable(gw: Gateway, upstream: FakeUpstream) -> None:
    shared = Path(gw.env["CLAUDE_CODE__FILE_ACCESS__ADDITIONAL_DIRS"].strip('[]"')) / "notes.txt"
    upstream.script(step(ToolUse("Read", {"file_path": str(shared)})), Reply.text("read"))
    progress, _ = run_agent(gw, "conv-shared", "read the shared notes")
    assert "[Read] done" in progress
    (result,) = tool_results(upstream)
    assert "shared notes" in result_text(result) and not result.get("is_error")


def test_a_disallowed_tool_is_refused(gw: Gateway, upstream: FakeUpstream,
                                      tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    upstream.script(step(ToolUse("Bash", {"command": f"touch {canary}"})),
                    Reply.text("no shell for me"))
    progress, _ = run_agent(gw, "conv-bash", "run a command")
    assert "[Bash] failed" in progress
    assert not canary.exists()
    (result,) = tool_results(upstream)
    assert result.get("is_error") is True


def test_a_request_can_narrow_the_tools(gw: Gateway, upstream: FakeUpstream) -> None:
    target = workspace(gw, "conv-narrow") / "nope.txt"
    upstream.script(step(ToolUse("Write", {"file_path": str(target), "content": "x"})),
                    Reply.text("not allowed"))
    progress, _ = run_agent(gw, "conv-narrow", "write", agent={"tools": ["Read", "Glob"]})
    assert "not allowed for this request" in progress
    assert not target.exists()


def test_two_conversations_workspaces_are_isolated(gw: Gateway, upstream: FakeUpstream) -> None:
    theirs = workspace(gw, "conv-a") / "diary.txt"
    upstream.script(step(ToolUse("Write", {"file_path": str(theirs),
                                           "content": "DIARY-CANARY-42"})), Reply.text("saved"))
    run_agent(gw, "conv-a", "keep my diary")
    assert theirs.read_text() == "DIARY-CANARY-42"
    upstream.reset()
    upstream.script(step(ToolUse("Read", {"file_path": str(theirs)})),
                    step(ToolUse("Glob", {"pattern": "*", "path": str(theirs.parent)})),
                    Reply.text("nothing"))
    progress, _ = run_agent(gw, "conv-b", "read A's diary")
    assert progress.count("Permission denied") == 2
    assert all("DIARY-CANARY-42" not in json.dumps(s.body) for s in upstream.message_requests())
    assert workspace(gw, "conv-b").is_dir() and not (workspace(gw, "conv-b") / "diary.txt"
                                                     ).exists()


def test_mcp_server_from_the_config_file_is_listed_and_called(gw: Gateway,
                                                               upstream: FakeUpstream) -> None:
    health = gw.health()
    assert health["agent"]["mcp_servers"] == [{"name": "calc", "type": "stdio"}]
    upstream.script(step(ToolUse("mcp__calc__add", {"a": 2, "b": 3})),
                    Reply.text("2 + 3 = 5"))
    progress, answer = run_agent(gw, "conv-mcp", "add 2 and 3")
    offered = {t["name"] for t in upstream.message_requests()[0].body["tools"]}
    assert "mcp__calc__add" in offered
    assert "[mcp__calc__add] done: sum=5" in progress
    assert answer == "2 + 3 = 5"
    (result,) = tool_results(upstream)
    assert "sum=5" in result_text(result)


def test_max_turns_stops_the_agent(gw: Gateway, upstream: FakeUpstream) -> None:
    target = workspace(gw, "conv-turns")
    upstream.script(*(step(ToolUse("Glob", {"pattern": "*", "path": str(target)}))
                      for _ in range(4)), Reply.text("never reached"))
    client = gw.client()
    completion = client.chat.completions.create(
        model="claude-code", messages=[{"role": "user", "content": "loop"}],
        extra_headers={"X-Conversation-ID": "conv-turns"}, extra_body={"agent": {
            "max_turns": 2}})
    assert completion.choices[0].finish_reason == "length"
    reasoning = getattr(completion.choices[0].message, "reasoning_content", "")
    assert "max_turns" in reasoning
    assert len(upstream.message_requests()) == 2


def test_agent_mode_selected_by_header_and_body(gw: Gateway, upstream: FakeUpstream) -> None:
    target = workspace(gw, "conv-header") / "h.txt"
    upstream.script(step(ToolUse("Write", {"file_path": str(target), "content": "h"})),
                    Reply.text("ok"))
    response = httpx.post(gw.base_url + "/chat/completions", timeout=60, headers={
        "X-Claude-Code-Mode": "agent", "X-Conversation-ID": "conv-header"}, json={
        "model": "sonnet", "messages": [{"role": "user", "content": "write h"}]})
    assert response.status_code == 200, response.text
    assert target.read_text() == "h"
    bad = httpx.post(gw.base_url + "/chat/completions", timeout=60, json={
        "model": "sonnet", "messages": [{"role": "user", "content": "x"}],
        "agent": {"max_turns": 0}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "agent.max_turns"
    for path, body in (("/v1/messages", {"model": "claude-code", "max_tokens": 10,
                                         "messages": [{"role": "user", "content": "x"}]}),
                       ("/v1/responses", {"model": "claude-code", "input": "x"}),
                       ("/v1/chat/completions", {"model": "claude-code", "messages": [
                           {"role": "user", "content": "x"}]})):
        escape = httpx.post(gw.url + path, json=body, timeout=30,
                            headers={"X-Conversation-ID": "../../escape"})
        assert escape.status_code == 400, (path, escape.text)
    assert not (Path(gw.env["CLAUDE_CODE__AGENT__WORKSPACE_ROOT"]).parent / "escape").exists()


def test_the_agent_model_is_listed(gw: Gateway, shared_gateway: Gateway) -> None:
    assert "claude-code" in [m.id for m in gw.client().models.list()]
    assert gw.client().models.retrieve("claude-code").id == "claude-code"
    assert "claude-code" not in [m.id for m in shared_gateway.client().models.list()]


def test_chat_mode_is_untouched(gw: Gateway, upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("plain"))
    answer = gw.client().chat.completions.create(
        model="sonnet", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "plain"
    assert "tools" not in upstream.message_requests()[0].body or not \
        upstream.message_requests()[0].body["tools"]


def test_agent_mode_refused_where_not_enabled(shared_gateway: Gateway) -> None:
    client = shared_gateway.client()
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="claude-code",
                                       messages=[{"role": "user", "content": "hi"}])
    assert "not enabled" in str(caught.value)


def test_anthropic_clients_see_progress_as_thinking(gw: Gateway, upstream: FakeUpstream) -> None:

    client = gw.anthropic(api_key="unused")
    target = workspace(gw, "conv-anthropic") / "x.txt"
    upstream.script(step(ToolUse("Write", {"file_path": str(target), "content": "x"})),
                    Reply.text("written"), Reply.text("and again"))
    asked: dict[str, Any] = {"role": "user", "content": "write x"}
    headers = {"X-Conversation-ID": "conv-anthropic"}
    first = client.messages.create(model="claude-code", max_tokens=500, messages=[asked],
                                   extra_headers=headers)  # type: ignore[list-item]
    thinking = [b for b in first.content if b.type == "thinking"]
    assert thinking and "[Write] done" in thinking[0].thinking
    assert [b.text for b in first.content if b.type == "text"] == ["written"]
    assert target.read_text() == "x"
    # Claude Code-style clients send the whole turn back, progress included.
    second = client.messages.create(
        model="claude-code", max_tokens=500, extra_headers=headers,
        messages=[asked, {"role": "assistant",  # type: ignore[list-item]
                          "content": [b.model_dump() for b in first.content]},
                  {"role": "user", "content": "again"}])
    assert [b.text for b in second.content if b.type == "text"] == ["and again"]
    assert '"signature": ""' not in json.dumps(upstream.message_requests()[-1].messages)


def test_max_budget_stops_the_agent(gw: Gateway, upstream: FakeUpstream) -> None:
    target = workspace(gw, "conv-budget")
    # Each model call reports a million output tokens: far beyond a cent.
    upstream.script(*(Reply(blocks=[ToolUse("Glob", {"pattern": "*", "path": str(target)})],
                            stop_reason="tool_use", output_tokens=1_000_000)
                      for _ in range(3)), Reply.text("never reached"))
    completion = gw.client().chat.completions.create(
        model="claude-code", messages=[{"role": "user", "content": "spend"}],
        extra_headers={"X-Conversation-ID": "conv-budget"},
        extra_body={"agent": {"max_budget_usd": 0.01}})
    assert completion.choices[0].finish_reason == "length"
    assert "max_budget_usd" in getattr(completion.choices[0].message, "reasoning_content", "")
    assert len(upstream.message_requests()) == 1


def test_max_budget_is_per_turn_on_every_turn_of_a_conversation(gw: Gateway,
                                                                upstream: FakeUpstream) -> None:
    """The CLI holds max_budget_usd against its process's running total: a warm worker
    would give a conversation's later turns less than their limit, then nothing."""
    upstream.responder = lambda seen: Reply.text("a cheap answer")  # about $0.00007 a turn
    for turn in range(3):
        completion = gw.client().chat.completions.create(
            model="claude-code", messages=[{"role": "user", "content": f"turn {turn}"}],
            extra_headers={"X-Conversation-ID": "conv-per-turn"},
            extra_body={"agent": {"max_budget_usd": 0.0001}})
        choice = completion.choices[0]
        assert (choice.finish_reason, choice.message.content) == ("stop", "a cheap answer")
    seen = upstream.message_requests()[-1].messages
    assert [m["role"] for m in seen if m["role"] in ("user", "assistant")][-5:] == \
        ["user", "assistant", "user", "assistant", "user"]  # still one conversation


def test_responses_clients_see_progress_as_reasoning_summaries(gw: Gateway,
                                                               upstream: FakeUpstream) -> None:
    target = workspace(gw, "conv-responses") / "r.txt"
    upstream.script(step(ToolUse("Write", {"file_path": str(target), "content": "r"})),
                    Reply.text("done with r"))
    client = gw.client()
    with client.responses.stream(model="claude-code", input="write r",
                                 extra_headers={"X-Conversation-ID": "conv-responses"}
                                 ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.reasoning_summary_text.delta"]
        final = stream.get_final_response()
    assert "[Write] done" in "".join(deltas)
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert "[Write]" in final.output[0].summary[0].text  # type: ignore[union-attr]
    assert final.output_text == "done with r"
    assert target.read_text() == "r"


# -- confinement of names: Glob patterns, Grep globs and paths ------------------------

def outside_tree(tmp_path: Path, tag: str) -> Path:
    """A directory outside every workspace, its file names and contents canaries."""
    outside = tmp_path / f"OUTSIDE-DIR-{tag}"
    (outside / "deep").mkdir(parents=True)
    (outside / f"NAME-CANARY-{tag}.txt").write_text(f"CONTENT-CANARY-{tag}\n")
    (outside / "deep" / f"DEEP-NAME-CANARY-{tag}.txt").write_text(f"DEEP-CONTENT-{tag}\n")
    return outside


def calls_and_results(upstream: FakeUpstream) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each tool call, in the order the model made them, with its result, from the last
    request the CLI sent upstream (results come back in the order the calls finish)."""
    messages = upstream.message_requests()[-1].messages
    blocks = [b for m in messages if isinstance(m.get("content"), list) for b in m["content"]]
    results = {b["tool_use_id"]: b for b in blocks if b.get("type") == "tool_result"}
    return [(b, results[b["id"]]) for b in blocks if b.get("type") == "tool_use"]


def assert_denied_without_leaks(upstream: FakeUpstream, progress: str, secret: Path,
                                denied: int) -> None:
    """Every call was refused as a tool error, reported as failed progress, and nothing
    under the directory ``secret`` (names or contents) reached the model in any tool
    result. (A refusal may repeat the path the call itself named.)"""
    pairs = calls_and_results(upstream)
    assert len(pairs) == denied
    for use, result in pairs:
        assert result.get("is_error") is True, (use, result)
        assert "outside this conversation's workspace" in result_text(result), (use, result)
    assert progress.count("failed: Permission denied") == denied, progress
    named = json.dumps([use["input"] for use, _ in pairs])
    seen = json.dumps([result_text(r) for s in upstream.message_requests()
                       for m in s.messages if isinstance(m.get("content"), list)
                       for r in m["content"] if r.get("type") == "tool_result"])
    for path in secret.rglob("*"):
        assert path.name not in seen or path.name in named, path
        # An empty file (the CLI's own fresh log under a canary HOME) has nothing to leak.
        content = path.read_text(errors="replace").strip() if path.is_file() else ""
        assert not content or content not in seen, path


def test_glob_with_an_absolute_pattern_outside_is_denied(gw: Gateway, upstream: FakeUpstream,
                                                         tmp_path: Path) -> None:
    outside = outside_tree(tmp_path, "ABS")
    ws = workspace(gw, "conv-glob-abs")
    upstream.script(step(ToolUse("Glob", {"pattern": f"{outside}/*"}),
                         ToolUse("Glob", {"pattern": f"{outside}/**/*", "path": str(ws)})),
                    Reply.text("nothing there"))
    progress, answer = run_agent(gw, "conv-glob-abs", "list files elsewhere")
    assert "[Glob] failed: Permission denied" in progress and answer == "nothing there"
    assert_denied_without_leaks(upstream, progress, outside, denied=2)


def test_glob_with_dotdot_in_the_pattern_is_denied(gw: Gateway, upstream: FakeUpstream,
                                                   tmp_path: Path) -> None:
    outside = outside_tree(tmp_path, "DOTDOT")
    ws = workspace(gw, "conv-glob-dotdot")
    ws.mkdir(parents=True)
    up = os.path.relpath(outside, ws)  # ../../.. up out of the workspace, then down
    upstream.script(step(ToolUse("Glob", {"pattern": f"{ws}/{up}/*"}),
                         ToolUse("Glob", {"pattern": f"{up}/**/*.txt"}),
                         ToolUse("Glob", {"pattern": f"**/../{up}/*"})),
                    Reply.text("no climbing"))
    progress, _ = run_agent(gw, "conv-glob-dotdot", "climb out")
    assert_denied_without_leaks(upstream, progress, outside, denied=3)


def test_glob_with_a_home_directory_is_denied(gw: Gateway, upstream: FakeUpstream) -> None:
    home = Path(gw.env["CLAUDE_CODE__AGENT__WORKSPACE_ROOT"]).parent / "home"
    upstream.script(step(ToolUse("Glob", {"pattern": "~/*"}),
                         ToolUse("Glob", {"pattern": "*.txt", "path": "~"}),
                         ToolUse("Grep", {"pattern": "CANARY", "glob": "~/*"})),
                    Reply.text("not home"))
    progress, _ = run_agent(gw, "conv-glob-home", "look at home")
    assert_denied_without_leaks(upstream, progress, home, denied=3)


def test_a_symlink_in_the_workspace_pointing_outside(gw: Gateway, upstream: FakeUpstream,
                                                     tmp_path: Path) -> None:
    outside = outside_tree(tmp_path, "LINK")
    ws = workspace(gw, "conv-glob-link")
    ws.mkdir(parents=True)
    (ws / "link").symlink_to(outside)
    (ws / "mine.txt").write_text("mine\n")
    upstream.script(step(ToolUse("Glob", {"pattern": f"{ws}/link/*"}),
                         ToolUse("Glob", {"pattern": "link/**/*"}),
                         ToolUse("Grep", {"pattern": "CONTENT", "path": "link"})),
                    Reply.text("followed nothing"))
    progress, _ = run_agent(gw, "conv-glob-link", "follow the link")
    assert_denied_without_leaks(upstream, progress, outside, denied=3)
    # The model never named the link's target: not even the directory's name gets out.
    assert all(outside.name not in json.dumps(s.body) for s in upstream.message_requests())


def test_paths_through_a_symlink_and_dotdot_are_read_as_the_cli_reads_them(
        gw: Gateway, upstream: FakeUpstream) -> None:
    """`hop` points two levels down, so the kernel reads `hop/../..` as the workspace
    while the CLI collapses `..` by name first and lands in the workspaces' parent:
    another conversation's files."""
    theirs = workspace(gw, "conv-victim")
    theirs.mkdir(parents=True)
    (theirs / "VICTIM-NAME-CANARY.txt").write_text("VICTIM-CONTENT-CANARY\n")
    (theirs / "diary.txt").write_text("VICTIM-DIARY-CANARY\n")
    ws = workspace(gw, "conv-hop")
    (ws / "sub" / "deeper").mkdir(parents=True)
    (ws / "hop").symlink_to(ws / "sub" / "deeper")
    upstream.script(step(ToolUse("Grep", {"pattern": "CANARY", "path": "hop/../../conv-victim",
                                          "output_mode": "content"}),
                         ToolUse("Glob", {"pattern": "*", "path": f"{ws}/hop/../../conv-victim"}),
                         ToolUse("Read", {"file_path":
                                          f"{ws}/hop/../../conv-victim/diary.txt"})),
                    Reply.text("stayed home"))
    progress, _ = run_agent(gw, "conv-hop", "read the neighbours")
    assert_denied_without_leaks(upstream, progress, theirs, denied=3)


def test_grep_glob_and_path_outside_are_denied(gw: Gateway, upstream: FakeUpstream,
                                               tmp_path: Path) -> None:
    outside = outside_tree(tmp_path, "GREP")
    ws = workspace(gw, "conv-grep")
    ws.mkdir(parents=True)
    up = os.path.relpath(outside, ws)
    upstream.script(step(ToolUse("Grep", {"pattern": "CONTENT", "glob": f"{outside}/*"}),
                         ToolUse("Grep", {"pattern": "CONTENT", "glob": f"{up}/**"}),
                         ToolUse("Grep", {"pattern": "CONTENT", "path": str(outside),
                                          "output_mode": "content"})),
                    Reply.text("nothing found"))
    progress, _ = run_agent(gw, "conv-grep", "search elsewhere")
    assert "[Grep] failed: Permission denied" in progress
    assert_denied_without_leaks(upstream, progress, outside, denied=3)


def test_globs_inside_the_workspace_still_work(gw: Gateway, upstream: FakeUpstream,
                                               tmp_path: Path) -> None:
    """Relative, absolute and additional-dir globs run. The bundled CLI's Glob and Grep
    walk without following symbolic links, so `**` over a workspace holding a link out
    is allowed and finds only the workspace's own files (a CLI that starts following
    links fails here)."""
    outside = outside_tree(tmp_path, "WALK")
    ws = workspace(gw, "conv-glob-ok")
    (ws / "notes").mkdir(parents=True)
    (ws / "notes" / "today.md").write_text("in-workspace note\n")
    (ws / "link").symlink_to(outside)
    shared = Path(gw.env["CLAUDE_CODE__FILE_ACCESS__ADDITIONAL_DIRS"].strip('[]"'))
    upstream.script(step(ToolUse("Glob", {"pattern": "**/*"}),
                         ToolUse("Glob", {"pattern": f"{ws}/notes/*.md"}),
                         ToolUse("Glob", {"pattern": "*.txt", "path": str(shared)}),
                         ToolUse("Grep", {"pattern": "note|CONTENT", "glob": "**/*",
                                          "output_mode": "content"}),
                         ToolUse("Grep", {"pattern": "shared", "path": str(shared),
                                          "glob": "*.txt"})),
                    Reply.text("found them"))
    progress, answer = run_agent(gw, "conv-glob-ok", "find my notes")
    assert "failed" not in progress and answer == "found them"
    found = [result_text(r) for _, r in calls_and_results(upstream)]
    assert found[:2] == ["notes/today.md", "notes/today.md"]
    assert found[2].endswith("notes.txt")
    assert found[3] == "notes/today.md:1:in-workspace note"
    assert "notes.txt" in found[4]


def test_every_default_agent_tool_is_offered_by_the_bundled_cli(gw: Gateway,
                                                                upstream: FakeUpstream) -> None:
    """The default `agent.tools` names only tools the bundled CLI has: a CLI upgrade
    that drops or renames one fails here (the CLI ignores names it does not know)."""
    upstream.script(Reply.text("ready"))
    run_agent(gw, "conv-tools", "which tools?")
    offered = {t["name"] for t in upstream.message_requests()[0].body["tools"]}
    assert set(AGENT_TOOLS) <= offered, sorted(set(AGENT_TOOLS) - offered)
