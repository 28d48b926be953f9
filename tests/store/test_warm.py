"""The warm conversation registry (store/warm.py), the same on SQLite and PostgreSQL."""

from __future__ import annotations

from claude_code_api.store.conversations import Conversation, ConversationStore
from claude_code_api.store.database import Database
from claude_code_api.store.warm import WarmStore

STALE = 3.0


def _conversation(db: Database, cid: str, fingerprint: str) -> None:
    ConversationStore(db).save(Conversation(id=cid, scope="k:", fingerprint=fingerprint))


def test_a_conversation_is_held_by_the_replica_whose_workers_hold_its_state(
        db: Database) -> None:
    warm = WarmStore(db)
    _conversation(db, "c1", "f1")
    _conversation(db, "c2", "f2")
    assert warm.holder("c1", STALE) is None
    warm.sync("a:8080", ["f1"], STALE, now=100.0)
    warm.sync("b:8080", ["f2", "f-unknown"], STALE, now=100.0)
    assert warm.holder("c1", STALE, now=100.5) == "a:8080"
    assert warm.holder("c2", STALE, now=100.5) == "b:8080"
    assert warm.holder("missing", STALE, now=100.5) is None
    assert warm.holders(STALE, now=100.5) == {"a:8080": 1, "b:8080": 2}


def test_a_state_let_go_or_moved_on_leaves_the_registry(db: Database) -> None:
    warm = WarmStore(db)
    _conversation(db, "c1", "f1")
    warm.sync("a:8080", ["f1"], STALE, now=100.0)
    # The next turn moved the conversation to a new state, held by b now.
    _conversation(db, "c1", "f1b")
    warm.sync("a:8080", [], STALE, now=101.0)
    assert warm.holder("c1", STALE, now=101.0) is None
    warm.sync("b:8080", ["f1b"], STALE, now=101.0)
    assert warm.holder("c1", STALE, now=101.0) == "b:8080"
    warm.let_go("b:8080", "f1b")
    assert warm.holder("c1", STALE, now=101.0) is None
    warm.hold("f1b", "c:8080")
    assert warm.holder("c1", STALE) == "c:8080"
    warm.let_go("c:8080")
    assert warm.holders(STALE) == {}


def test_a_replica_that_stopped_refreshing_holds_nothing(db: Database) -> None:
    warm = WarmStore(db)
    _conversation(db, "c1", "f1")
    warm.sync("dead:8080", ["f1"], STALE, now=100.0)
    assert warm.holder("c1", STALE, now=102.9) == "dead:8080"
    assert warm.holder("c1", STALE, now=103.1) is None
    # Any replica's next refresh deletes the stale rows.
    warm.sync("live:8080", [], STALE, now=104.0)
    assert db.run("SELECT COUNT(*) FROM warm_conversations").rows[0][0] == 0
