"""Which ordinals new groups and role instances take, and which ones go first on scale-down."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")


def lowest_free(used: Iterable[int], count: int, *, start: int = 0) -> list[int]:
    """The `count` lowest ordinals >= start that no existing object uses (Kthena fills gaps first)."""
    taken = set(used)
    found: list[int] = []
    candidate = start
    while len(found) < count:
        if candidate not in taken:
            found.append(candidate)
        candidate += 1
    return found


def removal_order(
    items: Sequence[T],
    *,
    ready: Callable[[T], bool],
    cost: Callable[[T], int],
    ordinal: Callable[[T], int],
    protected: Callable[[T], bool] = lambda _: False,
) -> list[T]:
    """Scale-down order: unprotected before partition-protected, then not-ready before ready, then
    lower `pod-deletion-cost` first, then higher ordinals first."""
    return sorted(items, key=lambda item: (protected(item), ready(item), cost(item), -ordinal(item)))
