"""A small generic registry: raises on duplicates, never guesses on an unknown name."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from edgetl.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names (and aliases) to entries of one kind, e.g. backbones or runtimes."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, entry: T, *, aliases: tuple[str, ...] = ()) -> T:
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                raise ValueError(f"{self.kind} {key!r} is already registered")
        self._entries[name] = entry
        for alias in aliases:
            self._aliases[alias] = name
        return entry

    def decorator(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Use as ``@REGISTRY.decorator("name")`` on a function or class."""

        def wrap(entry: T) -> T:
            return self.register(name, entry, aliases=aliases)

        return wrap

    def unregister(self, name: str) -> T:
        """Remove an entry and its aliases (plugins and tests that register temporarily)."""
        entry = self._entries.pop(self.canonical(name))
        for alias in [a for a, n in self._aliases.items() if n == name]:
            del self._aliases[alias]
        return entry

    def canonical(self, name: str) -> str:
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise UnknownNameError(self.unknown_message(name), hint=f"known {self.kind}s: {', '.join(self.names())}")

    def get(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, [*self._entries, *self._aliases], n=3, cutoff=0.6)
        suggestion = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}{suggestion}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def aliases_of(self, name: str) -> list[str]:
        return sorted(a for a, n in self._aliases.items() if n == name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
