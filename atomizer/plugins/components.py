"""A registry of named components of one kind (readers, encoders, models, ...)."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from atomizer.errors import PluginError

T = TypeVar("T")


class ComponentRegistry(Generic[T]):
    """Named factories of one kind (encoders, readers, models, ...), with helpful lookup errors.

    An item may be registered as an import string ``"package.module:attribute"``; it is imported on
    first ``get`` only, so plugins stay cheap to load (no torch import just to list commands).
    """

    def __init__(self, kind: str, *, on_failure: Callable[[str, str], None] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._providers: dict[str, str] = {}
        self._disabled: dict[str, str] = {}
        self._on_failure = on_failure

    def add(self, name: str, item: T, *, provider: str = "python") -> None:
        key = name.lower()
        if key in self._items:
            raise PluginError(
                f"{self.kind} {name!r} is registered by both {self._providers[key]!r} and "
                f"{provider!r}; one of them must use another name"
            )
        self._items[key] = item
        self._providers[key] = provider

    def disable(self, name: str, reason: str) -> None:
        """Take ``name`` out (it misbehaved); later lookups say why, and the owner is told once."""
        key = str(name).lower()
        if key not in self._items:
            return
        provider = self._providers[key]
        del self._items[key]
        self._disabled[key] = f"{self.kind} {name!r} of plugin {provider!r} was disabled: {reason}"
        if self._on_failure is not None:
            self._on_failure(provider, self._disabled[key])

    def get(self, name: str) -> T:
        key = str(name).lower()
        if key in self._disabled:
            raise PluginError(self._disabled[key])
        if key not in self._items:
            close = difflib.get_close_matches(key, list(self._items), n=3, cutoff=0.4)
            hint = f"; closest: {', '.join(close)}" if close else ""
            known = ", ".join(sorted(self._items)) or "none"
            raise PluginError(f"unknown {self.kind} {name!r}{hint} (known: {known})")
        item = self._items[key]
        if isinstance(item, str) and ":" in item:
            module_name, _, attr = item.partition(":")
            try:
                item = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise PluginError(
                    f"{self.kind} {name!r} of plugin {self._providers[key]!r} points at {item!r}, "
                    f"which cannot be imported: {exc}"
                ) from None
            self._items[key] = item
        return item

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return sorted(self._items)

    def provider(self, name: str) -> str:
        return self._providers[name.lower()]
