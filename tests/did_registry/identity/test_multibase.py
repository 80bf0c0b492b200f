"""Multibase: the published vectors, strict prefixes and alphabets, the fast base58 decoder."""

from __future__ import annotations

import csv
from pathlib import Path

import base58
import pytest
from hypothesis import given
from hypothesis import strategies as st

from did_registry.identity import multibase


def _vectors(conformance_dir: Path) -> list[tuple[bytes, str]]:
    out = []
    for path in sorted((conformance_dir / "multiformats").glob("multibase-test-*.csv")):
        rows = list(csv.reader(path.read_text().splitlines(), skipinitialspace=True))
        data = rows[0][1].encode().decode("unicode_escape").encode("latin-1")
        out += [(data, encoded) for _, encoded in rows[1:]]
    return out


def test_published_vectors_round_trip(conformance_dir: Path) -> None:
    """Each published base58btc/base64url vector decodes to its bytes and encodes back."""
    vectors = _vectors(conformance_dir)
    assert len(vectors) >= 6
    for data, encoded in vectors:
        assert multibase.decode(encoded) == data
        assert multibase.encode(data, encoded[0]) == encoded


@given(st.binary(max_size=100))
def test_fast_base58_decoder_equals_library(data: bytes) -> None:
    """For any bytes, our base58btc decoder gives what the base58 library gives."""
    text = base58.b58encode(data).decode()
    assert multibase.decode_base58btc("z" + text) == base58.b58decode(text) == data


@given(st.binary(max_size=100))
def test_base58_length_is_the_longest_encoding_of_a_size(data: bytes) -> None:
    """No bytes encode longer than base58_length of their size, and all-0xff bytes reach it."""
    assert len(base58.b58encode(data)) <= multibase.base58_length(len(data))
    assert len(base58.b58encode(b"\xff" * len(data))) == multibase.base58_length(len(data))


def test_base58_lengths_of_a_signature_and_a_multikey() -> None:
    """64 bytes (an Ed25519 signature) take at most 88 characters; 34 (a Multikey) at most 47."""
    assert (multibase.base58_length(64), multibase.base58_length(34)) == (88, 47)


def test_decoding_refuses_text_longer_than_max_size_unread() -> None:
    """Text too long for ``max_size`` bytes is refused for its length before any character is read."""
    longest = multibase.encode_base58btc(b"\xff" * 64)
    assert multibase.decode_base58btc(longest, max_size=64) == b"\xff" * 64
    for text in (longest + "1", "z" + "2" * 200_000 + "0"):
        with pytest.raises(multibase.MultibaseError, match="characters encode more than 64 bytes"):
            multibase.decode_base58btc(text, max_size=64)


@given(st.binary(max_size=64), st.sampled_from(["z", "u"]))
def test_round_trip(data: bytes, base: str) -> None:
    """encode then decode gives the bytes back, in both bases."""
    assert multibase.decode(multibase.encode(data, base)) == data


@pytest.mark.parametrize(
    "text",
    ["", "x123", "z0OIl", "z\u00e9abc", "uAA==", "u+/ab", "uA", 7],
    ids=[
        "empty",
        "unknown-prefix",
        "base58-excluded-chars",
        "non-ascii",
        "padding",
        "std-alphabet",
        "truncated",
        "not-str",
    ],
)
def test_refuses_bad_input(text: object) -> None:
    """Unknown prefixes, characters outside the alphabet, padding and truncation are refused."""
    with pytest.raises(multibase.MultibaseError):
        multibase.decode(text)  # type: ignore[arg-type]


def test_the_prefixes_are_the_published_table_s(conformance_dir: Path) -> None:
    """The prefixes used here are those the multibase table names for base58btc and base64url."""
    path = conformance_dir / "multiformats" / "multibase-table-subset.csv"
    table = {row[2]: row[1] for row in csv.reader(path.read_text().splitlines()[1:], skipinitialspace=True)}
    assert (table["base58btc"], table["base64url"]) == (multibase.BASE58BTC, multibase.BASE64URL)
