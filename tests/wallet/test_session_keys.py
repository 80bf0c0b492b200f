"""Session keys: HKDF-SHA-256 over X25519, the same at both ends."""

from __future__ import annotations

import hmac

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey, X25519PrivateKey, X25519PublicKey
from wallet.errors import InvalidSharedSecret
from wallet.session_keys import SESSION_KEY_SALT, session_key

# RFC 7748 §6.1 test keys and their published shared secret.
ALICE_PRIVATE = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
BOB_PRIVATE = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"
SHARED = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"


def _rfc5869_one_block(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """HKDF-SHA-256 for a 32-byte output, written out from RFC 5869 §2.2-2.3 (an independent check)."""
    prk = hmac.new(salt, ikm, "sha256").digest()
    return hmac.new(prk, info + b"\x01", "sha256").digest()


def test_known_answer_from_rfc7748_keys() -> None:
    """With the RFC 7748 keys, the key is HKDF(shared secret, salt, session id) as specified."""
    alice = X25519PrivateKey(bytes.fromhex(ALICE_PRIVATE))
    bob = X25519PrivateKey(bytes.fromhex(BOB_PRIVATE))
    expected = _rfc5869_one_block(bytes.fromhex(SHARED), SESSION_KEY_SALT, b"session-42")
    assert session_key(alice, bob.public_key, "session-42") == expected
    assert SESSION_KEY_SALT == b"trellis/session/v1"


def test_both_ends_derive_the_same_key() -> None:
    """Device and verifier, each with its own private key, get the same 32 bytes."""
    device = Ed25519PrivateKey.generate().to_x25519()
    verifier = X25519PrivateKey.generate()
    key = session_key(device, verifier.public_key, "s1")
    assert len(key) == 32
    assert key == session_key(verifier, device.public_key, "s1")


def test_session_id_binds_the_key() -> None:
    """Another session id gives another key."""
    a, b = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    assert session_key(a, b.public_key, "s1") != session_key(a, b.public_key, "s2")


def test_other_peer_gives_other_key() -> None:
    """A third party's key does not give the session key."""
    a, b, c = X25519PrivateKey.generate(), X25519PrivateKey.generate(), X25519PrivateKey.generate()
    assert session_key(a, b.public_key, "s") != session_key(c, b.public_key, "s")


@pytest.mark.parametrize(
    "peer",
    [
        "00" * 32,  # u = 0, a point of order 2
        "01" + "00" * 31,  # u = 1, a point of order 4
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",  # order 8
    ],
)
def test_low_order_peer_is_refused(peer: str) -> None:
    """A low-order peer key (which forces the all-zero secret) raises InvalidSharedSecret."""
    with pytest.raises(InvalidSharedSecret):
        session_key(X25519PrivateKey.generate(), X25519PublicKey(bytes.fromhex(peer)), "s")


class _ZeroExchange(X25519PrivateKey):
    """A key whose exchange yields all zeros, as a library without the check would."""

    __slots__ = ()

    def exchange(self, peer: X25519PublicKey) -> bytes:
        return bytes(32)


def test_all_zero_secret_is_refused_even_if_the_library_returns_it() -> None:
    """The all-zero check is done here, not only left to libsodium."""
    with pytest.raises(InvalidSharedSecret, match="all-zero"):
        session_key(_ZeroExchange(bytes(range(32))), X25519PrivateKey.generate().public_key, "s")


@pytest.mark.parametrize("session_id", ["", "\ud800"])
def test_bad_session_id_is_refused(session_id: str) -> None:
    """An empty or non-UTF-8 session id is refused."""
    with pytest.raises(InvalidSharedSecret, match="session id"):
        session_key(X25519PrivateKey.generate(), X25519PrivateKey.generate().public_key, session_id)
