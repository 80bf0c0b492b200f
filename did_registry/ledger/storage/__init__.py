"""Where a node keeps its chain: the store protocol and its implementations (memory, SQL)."""

from __future__ import annotations

from did_registry.ledger.storage.base import Commit, LedgerStore
from did_registry.ledger.storage.memory import MemoryLedgerStore
from did_registry.ledger.storage.sql import SQLLedgerStore

__all__ = ["Commit", "LedgerStore", "MemoryLedgerStore", "SQLLedgerStore"]
