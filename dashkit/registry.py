"""A small name -> constructor registry, used for tasks and backbones (in the manner of timm)."""
from __future__ import annotations

import fnmatch
from typing import Any, Callable, Dict, List, Optional

__all__ = ["Registry"]


class Registry:
    """Maps names to constructors.

    Example:
        >>> BACKBONES = Registry("backbone")
        >>> @BACKBONES.register("wrn")
        ... def wrn(depth=16, width=1): ...
        >>> BACKBONES.get("wrn", depth=16)
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, Callable[..., Any]] = {}

    def register(self, name: Optional[str] = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            key = name or fn.__name__
            if key in self._items:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._items[key] = fn
            return fn

        return deco

    def names(self, pattern: str = "*") -> List[str]:
        """Registered names matching a glob pattern, sorted."""
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def constructor(self, name: str) -> Callable[..., Any]:
        if not isinstance(name, str) or name not in self._items:
            raise ValueError(
                f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self.names()) or '(none)'}"
            )
        return self._items[name]

    def get(self, name: str, **kwargs: Any) -> Any:
        """Build the registered object `name` with keyword arguments."""
        return self.constructor(name)(**kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)
