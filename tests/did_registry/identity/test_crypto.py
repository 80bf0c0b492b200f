"""Ed25519 and X25519 key value types."""

from __future__ import annotations

import pytest

from did_registry.errors import BadSignature, InvalidKey
from did_registry.identity.crypto import Ed25519PrivateKey, Ed25519PublicKey, X25519PrivateKey


def test_sign_and_verify() -> None:
    """A signature verifies under its key and raises BadSignature for any other message."""
    key = Ed25519PrivateKey.generate()
    signature = key.sign(b"hello")
    key.public_key.verify(b"hello", signature)
    with pytest.raises(BadSignature):
        key.public_key.verify(b"hellp", signature)


@pytest.mark.parametrize("size", [0, 63, 65])
def test_signature_of_wrong_length_is_bad(size: int) -> None:
    """A signature that is not 64 bytes is refused as BadSignature, not a crash."""
    with pytest.raises(BadSignature):
        Ed25519PrivateKey.generate().public_key.verify(b"m", bytes(size))


@pytest.mark.parametrize("size", [0, 31, 33])
def test_keys_of_wrong_length_are_refused(size: int) -> None:
    """Seeds and public keys must be exactly 32 bytes."""
    with pytest.raises(InvalidKey):
        Ed25519PrivateKey(bytes(size))
    with pytest.raises(InvalidKey):
        Ed25519PublicKey(bytes(size))


def test_rfc8032_test_1() -> None:
    """RFC 8032 §7.1 TEST 1: the seed gives the published public key and signature."""
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    key = Ed25519PrivateKey(seed)
    assert bytes(key.public_key).hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert key.sign(b"").hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )


def test_x25519_forms_agree() -> None:
    """The X25519 form of the private key matches the X25519 form of its public key."""
    key = Ed25519PrivateKey.generate()
    assert key.to_x25519().public_key == key.public_key.to_x25519()


def test_key_agreement_is_symmetric() -> None:
    """Both sides of an X25519 exchange derive the same secret."""
    alice, bob = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    assert alice.exchange(bob.public_key) == bob.exchange(alice.public_key)


def test_public_keys_compare_by_value() -> None:
    """Equal key bytes are equal keys with equal hashes."""
    raw = Ed25519PrivateKey.generate().public_key
    again = Ed25519PublicKey(bytes(raw))
    assert raw == again
    assert hash(raw) == hash(again)


OFF_CURVE = (2).to_bytes(32, "little")
"""y = 2: (y² - 1) / (d·y² + 1) is no square, so no x makes a point of the curve."""
NEUTRAL = (1).to_bytes(32, "little")
"""y = 1, x = 0: the neutral element, a point of order 1."""
ORDER_FOUR = bytes(32)
"""y = 0: a point of order 4."""
MIXED_ORDER = (3).to_bytes(32, "little")
"""y = 3: a point of the curve outside its prime-order subgroup."""


def test_generated_keys_are_valid_points() -> None:
    """Every public key a seed gives, and the RFC 8032 one, is a valid point."""
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    assert Ed25519PrivateKey(seed).public_key.is_valid_point()
    assert all(Ed25519PrivateKey.generate().public_key.is_valid_point() for _ in range(32))


@pytest.mark.parametrize(
    "raw",
    [OFF_CURVE, NEUTRAL, ORDER_FOUR, MIXED_ORDER],
    ids=["off-curve", "neutral", "order-4", "mixed-order"],
)
def test_bytes_off_the_prime_order_subgroup_are_no_valid_point(raw: bytes) -> None:
    """Off-curve, small-order and mixed-order bytes are not valid points, and have no X25519 form."""
    key = Ed25519PublicKey(raw)
    assert not key.is_valid_point()
    with pytest.raises(InvalidKey):
        key.to_x25519()
