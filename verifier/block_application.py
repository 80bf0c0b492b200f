"""Applying certified blocks to a :class:`~verifier.ledger_cache.LedgerCache`: catching up with the
nodes' head, dropping what each block touched, and starting over when a block does not follow the
header the cache stands on.

A part of the cache (see the :mod:`verifier.ledger_cache` docstring); the blocks are fetched and read
with :mod:`verifier.block_changes`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Final

from did_registry.bounded_cache import remember
from did_registry.client import LedgerClient, LedgerUnavailable
from did_registry.ledger.block import Block
from verifier.block_changes import Changes, block_time, changes_of, fetch_block, fetch_blocks
from verifier.bounded_entries import _track
from verifier.cache_freshness import CacheFreshness

__all__ = ["MAX_CATCH_UP", "BlockApplication"]

MAX_CATCH_UP: Final = 1000
"""Blocks a cache replays to catch up; further behind, it drops everything and starts afresh."""


class BlockApplication(CacheFreshness):
    """The blocks a :class:`~verifier.ledger_cache.LedgerCache` applies (its constructor sets the
    attributes declared here)."""

    restarts: int
    caught_up_at: float | None
    listeners: list[Callable[[Changes], None]]
    _advance_lock: threading.Lock
    _catch_up_lock: threading.Lock
    _catch_up_round: int
    _catch_up_failure: str | None

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
