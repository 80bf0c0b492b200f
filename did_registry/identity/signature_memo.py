"""A bounded memo of verified Ed25519 signatures: check a signature once per process.

A transaction is executed several times on one node (admission, proposal, validation) and a device's
credential is shown to a verifier on every request; the signature is the same each time. The memo
remembers only the pure cryptographic fact "this key signed this message with this signature"
(oldest forgotten first); whether the key may sign is for the caller to decide every time.

Each fact is kept as the SHA-256 of the key, the message's length, the message and the signature
(with a tag telling a signature's bytes from its text), so an entry costs the same small amount
whatever the message: a verifier can remember the credentials of a large fleet. The length prefix
makes the encoding unambiguous: no other triple hashes the same input.
"""

from __future__ import annotations

from collections.abc import Callable
from hashlib import sha256

from did_registry.bounded_cache import BoundedCache
from did_registry.identity.crypto import Ed25519PublicKey

__all__ = ["SignatureMemo"]


class SignatureMemo:
    """Verified ``(key, message, signature)`` triples, at most ``size`` of them (thread-safe enough:
    a race costs one more verification, never a wrong answer)."""

    def __init__(self, size: int) -> None:
        self._seen: BoundedCache[bytes, bool] = BoundedCache(size)

    def verify(
        self,
        key: Ed25519PublicKey,
        message: bytes,
        signature: bytes | str,
        decode: Callable[[str], bytes] | None = None,
    ) -> None:
        """Check ``signature`` (bytes, or text that ``decode`` turns into bytes only when it was not
        seen before); raise as :meth:`Ed25519PublicKey.verify` does."""
        entry = _fact(bytes(key), message, signature)
        if entry in self._seen:
            return
        if isinstance(signature, str):
            if decode is None:
                raise TypeError("a signature given as text needs a decode function")
            key.verify(message, decode(signature))
        else:
            key.verify(message, signature)
        self._seen.put(entry, True)

    def __len__(self) -> int:
        return len(self._seen)


def _fact(key: bytes, message: bytes, signature: bytes | str) -> bytes:
    """The digest a verified triple is remembered by (the key is 32 bytes; the message is prefixed
    with its length, so where it ends and the signature begins is fixed)."""
    if isinstance(signature, str):
        tag, raw = b"t", signature.encode("utf-8", "surrogatepass")
    else:
        tag, raw = b"b", bytes(signature)
    return sha256(tag + key + len(message).to_bytes(8, "big") + message + raw).digest()
