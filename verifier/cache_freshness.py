"""How fresh a :class:`~verifier.ledger_cache.LedgerCache` is: the head it was last confirmed at, when,
and the newest certified block time it has applied.

A part of the cache (the :mod:`verifier.ledger_cache` docstring says what :meth:`~CacheFreshness.staleness`
counts, and why ``max_block_age`` bounds it).
"""

from __future__ import annotations

from did_registry.client import LedgerClient
from verifier.bounded_entries import CacheEntries

__all__ = ["CacheFreshness"]


class CacheFreshness(CacheEntries):
    """The freshness of a :class:`~verifier.ledger_cache.LedgerCache` (its constructor sets the
    attributes declared here)."""

    client: LedgerClient | None
    live: bool
    base: str | None
    known_head: int | None
    seen_at: float | None
    head_time: float | None
    max_block_age: float | None
    errors: list[str]

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

    def block_age(self) -> float | None:
        """Seconds since the newest certified block time the cache has applied (``None`` before one)."""
        return None if self.head_time is None else self.clock() - self.head_time
