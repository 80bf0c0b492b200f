"""A bounded memo: a dict that forgets its oldest entries beyond a size.

The ledger rules (parsed DID documents), the signature memo and the verifier's memos of decoded and
verified credentials all keep "what was computed for this key" for the most recent keys only.
Insertion order decides what is forgotten. Concurrent use from several threads is safe enough for a
memo: a race costs a recomputation, never a wrong answer.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["BoundedCache", "remember"]

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most ``size`` entries; putting one more forgets the oldest."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value kept under ``key``, or ``None``."""
        return self._items.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` under ``key``, forgetting the oldest entries beyond the size."""
        remember(self._items, key, value, self.size)

    def discard(self, key: K) -> None:
        """Forget what is kept under ``key``, if anything."""
        self._items.pop(key, None)


def remember(memo: OrderedDict[K, V], key: K, value: V, size: int) -> None:
    """Keep ``value`` under ``key`` in ``memo``, forgetting the oldest entries beyond ``size``: the
    bounded memo as a plain ordered dict, for a hot path that reads it with ``memo.get(key)`` (in C)
    rather than through a :class:`BoundedCache` method."""
    memo[key] = value
    while len(memo) > size:
        try:
            memo.popitem(last=False)
        except KeyError:  # another thread emptied it first
            break
