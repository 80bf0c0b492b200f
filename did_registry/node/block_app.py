"""The consensus engines' view of the ledger: :class:`~did_registry.consensus.base.BlockApp` over a node.

Engines order opaque bytes; this module gives them their meaning for the ledger.

* A **request** is one signed transaction: the JCS bytes of its JSON form (the same bytes its
  Merkle leaf hashes), so the bytes a client sent, a validator forwarded and a block holds compare
  equal.
* A **block** travels as ``u32 header length ‖ JCS(header) ‖ (u32 length ‖ request)*``: the header
  and the requests as they are, nothing to re-encode, and :meth:`LedgerBlockApp.requests` reads them
  without parsing JSON.
* Its **digest** is the block hash (SHA-256 of the header's JCS bytes), the value commit certificates
  sign, but only for bytes whose requests match the header's ``txn_root``; any other bytes get a
  digest no header can have, so a primary cannot pair a good header with other transactions.

Execution is done once: ``propose`` and ``validate`` keep the :class:`Executed` result by digest, and
:meth:`LedgerBlockApp.commit` writes that result when the engine reports the block committed.
A validator votes for a freshly proposed block only if its time is at most :data:`MAX_TIME_AHEAD`
past and :data:`MAX_TIME_BEHIND` before its own wall clock (:meth:`LedgerBlockApp.timely`): readers
judge how fresh their view is by the newest certified block time (``docs/consensus.md`` § 9a), so a
primary must neither date a block in the future (readers would look fresh) nor in the past (readers
would look stale while blocks still come).
Parsing is done once per request too: the transaction parsed from a request's bytes (and found to be
their canonical form) is kept by those bytes, so the block that holds a request checked into the pool
earlier does not parse it again (same bytes, same transaction; execution still runs in full).
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections.abc import Callable, Sequence
from typing import Final

from did_registry.bounded_cache import WeightedCache
from did_registry.errors import DidRegistryError
from did_registry.identity.crypto import sha256
from did_registry.identity.jcs import canonicalize
from did_registry.identity.timestamps import InvalidTimestamp, parse_timestamp
from did_registry.ledger import merkle
from did_registry.ledger.application import Executed, InvalidBlock
from did_registry.ledger.block import Block, BlockHeader, CommitCertificate
from did_registry.ledger.txn import Transaction, TxnRejected
from did_registry.node.preverify import Preverifier
from did_registry.node.service import NodeService

__all__ = [
    "MAX_TIME_AHEAD",
    "MAX_TIME_BEHIND",
    "LedgerBlockApp",
    "encode_block",
    "decode_block",
    "request_bytes",
    "split_block",
]

MAX_TIME_AHEAD: Final = 15.0
"""How far (seconds) a proposed block's time may run ahead of this validator's clock for it to vote."""
MAX_TIME_BEHIND: Final = 30.0
"""How far (seconds) a freshly proposed block's time may lag this validator's clock for it to vote."""

_log = logging.getLogger(__name__)
_U32: Final = struct.Struct(">I")
_NOT_A_BLOCK: Final = b"trellis/not-a-block/v1\x00"
_KEPT: Final = 64  # executed blocks kept waiting for their commit (a few views' worth)
_PARSED_KEPT: Final = 8_192  # parsed requests kept (~7 KB each): the pool and the blocks in flight
_PARSED_BYTES: Final = 64 << 20  # and at most 64 MiB of them (a peer chooses their size)


def request_bytes(txn: Transaction) -> bytes:
    """The request bytes of a signed transaction (its Merkle leaf bytes)."""
    return txn.leaf


def encode_block(header: BlockHeader, requests: Sequence[bytes]) -> bytes:
    """The wire form of a block (see the module docstring)."""
    head = canonicalize(header.to_json())
    parts = [_U32.pack(len(head)), head]
    for request in requests:
        parts += [_U32.pack(len(request)), request]
    return b"".join(parts)


def split_block(raw: bytes) -> tuple[bytes, list[bytes]]:
    """The header bytes and request bytes of a wire block; raise :class:`InvalidBlock` when cut short."""
    items: list[bytes] = []
    offset, size = 0, len(raw)
    while offset < size:
        if offset + 4 > size:
            raise InvalidBlock("a block's length prefix is cut short")
        (length,) = _U32.unpack_from(raw, offset)
        offset += 4
        if offset + length > size:
            raise InvalidBlock("a block's item is cut short")
        items.append(raw[offset : offset + length])
        offset += length
    if not items:
        raise InvalidBlock("a block holds at least its header")
    return items[0], items[1:]


def decode_block(raw: bytes, parse: Callable[[bytes], Transaction] = Transaction.from_bytes) -> Block:
    """Parse a wire block (each request with ``parse``); raise :class:`InvalidBlock` naming what is wrong."""
    head, requests = split_block(raw)
    try:
        header = BlockHeader.from_json(json.loads(head))
        txns = tuple(parse(r) for r in requests)
    except (ValueError, RecursionError, TxnRejected) as exc:
        raise InvalidBlock(f"a block does not parse: {exc}") from None
    if any(request_bytes(t) != r for t, r in zip(txns, requests, strict=True)):
        raise InvalidBlock("a block's transactions are not in their canonical form")
    return Block(header, txns)


class LedgerBlockApp:
    """:class:`~did_registry.consensus.base.BlockApp` for a :class:`NodeService` (thread-safe via its lock)."""

    def __init__(self, service: NodeService, clock: Callable[[], float] = time.time) -> None:
        """Serve ``service``'s ledger; ``clock`` reads this validator's wall clock (Unix seconds)."""
        self.service = service
        self.clock = clock
        self._executed: dict[bytes, Executed] = {}
        self._digests: dict[bytes, bytes] = {}
        # Keyed by each request's SHA-256, not its bytes: a peer may forward any number of requests
        # of up to 256 KiB each, and 200,000 of them kept whole would be 50 GiB.
        self._checked: dict[bytes, int] = {}  # request digest -> the head height it was admitted on
        self._glanced: set[bytes] = set()  # digests of forwarded requests admitted on their form only
        self._parsed: WeightedCache[bytes, Transaction] = WeightedCache(_PARSED_KEPT, _PARSED_BYTES)
        self.preverifier = Preverifier(service.app)

    def close(self) -> None:
        """Stop the background signature checks."""
        self.preverifier.close()

    def admitted(self, requests: Sequence[bytes], height: int) -> None:
        """The service admitted ``requests`` on head ``height``: :meth:`check` need not run them
        again until the head moves."""
        if len(self._checked) > 200_000:
            self._checked.clear()
        for request in requests:
            self._checked[sha256(request)] = height

    def parse(self, request: bytes) -> Transaction:
        """The transaction ``request`` holds; raise :class:`TxnRejected` when the bytes are not one.

        Requests in their canonical form are kept (see the module docstring): the same bytes give
        the same transaction, so a block need not parse again what the pool checked."""
        txn = self._parsed.get(request)
        if txn is None:
            txn = Transaction.from_bytes(request)
            if request_bytes(txn) == request:
                self._parsed.put(request, txn, len(request))
        return txn

    # -- the BlockApp protocol ---------------------------------------------------------------
    def propose(self, height: int, requests: Sequence[bytes], time: str) -> bytes | None:
        """Execute ``requests`` on the head as block ``height``; ``None`` when none is accepted (no
        requests at all make an empty block: consensus asks for one to show the ledger is live)."""
        txns = []
        for raw in requests:
            try:
                txns.append(self.parse(raw))
            except TxnRejected:
                continue
        service = self.service
        with service.lock:
            if height != service.app.height + 1:
                return None
            executed = service.app.propose(txns, time=time, proposer=service.validator_id)
        if requests and not executed.block.txns:
            return None
        block = encode_block(executed.block.header, [request_bytes(t) for t in executed.block.txns])
        digest = executed.block.header.hash
        self._keep(digest, executed)
        self._digests[sha256(block)] = digest
        return block

    def validate(self, height: int, block: bytes) -> bytes:
        """Re-execute ``block`` on the head; return its digest or raise :class:`InvalidBlock`."""
        own = self._executed.get(self._digests.get(sha256(block), b""))
        if own is not None:  # our own proposal: executed on this head when it was built
            with self.service.lock:
                if (own.block.header.height == height == self.service.app.height + 1
                        and own.block.header.previous_hash == self.service.app.head.hash.hex()):  # fmt: skip
                    return own.block.header.hash
        parsed = decode_block(block, self.parse)
        if parsed.header.height != height:
            raise InvalidBlock(f"block {parsed.header.height} offered as block {height}")
        with self.service.lock:
            executed = self.service.app.validate(parsed)
        digest = executed.block.header.hash
        self._keep(digest, executed)
        return digest

    def timely(self, block: bytes) -> bool:
        """Whether ``block`` is dated within :data:`MAX_TIME_AHEAD` after and :data:`MAX_TIME_BEHIND`
        before this validator's clock (asked of fresh proposals only; see the module docstring)."""
        try:
            head, _ = split_block(block)
            offset = parse_timestamp(BlockHeader.from_json(json.loads(head)).time).timestamp() - self.clock()
        except (ValueError, RecursionError, DidRegistryError, InvalidTimestamp):
            return False
        if -MAX_TIME_BEHIND <= offset <= MAX_TIME_AHEAD:
            return True
        _log.warning("refusing a block dated %.0f s from this validator's clock", offset)
        return False

    def digest(self, block: bytes) -> bytes:
        """The block hash when the requests match the header's ``txn_root``, else a non-header digest."""
        key = sha256(block)
        known = self._digests.get(key)
        if known is not None:
            return known
        digest = sha256(_NOT_A_BLOCK + block)
        try:
            head, requests = split_block(block)
            header = BlockHeader.from_json(json.loads(head))
            if merkle.root(requests).hex() == header.txn_root and len(requests) == header.txn_count:
                digest = header.hash
        except (ValueError, RecursionError, DidRegistryError):
            pass
        if len(self._digests) >= 4 * _KEPT:
            self._digests.clear()
        self._digests[key] = digest
        return digest

    def requests(self, block: bytes) -> Sequence[bytes]:
        """The request bytes a block holds (none for bytes that are not a block)."""
        try:
            return split_block(block)[1]
        except InvalidBlock:
            return []

    def check_many(self, requests: Sequence[bytes]) -> list[bool]:
        """:meth:`check` of each request of a forwarded batch; whether their transactions are
        committed is read first, for all of them, in a few queries."""
        ids = []
        for request in requests:
            try:
                ids.append(self.parse(request).id)
            except TxnRejected:
                continue
        self.service.app.store.prefetch((), ids)
        return [self.check(r) for r in requests]

    def check(self, request: bytes) -> bool:
        """Whether the transaction ``request`` holds may go into a block on the head.

        The first time a request forwarded by a peer is seen, only its form is checked (it parses,
        is canonical, is not on the ledger): the peer's node executed it at admission, the proposer
        executes it again, and every validator does when it validates the block. Any later call
        (re-checking the pool after a proposal or a timeout) executes it on the head, so a request
        that cannot go in is dropped before it could make a validator suspect the primary."""
        key = sha256(request)
        if self._checked.get(key, -1) == self.service.app.height:
            return True
        try:
            txn = self.parse(request)
        except TxnRejected:
            return False
        if request_bytes(txn) != request:
            return False
        service = self.service
        with service.lock:
            if service.app.store.locate(txn.id) is not None:
                return False
            if key not in self._glanced:
                if len(self._glanced) > 200_000:
                    self._glanced.clear()
                self._glanced.add(key)
                self.preverifier.offer([txn])  # its signatures checked before its block comes
                return True
            try:
                service.app.check(txn)
            except TxnRejected:
                service.app.forget([txn])  # dropped from the pool: what checking it ahead kept goes too
                return False
            self._checked[key] = service.app.height
        return True

    # -- committing ----------------------------------------------------------------------------
    def commit(self, height: int, block: bytes, certificate: CommitCertificate) -> BlockHeader:
        """Write block ``height``, executed earlier (or now), under ``certificate``."""
        digest = bytes.fromhex(certificate.block_hash)
        executed = self._executed.pop(digest, None)
        service = self.service
        with service.lock:
            if executed is None or executed.block.header.previous_hash != service.app.head.hash.hex():
                parsed = decode_block(block, self.parse)
                if parsed.header.height != height:
                    raise InvalidBlock(f"committed block {parsed.header.height} reported as {height}")
                executed = service.app.validate(parsed)
            service.commit(executed, certificate, executed.block.txns)
        self._executed = {d: e for d, e in self._executed.items() if e.block.header.height > height}
        return executed.block.header

    def _keep(self, digest: bytes, executed: Executed) -> None:
        self._executed[digest] = executed
        while len(self._executed) > _KEPT:
            self._executed.pop(next(iter(self._executed)))
