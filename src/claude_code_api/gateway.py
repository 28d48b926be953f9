"""What the routes share: settings, the engine and the model catalog."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from .catalog import Catalog
from .conversations.service import Conversations, Located
from .engine.engine import Engine
from .events import TurnEvent, TurnRequest
from .media import MediaResolver
from .settings import Settings
from .store.sqlite import ConversationStore


@dataclass
class Run:
    """A turn under way: its conversation, the model it answers as, its events."""

    located: Located
    model: str
    events: AsyncGenerator[TurnEvent, None]


@dataclass
class Gateway:
    settings: Settings
    engine: Engine
    catalog: Catalog
    media: MediaResolver
    conversations: Conversations
    started_at: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def build(cls, settings: Settings) -> Gateway:
        return cls(settings, Engine(settings.claude), Catalog(settings.models.aliases),
                   MediaResolver(settings.media),
                   Conversations(ConversationStore(settings.store.path)))

    async def run(self, turn: TurnRequest, scope: str, explicit: str | None = None) -> Run:
        """Check the turn's images, find its conversation, start it on the engine; the
        conversation is recorded when the answer is complete."""
        turn = await self.media.resolve(turn)
        model = self.catalog.cli_aliases.get(turn.model, turn.model)
        located = self.conversations.locate(scope, turn, explicit)
        events = self.conversations.recording(
            located, self.engine.stream(located.turn, located.session), model)
        return Run(located, model, events)

    async def start(self) -> None:
        await self.engine.start()

    async def learn_models(self, timeout: float) -> None:
        if await self.engine.pool.wait_ready(timeout):
            self.catalog.learn(self.engine.server_info())

    async def close(self) -> None:
        await self.engine.close()
        await self.media.close()
        self.conversations.store.close()
