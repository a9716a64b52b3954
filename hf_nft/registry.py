"""Open registries: protection methods, attacks and metrics are looked up by name.

Adding one is a new module plus a ``@REGISTRY.register("name")`` decorator; third-party packages add theirs
through the ``hf_nft.<registry name>`` entry-point group (``name = "module:Object"``), loaded lazily.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object mapping with lazy ``"module:attr"`` entries and "did you mean" errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}
        self._entry_points_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; re-registering a name is an error."""

        def decorate(obj: T) -> T:
            existing = self._entries.get(name)
            if existing is not None and not isinstance(existing, str) and existing is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered.")
            self._entries[name] = obj
            return obj

        return decorate

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``"package.module:attr"`` under ``name`` without importing it yet."""
        self._entries.setdefault(name, target)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for entry in importlib.metadata.entry_points(group=f"hf_nft.{self.kind}"):
            self.register_lazy(entry.name, entry.value)

    def names(self) -> list[str]:
        """All registered names, sorted."""
        self._load_entry_points()
        return sorted(self._entries)

    def get(self, name: str) -> T:
        """The object registered under ``name``; a ``ValueError`` with close matches otherwise."""
        self._load_entry_points()
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"Unknown {self.kind} {name!r}.{hint} Known: {self.names()}.")
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module), attr)
            self._entries[name] = entry
        return entry

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


METHODS: Registry = Registry("methods")
ATTACKS: Registry = Registry("attacks")
METRICS: Registry = Registry("metrics")
