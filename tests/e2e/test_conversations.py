"""Conversations: warm continuation, scoping, branching, explicit ids, restarts, eviction.

How a test tells a warm continuation from a replayed history: turn 1's upstream
answer carries a thinking block with a signature. A live session keeps it, so
turn 2's upstream request contains it; a replay is built from what the client
sent back (text only), so it does not.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply, Seen, Text, Thinking
from tests.conftest import Gateway, start_gateway

pytestmark = pytest.mark.e2e


def answer(text: str, signature: str) -> Reply:
    return Reply(blocks=[Thinking(f"thinking about {text}", signature=signature), Text(text)])


def signatures(seen: Seen) -> list[str]:
    return [b["signature"] for m in seen.messages if m["role"] == "assistant"
            for b in m["content"] if isinstance(b, dict) and b.get("type") == "thinking"]


def turns(seen: Seen) -> list[tuple[str, str]]:
    out = []
    for m in seen.messages:
        if m["role"] not in ("user", "assistant"):
            continue
        content = m["content"]
        text = content if isinstance(content, str) else "".join(
            b.get("text", "") for b in content if b.get("type") == "text")
        out.append((m["role"], text))
    return out


def chat(gateway: Gateway, messages: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", {})
    body = {"model": "sonnet", "messages": messages, **extra}
    response = httpx.post(gateway.base_url + "/chat/completions", json=body, headers=headers,
                          timeout=60)
    assert response.status_code == 200, response.text
    return response


def reply_of(response: httpx.Response) -> str:
    return str(response.json()["choices"][0]["message"]["content"])


def test_a_conversation_continues_warm_turn_after_turn(gateway: Gateway,
                                                       upstream: FakeUpstream) -> None:
    before = gateway.health()["conversations"].get("warm_continuations", 0)
    upstream.script(answer("Hi Zed.", "sig-t1"), answer("You are Zed.", "sig-t2"),
                    Reply.text("Yes, Zed."))
    history: list[dict[str, Any]] = [{"role": "user", "content": "My name is Zed."}]
    first = chat(gateway, history)
    conversation = first.headers["x-conversation-id"]
    assert first.json()["conversation_id"] == conversation
    for question in ("What is my name?", "Are you sure?"):
        history += [{"role": "assistant", "content": reply_of(first)},
                    {"role": "user", "content": question}]
        first = chat(gateway, history)
        assert first.headers["x-conversation-id"] == conversation
    seen = upstream.message_requests()
    # Turns 2 and 3 were delivered to the live session: the original thinking is there.
    assert signatures(seen[1]) == ["sig-t1"]
    assert signatures(seen[2]) == ["sig-t1", "sig-t2"]
    assert turns(seen[2]) == [("user", "My name is Zed."), ("assistant", "Hi Zed."),
                              ("user", "What is my name?"), ("assistant", "You are Zed."),
                              ("user", "Are you sure?")]
    health = gateway.health()
    assert health["conversations"]["warm_continuations"] == before + 2
    stored = httpx.get(f"{gateway.base_url}/conversations/{conversation}", timeout=10).json()
    assert stored["turns"] == 3 and len(stored["messages"]) == 6
    assert stored["messages"][-1] == {"role": "assistant",
                                      "content": [{"type": "text", "text": "Yes, Zed."}]}


def test_identical_histories_of_two_callers_never_share_a_session(
        gateway: Gateway, upstream: FakeUpstream) -> None:
    opening = [{"role": "user", "content": "Remember the number 7."}]
    upstream.script(answer("Noted: 7.", "sig-alice"), answer("Noted: 7.", "sig-bob"))
    alice = chat(gateway, opening, user="alice")
    bob = chat(gateway, opening, user="bob")
    assert alice.headers["x-conversation-id"] != bob.headers["x-conversation-id"]
    follow = [*opening, {"role": "assistant", "content": "Noted: 7."},
              {"role": "user", "content": "Which number?"}]
    upstream.script(Reply.text("7"), Reply.text("7"))
    bob_2 = chat(gateway, follow, user="bob")
    assert signatures(upstream.message_requests()[-1]) == ["sig-bob"]
    alice_2 = chat(gateway, follow, user="alice")
    assert signatures(upstream.message_requests()[-1]) == ["sig-alice"]
    assert bob_2.headers["x-conversation-id"] == bob.headers["x-conversation-id"]
    assert alice_2.headers["x-conversation-id"] == alice.headers["x-conversation-id"]


def test_an_edited_history_branches_instead_of_continuing(gateway: Gateway,
                                                          upstream: FakeUpstream) -> None:
    upstream.script(answer("Blue is nice.", "sig-orig"), Reply.text("Red is nice too."))
    original = chat(gateway, [{"role": "user", "content": "I like blue."}])
    edited = chat(gateway, [{"role": "user", "content": "I like red."},
                            {"role": "assistant", "content": "Blue is nice."},
                            {"role": "user", "content": "And you?"}])
    assert edited.headers["x-conversation-id"] != original.headers["x-conversation-id"]
    seen = upstream.message_requests()[-1]
    assert signatures(seen) == []  # replayed, not continued from the blue session
    assert turns(seen)[0] == ("user", "I like red.")
    kept = httpx.get(f"{gateway.base_url}/conversations/"
                     f"{original.headers['x-conversation-id']}", timeout=10).json()
    assert kept["messages"][0]["content"] == [{"type": "text", "text": "I like blue."}]


@pytest.mark.parametrize("form", ["body", "header", "model"])
def test_explicit_ids_carry_the_history_for_clients_that_send_only_new_turns(
        gateway: Gateway, upstream: FakeUpstream, form: str) -> None:
    conversation = f"trip-{form}-{time.time_ns()}"

    def send(text: str) -> httpx.Response:
        extra: dict[str, Any] = {"body": {"conversation_id": conversation},
                                 "header": {"headers": {"X-Conversation-ID": conversation}},
                                 "model": {"model": f"sonnet:{conversation}"}}[form]
        return chat(gateway, [{"role": "user", "content": text}], **extra)

    upstream.script(Reply.text("Enjoy Oslo!"), Reply.text("To Oslo."))
    assert send("I am going to Oslo.").headers["x-conversation-id"] == conversation
    assert reply_of(send("Where am I going?")) == "To Oslo."
    assert turns(upstream.message_requests()[-1]) == [
        ("user", "I am going to Oslo."), ("assistant", "Enjoy Oslo!"),
        ("user", "Where am I going?")]
    stored = httpx.get(f"{gateway.base_url}/conversations/{conversation}", timeout=10).json()
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant", "user", "assistant"]


def test_conflicting_explicit_ids_are_refused(gateway: Gateway) -> None:
    response = httpx.post(gateway.base_url + "/chat/completions", timeout=30, json={
        "model": "sonnet:one", "conversation_id": "two",
        "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"


def test_conversations_api_lists_shows_and_deletes(gateway: Gateway,
                                                   upstream: FakeUpstream) -> None:
    upstream.script(Reply.text("stored answer"))
    created = chat(gateway, [{"role": "user", "content": "keep this"}])
    conversation = created.headers["x-conversation-id"]
    listed = httpx.get(gateway.base_url + "/conversations", timeout=10).json()
    assert listed["object"] == "list"
    assert conversation in [c["id"] for c in listed["data"]]
    shown = httpx.get(f"{gateway.base_url}/conversations/{conversation}", timeout=10).json()
    assert shown["messages"][0] == {"role": "user",
                                    "content": [{"type": "text", "text": "keep this"}]}
    assert shown["model"] == "claude-sonnet-5-5"
    holding = gateway.wait_idle()["pool"]["holding_conversations"]
    assert holding >= 1
    deleted = httpx.delete(f"{gateway.base_url}/conversations/{conversation}", timeout=10)
    assert deleted.json() == {"id": conversation, "object": "conversation.deleted",
                              "deleted": True}
    missing = httpx.get(f"{gateway.base_url}/conversations/{conversation}", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    # The worker that held it was reset: one live session fewer.
    gateway.wait_for(lambda h: h["pool"]["holding_conversations"] == holding - 1)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path


def _restart(upstream: FakeUpstream, store_dir: Path, name: str, **settings: str) -> Gateway:
    root = store_dir / name
    root.mkdir(exist_ok=True)
    gateway = start_gateway(upstream, root, store__path=str(store_dir / "shared.db"), **settings)
    gateway.wait_idle()
    return gateway


def test_conversations_survive_a_restart(upstream: FakeUpstream, store_dir: Path) -> None:
    upstream.reset()
    first = _restart(upstream, store_dir, "a")
    try:
        upstream.script(Reply.text("Noted, Oslo."))
        opened = chat(first, [{"role": "user", "content": "Trip: Oslo."}],
                      conversation_id="kept-across-restarts")
        implicit = chat(first, [{"role": "user", "content": "Colour: teal."}])
    finally:
        first.stop()
    second = _restart(upstream, store_dir, "b")
    try:
        upstream.script(Reply.text("Oslo."), Reply.text("Teal."))
        assert reply_of(chat(second, [{"role": "user", "content": "Where?"}],
                             conversation_id="kept-across-restarts")) == "Oslo."
        assert turns(upstream.message_requests()[-1])[:2] == [("user", "Trip: Oslo."),
                                                              ("assistant", "Noted, Oslo.")]
        again = chat(second, [{"role": "user", "content": "Colour: teal."},
                              {"role": "assistant", "content": reply_of(implicit)},
                              {"role": "user", "content": "Which colour?"}])
        assert again.headers["x-conversation-id"] == implicit.headers["x-conversation-id"]
        assert opened.headers["x-conversation-id"] == "kept-across-restarts"
    finally:
        second.stop()


def test_a_kill_mid_turn_loses_nothing_that_was_answered(upstream: FakeUpstream,
                                                         store_dir: Path) -> None:
    upstream.reset()
    first = _restart(upstream, store_dir, "a")
    cli_pids = [p.pid for p in first.cli_processes()]
    upstream.script(Reply.text("Answer one."), Reply.text("never delivered", first_delay=30))
    chat(first, [{"role": "user", "content": "Question one."}], conversation_id="crashy")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(first.base_url + "/chat/completions", timeout=1.5, json={
            "model": "sonnet", "conversation_id": "crashy",
            "messages": [{"role": "user", "content": "Question two."}]})
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait(10)
    second = _restart(upstream, store_dir, "b")
    try:
        upstream.script(Reply.text("Answer two."))
        assert reply_of(chat(second, [{"role": "user", "content": "Question two."}],
                             conversation_id="crashy")) == "Answer two."
        assert turns(upstream.message_requests()[-1]) == [
            ("user", "Question one."), ("assistant", "Answer one."), ("user", "Question two.")]
    finally:
        second.stop()
    # The killed gateway's CLI processes went away with it (their stdin closed).
    deadline = time.monotonic() + 10
    alive = cli_pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in cli_pids if _running(p)]
        time.sleep(0.2)
    assert alive == []


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(
        f"/proc/{pid}/stat").exists() else "X"
    return status not in ("Z", "X")


@pytest.fixture
def forgetful(upstream: FakeUpstream, tmp_path: Path) -> Iterator[Gateway]:
    upstream.reset()
    gateway = start_gateway(upstream, tmp_path, claude__hold_seconds="1")
    gateway.wait_idle()
    yield gateway
    gateway.stop()


def test_an_evicted_session_resumes_by_replay(forgetful: Gateway,
                                              upstream: FakeUpstream) -> None:
    upstream.script(answer("Hello Ana.", "sig-evicted"), Reply.text("You are Ana."))
    first = chat(forgetful, [{"role": "user", "content": "I am Ana."}])
    forgetful.wait_for(lambda h: h["pool"]["holding_conversations"] == 1)
    forgetful.wait_for(lambda h: h["pool"]["holding_conversations"] == 0, timeout=15)
    second = chat(forgetful, [{"role": "user", "content": "I am Ana."},
                              {"role": "assistant", "content": "Hello Ana."},
                              {"role": "user", "content": "Who am I?"}])
    assert reply_of(second) == "You are Ana."
    assert second.headers["x-conversation-id"] == first.headers["x-conversation-id"]
    assert signatures(upstream.message_requests()[-1]) == []  # rebuilt, not warm
    health = forgetful.health()
    assert health["conversations"]["replayed_histories"] == 1


def test_openai_client_conversation_round_trip(client: openai.OpenAI,
                                               upstream: FakeUpstream) -> None:
    upstream.script(answer("Four.", "sig-sdk"), Reply.text("Eight."))
    messages: list[Any] = [{"role": "user", "content": "2+2?"}]
    first = client.chat.completions.create(model="sonnet", messages=messages)
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "user", "content": "Double it?"}]
    second = client.chat.completions.create(model="sonnet", messages=messages)
    assert second.choices[0].message.content == "Eight."
    assert signatures(upstream.message_requests()[-1]) == ["sig-sdk"]
    assert second.model_extra is not None
    assert second.model_extra["conversation_id"] == first.model_extra["conversation_id"]  # type: ignore[index]


def test_least_recently_used_sessions_are_evicted_beyond_the_limit(
        upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reset()
    gateway = start_gateway(upstream, tmp_path, claude__max_live_conversations="1")
    try:
        gateway.wait_idle()
        upstream.script(answer("A noted.", "sig-a"), answer("B noted.", "sig-b"),
                        Reply.text("A again."), Reply.text("B again."))
        chat(gateway, [{"role": "user", "content": "Conversation A."}])
        chat(gateway, [{"role": "user", "content": "Conversation B."}])
        assert gateway.wait_idle()["pool"]["holding_conversations"] == 1
        chat(gateway, [{"role": "user", "content": "Conversation A."},
                       {"role": "assistant", "content": "A noted."},
                       {"role": "user", "content": "More A."}])
        assert signatures(upstream.message_requests()[-1]) == []  # A was evicted: replayed
        # Once A's turn is over (the CLI finishes it after the answer) it is the live one.
        assert gateway.wait_idle()["pool"]["holding_conversations"] == 1
        chat(gateway, [{"role": "user", "content": "Conversation B."},
                       {"role": "assistant", "content": "B noted."},
                       {"role": "user", "content": "More B."}])
        # B was the live one until A's answer took the only place (LRU again).
        assert signatures(upstream.message_requests()[-1]) == []
        assert gateway.wait_idle()["pool"]["holding_conversations"] == 1
    finally:
        gateway.stop()


def test_a_history_opening_with_an_assistant_greeting_works_twice(
        gateway: Gateway, upstream: FakeUpstream) -> None:
    greeting = {"role": "assistant", "content": "Hello! How can I help?"}
    upstream.script(Reply.text("Sure."), Reply.text("Again."), Reply.text("Unrelated."))
    first = chat(gateway, [greeting, {"role": "user", "content": "Help me."}])
    second = chat(gateway, [greeting, {"role": "user", "content": "Help me."},
                            {"role": "assistant", "content": "Sure."},
                            {"role": "user", "content": "More."}])
    assert reply_of(second) == "Again."
    assert turns(upstream.message_requests()[-1])[0] == ("assistant", "Hello! How can I help?")
    assert reply_of(chat(gateway, [{"role": "user", "content": "New topic."}])) == "Unrelated."
    assert turns(upstream.message_requests()[-1]) == [("user", "New topic.")]
    assert first.headers["x-conversation-id"] == second.headers["x-conversation-id"]
