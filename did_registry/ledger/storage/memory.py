"""An in-memory :class:`~did_registry.ledger.storage.base.LedgerStore` (tests, simulations)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from did_registry.ledger.block import Block, CommitCertificate
from did_registry.ledger.storage.base import Commit, TxnLocation

__all__ = ["MemoryLedgerStore"]


class MemoryLedgerStore:
    """Dictionaries; :meth:`append` applies a commit completely before anyone can read it."""

    def __init__(self) -> None:
        self._state: dict[str, bytes] = {}
        self._nodes: dict[bytes, bytes] = {}
        self._roots: dict[bytes, int] = {}  # state root -> the first height it is the root of
        self._blocks: list[tuple[Block, CommitCertificate | None]] = []
        self._txns: dict[str, TxnLocation] = {}
        self._genesis: Mapping[str, Any] | None = None

    def get(self, key: str) -> bytes | None:
        """Current state value."""
        return self._state.get(key)

    def node(self, node_hash: bytes, version: int) -> bytes | None:
        """A state-map node's record (kept by hash alone: any version finds it)."""
        return self._nodes.get(node_hash)

    def nodes(self, nodes: Sequence[tuple[bytes, int]]) -> dict[bytes, bytes]:
        """The state-map records among ``(hash, version)`` pairs that are stored."""
        stored = self._nodes
        return {h: stored[h] for h, _ in nodes if h in stored}

    def root_version(self, root: bytes) -> int | None:
        """The height of the first block whose state root ``root`` is."""
        return self._roots.get(root)

    def height(self) -> int | None:
        """Last committed height."""
        return len(self._blocks) - 1 if self._blocks else None

    def genesis(self) -> Mapping[str, Any] | None:
        """The genesis document."""
        return self._genesis

    def block(self, height: int) -> tuple[Block, CommitCertificate | None] | None:
        """A committed block."""
        return self._blocks[height] if 0 <= height < len(self._blocks) else None

    def prefetch(self, keys: Iterable[str], txn_ids: Iterable[str] = ()) -> None:
        """Nothing to do: every read is from memory."""

    def locate(self, txn_id: str) -> TxnLocation | None:
        """Where a transaction is."""
        return self._txns.get(txn_id)

    def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[tuple[str, bytes]]:
        """State entries under ``prefix`` in key order."""
        keys = sorted(k for k in self._state if k.startswith(prefix) and (after is None or k > after))
        return [(k, self._state[k]) for k in keys[:limit]]

    def append(self, commit: Commit) -> None:
        """Apply one block's writes."""
        if commit.block.header.height != len(self._blocks):
            raise ValueError(f"expected block {len(self._blocks)}, got {commit.block.header.height}")
        for key, value in commit.changes.items():
            if value is None:
                self._state.pop(key, None)
            else:
                self._state[key] = value
        self._nodes.update(commit.nodes)
        self._roots.setdefault(bytes.fromhex(commit.block.header.state_root), commit.block.header.height)
        for index, txn in enumerate(commit.block.txns):
            self._txns[txn.id] = TxnLocation(commit.block.header.height, index)
        if commit.genesis is not None:
            self._genesis = commit.genesis
        self._blocks.append((commit.block, commit.certificate))
