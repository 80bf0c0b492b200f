"""Session keys: an ``hmac-sha256`` key both ends derive from X25519 key agreement.

A device and a verifier each hold an X25519 key (the device's is its DID's ``keyAgreement`` key, the
X25519 form of its Ed25519 key). Each calls :func:`session_key` with its own private key, the other's
public key and the session id, and gets the same 32 bytes: HKDF-SHA-256 (RFC 5869) of the X25519
shared secret (RFC 7748 §6.1), salt ``trellis/session/v1``, info the session id in UTF-8. The key
signs the session's requests with RFC 9421 ``hmac-sha256`` (:mod:`wallet.http_signatures`).
"""

from __future__ import annotations

import hmac
from typing import Final

from did_registry.errors import InvalidKey
from did_registry.identity.crypto import X25519PrivateKey, X25519PublicKey, hkdf_sha256
from wallet.errors import InvalidSharedSecret

__all__ = ["SESSION_KEY_SALT", "SESSION_KEY_SIZE", "session_key"]

SESSION_KEY_SALT: Final = b"trellis/session/v1"
"""HKDF salt that binds the key to this protocol and its version."""
SESSION_KEY_SIZE: Final = 32
"""Bytes of a session key."""


def session_key(private: X25519PrivateKey, peer: X25519PublicKey, session_id: str) -> bytes:
    """The session key for ``session_id`` between ``private``'s holder and ``peer``.

    Raises :class:`InvalidSharedSecret` when the exchange fails or gives the all-zero secret, which
    a low-order ``peer`` key forces (RFC 7748 §6.1 asks implementations to check for it).
    """
    try:
        info = session_id.encode("utf-8")
    except (AttributeError, UnicodeEncodeError):
        raise InvalidSharedSecret(f"the session id {session_id!r} is not a UTF-8 string") from None
    if not info:
        raise InvalidSharedSecret("the session id is empty")
    try:
        shared = private.exchange(peer)
    except InvalidKey as exc:
        raise InvalidSharedSecret(f"X25519 key agreement failed: {exc}") from None
    if hmac.compare_digest(shared, bytes(len(shared))):
        raise InvalidSharedSecret("X25519 gave the all-zero shared secret (the peer key is of low order)")
    return hkdf_sha256(shared, salt=SESSION_KEY_SALT, info=info, size=SESSION_KEY_SIZE)
