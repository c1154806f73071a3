"""A tiny name -> object registry (timm/torchattacks style) used for tuning methods, attacks and tasks.

Unknown names raise a one-line error that lists the valid ones, so a typo on the command line is
answered before any work starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from robustbench_ofa.errors import RobustOFAError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to registered objects; ``kind`` names the thing in error messages."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise RobustOFAError(
                f"unknown {self.kind} {name!r}; valid: {', '.join(sorted(self._items))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def in_order(self) -> list[str]:
        """Names in registration order (where the order itself means something, e.g. tasks)."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
