"""A bounded memo of verified Ed25519 signatures: check a signature once per process.

A transaction is executed several times on one node (admission, proposal, validation) and a device's
credential is shown to a verifier on every request; the signature is the same each time. The memo
remembers only the pure cryptographic fact "this key signed this message with this signature"
(oldest forgotten first); whether the key may sign is for the caller to decide every time.
"""

from __future__ import annotations

from collections.abc import Callable

from did_registry.bounded_cache import BoundedCache
from did_registry.identity.crypto import Ed25519PublicKey

__all__ = ["SignatureMemo"]


class SignatureMemo:
    """Verified ``(key, message, signature)`` triples, at most ``size`` of them (thread-safe enough:
    a race costs one more verification, never a wrong answer)."""

    def __init__(self, size: int) -> None:
        self._seen: BoundedCache[tuple[bytes, bytes, bytes | str], bool] = BoundedCache(size)

    def verify(
        self,
        key: Ed25519PublicKey,
        message: bytes,
        signature: bytes | str,
        decode: Callable[[str], bytes] | None = None,
    ) -> None:
        """Check ``signature`` (bytes, or text that ``decode`` turns into bytes only when it was not
        seen before); raise as :meth:`Ed25519PublicKey.verify` does."""
        entry = (bytes(key), message, signature)
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
