"""Multikey (W3C Controlled Identifiers v1.0 §2.2.2): public keys as ``publicKeyMultibase``.

A Multikey value is multibase base58btc (``z``) of the multicodec header followed by the raw key:
``ed25519-pub`` (0xed, varint ``ed 01``) for Ed25519 and ``x25519-pub`` (0xec, varint ``ec 01``) for
X25519. The codes are looked up once in the :mod:`multiformats` codec table. Decoding refuses a wrong
multibase prefix, an unexpected codec and a key of the wrong length (a value longer than the longest
key is refused before it is decoded), with :class:`~did_registry.errors.InvalidMultikey`.
"""

from __future__ import annotations

from functools import lru_cache

from multiformats import multicodec, varint

from did_registry.errors import InvalidMultikey
from did_registry.identity import multibase
from did_registry.identity.crypto import (
    ED25519_PUBLIC_KEY_SIZE,
    X25519_KEY_SIZE,
    Ed25519PrivateKey,
    Ed25519PublicKey,
    X25519PublicKey,
)

__all__ = [
    "ED25519_PUB_HEADER",
    "X25519_PUB_HEADER",
    "ED25519_PRIV_HEADER",
    "NOT_A_VALID_POINT",
    "encode_ed25519_public_key",
    "decode_ed25519_public_key",
    "encode_x25519_public_key",
    "decode_x25519_public_key",
    "encode_ed25519_private_key",
    "decode_ed25519_private_key",
]


def _header(name: str) -> bytes:
    return bytes(varint.encode(multicodec.get(name).code))


ED25519_PUB_HEADER = _header("ed25519-pub")
"""Varint multicodec header of an Ed25519 public key: ``ed 01``."""
X25519_PUB_HEADER = _header("x25519-pub")
"""Varint multicodec header of an X25519 public key: ``ec 01``."""
ED25519_PRIV_HEADER = _header("ed25519-priv")
"""Varint multicodec header of an Ed25519 private key (seed): ``80 26``."""
NOT_A_VALID_POINT = "not a valid Ed25519 public key (a point of the curve's prime-order subgroup)"
"""The reason given for 32 bytes that are no Ed25519 public key."""


def _decode(value: str, header: bytes, codec: str, size: int) -> bytes:
    if not isinstance(value, str):
        raise InvalidMultikey(repr(value), "a Multikey value must be a string")
    if not value.startswith("z"):
        raise InvalidMultikey(value, "publicKeyMultibase must be base58btc (start with 'z')")
    try:
        raw = multibase.decode_base58btc(value, max_size=len(header) + size)
    except ValueError as exc:
        raise InvalidMultikey(value, str(exc)) from None
    if not raw.startswith(header):
        raise InvalidMultikey(value, f"expected multicodec {codec} (0x{header.hex()}), got 0x{raw[:2].hex()}")
    key = raw[len(header) :]
    if len(key) != size:
        raise InvalidMultikey(value, f"a {codec} key is {size} bytes, got {len(key)}")
    return key


def encode_ed25519_public_key(key: Ed25519PublicKey) -> str:
    """Return ``publicKeyMultibase`` of an Ed25519 key (``z6Mk…``)."""
    return multibase.encode_base58btc(ED25519_PUB_HEADER + bytes(key))


@lru_cache(maxsize=65536)
def decode_ed25519_public_key(value: str) -> Ed25519PublicKey:
    """Parse an Ed25519 ``publicKeyMultibase``; raise :class:`InvalidMultikey` when it is not one.

    Whether the 32 bytes are a point of the curve is not checked here (it costs as much as a
    signature check, on every new device's document on every validator and verifier): bytes that are
    none can verify no signature. A did:key checks it (:func:`did_key.public_key_from_did_key`)."""
    return Ed25519PublicKey(_decode(value, ED25519_PUB_HEADER, "ed25519-pub", ED25519_PUBLIC_KEY_SIZE))


def encode_x25519_public_key(key: X25519PublicKey) -> str:
    """Return ``publicKeyMultibase`` of an X25519 key (``z6LS…``)."""
    return multibase.encode_base58btc(X25519_PUB_HEADER + bytes(key))


def decode_x25519_public_key(value: str) -> X25519PublicKey:
    """Parse an X25519 ``publicKeyMultibase``; raise :class:`InvalidMultikey` when it is not one."""
    return X25519PublicKey(_decode(value, X25519_PUB_HEADER, "x25519-pub", X25519_KEY_SIZE))


def encode_ed25519_private_key(key: Ed25519PrivateKey) -> str:
    """Return ``secretKeyMultibase`` of an Ed25519 key: multicodec ``ed25519-priv`` of its seed."""
    return multibase.encode_base58btc(ED25519_PRIV_HEADER + key.seed)


def decode_ed25519_private_key(value: str) -> Ed25519PrivateKey:
    """Parse an Ed25519 ``secretKeyMultibase`` (``z3u2…``)."""
    return Ed25519PrivateKey(_decode(value, ED25519_PRIV_HEADER, "ed25519-priv", 32))
