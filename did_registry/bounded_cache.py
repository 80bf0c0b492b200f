"""A bounded memo: a dict that forgets its oldest entries beyond a size.

The ledger rules (parsed DID documents), the signature memo and the verifier's memos of decoded and
verified credentials all keep "what was computed for this key" for the most recent keys only.
Insertion order decides what is forgotten. Concurrent use from several threads is safe enough for a
memo: a race costs a recomputation, never a wrong answer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Generic, TypeVar

__all__ = ["BoundedCache", "GenerationalCache", "WeightedCache", "remember"]

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


class WeightedCache(Generic[K, V]):
    """At most ``size`` entries weighing ``max_weight`` in all (each put with its weight, such as the
    size of what it was made from); putting more forgets the oldest. For memos of values whose
    size a sender chooses: counting entries alone would let a few large ones take any memory.
    Thread-safe (one lock: the weights must add up)."""

    def __init__(self, size: int, max_weight: int) -> None:
        self.size, self.max_weight = size, max_weight
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.weight = 0
        """What the kept entries weigh."""

    def get(self, key: K) -> V | None:
        """The value kept under ``key``, or ``None``."""
        found = self._items.get(key)
        return None if found is None else found[0]

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: K, value: V, weight: int) -> None:
        """Keep ``value`` (weighing ``weight``) under ``key``, forgetting the oldest entries beyond
        the bounds; one heavier than ``max_weight`` alone is not kept."""
        if weight > self.max_weight:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.weight -= old[1]
            self._items[key] = (value, weight)
            self.weight += weight
            while len(self._items) > self.size or self.weight > self.max_weight:
                _, (_, dropped) = self._items.popitem(last=False)
                self.weight -= dropped

    def discard(self, key: K) -> None:
        """Forget what is kept under ``key``, if anything."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.weight -= old[1]


class GenerationalCache(Generic[K, V]):
    """About ``size`` entries in two generations, for values put in by the thousand (fewer than
    ``size`` plus the largest batch put: a generation turns once it holds half of ``size``).

    New entries and entries found go to the young generation; once it holds half of ``size``, it
    becomes the old one and the previous old one is dropped whole. What is used keeps being carried
    forward; what is not is forgotten one or two turns later. Unlike a least-recently-used order,
    nothing is done per entry to forget: a ledger block puts some 12,000 state-map nodes at once, and
    forgetting as many, one at a time, cost a node more than the block's own map update.
    Not thread-safe: callers hold their own lock.
    """

    def __init__(self, size: int) -> None:
        if size < 2:
            raise ValueError(f"a generational cache holds at least 2 entries, not {size}")
        self.size = size
        self._young: dict[K, V] = {}
        self._old: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        """The value kept under ``key`` (carried into the young generation), or ``None``."""
        value = self._young.get(key)
        if value is None:
            value = self._old.get(key)
            if value is not None:
                self._young[key] = value
                self._turn()
        return value

    def update(self, items: Mapping[K, V]) -> None:
        """Keep ``items`` (in the young generation)."""
        self._young.update(items)
        self._turn()

    def clear(self) -> None:
        """Forget everything."""
        self._young, self._old = {}, {}

    def __len__(self) -> int:
        """Entries kept (one carried forward counts in both generations until the old one goes)."""
        return len(self._young) + len(self._old)

    def _turn(self) -> None:
        if len(self._young) >= self.size // 2:
            self._old, self._young = self._young, {}


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
