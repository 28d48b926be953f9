"""What the routes share: settings, the engine and the model catalog."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .catalog import Catalog
from .conversations.service import Conversations
from .engine.engine import Engine
from .media import MediaResolver
from .settings import Settings
from .store.sqlite import ConversationStore


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

    async def start(self) -> None:
        await self.engine.start()

    async def learn_models(self, timeout: float) -> None:
        if await self.engine.pool.wait_ready(timeout):
            self.catalog.learn(self.engine.server_info())

    async def close(self) -> None:
        await self.engine.close()
        await self.media.close()
        self.conversations.store.close()
