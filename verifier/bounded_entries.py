"""The entries a :class:`~verifier.ledger_cache.LedgerCache` holds, each kind in a bounded container.

DID entries are kept in two generations (:class:`_Generations`, at most ``max_dids``); DIDs proven
absent, issuers and the keys of entries a block dropped are kept in ordered dicts, the oldest
forgotten first (:func:`_track`, and :func:`did_registry.bounded_cache.remember`). The bounds and why
they hold are in the :mod:`verifier.ledger_cache` docstring. :class:`CacheEntries` is the base of the
cache's parts (:mod:`verifier.cache_freshness`, :mod:`verifier.block_application`,
:mod:`verifier.cached_reads`): the containers and the height they stand at, which the cache's
constructor sets.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator

from verifier._records import DIDEntry, IssuerEntry, StatusEntry

__all__ = ["CacheEntries"]


class _Generations:
    """At most ``size`` DID entries in two generations (plain dicts: nothing is done per entry found).

    An entry put, or found in the old generation (:meth:`promote`), goes to the young one; once that
    holds half of ``size`` it becomes the old one, and the previous old one is forgotten whole. So an
    entry used since the previous turn is kept, and at least the ``size // 2`` used most recently
    are. Reads (:meth:`get`) take no lock; every change is made under the cache's lock, and a
    promotion only moves an entry still held (a block may have dropped it meanwhile)."""

    def __init__(self, size: int) -> None:
        if size < 2:
            raise ValueError(f"a cache holds at least 2 DID entries, not {size}")
        self.half = size // 2
        self.young: dict[str, DIDEntry] = {}
        self.old: dict[str, DIDEntry] = {}

    def get(self, did: str) -> DIDEntry | None:
        """The entry of ``did`` in either generation (``None`` when not held)."""
        entry = self.young.get(did)
        return self.old.get(did) if entry is None else entry

    def promote(self, did: str, entry: DIDEntry) -> None:
        """Carry ``entry``, found in the old generation, into the young one (if still held there)."""
        if self.old.get(did) is entry:
            del self.old[did]
            self.put(did, entry)

    def put(self, did: str, entry: DIDEntry) -> None:
        """Hold ``entry`` for ``did`` (in the young generation), turning the generations when it is full."""
        self.old.pop(did, None)
        self.young[did] = entry
        if len(self.young) >= self.half:
            self.old, self.young = self.young, {}

    def pop(self, did: str) -> DIDEntry | None:
        """Forget the entry of ``did``; the entry it was (``None`` when not held)."""
        entry = self.young.pop(did, None)
        old = self.old.pop(did, None)
        return old if entry is None else entry

    def clear(self) -> None:
        """Forget every entry."""
        self.young, self.old = {}, {}

    def __iter__(self) -> Iterator[str]:
        return iter([*self.young, *self.old])

    def __len__(self) -> int:
        return len(self.young) + len(self.old)


class CacheEntries:
    """The entries of a :class:`~verifier.ledger_cache.LedgerCache` and the height they stand at (its
    constructor sets the attributes declared here; every change is made under ``_lock``)."""

    network: str
    clock: Callable[[], float]
    height: int | None
    generation: int
    max_dids: int
    max_absent: int
    max_issuers: int
    _dids: _Generations
    _absent: OrderedDict[str, float]
    _status: dict[tuple[str, str], StatusEntry]
    _issuers: OrderedDict[str, IssuerEntry]
    _dropped_dids: OrderedDict[str, None]
    _dropped_status: set[tuple[str, str]]
    _dropped_issuers: OrderedDict[str, None]
    _lock: threading.Lock


def _track(tracked: OrderedDict[str, None], keys: Iterable[str], size: int) -> None:
    """Add ``keys`` to ``tracked``, forgetting the oldest beyond ``size``."""
    tracked.update(dict.fromkeys(keys))
    while len(tracked) > size:
        tracked.popitem(last=False)
