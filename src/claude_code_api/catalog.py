"""Which model names the gateway accepts, and what it passes to the CLI.

The CLI reports its model aliases and what they resolve to (``get_server_info``);
until a worker has started we fall back to what the bundled CLI 2.1.330 reported.
Any ``claude-*`` id is passed through; other names need a configured alias.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ModelNotFound

# What the bundled CLI reported (value -> resolved model); used before it has started.
_FALLBACK_ALIASES: dict[str, str] = {
    "opus": "claude-opus-5-5",
    "sonnet": "claude-sonnet-5-5",
    "haiku": "claude-haiku-5-5",
}


@dataclass(frozen=True)
class ModelEntry:
    id: str
    description: str = ""


class Catalog:
    def __init__(self, configured: Mapping[str, str]) -> None:
        self.configured = dict(configured)
        self.cli_aliases: dict[str, str] = dict(_FALLBACK_ALIASES)
        self.descriptions: dict[str, str] = {}
        self.created = int(time.time())  # the models' `created` time: the server's start

    def learn(self, server_info: Mapping[str, Any]) -> None:
        """Take the aliases the running CLI reports."""
        models = server_info.get("models")
        if not isinstance(models, list):
            return
        aliases: dict[str, str] = {}
        for entry in models:
            if not isinstance(entry, dict):
                continue
            value, resolved = entry.get("value"), entry.get("resolvedModel")
            if isinstance(value, str) and isinstance(resolved, str) and value != "default":
                aliases[value] = resolved
                if isinstance(entry.get("description"), str):
                    self.descriptions[value] = entry["description"]
        if aliases:
            self.cli_aliases = aliases

    def resolve(self, name: str) -> str:
        """The model string to give the CLI, or ModelNotFound (404)."""
        if name in self.configured:
            return self.configured[name]
        if name in self.cli_aliases or name.startswith("claude-"):
            return name
        raise ModelNotFound(
            f"The model `{name}` does not exist or you do not have access to it. "
            f"Use a Claude model ({', '.join(sorted(self.cli_aliases))} or a claude-* id), "
            "or map this name in the [models.aliases] configuration.",
            param="model",
        )

    def names_for(self, name: str) -> tuple[str, str, str]:
        """A name, what it is mapped to, and the model that resolves to (for checks
        such as a key's model list)."""
        target = self.configured.get(name, name)
        return name, target, self.cli_aliases.get(target, target)

    def entries(self) -> list[ModelEntry]:
        ids: dict[str, str] = {}
        for alias, resolved in self.cli_aliases.items():
            ids.setdefault(alias, self.descriptions.get(alias, f"alias of {resolved}"))
            ids.setdefault(resolved, self.descriptions.get(alias, ""))
        for name, target in self.configured.items():
            ids.setdefault(name, f"mapped to {target}")
        return [ModelEntry(i, d) for i, d in ids.items()]

    def known(self, name: str) -> bool:
        return any(entry.id == name for entry in self.entries())
