"""Argon2id key derivation and XSalsa20-Poly1305 secretbox in ``did_registry.identity.crypto``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from did_registry.errors import DecryptionFailed, InvalidKey
from did_registry.identity.crypto import (
    ARGON2ID_MEMLIMIT_MIN,
    ARGON2ID_OPSLIMIT_MIN,
    ARGON2ID_SALT_SIZE,
    SECRETBOX_KEY_SIZE,
    SECRETBOX_MAC_SIZE,
    SECRETBOX_NONCE_SIZE,
    derive_key_argon2id,
    random_bytes,
    secretbox_open,
    secretbox_seal,
)

SALT = bytes(range(ARGON2ID_SALT_SIZE))
FAST = (ARGON2ID_OPSLIMIT_MIN, ARGON2ID_MEMLIMIT_MIN)


def test_secretbox_known_answer() -> None:
    """Sealing "test" under the all-zero key and nonce gives libsodium's published box."""
    # crypto_secretbox_easy("test", nonce=0^24, key=0^32): tag then ciphertext, as sodium_sys tests it.
    expected = bytes.fromhex("af99b493f67bfd299fa9207240fba7b3b25bc88b")
    assert secretbox_seal(bytes(32), bytes(24), b"test") == expected
    assert secretbox_open(bytes(32), bytes(24), expected) == b"test"


@given(st.binary(max_size=2048))
def test_secretbox_round_trip(plaintext: bytes) -> None:
    """Any plaintext opens to itself, and the box is exactly one tag longer."""
    key, nonce = random_bytes(SECRETBOX_KEY_SIZE), random_bytes(SECRETBOX_NONCE_SIZE)
    sealed = secretbox_seal(key, nonce, plaintext)
    assert len(sealed) == len(plaintext) + SECRETBOX_MAC_SIZE
    assert secretbox_open(key, nonce, sealed) == plaintext


@given(st.binary(min_size=1, max_size=64), st.data())
def test_secretbox_refuses_any_flipped_bit(plaintext: bytes, data: st.DataObject) -> None:
    """If one bit of the box changes, opening raises DecryptionFailed."""
    key, nonce = random_bytes(SECRETBOX_KEY_SIZE), random_bytes(SECRETBOX_NONCE_SIZE)
    sealed = bytearray(secretbox_seal(key, nonce, plaintext))
    index = data.draw(st.integers(0, len(sealed) - 1))
    sealed[index] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(DecryptionFailed):
        secretbox_open(key, nonce, bytes(sealed))


@pytest.mark.parametrize("what", ["key", "nonce", "truncated", "short"])
def test_secretbox_refuses_wrong_inputs(what: str) -> None:
    """A wrong key or nonce, a truncated box or one shorter than a tag raise DecryptionFailed."""
    key, nonce = random_bytes(SECRETBOX_KEY_SIZE), random_bytes(SECRETBOX_NONCE_SIZE)
    sealed = secretbox_seal(key, nonce, b"payload")
    if what == "key":
        key = random_bytes(SECRETBOX_KEY_SIZE)
    elif what == "nonce":
        nonce = random_bytes(SECRETBOX_NONCE_SIZE)
    elif what == "truncated":
        sealed = sealed[:-1]
    else:
        sealed = sealed[: SECRETBOX_MAC_SIZE - 1]
    with pytest.raises(DecryptionFailed):
        secretbox_open(key, nonce, sealed)


@pytest.mark.parametrize(("key_size", "nonce_size"), [(31, 24), (33, 24), (32, 23), (32, 25)])
def test_secretbox_refuses_wrong_sizes(key_size: int, nonce_size: int) -> None:
    """A key or nonce of the wrong length raises InvalidKey before any encryption."""
    with pytest.raises(InvalidKey):
        secretbox_seal(bytes(key_size), bytes(nonce_size), b"x")
    with pytest.raises(InvalidKey):
        secretbox_open(bytes(key_size), bytes(nonce_size), bytes(SECRETBOX_MAC_SIZE))


def test_argon2id_is_deterministic_and_keyed_by_every_input() -> None:
    """The same inputs give the same key; changing passphrase, salt, opslimit or memlimit changes it."""
    base = derive_key_argon2id(b"passphrase", SALT, *FAST)
    assert len(base) == SECRETBOX_KEY_SIZE
    assert derive_key_argon2id(b"passphrase", SALT, *FAST) == base
    variants = [
        derive_key_argon2id(b"passphrasE", SALT, *FAST),
        derive_key_argon2id(b"passphrase", bytes(reversed(SALT)), *FAST),
        derive_key_argon2id(b"passphrase", SALT, FAST[0] + 1, FAST[1]),
        derive_key_argon2id(b"passphrase", SALT, FAST[0], FAST[1] + 1024),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


def test_argon2id_output_size() -> None:
    """``size`` sets the number of bytes derived."""
    assert len(derive_key_argon2id(b"p", SALT, *FAST, size=64)) == 64


@pytest.mark.parametrize(
    ("salt", "opslimit", "memlimit"),
    [
        (SALT[:-1], *FAST),
        (SALT + b"x", *FAST),
        (SALT, ARGON2ID_OPSLIMIT_MIN - 1, ARGON2ID_MEMLIMIT_MIN),
        (SALT, ARGON2ID_OPSLIMIT_MIN, ARGON2ID_MEMLIMIT_MIN - 1),
    ],
)
def test_argon2id_refuses_bad_parameters(salt: bytes, opslimit: int, memlimit: int) -> None:
    """A salt of the wrong size or limits below libsodium's minimum raise InvalidKey."""
    with pytest.raises(InvalidKey):
        derive_key_argon2id(b"p", salt, opslimit, memlimit)


def test_argon2id_refuses_text_passphrase() -> None:
    """A str passphrase raises InvalidKey: the caller chooses its encoding."""
    with pytest.raises(InvalidKey):
        derive_key_argon2id("p", SALT, *FAST)  # type: ignore[arg-type]
