"""Ed25519 and X25519 keys as small value types: the only module in Trellis that imports :mod:`nacl`.

Signing keys are kept as their 32-byte seed (RFC 8032 private key). Verification raises
:class:`~did_registry.errors.BadSignature` and never returns ``False``. X25519 keys for
``keyAgreement`` are derived from Ed25519 keys by the birational map of RFC 7748 (libsodium's
``crypto_sign_ed25519_pk_to_curve25519``), as the did:key method requires.
"""

from __future__ import annotations

import hashlib
import hmac

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing
import nacl.utils

from did_registry.errors import BadSignature, InvalidKey

__all__ = [
    "ED25519_PUBLIC_KEY_SIZE",
    "ED25519_SEED_SIZE",
    "ED25519_SIGNATURE_SIZE",
    "X25519_KEY_SIZE",
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "X25519PrivateKey",
    "X25519PublicKey",
    "random_bytes",
    "sha256",
]

ED25519_SEED_SIZE = 32
ED25519_PUBLIC_KEY_SIZE = 32
ED25519_SIGNATURE_SIZE = 64
X25519_KEY_SIZE = 32

_crypto_sign_open = nacl.bindings.crypto_sign_open


def sha256(data: bytes) -> bytes:
    """Return the SHA-256 digest of ``data``."""
    return hashlib.sha256(data).digest()


def random_bytes(size: int) -> bytes:
    """Return ``size`` bytes from the operating system's CSPRNG (libsodium ``randombytes``)."""
    return nacl.utils.random(size)


def _check_len(name: str, data: bytes, size: int) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidKey(f"{name} must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) != size:
        raise InvalidKey(f"{name} must be {size} bytes, got {len(data)}")
    return data


class Ed25519PublicKey:
    """An Ed25519 public (verification) key of 32 bytes."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = _check_len("Ed25519 public key", key, ED25519_PUBLIC_KEY_SIZE)

    def __bytes__(self) -> bytes:
        return self._key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ed25519PublicKey):
            return NotImplemented
        return hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash((Ed25519PublicKey, self._key))

    def __repr__(self) -> str:
        return f"Ed25519PublicKey({self._key.hex()})"

    def verify(self, message: bytes, signature: bytes) -> None:
        """Check ``signature`` over ``message``; raise :class:`BadSignature` when it does not verify."""
        if len(signature) != ED25519_SIGNATURE_SIZE:
            raise BadSignature(
                f"an Ed25519 signature is {ED25519_SIGNATURE_SIZE} bytes, got {len(signature)}"
            )
        try:
            _crypto_sign_open(bytes(signature) + message, self._key)
        except nacl.exceptions.BadSignatureError:
            raise BadSignature("Ed25519 signature does not verify") from None
        except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
            raise BadSignature(f"Ed25519 verification failed: {exc}") from None

    def to_x25519(self) -> X25519PublicKey:
        """Map this key to its X25519 (Montgomery) form for key agreement."""
        try:
            return X25519PublicKey(nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(self._key))
        except (nacl.exceptions.CryptoError, RuntimeError) as exc:
            raise InvalidKey(f"Ed25519 public key has no X25519 form: {exc}") from None


class Ed25519PrivateKey:
    """An Ed25519 signing key, kept as its 32-byte seed."""

    __slots__ = ("_public", "_signing")

    def __init__(self, seed: bytes) -> None:
        seed = _check_len("Ed25519 seed", seed, ED25519_SEED_SIZE)
        self._signing = nacl.signing.SigningKey(seed)
        self._public = Ed25519PublicKey(bytes(self._signing.verify_key))

    @classmethod
    def generate(cls) -> Ed25519PrivateKey:
        """Create a new key from the operating system's CSPRNG."""
        return cls(random_bytes(ED25519_SEED_SIZE))

    @property
    def seed(self) -> bytes:
        """The 32-byte seed (the RFC 8032 private key); handle with care."""
        return bytes(self._signing)

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The matching public key."""
        return self._public

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        return self._signing.sign(message).signature

    def to_x25519(self) -> X25519PrivateKey:
        """Map this key to its X25519 form (matches ``public_key.to_x25519()``)."""
        return X25519PrivateKey(self._signing.to_curve25519_private_key().encode())

    def __repr__(self) -> str:
        return f"Ed25519PrivateKey(public={self._public._key.hex()})"


class X25519PublicKey:
    """An X25519 public key of 32 bytes (``keyAgreement``)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = _check_len("X25519 public key", key, X25519_KEY_SIZE)

    def __bytes__(self) -> bytes:
        return self._key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, X25519PublicKey):
            return NotImplemented
        return hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash((X25519PublicKey, self._key))

    def __repr__(self) -> str:
        return f"X25519PublicKey({self._key.hex()})"


class X25519PrivateKey:
    """An X25519 private key for Diffie-Hellman key agreement."""

    __slots__ = ("_private",)

    def __init__(self, key: bytes) -> None:
        self._private = nacl.public.PrivateKey(_check_len("X25519 private key", key, X25519_KEY_SIZE))

    @classmethod
    def generate(cls) -> X25519PrivateKey:
        """Create a new key from the operating system's CSPRNG."""
        return cls(random_bytes(X25519_KEY_SIZE))

    @property
    def public_key(self) -> X25519PublicKey:
        """The matching public key."""
        return X25519PublicKey(bytes(self._private.public_key))

    def exchange(self, peer: X25519PublicKey) -> bytes:
        """Return the raw 32-byte X25519 shared secret with ``peer`` (hash it before use)."""
        try:
            return nacl.bindings.crypto_scalarmult(bytes(self._private), bytes(peer))
        except (nacl.exceptions.CryptoError, RuntimeError) as exc:
            raise InvalidKey(f"X25519 exchange failed: {exc}") from None

    def __repr__(self) -> str:
        return f"X25519PrivateKey(public={bytes(self._private.public_key).hex()})"
