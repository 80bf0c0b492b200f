"""Multikey: publicKeyMultibase for Ed25519 and X25519, strict decoding, the published key pair."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import base58
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multiformats import varint

from did_registry.errors import BadSignature, InvalidMultikey
from did_registry.identity.crypto import Ed25519PrivateKey, Ed25519PublicKey, X25519PublicKey
from did_registry.identity.multikey import (
    ED25519_PUB_HEADER,
    X25519_PUB_HEADER,
    decode_ed25519_private_key,
    decode_ed25519_public_key,
    decode_x25519_public_key,
    encode_ed25519_private_key,
    encode_ed25519_public_key,
    encode_x25519_public_key,
)
from tests.did_registry.identity.test_crypto import MIXED_ORDER, NEUTRAL, OFF_CURVE, ORDER_FOUR


def test_published_key_pair(conformance_dir: Path) -> None:
    """The vc-di-eddsa key pair: the secret key multibase derives the published public key."""
    pair = json.loads((conformance_dir / "vc-di-eddsa" / "keyPair.json").read_text())
    private = decode_ed25519_private_key(pair["privateKeyMultibase"])
    assert encode_ed25519_public_key(private.public_key) == pair["publicKeyMultibase"]
    assert encode_ed25519_private_key(private) == pair["privateKeyMultibase"]


def test_ed25519_values_start_z6mk_and_x25519_z6ls() -> None:
    """Ed25519 Multikeys read z6Mk…, X25519 ones z6LS…, as the multicodec headers make them."""
    key = Ed25519PrivateKey(bytes(32))
    assert encode_ed25519_public_key(key.public_key).startswith("z6Mk")
    assert encode_x25519_public_key(key.public_key.to_x25519()).startswith("z6LS")


@given(st.binary(min_size=32, max_size=32))
def test_ed25519_round_trip(seed: bytes) -> None:
    """Any Ed25519 public key encodes and decodes back to itself."""
    key = Ed25519PrivateKey(seed).public_key
    assert decode_ed25519_public_key(encode_ed25519_public_key(key)) == key


@pytest.mark.parametrize(
    "raw",
    [OFF_CURVE, NEUTRAL, ORDER_FOUR, MIXED_ORDER],
    ids=["off-curve", "neutral", "order-4", "mixed-order"],
)
def test_ed25519_bytes_that_are_no_valid_point_decode_but_verify_nothing(raw: bytes) -> None:
    """32 bytes off the curve or outside its prime-order subgroup decode (checking the point costs
    a signature check; only did:key resolution pays it) but no signature verifies under them."""
    key = decode_ed25519_public_key(encode_ed25519_public_key(Ed25519PublicKey(raw)))
    assert not key.is_valid_point()
    with pytest.raises(BadSignature):
        key.verify(b"message", bytes(64))


@given(st.binary(min_size=32, max_size=32))
def test_x25519_round_trip(raw: bytes) -> None:
    """Any 32-byte X25519 key encodes and decodes back to itself."""
    key = X25519PublicKey(raw)
    assert decode_x25519_public_key(encode_x25519_public_key(key)) == key


def _z(data: bytes) -> str:
    return "z" + base58.b58encode(data).decode()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("u7QE" + "A" * 43, "base58btc"),
        (_z(b"\xec\x01" + bytes(32)), "multicodec ed25519-pub"),
        (_z(b"\xed\x01" + bytes(31)), "32 bytes, got 31"),
        (_z(b"\xed\x01" + bytes(33)), "48 base58btc characters encode more than 34 bytes"),
        (_z(b"\xed"), "multicodec"),
        ("z0OIl", "alphabet"),
        ("z" + "2" * 100_000, "100000 base58btc characters encode more than 34 bytes"),
        ("", "base58btc"),
    ],
)
def test_ed25519_decoding_refuses_wrong_codec_prefix_or_length(value: str, reason: str) -> None:
    """A wrong multibase prefix, multicodec or key length raises InvalidMultikey saying which."""
    with pytest.raises(InvalidMultikey, match=reason):
        decode_ed25519_public_key(value)


def test_x25519_decoding_refuses_an_ed25519_key() -> None:
    """An Ed25519 Multikey is not accepted where an X25519 one is expected."""
    with pytest.raises(InvalidMultikey, match="x25519-pub"):
        decode_x25519_public_key(encode_ed25519_public_key(Ed25519PrivateKey.generate().public_key))


def test_the_key_headers_are_the_published_codes(conformance_dir: Path) -> None:
    """``ed25519-pub`` and ``x25519-pub`` headers are the varints of the multicodec table's codes."""
    path = conformance_dir / "multiformats" / "multicodec-table-subset.csv"
    rows = csv.reader(path.read_text().splitlines()[1:], skipinitialspace=True)
    codes = {row[0].strip(): int(row[2].strip(), 16) for row in rows}
    assert ED25519_PUB_HEADER == bytes(varint.encode(codes["ed25519-pub"])) == b"\xed\x01"
    assert X25519_PUB_HEADER == bytes(varint.encode(codes["x25519-pub"])) == b"\xec\x01"
