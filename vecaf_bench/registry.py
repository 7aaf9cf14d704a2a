"""Registries of named factories, filled by the plugin manager from every plugin's hooks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import UserError, unknown

KINDS = ("selectors", "backbones", "datasets", "text_encoders", "shifts", "trackers")
_SINGULAR = {
    "selectors": "selector",
    "backbones": "backbone",
    "datasets": "dataset",
    "trackers": "tracker",
    "text_encoders": "text encoder",
    "shifts": "shift",
}


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Any
    source: str  # the distribution (package) that registered it, or the module for --plugin
    version: str


class Registry:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(self, entry: Entry) -> None:
        old = self._entries.get(entry.name)
        if old is not None and old.source != entry.source:
            raise UserError(
                f"{_SINGULAR[self.kind]} '{entry.name}' is registered twice: by {old.source} and by {entry.source}. "
                "Uninstall one of the two packages or rename the plugin."
            )
        self._entries[entry.name] = entry

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str, hint: str = "") -> Entry:
        if name not in self._entries:
            raise unknown(_SINGULAR[self.kind], name, self._entries, hint)
        return self._entries[name]
