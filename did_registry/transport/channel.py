"""The sealed session after the handshake: one key and one frame counter per direction (``docs/transport.md`` §4).

Every frame body is XSalsa20-Poly1305 (libsodium ``crypto_secretbox``) of the payload under the
direction's key, with the nonce the frame's number in that direction (24 bytes, big-endian, from 0).
The receiver opens frame ``k`` only with nonce ``k``, so a replayed, reordered, dropped or altered
frame fails to authenticate, and the connection must then be closed. No I/O.
"""

from __future__ import annotations

from did_registry.errors import TransportError
from did_registry.identity.crypto import SECRETBOX_NONCE_SIZE, secretbox_open, secretbox_seal

__all__ = ["MAX_FRAMES", "SecureChannel"]

MAX_FRAMES = 1 << 64
"""Frames a direction may carry before the session must be replaced (never reached in practice)."""


class SecureChannel:
    """Seal outgoing payloads and open incoming frames, each direction with its own key and counter."""

    __slots__ = ("_receive_key", "_received", "_send_key", "_sent")

    def __init__(self, send_key: bytes, receive_key: bytes) -> None:
        self._send_key = send_key
        self._receive_key = receive_key
        self._sent = 0
        self._received = 0

    @property
    def sent(self) -> int:
        """Frames sealed so far (the next one's number)."""
        return self._sent

    @property
    def received(self) -> int:
        """Frames opened so far (the number the next one must carry)."""
        return self._received

    def seal(self, payload: bytes) -> bytes:
        """Return the frame body carrying ``payload`` (16 bytes longer), numbered next in this direction."""
        if self._sent >= MAX_FRAMES:
            raise TransportError("frame counter exhausted: the session must be replaced")
        body = secretbox_seal(self._send_key, _nonce(self._sent), payload)
        self._sent += 1
        return body

    def open(self, body: bytes) -> bytes:
        """Return the payload of the next incoming frame, or raise :class:`DecryptionFailed`.

        A frame that is not exactly the next one the peer sealed (replayed, reordered, after a dropped
        one, or altered) fails here; the counter only moves on success.
        """
        if self._received >= MAX_FRAMES:
            raise TransportError("frame counter exhausted: the session must be replaced")
        payload = secretbox_open(self._receive_key, _nonce(self._received), body)
        self._received += 1
        return payload


def _nonce(counter: int) -> bytes:
    return counter.to_bytes(SECRETBOX_NONCE_SIZE, "big")
