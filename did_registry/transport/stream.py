"""A TCP connection that carries frames (``docs/transport.md`` §2), over asyncio streams."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

from did_registry.errors import InvalidTransportConfig
from did_registry.transport.frames import FrameDecoder, frame_header

__all__ = ["FrameStream", "split_address"]


def split_address(address: str) -> tuple[str, int]:
    """Split a validator address ``host:port`` (or ``[v6]:port``) into host and port.

    Raises :class:`~did_registry.errors.InvalidTransportConfig` (a ``ValueError``) naming the
    address when it has no host, or its port is not a number from 1 to 65535.
    """
    host, _, port = address.rpartition(":")
    if not (host and port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise InvalidTransportConfig(f"{address!r} is not host:port with a port from 1 to 65535")
    return host.removeprefix("[").removesuffix("]"), int(port)


class FrameStream:
    """Frames in and out of one TCP connection: reads go through a :class:`FrameDecoder`.

    ``max_frame`` is the limit on incoming lengths; it starts small for the handshake and is raised
    for the session. Reads take at most ``chunk`` bytes from the socket at a time.
    """

    __slots__ = ("_decoder", "_frames", "chunk", "last_read", "peer", "reader", "writer")

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_frame: int, chunk: int
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.chunk = chunk
        self._decoder = FrameDecoder(max_frame)
        self._frames: deque[bytes] = deque()
        self.last_read = time.monotonic()
        """When bytes last arrived (the event loop's clock): a large frame on a slow link is progress."""
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"

    @property
    def max_frame(self) -> int:
        """The largest incoming frame length accepted."""
        return self._decoder.max_frame

    @max_frame.setter
    def max_frame(self, value: int) -> None:
        self._decoder.max_frame = value

    async def read(self) -> bytes | None:
        """The next frame body, or ``None`` once the peer has closed (a partial frame is discarded).

        Raises :class:`~did_registry.errors.FrameTooLarge` on an oversized length prefix.
        """
        if not self._frames and self._decoder.buffered:  # frames that arrived with the last one read
            self._frames.extend(self._decoder.feed(b""))
        while not self._frames:
            data = await self.reader.read(self.chunk)
            if not data:
                return None
            self.last_read = time.monotonic()
            self._frames.extend(self._decoder.feed(data))
        return self._frames.popleft()

    def write(self, body: bytes, max_frame: int) -> None:
        """Queue one frame in the socket's buffer (call :meth:`drain` to wait for room)."""
        self.writer.write(frame_header(len(body), max_frame))
        self.writer.write(body)

    @property
    def closing(self) -> bool:
        """Whether the connection is closed or closing."""
        return self.writer.transport.is_closing()

    @property
    def congested(self) -> bool:
        """Whether the socket's write buffer is above its high-water mark (:meth:`drain` would wait)."""
        transport = self.writer.transport
        return transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1]

    @property
    def unsent(self) -> int:
        """Bytes in the socket's write buffer, not yet taken by the peer."""
        return self.writer.transport.get_write_buffer_size()

    async def drain(self) -> None:
        """Wait until the socket's write buffer is below its high-water mark."""
        await self.writer.drain()

    def close(self) -> None:
        """Close the connection at once, discarding unsent bytes (a peer that stops reading cannot hold it)."""
        self.writer.transport.abort()

    async def aclose(self) -> None:
        """Close the connection and wait until it is closed; errors of a dying socket are ignored."""
        self.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
