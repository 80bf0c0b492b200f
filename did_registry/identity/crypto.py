"""Ed25519 and X25519 keys as small value types: the only module in Trellis that imports :mod:`nacl`.

Signing keys are kept as their 32-byte seed (RFC 8032 private key). Verification raises
:class:`~did_registry.errors.BadSignature` and never returns ``False``. X25519 keys for
``keyAgreement`` are derived from Ed25519 keys by the birational map of RFC 7748 (libsodium's
``crypto_sign_ed25519_pk_to_curve25519``), as the did:key method requires.

Encrypted storage (the wallet's keystore) gets two primitives here as well: Argon2id key derivation
(RFC 9106; libsodium ``crypto_pwhash`` with ``ALG_ARGON2ID13``) and XSalsa20-Poly1305 authenticated
encryption (libsodium ``crypto_secretbox``). Opening a box that does not authenticate raises
:class:`~did_registry.errors.DecryptionFailed`.
"""

from __future__ import annotations

import hashlib
import hmac

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.pwhash.argon2id
import nacl.secret
import nacl.signing
import nacl.utils

from did_registry.errors import BadSignature, DecryptionFailed, InvalidKey

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
    "ARGON2ID_SALT_SIZE",
    "ARGON2ID_OPSLIMIT_MIN",
    "ARGON2ID_MEMLIMIT_MIN",
    "ARGON2ID_OPSLIMIT_INTERACTIVE",
    "ARGON2ID_MEMLIMIT_INTERACTIVE",
    "ARGON2ID_OPSLIMIT_MODERATE",
    "ARGON2ID_MEMLIMIT_MODERATE",
    "ARGON2ID_OPSLIMIT_SENSITIVE",
    "ARGON2ID_MEMLIMIT_SENSITIVE",
    "SECRETBOX_KEY_SIZE",
    "SECRETBOX_NONCE_SIZE",
    "SECRETBOX_MAC_SIZE",
    "derive_key_argon2id",
    "secretbox_seal",
    "secretbox_open",
    "hkdf_sha256",
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

    def is_valid_point(self) -> bool:
        """Whether the key is a usable Ed25519 public key: the canonical encoding of a point on the
        curve, in its prime-order subgroup and not of small order (libsodium
        ``crypto_core_ed25519_is_valid_point``). Every key an :class:`Ed25519PrivateKey` makes is
        one; no key generation makes any other, and none other has an X25519 form (:meth:`to_x25519`)."""
        return bool(nacl.bindings.crypto_core_ed25519_is_valid_point(self._key))

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


ARGON2ID_SALT_SIZE: int = nacl.pwhash.argon2id.SALTBYTES
"""Bytes of salt Argon2id takes (16)."""
ARGON2ID_OPSLIMIT_MIN: int = nacl.pwhash.argon2id.OPSLIMIT_MIN
"""libsodium's smallest Argon2id ``opslimit`` (passes over memory): 1."""
ARGON2ID_MEMLIMIT_MIN: int = nacl.pwhash.argon2id.MEMLIMIT_MIN
"""libsodium's smallest Argon2id ``memlimit`` in bytes: 8 KiB."""
ARGON2ID_OPSLIMIT_INTERACTIVE: int = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
"""libsodium's ``interactive`` Argon2id ``opslimit`` (2)."""
ARGON2ID_MEMLIMIT_INTERACTIVE: int = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
"""libsodium's ``interactive`` Argon2id ``memlimit`` (64 MiB)."""
ARGON2ID_OPSLIMIT_MODERATE: int = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
"""libsodium's ``moderate`` Argon2id ``opslimit`` (3)."""
ARGON2ID_MEMLIMIT_MODERATE: int = nacl.pwhash.argon2id.MEMLIMIT_MODERATE
"""libsodium's ``moderate`` Argon2id ``memlimit`` (256 MiB)."""
ARGON2ID_OPSLIMIT_SENSITIVE: int = nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE
"""libsodium's ``sensitive`` Argon2id ``opslimit`` (4)."""
ARGON2ID_MEMLIMIT_SENSITIVE: int = nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE
"""libsodium's ``sensitive`` Argon2id ``memlimit`` (1 GiB)."""
SECRETBOX_KEY_SIZE: int = nacl.secret.SecretBox.KEY_SIZE
"""Bytes of an XSalsa20-Poly1305 key (32)."""
SECRETBOX_NONCE_SIZE: int = nacl.secret.SecretBox.NONCE_SIZE
"""Bytes of an XSalsa20-Poly1305 nonce (24): random ones of this size never collide in practice."""
SECRETBOX_MAC_SIZE: int = nacl.secret.SecretBox.MACBYTES
"""Bytes the Poly1305 tag adds to a sealed message (16)."""


def derive_key_argon2id(
    passphrase: bytes,
    salt: bytes,
    opslimit: int,
    memlimit: int,
    size: int = SECRETBOX_KEY_SIZE,
) -> bytes:
    """Derive ``size`` key bytes from ``passphrase`` with Argon2id v1.3.

    This is libsodium ``crypto_pwhash`` with ``ALG_ARGON2ID13``. ``memlimit`` is in bytes, and
    libsodium counts it in whole KiB. Parameters libsodium refuses (below its minimum, a salt of
    the wrong size) raise :class:`InvalidKey`. The caller caps the parameters of untrusted input:
    this function spends whatever time and memory it is given.
    """
    if not isinstance(passphrase, bytes):
        raise InvalidKey(f"an Argon2id passphrase must be bytes, not {type(passphrase).__name__}")
    salt = _check_len("Argon2id salt", salt, ARGON2ID_SALT_SIZE)
    try:
        return nacl.pwhash.argon2id.kdf(size, passphrase, salt, opslimit, memlimit)
    except (nacl.exceptions.ValueError, nacl.exceptions.TypeError) as exc:
        raise InvalidKey(f"Argon2id parameters refused: {exc}") from None


def secretbox_seal(key: bytes, nonce: bytes, plaintext: bytes) -> bytes:
    """Encrypt and authenticate ``plaintext`` with XSalsa20-Poly1305; return the tag and ciphertext.

    The nonce is not included in the result. Never use a nonce twice with the same key: take it
    from :func:`random_bytes` (``SECRETBOX_NONCE_SIZE``) or derive a fresh key for every message.
    """
    box = nacl.secret.SecretBox(_check_len("secretbox key", key, SECRETBOX_KEY_SIZE))
    nonce = _check_len("secretbox nonce", nonce, SECRETBOX_NONCE_SIZE)
    return box.encrypt(bytes(plaintext), nonce).ciphertext


def secretbox_open(key: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    """Check and decrypt what :func:`secretbox_seal` made, or raise :class:`DecryptionFailed`.

    A wrong key, a wrong nonce and an altered or truncated ciphertext all fail the same Poly1305
    check and cannot be told apart.
    """
    box = nacl.secret.SecretBox(_check_len("secretbox key", key, SECRETBOX_KEY_SIZE))
    nonce = _check_len("secretbox nonce", nonce, SECRETBOX_NONCE_SIZE)
    if len(ciphertext) < SECRETBOX_MAC_SIZE:
        raise DecryptionFailed(
            f"a sealed message is at least {SECRETBOX_MAC_SIZE} bytes, got {len(ciphertext)}"
        )
    try:
        return box.decrypt(bytes(ciphertext), nonce)
    except nacl.exceptions.CryptoError:
        raise DecryptionFailed("ciphertext does not authenticate (wrong key or altered)") from None


def hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes, size: int = 32) -> bytes:
    """Derive ``size`` bytes from the secret ``ikm`` with HKDF-SHA-256 (RFC 5869 §2.2 extract, §2.3 expand).

    ``salt`` may be empty (RFC 5869 then uses 32 zero bytes); ``info`` binds the output to its use.
    ``size`` is at most 255 blocks of 32 bytes, or :class:`InvalidKey` is raised.
    """
    if not 0 < size <= 255 * 32:
        raise InvalidKey(f"HKDF-SHA-256 gives 1 to {255 * 32} bytes, not {size}")
    prk = hmac.digest(salt or bytes(32), ikm, "sha256")
    blocks: list[bytes] = []
    block = b""
    for counter in range(1, -(-size // 32) + 1):
        block = hmac.digest(prk, block + info + bytes((counter,)), "sha256")
        blocks.append(block)
    return b"".join(blocks)[:size]
