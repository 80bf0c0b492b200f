"""Bounded memos read on the request path: ordered dicts looked up directly (``memo.get(key)``, in C).

:class:`did_registry.bounded_cache.BoundedCache` wraps the same structure in a Python method per
lookup; the fast request path (``verifier._fast``) makes a handful of lookups per request and reads
these instead. Insertion order decides what is forgotten; a race between threads costs a
recomputation, never a wrong answer.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

__all__ = ["Memo", "remember"]

K = TypeVar("K")
V = TypeVar("V")

Memo = OrderedDict
"""A memo: an ordered dict, filled through :func:`remember`."""


def remember(memo: OrderedDict[K, V], key: K, value: V, size: int) -> None:
    """Keep ``value`` under ``key`` in ``memo``, forgetting the oldest entries beyond ``size``."""
    memo[key] = value
    while len(memo) > size:
        try:
            memo.popitem(last=False)
        except KeyError:  # another thread emptied it first
            break
