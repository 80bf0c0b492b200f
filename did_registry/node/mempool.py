"""A node's mempool: the admitted transactions waiting for a block, bounded in count and in bytes.

A transaction is admitted against the head alone, so without more the door would take any number
of transactions that cannot all commit: copies of one submitter's next nonce (only one can ever be
used), each up to ``MAX_TXN_BYTES``, until ``max_pending`` of them (at 256 KiB each, tens of
gigabytes). The mempool therefore holds one transaction per submitter and nonce, at most
``max_bytes`` of transactions (their canonical JSON) in all, and at most ``max_submitter_bytes`` of
one submitter's, so one DID holder cannot fill it for everyone. Not thread-safe: the node's lock
guards it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Final

from did_registry.ledger.txn import Transaction, TxnRejected

__all__ = ["MAX_PENDING_BYTES", "MAX_SUBMITTER_BYTES", "Mempool"]

MAX_PENDING_BYTES: Final = 128 << 20
"""The most a node's mempool holds by default (canonical JSON; some 70,000 device creations)."""
MAX_SUBMITTER_BYTES: Final = 16 << 20
"""The most one submitter's waiting transactions hold by default."""


class Mempool:
    """Waiting transactions by id, oldest first."""

    def __init__(
        self,
        max_count: int,
        max_bytes: int = MAX_PENDING_BYTES,
        max_submitter_bytes: int = MAX_SUBMITTER_BYTES,
    ) -> None:
        self.max_count, self.max_bytes, self.max_submitter_bytes = max_count, max_bytes, max_submitter_bytes
        self._txns: OrderedDict[str, Transaction] = OrderedDict()
        self._nonces: dict[tuple[str, int], str] = {}  # (submitter, nonce) -> the id waiting with it
        self._submitter_bytes: dict[str, int] = {}
        self.bytes = 0
        """The size of the waiting transactions (their canonical JSON)."""

    def __len__(self) -> int:
        return len(self._txns)

    def __bool__(self) -> bool:
        return bool(self._txns)

    def __contains__(self, txn_id: object) -> bool:
        return txn_id in self._txns

    def __iter__(self) -> Iterator[str]:
        return iter(self._txns)

    def get(self, txn_id: str) -> Transaction | None:
        """The waiting transaction ``txn_id``, or ``None``."""
        return self._txns.get(txn_id)

    def values(self) -> list[Transaction]:
        """The waiting transactions, oldest first."""
        return list(self._txns.values())

    def oldest(self, count: int) -> list[Transaction]:
        """Up to ``count`` of the oldest waiting transactions."""
        return list(islice(self._txns.values(), count))

    def check_room(self, txns: Sequence[Transaction]) -> None:
        """Raise :class:`TxnRejected` (naming the transaction) unless ``txns``, none waiting yet, can all
        be added: ``conflict`` for a nonce a waiting transaction of its submitter (or an earlier one
        of the batch) has, ``overloaded`` past a bound."""
        if len(self._txns) + len(txns) > self.max_count:
            raise TxnRejected("overloaded", f"{len(self._txns)} transactions are waiting; try again")
        size = self.bytes
        added: dict[str, int] = {}
        nonces: set[tuple[str, int]] = set()
        for txn in txns:
            slot = (txn.submitter, txn.nonce)
            waiting = self._nonces.get(slot)
            if waiting is not None or slot in nonces:
                raise TxnRejected(
                    "conflict",
                    f"nonce {txn.nonce} of {txn.submitter} is taken by a waiting transaction"
                    + ("" if waiting is None else f", {waiting}"),
                    txn_id=txn.id,
                )
            nonces.add(slot)
            length = len(txn.canonical)
            size += length
            if size > self.max_bytes:
                raise TxnRejected(
                    "overloaded", f"waiting transactions hold {self.bytes} bytes; try again", txn_id=txn.id
                )
            mine = added[txn.submitter] = added.get(txn.submitter, 0) + length
            if self._submitter_bytes.get(txn.submitter, 0) + mine > self.max_submitter_bytes:
                raise TxnRejected(
                    "overloaded",
                    f"waiting transactions of {txn.submitter} hold over {self.max_submitter_bytes} bytes; "
                    "try again once some are committed",
                    txn_id=txn.id,
                )

    def add(self, txns: Sequence[Transaction]) -> None:
        """Add ``txns``, which :meth:`check_room` let in."""
        for txn in txns:
            self._txns[txn.id] = txn
            self._nonces[(txn.submitter, txn.nonce)] = txn.id
            length = len(txn.canonical)
            self._submitter_bytes[txn.submitter] = self._submitter_bytes.get(txn.submitter, 0) + length
            self.bytes += length

    def discard(self, txn_id: str) -> Transaction | None:
        """Take ``txn_id`` out (committed, rejected, or never here); the transaction, or ``None``."""
        txn = self._txns.pop(txn_id, None)
        if txn is None:
            return None
        self._nonces.pop((txn.submitter, txn.nonce), None)
        length = len(txn.canonical)
        left = self._submitter_bytes[txn.submitter] - length
        if left:
            self._submitter_bytes[txn.submitter] = left
        else:
            del self._submitter_bytes[txn.submitter]
        self.bytes -= length
        return txn
