"""A verifier's cache of one ledger network, filled with proven reads and kept fresh by the header stream.

Entries (DID keys with the quarantine flag, status lists, issuers' accreditations) are filled through
:class:`~did_registry.client.LedgerClient`, so every value was proven against a certified header;
each remembers the height it is valid at. A background thread follows the certified header stream
of one node, and another asks the other nodes in turn for blocks it lacks (:mod:`verifier._follower`);
for each new block it fetches the block, checks its transactions against the certified
``txn_root``, and drops every entry the transactions touch, then tells the listeners (the verifier
ends sessions of devices that changed). Blocks are applied only on the chain the cache stands on:
the cache remembers the hash of the certified header at its height (a snapshot's, a jump's, the last
block applied), and block ``h + 1`` must name it as its ``previous_hash``. A certified block that
does not means the header the cache stood on is not on the chain the nodes prove (a snapshot
certified by validators removed since, whose removal the cache had not seen): every entry is
dropped and the cache starts over on that block, as when it falls too far behind.
:meth:`LedgerCache.staleness` is the time since the cache was last confirmed at the head (never
while a node has shown a certified header it has not applied), and at least how much the newest
certified block time it has applied is older than ``max_block_age``: validators commit a block at
least every freshness interval (``docs/consensus.md`` § Freshness), so a node that keeps answering
"nothing newer" cannot keep a verifier looking fresh while it hides a revocation.

Every kind of entry is bounded, since requests that prove nothing (forged signatures naming any DID,
enrolled or not, and credentials naming any issuer) decide what is read:

* DID entries: at most ``max_dids`` (:data:`DIDS_KEPT`, 2,000,000, by default), kept in two
  generations (:class:`~verifier.bounded_entries._Generations`): an entry found goes to the young one, and once that holds half
  the bound, the old one is forgotten whole. A DID used since the previous turn is kept, so at least
  the ``max_dids / 2`` DIDs used most recently are (the 1,000,000 of a fleet that size, all of them);
  a DID forgotten is read again when next asked for. Forgetting moves no generation: the entry read
  again is as of the cache's height or later, and anything a block changed since is already counted
  (a block touching a DID moves the generation whether or not the DID is cached).
* DIDs proven absent (a read found no ``did:`` record): remembered for :data:`ABSENT_FOR` (one
  second of the verifier's clock), so that requests naming a DID that is not on the ledger cost one
  read a second, not one each; at most ``max_absent`` (:data:`ABSENT_KEPT`, 100,000), the least
  recently asked for forgotten first. A block that names the DID (its ``did.create``) drops it, as it
  drops any entry, and so do a jump and a snapshot; the time limit covers a creation committed on
  the ledger that the cache has not applied yet (a device asking while its enrolment is pending is
  found within a second of its creation committing, as a read past the cache would find it).
* Issuers (their accreditations and roles, absent ones included): at most ``max_issuers``
  (:data:`ISSUERS_KEPT`, 4,096), the least recently asked for forgotten first.

The cache is put together from one module per part: :mod:`verifier.bounded_entries` (the entries'
containers), :mod:`verifier.cache_freshness`, :mod:`verifier.block_changes` (what a block changes,
and fetching checked blocks), :mod:`verifier.block_application` and :mod:`verifier.cached_reads`;
following the network and snapshots are here. Their public names are importable from here too.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

from did_registry.bounded_cache import remember
from did_registry.client import LedgerClient
from verifier._follower import Follower
from verifier._records import DIDEntry, IssuerEntry, StatusEntry, did_entry, issuer_entry, status_entry
from verifier.block_application import MAX_CATCH_UP, BlockApplication
from verifier.block_changes import Changes, block_time, changes_of, fetch_block, fetch_blocks
from verifier.bounded_entries import _Generations
from verifier.cached_reads import ABSENT_FOR, CachedReads, ClientSource, LedgerSource

__all__ = [
    "ABSENT_FOR",
    "ABSENT_KEPT",
    "DIDS_KEPT",
    "ISSUERS_KEPT",
    "MAX_CATCH_UP",
    "Changes",
    "LedgerSource",
    "ClientSource",
    "LedgerCache",
    "block_time",
    "changes_of",
    "fetch_block",
    "fetch_blocks",
]

DIDS_KEPT: Final = 2_000_000
"""DID entries a cache holds at most by default (``max_dids``): at least the 1,000,000 used most
recently are kept (see the module docstring), some 800 MB at about 800 bytes each."""
ABSENT_KEPT: Final = 100_000
"""DIDs proven absent a cache remembers at most by default (``max_absent``), the least recently asked
for forgotten first (a few MB)."""
ISSUERS_KEPT: Final = 4096
"""Issuers' trust-registry entries a cache holds at most by default (``max_issuers``), the least
recently asked for forgotten first: a network has a handful of issuers; the rest are names a
credential put forward."""


class LedgerCache(CachedReads, BlockApplication):
    """Cached, proven records of one network (see the module docstring)."""

    def __init__(
        self,
        network: str,
        source: LedgerSource | None,
        *,
        clock: Callable[[], float],
        client: LedgerClient | None = None,
        follower: LedgerClient | None = None,
        watcher: LedgerClient | None = None,
        poll_interval: float = 0.5,
        live: bool = False,
        max_block_age: float | None = None,
        max_dids: int = DIDS_KEPT,
        max_absent: int = ABSENT_KEPT,
        max_issuers: int = ISSUERS_KEPT,
    ) -> None:
        self.network = network
        self.source = source
        self.client = client  # for catching up (head and blocks); None offline or in tests
        self.follower = follower  # a client of its own for the header stream thread
        self.watcher = watcher  # a client of its own for asking other nodes' heads while streaming
        self.poll_interval = poll_interval  # seconds between those questions (0: never ask)
        self.clock = clock
        self.live = live  # the source is always current (an in-memory ledger): never stale
        self.height: int | None = None  # every block up to here has been applied to the cache
        self.base: str | None = None
        """The hash (hex) of the certified header at :attr:`height` (``None`` when unknown): block
        ``height + 1`` must name it as its ``previous_hash``."""
        self.restarts = 0
        """How many times a block did not follow :attr:`base` and the cache started over on it."""
        self.known_head: int | None = None  # the highest certified height any node has shown
        self.seen_at: float | None = None  # when the cache was last confirmed at the head
        self.head_time: float | None = None  # the newest certified block time applied (Unix seconds)
        self.caught_up_at: float | None = None  # when catch_up last reached the head the nodes show
        self.max_block_age = max_block_age  # Policy.max_block_age (None: the network may stay silent)
        self.listeners: list[Callable[[Changes], None]] = []
        self.errors: list[str] = []  # why following or catching up failed, newest last
        self.generation = 0
        """Moves on whenever a cached entry is dropped or replaced (decisions made before may not stand)."""
        self.max_dids, self.max_absent, self.max_issuers = max_dids, max_absent, max_issuers
        self._dids = _Generations(max_dids)
        self._absent: OrderedDict[str, float] = OrderedDict()  # DIDs proven absent -> when (clock)
        self._status: dict[tuple[str, str], StatusEntry] = {}
        self._issuers: OrderedDict[str, IssuerEntry] = OrderedDict()
        # Entries a block dropped and no read has brought back yet: still tracked (as many as the
        # entries themselves, the oldest forgotten first), so that a snapshot proves their current
        # values (an edge verifier restarted offline needs them).
        self._dropped_dids: OrderedDict[str, None] = OrderedDict()
        self._dropped_status: set[tuple[str, str]] = set()
        self._dropped_issuers: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._advance_lock = threading.Lock()
        self._catch_up_lock = threading.Lock()
        self._catch_up_round = (
            0  # catch-up rounds run (a waiter that sees it move takes that round's outcome)
        )
        self._catch_up_failure: str | None = None  # why the last round failed
        self._following: Follower | None = None

    # -- following the network --------------------------------------------------------------
    def start(self, retry: float = 1.0) -> None:
        """Follow the network in background threads (see :mod:`verifier._follower`); retry every
        ``retry`` s after a whole round of nodes failed."""
        if self.follower is None or self._following is not None:
            return
        watcher = self.watcher if self.poll_interval > 0 else None
        self._following = Follower(
            self, self.follower, watcher, poll_interval=self.poll_interval, retry=retry
        )
        self._following.start()

    @property
    def following(self) -> Follower | None:
        """The threads following the network, while they run."""
        return self._following

    def stop(self, timeout: float = 5.0) -> None:
        """Stop following and close the following clients' connections."""
        if self._following is not None:
            self._following.stop(timeout)
            self._following = None
        for client in (self.follower, self.watcher):
            if client is not None:
                client.close()

    # -- snapshots --------------------------------------------------------------------------
    def keys(self) -> list[str]:
        """The state keys behind every entry, and behind those a block dropped since (what a snapshot proves)."""
        with self._lock:
            dids = [*self._dids, *(d for d in self._dropped_dids if self._dids.get(d) is None)]
            status = [*self._status, *(self._dropped_status - self._status.keys())]
            issuers = [*self._issuers, *(i for i in self._dropped_issuers if i not in self._issuers)]
        keys = [k for d in dids for k in (f"did:{d}", f"quarantine:{d}")]
        keys += [f"status:{i}:{n}" for i, n in status]
        keys += [k for d in issuers for k in (f"trust:{d}", f"role:{d}")]
        return keys

    def load(self, values: dict[str, Any], height: int) -> None:
        """Fill the cache from proven ``values`` (state key -> value) valid at ``height``.

        Values proven at a height below the cache's are refused (``ValueError``, nothing loaded): a
        block the cache has applied since may have changed them (a revocation), and catching up starts
        past that block, so it would never drop them again.
        """
        dids, status, issuers = _entries(values, height)
        with self._lock:
            if self.height is not None and height < self.height:
                raise ValueError(
                    f"network {self.network}: values proven at block {height} are older than "
                    f"block {self.height}, which the cache has applied"
                )
            self.generation += 1
            self._absent.clear()  # (cheap to learn again; the load may stand past blocks not applied)
            for did, entry in dids.items():
                self._hold_did(did, entry)
            self._status.update(status)
            for issuer, found in issuers.items():
                remember(self._issuers, issuer, found, self.max_issuers)
                self._dropped_issuers.pop(issuer, None)
            self._dropped_status.difference_update(status)

    def __len__(self) -> int:
        """The number of cached DIDs."""
        return len(self._dids)


def _entries(
    values: dict[str, Any], height: int
) -> tuple[dict[str, DIDEntry], dict[tuple[str, str], StatusEntry], dict[str, IssuerEntry]]:
    dids, status, issuers = {}, {}, {}
    for key, value in values.items():
        kind, _, rest = key.partition(":")
        if kind == "did" and value is not None:
            dids[rest] = did_entry(value, values.get(f"quarantine:{rest}"), height)
        elif kind == "status" and value is not None:
            issuer, _, name = rest.rpartition(":")
            status[(issuer, name)] = status_entry(value, height)
        elif kind == "trust":
            issuers[rest] = issuer_entry(value, values.get(f"role:{rest}"), height)
    return dids, status, issuers
