"""Following a network: one node's certified header stream, checked against the other nodes.

The stream (``GET /events``) delivers each new certified header of ONE node, and the cache applies
the block it names. A node cut off from the other validators keeps its stream open (heartbeats) but
stops advancing while the rest of the network commits. So a second thread asks another node every
``poll_interval`` seconds, round robin, for the blocks after the cache's height (``GET
/sync/blocks``: a tiny answer when there is nothing new). Each block is checked (its commit
certificate against the trusted validators, its transactions against its header) and applied at
once; and when the streamed node has stayed behind a height another node reached for
``poll_interval`` seconds, the stream moves to that node (the open stream is cut at its socket).

A node that is down (refused, timing out) is skipped for the next one, in the same round; a node
that lies about a block is caught by the certificate and skipped too. A node may withhold blocks
(answer that it has nothing new): the others are asked in turn, and the cache counts as confirmed
at the head only when a node answers that it has nothing newer than what the cache has applied, or
when a streamed header past the cache's height is applied. A streamed header at or below the
cache's height confirms nothing: an honest node never sends one (its stream resumes after
``Last-Event-ID``, the cache's height), and a node replaying its last certified header must not keep
the cache looking fresh. A quiet network's stream carries heartbeats only, which confirm nothing
either: there the polls confirm the cache, or with polling off the request path catches up once
the cache is older than the policy's ``max_staleness``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import httpx

from did_registry.bounded_http import BOUNDS, bounded_lines
from did_registry.client import ANSWER_ERRORS, MAX_EVENT_BYTES, LedgerClient, LedgerUnavailable
from did_registry.errors import DidRegistryError
from did_registry.ledger.block import Block, BlockHeader, CommitCertificate

if TYPE_CHECKING:
    from verifier.ledger_cache import LedgerCache

__all__ = ["FOLLOW_ERRORS", "Follower", "sync_blocks"]

FOLLOW_ERRORS: Final = (LedgerUnavailable, DidRegistryError, *ANSWER_ERRORS)
"""What a node's failing or lying answer raises while following."""
_PAGES: Final = 10  # pages of blocks one poll applies at most (the stream catches up further)


def sync_blocks(client: LedgerClient, node: str, after: int) -> tuple[int, list[Block]]:
    """The head ``node`` claims (not proven) and the blocks it has after height ``after``, each
    checked against its commit certificate and its header, at consecutive heights from ``after + 1``."""
    response = client._http.get(f"{node.rstrip('/')}/sync/blocks", params={"from": after + 1})
    response.raise_for_status()
    data = response.json()
    claimed = data["head"]
    if not isinstance(claimed, int):
        raise ValueError(f"{node}: the head it claims is not a height")
    blocks: list[Block] = []
    for number, item in enumerate(data["blocks"]):
        block = Block.from_json(item["block"])  # its transactions must hash to the header's txn_root
        if block.header.height != after + 1 + number:
            raise ValueError(f"{node}: asked for blocks from {after + 1}, got block {block.header.height}")
        certificate = item.get("certificate")
        client.verify_header(
            block.header, None if certificate is None else CommitCertificate.from_json(certificate)
        )
        blocks.append(block)
    return claimed, blocks


class Follower:
    """The threads that keep a :class:`~verifier.ledger_cache.LedgerCache` fresh (module docstring).

    ``stream`` and ``watch`` are clients of their own (one per thread); without ``watch`` only the
    stream is followed. ``retry`` is how long to wait after a whole round of nodes failed.
    """

    def __init__(
        self,
        cache: LedgerCache,
        stream: LedgerClient,
        watch: LedgerClient | None,
        *,
        poll_interval: float,
        retry: float,
    ) -> None:
        self.cache = cache
        self.stream_client = stream
        self.watch_client = watch
        self.nodes: Sequence[str] = list(stream.nodes)
        self.poll_interval = poll_interval
        self.retry = retry
        self.streamed: str | None = None
        """The node whose stream is read now (``None`` between connections)."""
        self.streamed_height = 0
        """The highest header that stream delivered (the cache's height when it connected)."""
        self.switches = 0
        """How many times the stream moved to another node because it lagged."""
        self._switch_to: str | None = None
        self._lag: tuple[int, float] | None = None  # a height another node reached, and since when
        self._response: httpx.Response | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the stream thread and, with a watch client, the polling thread."""
        network = self.cache.network
        targets = [(self._stream_loop, f"trellis-follow-{network}")]
        if self.watch_client is not None:
            targets.append((self._watch_loop, f"trellis-watch-{network}"))
        for target, name in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(thread)
            thread.start()

    def alive(self) -> bool:
        """Whether every thread still runs."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop both threads: the open stream is cut, the polling thread sees the flag at once."""
        self._stop.set()
        self._cut()
        for thread in self._threads:
            thread.join(timeout)

    # -- the stream -------------------------------------------------------------------------
    def _stream_loop(self) -> None:
        failed, turn = 0, 0
        while not self._stop.is_set():
            node = self._switch_to or self.nodes[turn % len(self.nodes)]
            self._switch_to = None
            delivered = False
            try:
                if self.cache.height is None:
                    head = self.stream_client.head().height
                    self.cache.note_head(head)
                    self.cache.advance(self.stream_client, head)
                delivered = self._stream(node)
            except Exception as exc:
                if not self._stop.is_set() and self._switch_to is None:
                    self.cache.note_error(f"header stream of {node}: {exc!r}"[:500])
            if self._stop.is_set():
                return
            if self._switch_to is not None:
                continue  # moved by the polling thread: connect to the new node at once
            turn = self.nodes.index(node) + 1
            failed = 0 if delivered else failed + 1
            if failed >= len(self.nodes):  # a whole round of nodes without a header
                failed = 0
                self._stop.wait(self.retry)

    def _stream(self, node: str) -> bool:
        """Read ``node``'s header stream until it ends, is cut, or :meth:`stop` is called; whether it
        delivered a header."""
        client, cache = self.stream_client, self.cache
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(cache.height or 0)}
        delivered = False
        url = node.rstrip("/") + "/events"
        with client._http.stream(
            "GET",
            url,
            headers=headers,
            timeout=httpx.Timeout(10.0, read=None),
            extensions={BOUNDS: (None, None)},
        ) as stream:
            stream.raise_for_status()
            with self._lock:
                self.streamed, self.streamed_height, self._response = node, cache.height or 0, stream
            cache.prefer(node)
            try:
                for line in bounded_lines(stream, MAX_EVENT_BYTES):
                    if self._stop.is_set() or self._switch_to is not None:
                        break
                    if not line.startswith("data:"):
                        continue
                    data = json.loads(line[5:])
                    header = BlockHeader.from_json(data["header"])
                    certificate = data.get("certificate")
                    client.verify_header(
                        header, None if certificate is None else CommitCertificate.from_json(certificate)
                    )
                    delivered = True
                    with self._lock:
                        self.streamed_height = max(self.streamed_height, header.height)
                    cache.note_head(header.height)
                    if cache.height is None or header.height > cache.height:
                        cache.advance(client, header.height, first=node)
                    # Else the cache has that block already (the polling thread applied it first, and
                    # confirmed it then; or the node replays an old header): it confirms nothing, or one
                    # node sending its last certified header again and again would keep the cache fresh.
            finally:
                with self._lock:
                    self.streamed, self._response = None, None
        return delivered

    def _cut(self) -> None:
        """Shut the open stream's socket down, so the thread blocked reading it wakes up now."""
        with self._lock:
            response = self._response
        network_stream = None if response is None else response.extensions.get("network_stream")
        sock = None if network_stream is None else network_stream.get_extra_info("socket")
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    # -- asking the other nodes -------------------------------------------------------------
    def _watch_loop(self) -> None:
        turn = 0
        while not self._stop.wait(self.poll_interval):
            if self.cache.height is None:
                continue
            others = [n for n in self.nodes if n != self.streamed] or list(self.nodes)
            for _ in range(len(others)):  # a node down or lying: the next one, this round
                node = others[turn % len(others)]
                turn += 1
                try:
                    self.poll(node)
                    break
                except Exception as exc:
                    self.cache.note_error(f"blocks of {node}: {exc!r}"[:500])
                if self._stop.is_set():
                    return

    def poll(self, node: str) -> None:
        """Apply the blocks ``node`` has past the cache's height; confirm the cache when the node has
        nothing newer; move the stream to ``node`` when the streamed node lags behind it."""
        assert self.watch_client is not None
        cache = self.cache
        for _ in range(_PAGES):
            after = cache.height
            if after is None:
                return
            claimed, blocks = sync_blocks(self.watch_client, node, after)
            if blocks:
                cache.note_head(blocks[-1].header.height)
                cache.apply_blocks(blocks)
            if not blocks or claimed <= blocks[-1].header.height:
                break
        height = cache.height or 0
        if claimed <= height:
            cache.confirm(height)  # the node has nothing newer than what the cache applied
        self._check_lag(node, min(claimed, height))

    def _check_lag(self, node: str, reached: int) -> None:
        now = time.monotonic()
        with self._lock:
            if self.streamed is None or self.streamed == node:
                return
            if self._lag is not None and self.streamed_height >= self._lag[0]:
                self._lag = None  # the stream got there
            if self._lag is None and self.streamed_height < reached:
                self._lag = (reached, now)
            lagging = self._lag is not None and now - self._lag[1] >= self.poll_interval
            if not lagging or reached < (self._lag or (0, 0.0))[0]:
                return
            self._lag = None
            self._switch_to = node
            self.switches += 1
        self.cache.prefer(node)
        self._cut()
