"""Which conversation a request belongs to, and its durable record.

OpenAI clients resend the whole history; others name a conversation and send
only what is new. ``locate`` works out the full history either way:

- an explicit id (body ``conversation_id``, ``X-Conversation-ID``, or a model
  suffix ``sonnet:my-conv``): the request continues the stored conversation when
  its messages extend it, appends when it sends only new turns, and branches
  (replaces the stored history) when it rewrites earlier turns;
- no id: the conversation whose state fingerprint equals the request's history,
  within the caller's scope, continues; otherwise a new conversation starts. An
  edited history matches nothing, so it never continues the wrong one.

``record`` stores the history plus the answer after every complete response.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace

from ..errors import Conflict, InvalidRequest, NotFound
from ..events import Answer, Message, Session, TurnEnd, TurnEvent, TurnRequest, fingerprint
from ..store.conversations import Conversation, ConversationStore

_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


@dataclass
class Located:
    conversation: Conversation
    turn: TurnRequest
    session: Session
    created: bool = False
    branched: bool = False


def valid_id(conversation_id: str, param: str) -> str:
    if not _ID.match(conversation_id):
        raise InvalidRequest("conversation ids are 1-128 letters, digits, '_', '.' or '-'",
                             param=param)
    return conversation_id


class Conversations:
    def __init__(self, store: ConversationStore) -> None:
        self.store = store

    def locate(self, scope: str, turn: TurnRequest, explicit: str | None = None) -> Located:
        if explicit is not None:
            return self._explicit(scope, turn, explicit)
        state = fingerprint(scope, turn.system, turn.tools, turn.history)
        found = self.store.find(scope, state) if turn.history else None
        if found is not None:
            return Located(found, turn, Session(scope))
        conversation = Conversation(id="conv_" + uuid.uuid4().hex[:24], scope=scope)
        return Located(conversation, turn, Session(scope), created=True)

    def transient(self, scope: str, turn: TurnRequest) -> Located:
        """A conversation of one turn that is never stored (see ``Turns.run``)."""
        conversation = Conversation(id="conv_" + uuid.uuid4().hex[:24], scope=scope)
        return Located(conversation, turn, Session(scope), created=True)

    def _explicit(self, scope: str, turn: TurnRequest, conversation_id: str) -> Located:
        stored = self.store.get(conversation_id)
        if stored is None:
            fresh = Conversation(id=conversation_id, scope=scope)
            return Located(fresh, turn, Session(scope), created=True)
        if stored.scope != scope:
            raise Conflict(f"the conversation id `{conversation_id}` is taken",
                           param="conversation_id")
        sent = [*turn.history, Message("user", turn.prompt)]
        known = stored.messages
        session = Session(scope)
        if _same(sent[:len(known)], known) and len(sent) > len(known):
            return Located(stored, turn, session)
        if not any(m.role == "assistant" for m in turn.history):
            # Only new turns were sent: they follow the stored history.
            history = _join(known, list(turn.history))
            system = turn.system if turn.system is not None else stored.system
            return Located(stored, replace(turn, history=tuple(history), system=system), session)
        return Located(stored, turn, session, branched=True)

    def record(self, located: Located, answer: Answer, model: str) -> Conversation:
        turn = located.turn
        conversation = located.conversation
        conversation.messages = [*turn.history, Message("user", turn.prompt), answer.message()]
        conversation.system = turn.system
        conversation.model = model
        conversation.turns += 1
        conversation.fingerprint = fingerprint(located.session.scope, turn.system, turn.tools,
                                               conversation.messages)
        self.store.save(conversation)
        return conversation

    async def recording(self, located: Located, events: AsyncGenerator[TurnEvent, None],
                        model: str) -> AsyncGenerator[TurnEvent, None]:
        """Pass the events through; store the conversation when the answer is complete."""
        answer = Answer()
        try:
            async for event in events:
                answer.feed(event)
                if isinstance(event, TurnEnd):
                    self.record(located, answer, model)
                yield event
        finally:
            await events.aclose()

    def recent(self, owner: str, limit: int) -> list[Conversation]:
        """The owner's latest conversations, the most recently answered first."""
        return self.store.recent(owner=owner, limit=limit)

    def get(self, conversation_id: str, owner: str | None = None) -> Conversation:
        """A stored conversation; with ``owner``, only one of that owner's."""
        found = self.store.get(conversation_id)
        if found is None or (owner is not None and not found.scope.startswith(owner + ":")):
            raise NotFound(f"conversation `{conversation_id}` not found")
        return found

    def delete(self, conversation_id: str, owner: str | None = None) -> Conversation:
        found = self.get(conversation_id, owner)
        self.store.delete(conversation_id)
        return found


def _same(left: list[Message], right: list[Message]) -> bool:
    return fingerprint("", None, (), left) == fingerprint("", None, (), right)


def _join(known: list[Message], new: list[Message]) -> list[Message]:
    if known and new and known[-1].role == new[0].role == "user":
        return [*known[:-1], Message("user", known[-1].content + new[0].content), *new[1:]]
    return [*known, *new]
