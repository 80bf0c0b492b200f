"""The store protocol: what the ledger needs from storage, whatever the backend.

A :class:`Commit` is everything one block changes; :meth:`LedgerStore.append` writes it in one
database transaction, so a node killed at any moment restarts at its last committed height.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from did_registry.ledger.block import Block, CommitCertificate

__all__ = ["Commit", "LedgerStore", "TxnLocation"]


@dataclass(frozen=True, slots=True)
class Commit:
    """One block's worth of writes: the block, its certificate, state changes and new map nodes."""

    block: Block
    certificate: CommitCertificate | None
    changes: Mapping[str, bytes | None]
    nodes: Mapping[bytes, bytes]
    genesis: Mapping[str, Any] | None = None  # only for block 0


@dataclass(frozen=True, slots=True)
class TxnLocation:
    """Where a committed transaction is: block height and position in the block."""

    height: int
    index: int


class LedgerStore(Protocol):
    """Storage of blocks, certificates, current state and state-map nodes."""

    def get(self, key: str) -> bytes | None:
        """Current (head) state value under ``key``."""
        ...

    def node(self, node_hash: bytes, version: int) -> bytes | None:
        """A state-map node's record by hash and version (the height of the block that stored it;
        nodes are immutable, so old roots stay provable)."""
        ...

    def nodes(self, nodes: Sequence[tuple[bytes, int]]) -> dict[bytes, bytes]:
        """The stored state-map records among ``(hash, version)`` pairs, by hash (absent ones left
        out), read in bulk: a block's map update reads the nodes on its paths a level at a time."""
        ...

    def root_version(self, root: bytes) -> int | None:
        """The version a state-map root's node is stored at: the height of the first block whose
        ``state_root`` it is (None when no committed block's is)."""
        ...

    def height(self) -> int | None:
        """The last committed height, or ``None`` before genesis."""
        ...

    def genesis(self) -> Mapping[str, Any] | None:
        """The genesis document this store was started with."""
        ...

    def block(self, height: int) -> tuple[Block, CommitCertificate | None] | None:
        """A committed block and its certificate."""
        ...

    def locate(self, txn_id: str) -> TxnLocation | None:
        """Where a committed transaction is."""
        ...

    def prefetch(self, keys: Iterable[str], txn_ids: Iterable[str] = ()) -> None:
        """A hint: ``get`` of ``keys`` and ``locate`` of ``txn_ids`` follow soon (a block about to be
        executed); a store may read them in bulk now. It changes no answer."""
        ...

    def append(self, commit: Commit) -> None:
        """Write one block's changes atomically (all or nothing)."""
        ...

    def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[tuple[str, bytes]]:
        """Current state entries whose key starts with ``prefix``, in key order, after key ``after``."""
        ...
