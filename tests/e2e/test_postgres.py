"""A gateway on a PostgreSQL store (store.url): keys made by the ``keys`` command
against that URL work, a conversation and a stored Response continue after a
restart, and the ledger the command reads is the one the gateway wrote."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from claude_code_api.testing.fake_upstream import FakeUpstream, Reply
from tests.conftest import Gateway, keys_cli, start_gateway
from tests.e2e.test_conversations import turns
from tests.postgres import temporary_database

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def store_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


def serve(upstream: FakeUpstream, root: Path, url: str) -> Gateway:
    root.mkdir()
    gateway = start_gateway(upstream, root, store__url=url, auth__required="true")
    gateway.wait_idle()
    return gateway


def test_keys_conversations_and_responses_live_in_postgresql(
        upstream: FakeUpstream, tmp_path: Path, store_url: str) -> None:
    upstream.reset()
    made = keys_cli(store_url, "create", "--name", "team")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    first = serve(upstream, tmp_path / "a", store_url)
    try:
        client = first.client(api_key=token)
        with pytest.raises(openai.AuthenticationError):
            first.client(api_key=token[:-4] + "0000").models.list()
        upstream.script(Reply.text("Noted, Oslo."), Reply.text("Noted, teal."))
        reply = client.chat.completions.create(
            model="sonnet", messages=[{"role": "user", "content": "Trip: Oslo."}],
            extra_body={"conversation_id": "pg-kept"})
        assert reply.choices[0].message.content == "Noted, Oslo."
        stored = client.responses.create(model="sonnet", input="Colour: teal.")
        assert stored.output_text == "Noted, teal."
    finally:
        first.stop()
    # Nothing went to the SQLite file store.path names.
    assert not (tmp_path / "a" / "gateway.db").exists()
    second = serve(upstream, tmp_path / "b", store_url)
    try:
        client = second.client(api_key=token)
        upstream.script(Reply.text("Oslo."), Reply.text("Teal."))
        again = client.chat.completions.create(
            model="sonnet", messages=[{"role": "user", "content": "Where?"}],
            extra_body={"conversation_id": "pg-kept"})
        assert again.choices[0].message.content == "Oslo."
        assert turns(upstream.message_requests()[-1])[:2] == [("user", "Trip: Oslo."),
                                                              ("assistant", "Noted, Oslo.")]
        follow = client.responses.create(model="sonnet", input="Which colour?",
                                         previous_response_id=stored.id)
        assert follow.output_text == "Teal."
        assert turns(upstream.message_requests()[-1])[:2] == [
            ("user", "Colour: teal."), ("assistant", "Noted, teal.")]
    finally:
        second.stop()
    usage = keys_cli(store_url, "usage", "team", "--json")
    assert usage.returncode == 0, usage.stderr
    assert sum(row["requests"] for row in json.loads(usage.stdout)) == 4


def test_an_unreachable_postgresql_is_a_clear_error(tmp_path: Path) -> None:
    url = "postgresql://postgres:hunter2secret@127.0.0.1:1/nowhere"
    done = keys_cli(url, "list")
    assert done.returncode == 2
    assert done.stderr.startswith("claude-code-api: PostgreSQL at "
                                  "postgresql://postgres:***@127.0.0.1:1/nowhere: ")
    assert "hunter2secret" not in done.stderr and "Traceback" not in done.stderr
