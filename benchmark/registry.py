"""A small name -> object registry with decorator registration and entry-point plugins.

Built-ins register with `@REGISTRY.register("name")`; third-party packages expose objects under an
`importlib.metadata` entry-point group (e.g. `noisybox_bench.methods`) and are discovered on first lookup.
Built-ins (then the first plug-in) win on a name clash; a plug-in shadowed that way is skipped with a warning
naming its distribution and the owner of the name. Unknown names get close-match suggestions.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable, Iterator
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from benchmark.errors import BenchError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, entry_point_group: str | None = None, builtin_modules: tuple[str, ...] = ()):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._builtin_modules = builtin_modules
        self._items: dict[str, T] = {}
        self._origin: dict[str, str] = {}
        self._loaded = False

    def register(self, name: str, origin: str = "builtin") -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj, origin=origin)
            return obj

        return deco

    def add(self, name: str, obj: T, origin: str = "builtin") -> None:
        if name in self._items and self._items[name] is not obj:
            if self._origin[name] == "builtin" and origin != "builtin":
                return  # built-ins win
            if origin == self._origin[name]:
                raise ValueError(f"{self.kind} {name!r} registered twice")
        self._items[name] = obj
        self._origin[name] = origin

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for mod in self._builtin_modules:
            try:
                import_module(mod)
            except ModuleNotFoundError as exc:
                if exc.name != mod:  # a missing dependency inside the module is a real error
                    raise
        if self.entry_point_group:
            for ep in entry_points(group=self.entry_point_group):
                dist = getattr(ep, "dist", None)
                dist_name = dist.name if dist else ep.value
                if ep.name in self._items:
                    warnings.warn(f"{self.kind} plugin {ep.name!r} from {dist_name} ({ep.value}) is ignored: the name "
                                  f"is already registered by {self._owner(ep.name)}; rename its entry point",
                                  stacklevel=2)
                    continue
                try:
                    obj = ep.load()
                except Exception as exc:  # a broken plugin must not break the suite
                    warnings.warn(f"{self.kind} plugin {ep.name!r} ({ep.value}) failed to load: {exc}", stacklevel=2)
                    continue
                self.add(ep.name, obj, origin=f"plugin:{dist_name}")

    def _owner(self, name: str) -> str:
        obj = self._items[name]
        where = f" ({obj.__module__}:{obj.__qualname__})" if hasattr(obj, "__qualname__") else ""  # class, function
        return self._origin[name] + where

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise BenchError(f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._items))})") from None

    def origin(self, name: str) -> str:
        self._load()
        return self._origin[name]

    def owner(self, name: str) -> str:
        """Who registered `name`, for messages: its origin and, for a class or function, its `module:name`."""
        self._load()
        return self._owner(name)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, Any]]:
        self._load()
        return sorted(self._items.items())
