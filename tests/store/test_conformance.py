"""Every store operation, the same answers on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from claude_code_api.access.keys import KeyStore
from claude_code_api.batch.store import BatchStore, StoredFile
from claude_code_api.events import Message, Usage
from claude_code_api.store import migrations, open_database
from claude_code_api.store.conversations import Conversation, ConversationStore
from claude_code_api.store.database import Database, StoreError


# -- migrations ---------------------------------------------------------------------
def test_a_new_store_is_at_the_latest_version_and_migrating_again_changes_nothing(
        db: Database) -> None:
    assert migrations.version(db) == migrations.LATEST == 4
    assert migrations.migrate(db) == (4, 4)
    tables = db.tables()
    assert {"schema_version", "api_keys", "usage", "conversations", "responses", "files",
            "batches", "batch_results", "batch_items", "warm_conversations"} <= set(tables)
    rows = db.run("SELECT version, name FROM schema_version ORDER BY version").rows
    assert [tuple(r) for r in rows] == [
        (1, "conversations, responses, keys, usage, files, batches"),
        (2, "batch item leases"), (3, "admin keys"), (4, "warm conversation registry")]
    assert "admin" in db.run("SELECT * FROM api_keys").names


def test_a_store_newer_than_the_code_is_refused(target: str) -> None:
    db = open_database(target)
    db.run("INSERT INTO schema_version (version, name, applied_at) VALUES (99, 'x', 0)")
    db.close()
    with pytest.raises(StoreError, match="schema version 99, newer than this "
                                         "claude-code-api knows"):
        open_database(target)


def test_processes_migrating_one_store_at_once_apply_each_migration_once(
        target: str) -> None:
    errors: list[BaseException] = []

    def opening() -> None:
        try:
            open_database(target, pool_size=1).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opening) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    db = open_database(target)
    assert [r[0] for r in db.run("SELECT version FROM schema_version").rows] == [1, 2, 3, 4]
    db.close()


# -- conversations and stored responses -------------------------------------------------
def _conversation(cid: str, scope: str, fp: str = "f") -> Conversation:
    return Conversation(id=cid, scope=scope, fingerprint=fp, system="be brief", model="sonnet",
                        messages=[Message("user", ({"type": "text", "text": "héllo ✓"},)),
                                  Message("assistant", ({"type": "text", "text": "hi"},))],
                        turns=1)


def test_conversations_are_saved_found_listed_and_deleted(db: Database) -> None:
    store = ConversationStore(db)
    first = _conversation("c1", "alice:", "fp1")
    store.save(first)
    got = store.get("c1")
    assert got is not None and got.messages == first.messages and got.system == "be brief"
    assert (got.turns, got.model, got.scope) == (1, "sonnet", "alice:")
    assert store.find("alice:", "fp1") == got and store.find("bob:", "fp1") is None
    time.sleep(0.01)
    first.turns = 2
    first.messages.append(Message("user", ({"type": "text", "text": "again"},)))
    store.save(first)
    assert store.get("c1").turns == 2  # type: ignore[union-attr]
    assert len(store.get("c1").messages) == 3  # type: ignore[union-attr]
    store.save(_conversation("c2", "bob:end-user"))
    assert [c.id for c in store.recent()] == ["c2", "c1"]
    assert [c.id for c in store.recent(owner="alice")] == ["c1"]
    assert [c.id for c in store.recent(owner="bob")] == ["c2"]
    assert [c.id for c in store.recent(limit=1)] == ["c2"]
    assert store.delete("c1") is True and store.delete("c1") is False
    assert store.get("c1") is None


def test_stored_responses_are_kept_replaced_and_deleted(db: Database) -> None:
    store = ConversationStore(db)
    messages = [Message("user", ({"type": "text", "text": "q"},))]
    store.save_response("resp_1", "alice:", {"id": "resp_1", "n": 1}, [{"x": 1}], messages)
    got = store.get_response("resp_1")
    assert got is not None
    assert (got.scope, got.body, got.input_items, got.messages) == \
        ("alice:", {"id": "resp_1", "n": 1}, [{"x": 1}], messages)
    store.save_response("resp_1", "alice:", {"id": "resp_1", "n": 2}, [], [])
    assert store.get_response("resp_1").body["n"] == 2  # type: ignore[union-attr]
    assert store.delete_response("resp_1") is True
    assert store.delete_response("resp_1") is False and store.get_response("resp_1") is None


# -- keys and the ledger ------------------------------------------------------------------
def test_keys_are_created_authenticated_found_changed_and_revoked(db: Database) -> None:
    keys = KeyStore(db)
    key, token = keys.create("team", rpm=5, budget_usd=2.5, models=["sonnet"], agent=True,
                             max_turns=3)
    assert keys.authenticate(token) == key
    assert keys.authenticate(token[:-1] + ("0" if token[-1] != "0" else "1")) is None
    assert keys.find("team") == key and keys.find(key.id) == key and keys.find(token) == key
    assert (key.rpm, key.budget_usd, key.models, key.agent, key.max_turns) == \
        (5, 2.5, ("sonnet",), True, 3)
    with pytest.raises(ValueError, match="an active key named 'team' exists"):
        keys.create("team")
    assert keys.any_active() is True
    changed = keys.update("team", rpm=0, models=[], concurrency=2, agent=False)
    assert changed is not None
    assert (changed.rpm, changed.models, changed.concurrency, changed.agent) == \
        (None, None, 2, False)
    other, _ = keys.create("other")
    assert [k.name for k in keys.all()] == ["team", "other"]
    revoked = keys.revoke("team")
    assert revoked is not None and not revoked.active
    assert keys.authenticate(token) is None and keys.find("team") is None
    assert [k.name for k in keys.all()] == ["other"]
    assert [k.name for k in keys.all(include_revoked=True)] == ["team", "other"]
    assert keys.get(key.id) == revoked
    keys.revoke(other.id)
    assert keys.any_active() is False


def test_the_ledger_adds_up_per_key_model_and_day(db: Database) -> None:
    keys = KeyStore(db)
    key, _ = keys.create("spender", budget_usd=1.0)
    costs = [0.1, 0.2, 0.000123]
    for cost in costs:
        keys.charge(key.id, "sonnet", Usage(input_tokens=10, output_tokens=5,
                                            cache_read_input_tokens=2), cost)
    keys.charge(key.id, "sonnet", Usage(), 0.0, cached=True)
    keys.charge(key.id, "sonnet", Usage(output_tokens=1), 0.05, counted=False)
    keys.charge(key.id, "haiku", Usage(input_tokens=1), 0.01)
    expected = sum([*costs, 0.05])
    after = keys.get(key.id)
    assert after is not None and after.spent_usd == pytest.approx(expected + 0.01, abs=1e-12)
    assert after.last_used_at is not None
    rows = {r["model"]: r for r in keys.usage(key.id)}
    sonnet = rows["sonnet"]
    assert (sonnet["requests"], sonnet["cached_requests"], sonnet["input_tokens"],
            sonnet["output_tokens"], sonnet["cache_read_tokens"]) == (3, 1, 30, 16, 6)
    assert sonnet["cost_usd"] == pytest.approx(expected, abs=1e-12)
    assert rows["haiku"]["requests"] == 1
    assert keys.usage("nobody") == [] and len(keys.usage()) == 2
    reset = keys.update(key.id, reset_spent=True)
    assert reset is not None and reset.spent_usd == 0


def test_concurrent_charges_lose_no_money(db: Database) -> None:
    keys = KeyStore(db)
    key, _ = keys.create("busy")

    def spend() -> None:
        for _ in range(25):
            keys.charge(key.id, "sonnet", Usage(output_tokens=1), 0.25)

    threads = [threading.Thread(target=spend) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert keys.get(key.id).spent_usd == 25.0  # type: ignore[union-attr]  # 0.25 is exact
    assert keys.usage(key.id)[0]["requests"] == 100


# -- files and batches ------------------------------------------------------------------
def _batch(batch_id: str, status: str = "in_progress", total: int = 3,
           created_at: int = 100) -> dict[str, Any]:
    return {"id": batch_id, "object": "batch", "endpoint": "/v1/chat/completions",
            "input_file_id": "file-1", "completion_window": "24h", "status": status,
            "created_at": created_at,
            "request_counts": {"total": total, "completed": 0, "failed": 0}}


def test_files_are_kept_listed_newest_first_and_deleted(db: Database) -> None:
    store = BatchStore(db)
    content = b"\x00binary\xff" * 100
    first = StoredFile("file-1", "alice", "in.jsonl", "batch", len(content), 100)
    second = StoredFile("file-2", "alice", "out.jsonl", "batch_output", 3, 100)
    store.add_file(first, content)
    store.add_file(second, b"abc")
    assert store.file("file-1") == first and store.content("file-1") == content
    assert store.files("alice") == [second, first]  # same second: the later one first
    assert store.files("alice", "batch") == [first] and store.files("bob") == []
    assert store.delete_file("file-1") is True and store.delete_file("file-1") is False
    assert store.file("file-1") is None and store.content("file-1") is None


def test_batches_are_kept_listed_and_moved_on_only_from_the_state_expected(
        db: Database) -> None:
    store = BatchStore(db)
    store.save_batch("alice", _batch("b1", "validating"))
    store.save_batch("alice", _batch("b2"))
    store.save_batch("bob", _batch("b3", "completed"))
    assert store.batch("b1") == ("alice", _batch("b1", "validating"))
    assert [b["id"] for b in store.batches("alice")] == ["b2", "b1"]
    assert [b["id"] for _, b in store.unfinished()] == ["b1", "b2"]
    assert store.update_batch(_batch("b1"), ("validating",)) is True
    assert store.update_batch(_batch("b1", "cancelling"), ("validating",)) is False
    assert store.batch("b1")[1]["status"] == "in_progress"  # type: ignore[index]
    assert store.batch("nope") is None


def test_items_are_claimed_once_answered_once_and_the_batch_finished_once(
        db: Database) -> None:
    store = BatchStore(db)
    store.save_batch("alice", _batch("b1", total=3))
    assert store.open_items("b1", 3) == 3 and store.open_items("b1", 3) == 0
    assert store.pending("b1") == 3 and store.claimable("b1") == 3
    assert store.claim("b1", "r1", 60) == 0
    assert store.claim("b1", "r2", 60) == 1
    assert store.claimable("b1") == 1
    assert store.add_result("b1", 1, False, {"custom_id": "b"}) is True
    assert store.add_result("b1", 1, True, {"custom_id": "b"}) is False  # once
    assert store.add_result("b1", 0, True, {"custom_id": "a"}) is True
    assert store.done("b1") == {0, 1} and store.counts("b1") == (1, 1)
    assert [ok for ok, _ in store.results("b1")] == [True, False]
    assert store.pending("b1") == 1
    out = StoredFile("file-9", "alice", "b1_output.jsonl", "batch_output", 1, 101)
    assert store.finish({**_batch("b1", "completed"), "output_file_id": "file-9"},
                        [(out, b"x")]) is True
    assert store.finish(_batch("b1", "completed"), [(out, b"y")]) is False
    assert store.content("file-9") == b"x" and store.unfinished() == []
    assert store.results("b1") == [] and store.pending("b1") == 0
    assert store.claim("b1", "r1", 60) is None


def test_a_lease_that_ends_lets_another_holder_take_the_item(db: Database) -> None:
    store = BatchStore(db)
    store.save_batch("alice", _batch("b1", total=2))
    store.open_items("b1", 2)
    assert store.claim("b1", "dead", 0.2) == 0
    assert store.claim("b1", "live", 60) == 1
    assert store.claim("b1", "live", 60) is None  # item 0 is still held
    time.sleep(0.3)
    assert store.claim("b1", "live", 60) == 0  # the dead holder's lease ended
    assert store.renew("live", 60) == 2 and store.renew("dead", 60) == 0
    store.release("live")
    assert store.claimable("b1") == 2
    store.claim("b1", "x", 60)
    store.release()
    assert store.claimable("b1") == 2


def test_only_a_batch_in_progress_gives_out_items(db: Database) -> None:
    store = BatchStore(db)
    store.save_batch("alice", _batch("b1", total=2))
    store.open_items("b1", 2)
    store.update_batch(_batch("b1", "cancelling"), ("in_progress",))
    assert store.claim("b1", "r1", 60) is None
    store.save_batch("alice", _batch("b2", "validating"))
    assert store.open_items("b2", 2) == 0


def test_a_batch_from_before_leases_gets_rows_for_its_unanswered_items(
        db: Database) -> None:
    store = BatchStore(db)
    store.save_batch("alice", _batch("b1", total=3))
    db.run("INSERT INTO batch_results (batch_id, idx, ok, line) VALUES ('b1', 1, 1, '{}')")
    assert store.open_items("b1", 3) == 2
    assert {store.claim("b1", "r", 60), store.claim("b1", "r", 60)} == {0, 2}


def test_holders_claiming_at_once_never_get_the_same_item(db: Database) -> None:
    store = BatchStore(db)
    store.save_batch("alice", _batch("b1", total=40))
    store.open_items("b1", 40)
    claimed: list[int] = []
    lock = threading.Lock()

    def worker(holder: str) -> None:
        while (index := store.claim("b1", holder, 60)) is not None:
            with lock:
                claimed.append(index)

    threads = [threading.Thread(target=worker, args=(f"r{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == list(range(40))
