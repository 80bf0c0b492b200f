"""Bounded queues between the transport and its user (``docs/transport.md`` §5).

:class:`OutboundQueue` holds one peer's payloads waiting to be sent; when full it drops the
oldest, counting each drop. :class:`Inbox` holds received payloads until :meth:`Inbox.get`; each peer
has its own share, and a peer over its share waits (its connection is not read), so a flooding
peer is slowed down without crowding out the others.
"""

from __future__ import annotations

import asyncio
from collections import deque

from did_registry.errors import TransportClosed

__all__ = ["OutboundQueue", "Inbox"]


class OutboundQueue:
    """One peer's payloads to send, at most ``max_frames`` of them and ``max_bytes`` in all.

    Drop-oldest: a new payload always goes in, and the oldest ones make room. For consensus the
    newest messages matter most (later views and sequence numbers supersede earlier ones, and lost
    ones are recovered by retransmission, view change or state transfer), while a peer that fell
    behind has no use for a backlog of stale rounds.
    """

    __slots__ = ("_items", "_ready", "bytes", "dropped", "max_bytes", "max_frames")

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._items: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self.bytes = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, payload: bytes) -> int:
        """Append ``payload``, dropping the oldest as needed; return how many were dropped."""
        items = self._items
        dropped = 0
        while items and (len(items) >= self.max_frames or self.bytes + len(payload) > self.max_bytes):
            self.bytes -= len(items.popleft())
            dropped += 1
        items.append(payload)
        self.bytes += len(payload)
        self.dropped += dropped
        self._ready.set()
        return dropped

    def pop(self) -> bytes:
        """Remove and return the oldest payload (the queue must not be empty)."""
        payload = self._items.popleft()
        self.bytes -= len(payload)
        return payload

    async def wait(self) -> None:
        """Wait until the queue holds a payload."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()

    def clear(self) -> None:
        """Forget every queued payload (not counted as drops)."""
        self._items.clear()
        self.bytes = 0


class Inbox:
    """Received ``(peer, payload)`` pairs in arrival order, each peer holding a bounded share.

    A peer may have ``frames_per_peer`` payloads and ``bytes_per_peer`` bytes waiting (a payload is
    let in while the peer is under both, so one payload may overshoot the byte bound); beyond that
    :meth:`put` waits for :meth:`get` to make room.
    """

    __slots__ = ("_bytes", "_changed", "_closed", "_frames", "_items", "bytes_per_peer", "frames_per_peer")

    def __init__(self, frames_per_peer: int, bytes_per_peer: int) -> None:
        self.frames_per_peer = frames_per_peer
        self.bytes_per_peer = bytes_per_peer
        self._items: deque[tuple[str, bytes]] = deque()
        self._frames: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        self._changed = asyncio.Condition()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def waiting(self, peer: str) -> tuple[int, int]:
        """Payloads and bytes from ``peer`` waiting to be received."""
        return self._frames.get(peer, 0), self._bytes.get(peer, 0)

    def _has_room(self, peer: str) -> bool:
        frames, size = self.waiting(peer)
        return frames < self.frames_per_peer and size < self.bytes_per_peer

    async def put(self, peer: str, payload: bytes) -> None:
        """Add a payload from ``peer``, waiting while its share is full; dropped once closed."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._closed or self._has_room(peer))
            if self._closed:
                return
            self._items.append((peer, payload))
            self._frames[peer] = self._frames.get(peer, 0) + 1
            self._bytes[peer] = self._bytes.get(peer, 0) + len(payload)
            self._changed.notify_all()

    async def get(self) -> tuple[str, bytes]:
        """The oldest ``(peer, payload)``; raise :class:`TransportClosed` once closed and empty."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._closed or bool(self._items))
            if not self._items:
                raise TransportClosed("the transport is stopped")
            peer, payload = self._items.popleft()
            frames = self._frames[peer] - 1
            if frames:
                self._frames[peer] = frames
                self._bytes[peer] -= len(payload)
            else:
                del self._frames[peer], self._bytes[peer]
            self._changed.notify_all()
            return peer, payload

    async def close(self) -> None:
        """Stop taking payloads; :meth:`get` drains what is left, then raises :class:`TransportClosed`."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()
