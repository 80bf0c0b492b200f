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
  generations (:class:`_Generations`): an entry found goes to the young one, and once that holds half
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
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

from did_registry.bounded_cache import remember
from did_registry.client import ANSWER_ERRORS, LedgerClient, LedgerUnavailable
from did_registry.errors import DidRegistryError
from did_registry.identity.timestamps import parse_timestamp
from did_registry.ledger.block import Block, CommitCertificate
from verifier._follower import Follower, sync_blocks
from verifier._records import DIDEntry, IssuerEntry, StatusEntry, did_entry, issuer_entry, status_entry

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

MAX_CATCH_UP: Final = 1000
"""Blocks a cache replays to catch up; further behind, it drops everything and starts afresh."""
DIDS_KEPT: Final = 2_000_000
"""DID entries a cache holds at most by default (``max_dids``): at least the 1,000,000 used most
recently are kept (see the module docstring), some 800 MB at about 800 bytes each."""
ABSENT_KEPT: Final = 100_000
"""DIDs proven absent a cache remembers at most by default (``max_absent``), the least recently asked
for forgotten first (a few MB)."""
ABSENT_FOR: Final = 1.0
"""Seconds (verifier clock) a DID proven absent is taken as absent without reading it again."""
ISSUERS_KEPT: Final = 4096
"""Issuers' trust-registry entries a cache holds at most by default (``max_issuers``), the least
recently asked for forgotten first: a network has a handful of issuers; the rest are names a
credential put forward."""
_BATCH: Final = 1000  # keys per proven read (the node's limit)
_READ_ATTEMPTS: Final = 3  # reads overtaken by a block applied meanwhile, before giving up
_T = TypeVar("_T")
_NODE_ERRORS: Final = (*ANSWER_ERRORS, DidRegistryError)  # a node's answer failing or lying: ask the next


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


@dataclass(frozen=True)
class Changes:
    """What one block changed for a verifier."""

    height: int
    dids: frozenset[str] = frozenset()
    """DIDs whose document changed, were deactivated, quarantined or cleared."""
    ended: frozenset[str] = frozenset()
    """DIDs that must lose their sessions (updated, deactivated or quarantined)."""
    status_set: dict[tuple[str, str], frozenset[int]] = field(default_factory=dict)
    """Bits set in ``(issuer, list)`` status lists."""
    issuers: frozenset[str] = frozenset()
    """Issuers whose accreditation or roles changed."""
    everything: bool = False
    """Too many blocks were skipped to tell: anything may have changed (every entry was dropped)."""
    time: float | None = None
    """The block's certified time (Unix seconds), when known."""


def changes_of(block: Block) -> Changes:
    """What the transactions of ``block`` touch."""
    dids: set[str] = set()
    ended: set[str] = set()
    issuers: set[str] = set()
    status_set: dict[tuple[str, str], set[int]] = {}
    for txn in block.txns:
        body, kind = txn.body, txn.type
        if kind.startswith("did."):
            dids.add(txn.submitter)
            if kind != "did.create":
                ended.add(txn.submitter)
        elif kind.startswith("quarantine.") and isinstance(body.get("did"), str):
            dids.add(body["did"])
            if kind == "quarantine.report":
                ended.add(body["did"])
        elif kind.startswith("role.") and isinstance(body.get("did"), str):
            issuers.add(body["did"])
        elif kind.startswith("trust.") and isinstance(body.get("issuer"), str):
            issuers.add(body["issuer"])
        elif kind.startswith("status_list.") and isinstance(body.get("list"), str):
            bits = status_set.setdefault((txn.submitter, body["list"]), set())
            bits.update(i for i in body.get("set", []) if isinstance(i, int))
    return Changes(
        block.header.height,
        frozenset(dids),
        frozenset(ended),
        {k: frozenset(v) for k, v in status_set.items()},
        frozenset(issuers),
        time=block_time(block),
    )


def block_time(block: Block) -> float:
    """The certified time of ``block`` (Unix seconds)."""
    return parse_timestamp(block.header.time).timestamp()


def _nodes_in_order(client: LedgerClient, first: str | None) -> list[str]:
    """The nodes of ``client``, ``first`` (when given) asked first."""
    return list(client.nodes) if first is None else [first, *(n for n in client.nodes if n != first)]


def fetch_blocks(client: LedgerClient, after: int, *, first: str | None = None) -> list[Block]:
    """The certified blocks after height ``after`` that a node has, a page of them (``GET /sync/blocks``),
    each checked against its certificate and its header, at consecutive heights: from the first node
    of ``client`` (``first`` asked first) that has at least one."""
    errors: list[str] = []
    nodes = _nodes_in_order(client, first)
    for node in nodes:
        try:
            _, blocks = sync_blocks(client, node, after)
        except _NODE_ERRORS as exc:
            errors.append(f"{node}: {exc}")
            continue
        if blocks:
            return blocks
        errors.append(f"{node}: no block after {after}")
    client.failures.extend(errors)
    raise LedgerUnavailable("; ".join(errors) or "no node")


def fetch_block(client: LedgerClient, height: int, *, first: str | None = None) -> Block:
    """Block ``height`` from any node (``first`` asked first): its certificate checked, its transactions
    checked against its header."""
    errors: list[str] = []
    nodes = _nodes_in_order(client, first)
    for node in nodes:
        try:
            response = client._http.get(f"{node.rstrip('/')}/blocks/{height}")
            response.raise_for_status()
            data = response.json()
            block = Block.from_json(data["block"])  # the transactions must hash to the header's txn_root
            certificate = data.get("certificate")
            client.verify_header(
                block.header, None if certificate is None else CommitCertificate.from_json(certificate)
            )
            if block.header.height != height:
                raise ValueError(f"asked for block {height}, got {block.header.height}")
            return block
        except _NODE_ERRORS as exc:
            errors.append(f"{node}: {exc}")
    client.failures.extend(errors)
    raise LedgerUnavailable("; ".join(errors) or "no node")


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


class LedgerCache:
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

    # -- freshness --------------------------------------------------------------------------
    def staleness(self) -> float:
        """Seconds since the cache was last confirmed at the head (infinite before the first time).

        A confirmation is a block applied up to the highest certified height any node has shown, or
        a node answering that it has nothing newer. While some node has shown a certified header the
        cache has not applied, nothing confirms it: the staleness grows until the cache catches up.

        With ``max_block_age`` set, it is also at least the age of the newest certified block time
        the cache has applied less ``max_block_age``: a network commits a block at least every
        freshness interval, so a newest block older than that means the nodes that answer are
        behind, or hiding blocks, whatever they say.
        """
        if self.live:
            return 0.0
        if self.seen_at is None:
            return float("inf")
        now = self.clock()
        stale = max(0.0, now - self.seen_at)
        if self.head_time is not None and self.max_block_age is not None:
            stale = max(stale, now - self.head_time - self.max_block_age)
        return stale

    def behind(self) -> bool:
        """Whether some node has shown a certified header past what the cache has applied."""
        return self.known_head is not None and (self.height is None or self.height < self.known_head)

    def note_head(self, height: int) -> None:
        """Note that a node showed a certified header at ``height``."""
        with self._lock:
            self.known_head = height if self.known_head is None else max(self.known_head, height)

    def note_error(self, error: str) -> None:
        """Remember why following or catching up failed (the last 100 reasons are kept)."""
        self.errors = [*self.errors[-99:], error]

    def confirm(
        self, height: int, at: float | None = None, *, time: float | None = None, base: str | None = None
    ) -> None:
        """Note that every block up to ``height`` is applied and no node has shown anything newer (as
        of ``at``, default now); behind a higher certified height already shown, nothing is confirmed.
        ``time`` and ``base`` are block ``height``'s certified time and header hash (hex), when the
        caller applied no block (a snapshot): the next block applied must follow that header."""
        with self._lock:
            self._confirm(height, at)
            if self.height == height:
                if time is not None:
                    self._note_time(time)
                if base is not None:
                    self.base = base

    def _note_time(self, time: float) -> None:  # (under the lock)
        self.head_time = time if self.head_time is None else max(self.head_time, time)

    def _confirm(self, height: int, at: float | None = None) -> None:
        if self.height is None or height > self.height:
            self.base = None  # no block was applied up to there: its header's hash is not known here
        self.height = height if self.height is None else max(self.height, height)
        self.known_head = self.height if self.known_head is None else max(self.known_head, self.height)
        if self.height >= self.known_head:
            self.seen_at = self.clock() if at is None else at

    def prefer(self, node: str) -> None:
        """Ask ``node`` first for proven reads and blocks (the node whose header stream is followed)."""
        if self.client is not None and node in self.client.nodes:
            self.client.nodes = [node, *(n for n in self.client.nodes if n != node)]

    def catch_up(self) -> None:
        """Ask a node for the head and apply every block up to it (or to a higher one already shown).

        One round at a time: requests finding the cache stale together (a burst after a quiet spell)
        wait for the round under way and take its outcome, rather than each asking every node."""
        round_seen = self._catch_up_round
        with self._catch_up_lock:
            if self._catch_up_round != round_seen:  # a round ran while this one waited: it stands
                if self._catch_up_failure is not None:
                    raise LedgerUnavailable(self._catch_up_failure)
                return
            try:
                self._catch_up_now()
            except Exception as exc:
                self._catch_up_failure = f"{exc}" or type(exc).__name__
                raise
            else:
                self._catch_up_failure = None
            finally:
                self._catch_up_round += 1

    def _catch_up_now(self) -> None:
        if self.client is None:
            raise LedgerUnavailable(f"no node of network {self.network} to ask")
        head = self.client.highest_head().height  # not one node's word: one lagging or lying holds back
        self.note_head(head)
        if self.height is not None and head < self.height:
            # no node proves the block the cache stands on (a snapshot certified past the chain's head
            # by validators since removed, or every node that has it down): nothing is confirmed, so
            # the cache grows stale as when no node answers
            self.note_error(
                f"network {self.network}: the nodes' highest certified head is block {head}, below block "
                f"{self.height} the cache stands on: not confirmed"
            )
            return
        self.advance(self.client, max(head, self.known_head or 0))
        self.caught_up_at = self.clock()

    def block_age(self) -> float | None:
        """Seconds since the newest certified block time the cache has applied (``None`` before one)."""
        return None if self.head_time is None else self.clock() - self.head_time

    def advance(self, client: LedgerClient, target: int, *, first: str | None = None) -> None:
        """Apply every block up to the certified height ``target``, fetched from any node of ``client``
        (``first`` asked first); more than :data:`MAX_CATCH_UP` behind, start afresh at ``target``."""
        with self._advance_lock:
            if self.height is None or target - self.height > MAX_CATCH_UP:
                self._start_over(fetch_block(client, target, first=first), skipped=self.height is not None)
                return
            while self.height < target:  # a page of blocks per round trip (at least one each time)
                for block in fetch_blocks(client, self.height, first=first):
                    if block.header.height > target:
                        break
                    self.apply(block)
            self.confirm(target)

    def apply_blocks(self, blocks: Sequence[Block]) -> None:
        """Apply checked, certified ``blocks`` (consecutive heights) that follow what is applied."""
        with self._advance_lock:
            for block in blocks:
                height = block.header.height
                if self.height is not None and height == self.height + 1:
                    self.apply(block)
                    self.confirm(height)

    def _start_over(self, block: Block, *, skipped: bool, why: str | None = None) -> None:
        """Drop every entry and stand on the certified ``block`` (under the advance lock); tell the
        listeners that anything may have changed when the cache stood somewhere before."""
        time = block_time(block)
        height = block.header.height
        with self._lock:  # one step: a read in flight at the old height cannot land between
            self._clear()
            self._confirm(height)
            self.base = block.header.hash.hex()
            self.head_time = None
            self._note_time(time)
        if why is not None:
            self.restarts += 1
            self.note_error(why)
        if skipped:
            for listener in list(self.listeners):
                listener(Changes(height, everything=True, time=time))

    def apply(self, block: Block) -> Changes:
        """Drop what ``block`` touched, advance to its height, and tell the listeners.

        ``block`` (certified, at the height after the cache's) must name the header the cache stands
        on (:attr:`base`) as its ``previous_hash``. When it does not, that header is not on the chain
        the nodes prove: every entry is dropped and the cache starts over on ``block``."""
        header = block.header
        with self._lock:
            base, height = self.base, self.height
        if base is not None and height is not None and header.previous_hash != base:
            why = (
                f"network {self.network}: block {header.height} follows header "
                f"{header.previous_hash[:16]}…, not the block {height} the cache stands on ({base[:16]}…): "
                "that block is not on the chain the nodes prove; every entry is dropped, starting over "
                f"at block {header.height}"
            )
            self._start_over(block, skipped=True, why=why)
            return Changes(header.height, everything=True, time=block_time(block))
        changes = changes_of(block)
        self._invalidate(changes, header.hash.hex())
        return changes

    def invalidate(self, changes: Changes) -> None:
        """Drop the entries ``changes`` touch, advance to its height, and tell the listeners."""
        self._invalidate(changes, None)

    def _invalidate(self, changes: Changes, base: str | None) -> None:
        with self._lock:
            if changes.everything:
                self._absent.clear()
            for did in changes.dids:
                self._absent.pop(did, None)  # (a did.create names the DID it creates)
                if self._dids.pop(did) is not None:
                    remember(self._dropped_dids, did, None, self.max_dids)
            for key in changes.status_set:
                if self._status.pop(key, None) is not None:
                    self._dropped_status.add(key)
            for issuer in changes.issuers:
                if self._issuers.pop(issuer, None) is not None:
                    remember(self._dropped_issuers, issuer, None, self.max_issuers)
            if changes.dids or changes.status_set or changes.issuers or changes.everything:
                self.generation += 1
            self.height = changes.height
            self.base = base
            if changes.time is not None:
                self._note_time(changes.time)
        for listener in list(self.listeners):
            listener(changes)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._clear()

    def _clear(self) -> None:  # (under the lock)
        self.generation += 1
        _track(self._dropped_dids, self._dids, self.max_dids)
        self._dropped_status.update(self._status)
        _track(self._dropped_issuers, self._issuers, self.max_issuers)
        self._dids.clear()
        self._absent.clear()
        self._status.clear()
        self._issuers.clear()

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

    # -- reads ------------------------------------------------------------------------------
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


def _track(tracked: OrderedDict[str, None], keys: Iterable[str], size: int) -> None:
    """Add ``keys`` to ``tracked``, forgetting the oldest beyond ``size``."""
    tracked.update(dict.fromkeys(keys))
    while len(tracked) > size:
        tracked.popitem(last=False)


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
