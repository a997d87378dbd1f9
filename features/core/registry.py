"""One registry per axis (sources, encoders, heads, tasks), as timm registers models.

A registry maps the exact string used in configs and on the command line to a factory. Registering happens
where the thing is defined (a decorator), so names are never re-typed in lists elsewhere; `mil list` and the
config validators read them from here. Looking a name up never loads weights or touches the network.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from features.core.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., Any]
    summary: str
    info: dict[str, Any] = field(default_factory=dict)


class Registry:
    """Name -> factory for one axis. `modules` are imported on first lookup so every entry is registered."""

    def __init__(self, axis: str, modules: tuple[str, ...] = ()):
        self.axis = axis
        self._modules = modules
        self._loaded = False
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, **info: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.axis} {name!r} is registered twice")
            doc = (factory.__doc__ or "").strip().splitlines()
            self._entries[name] = Entry(name, factory, doc[0] if doc else "", dict(info))
            return factory

        return decorator

    @property
    def modules(self) -> tuple[str, ...]:
        """The modules whose import registers this axis's entries (tests check it against the folder)."""
        return self._modules

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._modules:
                importlib.import_module(module)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        self._load()
        return [self._entries[n] for n in sorted(self._entries)]

    def get(self, name: str) -> Entry:
        """Exact name, or a `family:` prefix entry (e.g. `timm:` for `timm:vit_small_patch16_224`)."""
        self._load()
        if name not in self._entries and ":" in name and name.split(":", 1)[0] + ":" in self._entries:
            return self._entries[name.split(":", 1)[0] + ":"]
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"Unknown {self.axis} {name!r}.{hint} Registered: {', '.join(sorted(self._entries))}."
            )
        return self._entries[name]

    def check(self, name: str) -> str:
        """Validate a name (for config validators); returns it unchanged."""
        self.get(name)
        return name

    def create(self, name: str, **kwargs: Any) -> Any:
        return self.get(name).factory(**kwargs)

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except ConfigError:
            return False
        return True
