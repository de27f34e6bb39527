"""One registry type for architectures, datasets, suites and methods (timm / torchvision style)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from prunebench.errors import UserError

T = TypeVar("T")


def did_you_mean(given: str, valid: list[str]) -> str:
    """' Did you mean 'x'?' for the closest valid name (case-insensitive), else ''."""
    folded = {v.casefold(): v for v in valid}
    close = difflib.get_close_matches(given.casefold(), list(folded), n=1, cutoff=0.6)
    return f" Did you mean {folded[close[0]]!r}?" if close else ""


class Registry(Generic[T]):
    """Maps names to objects; registering a name twice is an error."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register `obj` under `name`; without `obj`, return a decorator."""

        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UserError(
                f"unknown {self.kind} {name!r}.{did_you_mean(name, self.names())} "
                f"Valid names: {', '.join(self.names()) or '(none)'}."
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
