"""Signature checks ahead of the block: a background thread that warms the ledger rules' memos.

A validator sees most transactions twice: first as requests a peer forwards, then in the block the
primary proposes. Executing the block must check every signature (two Ed25519 verifications for an
endorsed ``did.create``) and parse every new DID document, and the engine waits for that before it
can vote. :class:`Preverifier` does that work when the request is first seen, on a thread of its own
(libsodium releases the GIL while it verifies), so the block finds the results in the rules' memos
(:func:`did_registry.ledger.rules.preverify`). It decides nothing: execution checks everything again,
and a transaction the thread never reached is simply checked then. Its queue is bounded in count and
in bytes (a peer chooses how large the requests it forwards are); when full, new work is dropped,
never waited for.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import Final

from did_registry.ledger.application import LedgerApplication
from did_registry.ledger.txn import Transaction

__all__ = ["Preverifier"]

_QUEUE: Final = 20_000  # transactions waiting (a few blocks' worth); more are dropped
_QUEUE_BYTES: Final = 64 << 20  # and at most this many bytes of them (requests of up to 256 KiB)
_BATCH: Final = 256  # transactions taken off the queue at once


class Preverifier:
    """Warms :meth:`LedgerApplication.preverify` for transactions offered to it, on one thread."""

    def __init__(self, app: LedgerApplication, *, size: int = _QUEUE, max_bytes: int = _QUEUE_BYTES) -> None:
        self._app = app
        self._queue: queue.Queue[Transaction | None] = queue.Queue(size)
        self.max_bytes = max_bytes
        self._bytes = 0  # the request bytes of the transactions queued (under _lock)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.dropped = 0
        self.done = 0

    @property
    def waiting(self) -> int:
        """How many transactions wait in the queue."""
        return self._queue.qsize()

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def offer(self, txns: Sequence[Transaction]) -> None:
        """Queue ``txns`` for checking (those that do not fit are dropped); start the thread if needed."""
        self._start()
        for txn in txns:
            size = len(txn.leaf)
            with self._lock:
                if self._bytes + size > self.max_bytes:
                    self.dropped += 1
                    continue
                self._bytes += size
            try:
                self._queue.put_nowait(txn)
            except queue.Full:
                self._taken([txn])
                self.dropped += 1

    @property
    def waiting_bytes(self) -> int:
        """The request bytes of the transactions waiting in the queue."""
        return self._bytes

    def _taken(self, txns: Sequence[Transaction]) -> None:
        size = sum(len(txn.leaf) for txn in txns)
        with self._lock:
            self._bytes -= size

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (work still queued is dropped)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._taken([item])
        self._queue.put(None)
        thread.join(timeout)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="preverify", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < _BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._taken(batch)
                    self._app.preverify(batch)
                    return
                batch.append(item)
            self._taken(batch)
            self._app.preverify(batch)
            self.done += len(batch)
