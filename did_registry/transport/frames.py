"""Length-prefixed frames, the transport's unit on the wire (``docs/transport.md`` §2). No I/O.

A frame is a 4-byte big-endian length ``n`` followed by ``n`` bytes of body. A length above the
limit is refused as soon as its 4 bytes are seen, before any of the body is read or buffered.
"""

from __future__ import annotations

from did_registry.errors import FrameTooLarge

__all__ = ["FRAME_HEADER_SIZE", "frame_header", "encode_frame", "FrameDecoder"]

FRAME_HEADER_SIZE = 4
"""Bytes of the big-endian length prefix."""


def frame_header(length: int, max_frame: int) -> bytes:
    """The 4-byte prefix of a frame body of ``length`` bytes; :class:`FrameTooLarge` above ``max_frame``."""
    if length > max_frame:
        raise FrameTooLarge(length, max_frame)
    return length.to_bytes(FRAME_HEADER_SIZE, "big")


def encode_frame(body: bytes, max_frame: int) -> bytes:
    """The frame carrying ``body``: its length prefix, then the body."""
    return frame_header(len(body), max_frame) + body


class FrameDecoder:
    """Cut a byte stream into frame bodies, refusing an oversized length before buffering its body.

    Feed it bytes as they arrive; each call returns the frames completed so far. A partial frame stays
    buffered until the rest arrives, so at most ``4 + max_frame`` bytes plus one fed chunk are held.
    ``max_frame`` may be raised between calls (after the handshake, for instance).
    """

    __slots__ = ("_buffer", "max_frame")

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the bodies of the frames it completes, in order.

        Raises :class:`FrameTooLarge` when the next length prefix exceeds ``max_frame``; the stream is
        then unusable (the connection must be closed). An oversized prefix behind complete frames is
        kept, and judged at the next call (``feed(b"")``), with the limit in force then.
        """
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        start, end = 0, len(buffer)
        while end - start >= FRAME_HEADER_SIZE:
            length = int.from_bytes(buffer[start : start + FRAME_HEADER_SIZE], "big")
            if length > self.max_frame:
                if frames:  # return those first: the limit may be raised before this one is read
                    break
                raise FrameTooLarge(length, self.max_frame)
            stop = start + FRAME_HEADER_SIZE + length
            if stop > end:
                break
            frames.append(bytes(buffer[start + FRAME_HEADER_SIZE : stop]))
            start = stop
        if start:
            del buffer[:start]
        return frames
