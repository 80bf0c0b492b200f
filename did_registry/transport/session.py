"""A peer's state across connections, and one authenticated connection pumping frames (``docs/transport.md`` §4-5).

A :class:`Link` runs three tasks until the first ends: the reader (open each frame, deliver it to
the inbox), the writer (seal the peer's queued payloads, or an empty keepalive when the queue has
been idle for ``keepalive_interval``) and a watchdog (end the link when nothing has arrived for
``idle_timeout``). A frame that fails to open, or an oversized length, ends the link as a protocol
error. Closing aborts the socket, discarding unsent bytes, so a peer that stops reading cannot hold it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from did_registry.errors import DecryptionFailed, InvalidFrame
from did_registry.ledger.validators import Validator
from did_registry.transport.channel import SecureChannel
from did_registry.transport.config import TransportConfig
from did_registry.transport.frames import FRAME_HEADER_SIZE
from did_registry.transport.queues import Inbox, OutboundQueue
from did_registry.transport.status import Counters, PeerStatus
from did_registry.transport.stream import FrameStream

__all__ = ["PeerState", "Link"]

_log = logging.getLogger("did_registry.transport")


class PeerState:
    """What the transport keeps for one peer across connections: entry, queue, counters, link, dialer."""

    __slots__ = ("counters", "dialer", "last_seen", "link", "queue", "validator")

    def __init__(self, validator: Validator, config: TransportConfig) -> None:
        self.validator = validator
        self.queue = OutboundQueue(config.outbound_frames, config.outbound_bytes)
        self.counters = Counters()
        self.link: Link | None = None
        self.dialer: asyncio.Task[None] | None = None
        self.last_seen: float | None = None

    def retire(self, reason: str) -> None:
        """Stop dialing this peer and close its link, if any."""
        if self.dialer is not None:
            self.dialer.cancel()
            self.dialer = None
        if self.link is not None:
            self.link.close(reason)

    def status(self) -> PeerStatus:
        """A snapshot for ``/health``."""
        link = self.link
        return PeerStatus(
            id=self.validator.id,
            address=self.validator.address,
            connected=link is not None,
            direction=link.direction if link else None,
            connected_since=link.since if link else None,
            last_seen=self.last_seen,
            queued_frames=len(self.queue),
            queued_bytes=self.queue.bytes,
            counters=replace(self.counters),
        )


class Link:
    """One authenticated connection to a peer, carrying frames both ways until it ends."""

    __slots__ = (
        "_channel",
        "_config",
        "_delivering",
        "_heard",
        "_inbox",
        "_tasks",
        "_totals",
        "direction",
        "peer",
        "reason",
        "since",
        "stream",
    )

    def __init__(
        self,
        peer: PeerState,
        stream: FrameStream,
        channel: SecureChannel,
        direction: str,
        *,
        inbox: Inbox,
        totals: Counters,
        config: TransportConfig,
    ) -> None:
        self.peer = peer
        self.stream = stream
        self.direction = direction
        self.since = time.time()
        self.reason: str | None = None
        self._channel = channel
        self._inbox = inbox
        self._totals = totals
        self._config = config
        self._heard = asyncio.get_running_loop().time()  # the last frame in, on the loop's clock
        self._delivering = False  # waiting for room in the inbox: not reading, yet not idle
        self._tasks: tuple[asyncio.Task[str], ...] = ()

    def close(self, reason: str) -> None:
        """End the link now (the first reason given is kept)."""
        if self.reason is None:
            self.reason = reason
        self.stream.close()
        for task in self._tasks:
            task.cancel()

    async def run(self) -> str:
        """Pump frames until the link ends; return why it ended."""
        self.stream.max_frame = self._config.max_frame
        loop = asyncio.get_running_loop()
        self._tasks = (
            loop.create_task(self._read()),
            loop.create_task(self._write()),
            loop.create_task(self._watchdog()),
        )
        try:
            await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.close(self._ending())
            await asyncio.gather(*self._tasks, return_exceptions=True)
        assert self.reason is not None
        return self.reason

    def _ending(self) -> str:
        for task in self._tasks:
            if not task.done() or task.cancelled():
                continue
            exc = task.exception()
            if exc is None:
                return task.result()
            if isinstance(exc, InvalidFrame | DecryptionFailed):
                for counters in (self.peer.counters, self._totals):
                    counters.protocol_errors += 1
                _log.warning("closing the connection with %s: %s", self.peer.validator.id, exc)
                return f"protocol error: {exc}"
            return f"connection error: {exc!r}"
        return "closed"

    async def _read(self) -> str:
        loop, stream, peer = asyncio.get_running_loop(), self.stream, self.peer
        while True:
            body = await stream.read()
            if body is None:
                return "closed by the peer"
            payload = self._channel.open(body)
            self._heard = loop.time()
            peer.last_seen = time.time()
            for counters in (peer.counters, self._totals):
                counters.frames_in += 1
                counters.bytes_in += len(body) + FRAME_HEADER_SIZE
            if payload:
                self._delivering = True
                await self._inbox.put(peer.validator.id, payload)
                self._delivering = False
                self._heard = loop.time()

    async def _write(self) -> str:
        config, stream, queue = self._config, self.stream, self.peer.queue
        while True:
            if not len(queue):
                try:
                    async with asyncio.timeout(config.keepalive_interval):
                        await queue.wait()
                except TimeoutError:
                    pass
            if stream.closing:
                return "connection lost"
            body = self._channel.seal(queue.pop() if len(queue) else b"")
            stream.write(body, config.max_frame)
            unsent = stream.unsent
            while stream.congested:  # a large frame on a slow link may take long: wait while it moves
                try:
                    async with asyncio.timeout(config.write_timeout):
                        await stream.drain()
                except TimeoutError:
                    if stream.unsent >= unsent:
                        return f"the peer read nothing for {config.write_timeout} s"
                    unsent = stream.unsent
            for counters in (self.peer.counters, self._totals):
                counters.frames_out += 1
                counters.bytes_out += len(body) + FRAME_HEADER_SIZE

    async def _watchdog(self) -> str:
        """One timer per link rather than one per frame: it fires within 1.25 ``idle_timeout``."""
        idle, loop = self._config.idle_timeout, asyncio.get_running_loop()
        while True:
            await asyncio.sleep(idle / 4)
            heard = max(self._heard, self.stream.last_read)  # bytes of a frame still arriving count
            if not self._delivering and loop.time() - heard > idle:
                return f"nothing heard for {idle} s"
