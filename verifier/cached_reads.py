"""Reads through a :class:`~verifier.ledger_cache.LedgerCache`: DID entries, status lists and issuers,
from the cache or read proven from the ledger as of the cache's height or later.

A part of the cache (see the :mod:`verifier.ledger_cache` docstring for what is kept and for how
long); :class:`LedgerSource` is where it reads, :class:`ClientSource` one over a
:class:`~did_registry.client.LedgerClient`. Their names are importable from :mod:`verifier.ledger_cache`
too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol, TypeVar

from did_registry.bounded_cache import remember
from did_registry.client import LedgerClient, LedgerUnavailable
from verifier._records import DIDEntry, IssuerEntry, StatusEntry, did_entry, issuer_entry, status_entry
from verifier.bounded_entries import CacheEntries

__all__ = [
    "ABSENT_FOR",
    "CachedReads",
    "ClientSource",
    "LedgerSource",
]

ABSENT_FOR: Final = 1.0
"""Seconds (verifier clock) a DID proven absent is taken as absent without reading it again."""
_BATCH: Final = 1000  # keys per proven read (the node's limit)
_READ_ATTEMPTS: Final = 3  # reads overtaken by a block applied meanwhile, before giving up
_T = TypeVar("_T")


class LedgerSource(Protocol):
    """Where a cache reads proven state: values (``None`` when absent) and the height they are valid at."""

    def fetch(self, keys: Sequence[str], min_height: int | None = None) -> tuple[list[Any], int]:
        """The values under ``keys``, all valid at the returned height (not below ``min_height``: a
        node behind is passed over for another); raise ``LedgerUnavailable``."""
        ...


class ClientSource:
    """A :class:`LedgerSource` over a :class:`LedgerClient` (every value proven)."""

    def __init__(self, client: LedgerClient) -> None:
        self.client = client

    def fetch(self, keys: Sequence[str], min_height: int | None = None) -> tuple[list[Any], int]:
        """Proven values in batches of 1,000 keys; the lowest height of the batches."""
        values: list[Any] = []
        height: int | None = None
        for start in range(0, len(keys), _BATCH):
            batch, header = self.client.prove_many(keys[start : start + _BATCH], min_height=min_height)
            values.extend(batch)
            height = header.height if height is None else min(height, header.height)
        return values, height or 0


class CachedReads(CacheEntries):
    """The reads of a :class:`~verifier.ledger_cache.LedgerCache` (its constructor sets the attributes
    declared here)."""

    source: LedgerSource | None

    def _keep(self, height: int) -> bool:
        return self.height is None or height >= self.height

    def _read(
        self, keys: Sequence[str], parse: Callable[[list[Any], int], _T], keep: Callable[[_T], None]
    ) -> _T:
        """``parse`` the values of ``keys`` proven as of the cache's height or later, and ``keep`` what
        it gives (under the lock). Values proven as of an older block may predate a block the cache
        has applied (a revocation, say), whether the node was behind or the cache applied a block
        while they were read: they are never used, but read again (as of the cache's new height)."""
        if self.source is None:
            raise LedgerUnavailable(f"network {self.network} runs offline and has no such record")
        for _ in range(_READ_ATTEMPTS):
            asked = self.height
            values, height = self.source.fetch(keys, asked)
            if asked is not None and height < asked:  # the node is behind: no use asking again
                raise LedgerUnavailable(f"a node answered as of block {height}, behind block {asked}")
            if self._keep(height):
                parsed = parse(values, height)
                with self._lock:
                    if self._keep(height):
                        keep(parsed)
                        return parsed
        raise LedgerUnavailable(
            f"network {self.network}: blocks were applied while its records were read, {_READ_ATTEMPTS} times"
        )

    def cached_did(self, did: str) -> DIDEntry | None:
        """The cached entry of ``did``, without reading the ledger (``None`` when not cached)."""
        entries = self._dids
        entry = entries.young.get(did)
        if entry is None:
            entry = entries.old.get(did)
            if entry is not None:
                with self._lock:
                    entries.promote(did, entry)
        return entry

    def _hold_did(self, did: str, entry: DIDEntry) -> None:  # (under the lock)
        self._dids.put(did, entry)
        self._absent.pop(did, None)
        self._dropped_dids.pop(did, None)  # tracked as an entry again

    def dids(self, dids: Sequence[str]) -> list[DIDEntry | None]:
        """The entries of ``dids`` (``None`` for a DID not on the ledger); misses read in one round
        trip, except DIDs already proven absent (see the module docstring)."""
        missing: set[str] = set()
        now = self.clock()
        with self._lock:
            found: list[DIDEntry | None] = []
            absent = self._absent
            for did in dids:
                entry = self._dids.get(did)
                if entry is not None:
                    self._dids.promote(did, entry)
                elif now - absent.get(did, -math.inf) < ABSENT_FOR:
                    absent.move_to_end(did)
                else:
                    missing.add(did)
                found.append(entry)
        if missing:
            asked = sorted(missing)

            def parse(values: list[Any], height: int) -> tuple[dict[str, DIDEntry | None], int]:
                fresh: dict[str, DIDEntry | None] = {}
                for number, did in enumerate(asked):
                    record = values[2 * number]
                    fresh[did] = None if record is None else did_entry(record, values[2 * number + 1], height)
                return fresh, height

            def keep(parsed: tuple[dict[str, DIDEntry | None], int]) -> None:
                fresh, _ = parsed
                for did, entry in fresh.items():
                    if entry is not None:
                        self._hold_did(did, entry)
                    else:  # proven absent now (at the cache's height or later)
                        remember(self._absent, did, now, self.max_absent)

            keys = [k for d in asked for k in (f"did:{d}", f"quarantine:{d}")]
            fresh, _ = self._read(keys, parse, keep)
            found = [e if e is not None else fresh.get(d) for d, e in zip(dids, found, strict=True)]
        return found

    def held(self) -> dict[str, int]:
        """How many entries the cache holds, by kind: ``dids``, ``absent`` (DIDs proven absent),
        ``issuers`` and ``status_lists`` (see the module docstring for the bounds; status lists are kept only
        when found, so there are no more than the ledger holds)."""
        return {
            "dids": len(self._dids),
            "absent": len(self._absent),
            "issuers": len(self._issuers),
            "status_lists": len(self._status),
        }

    def reread(self, did: str) -> DIDEntry | None:
        """Read the entry of ``did`` from the ledger again, past the cache: proven, not older than the
        cache's height (possibly newer: a block the cache has not applied yet). An entry that says
        something else replaces the cached one and moves the generation on; one that says the same
        (the usual answer, and all a forged key id gets) leaves the cached entry, and every decision
        made from it, standing. The entry now cached (``None`` when the DID is not on the ledger)."""

        def parse(values: list[Any], height: int) -> DIDEntry | None:
            record, quarantine = values
            return None if record is None else did_entry(record, quarantine, height)

        kept: list[DIDEntry] = []

        def keep(entry: DIDEntry | None) -> None:
            if entry is None:
                return
            cached = self._dids.get(did)
            if cached is not None and cached.same_as(entry):
                self._dids.promote(did, cached)
                kept.append(cached)
                return
            self.generation += 1  # (with nothing cached, the entry may have been forgotten meanwhile)
            self._hold_did(did, entry)
            kept.append(entry)

        fresh = self._read([f"did:{did}", f"quarantine:{did}"], parse, keep)
        return kept[0] if kept else fresh

    def status_list(self, issuer: str, name: str) -> StatusEntry | None:
        """The status list ``name`` of ``issuer`` (``None`` when it is not on the ledger)."""
        key = (issuer, name)
        with self._lock:
            entry = self._status.get(key)
        if entry is None:

            def keep(entry: StatusEntry | None) -> None:
                if entry is not None:
                    self._status[key] = entry

            entry = self._read(
                [f"status:{issuer}:{name}"],
                lambda values, height: None if values[0] is None else status_entry(values[0], height),
                keep,
            )
        return entry

    def issuer(self, did: str) -> IssuerEntry:
        """What ``did`` is accredited for in the trust registry (the entries of the ``max_issuers``
        issuers asked for most recently are kept, of absent ones too)."""
        with self._lock:
            entry = self._issuers.get(did)
            if entry is not None:
                self._issuers.move_to_end(did)
        if entry is None:

            def keep(entry: IssuerEntry) -> None:
                remember(self._issuers, did, entry, self.max_issuers)
                self._dropped_issuers.pop(did, None)  # tracked as an entry again

            entry = self._read(
                [f"trust:{did}", f"role:{did}"],
                lambda values, height: issuer_entry(values[0], values[1], height),
                keep,
            )
        return entry
