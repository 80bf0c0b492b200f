"""Tests for did_registry.identity.status_list (Bitstring Status List v1.0 bitstrings)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from did_registry.errors import InvalidStatusList, StatusIndexError
from did_registry.identity import multibase
from did_registry.identity.status_list import (
    DEFAULT_LIST_LENGTH,
    MAX_DECOMPRESSED_SIZE,
    MAX_STATUS_SIZE,
    MIN_LIST_LENGTH,
    BitstringStatusList,
)

MIN_BYTES = MIN_LIST_LENGTH // 8


def _b64u(data: bytes) -> str:
    """Multibase base64url (no padding) written with the stdlib only, independent of the module."""
    return "u" + base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _gzip(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)


def _reference_bytes(length_bits: int, indices: set[int]) -> bytes:
    """The bitstring built independently: index i is bit (length - 1 - i) of a big-endian integer."""
    value = sum(1 << (length_bits - 1 - i) for i in indices)
    return value.to_bytes(length_bits // 8, "big")


def _stdlib_decode(encoded: str) -> bytes:
    body = encoded[1:]
    return gzip.decompress(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


# --- conformance vectors ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def bsl_dir(conformance_dir: Path) -> Path:
    """The Bitstring Status List vectors."""
    return conformance_dir / "bitstring-status-list"


def test_spec_example_encoded_list_decodes_to_minimum_all_zero_list(bsl_dir: Path) -> None:
    """If the spec's only published encodedList is decoded, it is 131,072 zero bits (§2.2)."""
    facts = json.loads((bsl_dir / "spec-example-encodedList-decoded.json").read_text())
    lst = BitstringStatusList.decode(facts["encodedList"])
    assert len(lst) == facts["lengthBits"]
    assert len(lst.to_bytes()) == facts["uncompressedBytes"]
    assert hashlib.sha256(lst.to_bytes()).hexdigest() == facts["uncompressedSha256"]
    assert lst.count_nonzero() == 0
    for index, status in facts["statusAt"].items():
        assert lst.get(int(index)) == status


def test_spec_example_credential_encoded_list_matches_facts(bsl_dir: Path) -> None:
    """If the §2.2 example credential's encodedList is decoded, it matches the derived facts."""
    credential = json.loads((bsl_dir / "spec-example-status-list-credential.json").read_text())
    facts = json.loads((bsl_dir / "spec-example-encodedList-decoded.json").read_text())
    lst = BitstringStatusList.decode(credential["credentialSubject"]["encodedList"])
    assert hashlib.sha256(lst.to_bytes()).hexdigest() == facts["uncompressedSha256"]


def test_derived_vectors_decode_to_published_bits(bsl_dir: Path) -> None:
    """If each derived vector is decoded, its bits, hash and first/last bytes match (§7.1 order)."""
    vectors = json.loads((bsl_dir / "derived-vectors.json").read_text())["vectors"]
    assert len(vectors) >= 7
    for vector in vectors:
        lst = BitstringStatusList.decode(vector["encodedList"])
        raw = lst.to_bytes()
        assert len(lst) == vector["lengthBits"], vector["description"]
        assert hashlib.sha256(raw).hexdigest() == vector["uncompressedSha256"], vector["description"]
        assert raw[:2].hex() == vector["uncompressedFirstBytesHex"], vector["description"]
        assert raw[-1:].hex() == vector["uncompressedLastByteHex"], vector["description"]
        assert lst.nonzero() == sorted(vector["setIndices"]), vector["description"]
        assert all(lst.get(i) == 1 for i in vector["setIndices"])


def test_derived_vectors_reencoded_by_us_give_the_same_bits(bsl_dir: Path) -> None:
    """If we set each vector's indices and encode, any GZIP reader gets the published bitstring."""
    for vector in json.loads((bsl_dir / "derived-vectors.json").read_text())["vectors"]:
        lst = BitstringStatusList(vector["lengthBits"])
        lst.set_many(vector["setIndices"])
        raw = _stdlib_decode(lst.encode())
        assert hashlib.sha256(raw).hexdigest() == vector["uncompressedSha256"], vector["description"]


# --- bit order (§7.1) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "byte_offset", "byte_value"),
    [(0, 0, 0x80), (1, 0, 0x40), (7, 0, 0x01), (8, 1, 0x80), (MIN_LIST_LENGTH - 1, MIN_BYTES - 1, 0x01)],
)
def test_index_maps_to_most_significant_bit_first(index: int, byte_offset: int, byte_value: int) -> None:
    """If one index is set, exactly the §7.1 bit is 1: index 0 is the first byte's MSB."""
    lst = BitstringStatusList()
    lst.set(index)
    raw = lst.to_bytes()
    assert raw[byte_offset] == byte_value
    assert sum(raw) == byte_value


# --- construction ------------------------------------------------------------------------------


def test_default_list_is_minimum_size_and_empty() -> None:
    """If no length is given, the list has 131,072 entries in 16 KB, all 0."""
    lst = BitstringStatusList()
    assert len(lst) == DEFAULT_LIST_LENGTH == MIN_LIST_LENGTH
    assert lst.to_bytes() == bytes(16384)
    assert lst.status_size == 1


@pytest.mark.parametrize("length", [MIN_LIST_LENGTH + 8, 1 << 20, 3 * MIN_LIST_LENGTH])
def test_larger_lists_in_whole_bytes_are_allowed(length: int) -> None:
    """If the length is above the minimum and a multiple of 8, the list is built."""
    assert len(BitstringStatusList(length)) == length


@pytest.mark.parametrize(
    ("length", "status_size", "match"),
    [
        (MIN_LIST_LENGTH - 8, 1, "at least 131072"),
        (0, 1, "at least"),
        (-1, 1, "at least"),
        (MIN_LIST_LENGTH + 1, 1, "whole bytes"),
        (MIN_LIST_LENGTH + 4, 3, "whole bytes"),
        (float(MIN_LIST_LENGTH), 1, "at least"),
        (MAX_DECOMPRESSED_SIZE * 8 + 8, 1, "at most"),
        (MIN_LIST_LENGTH, 0, "statusSize"),
        (MIN_LIST_LENGTH, MAX_STATUS_SIZE + 1, "statusSize"),
        (MIN_LIST_LENGTH, True, "statusSize"),
    ],
)
def test_constructor_refuses_bad_sizes(length: Any, status_size: Any, match: str) -> None:
    """If the length or statusSize is out of bounds or not whole bytes, InvalidStatusList names it."""
    with pytest.raises(InvalidStatusList, match=match):
        BitstringStatusList(length, status_size=status_size)


# --- single bits -------------------------------------------------------------------------------


def test_set_get_clear_single_entry() -> None:
    """If an entry is set then cleared, get reports 1 then 0 and its neighbours stay 0."""
    lst = BitstringStatusList()
    lst.set(94567)
    assert (lst.get(94566), lst.get(94567), lst.get(94568)) == (0, 1, 0)
    lst.clear(94567)
    assert lst.get(94567) == 0
    assert lst.to_bytes() == bytes(MIN_BYTES)


def test_setting_twice_and_clearing_unset_are_idempotent() -> None:
    """If a set entry is set again or a clear entry cleared, nothing else changes."""
    lst = BitstringStatusList()
    lst.set(5)
    lst.set(5)
    lst.clear(6)
    assert lst.nonzero() == [5]


@pytest.mark.parametrize("index", [-1, MIN_LIST_LENGTH, MIN_LIST_LENGTH + 100, 2**70])
def test_index_out_of_range_is_status_index_error(index: int) -> None:
    """If an index is negative or past the end, get, set and clear raise StatusIndexError."""
    lst = BitstringStatusList()
    for operation in (lst.get, lst.set, lst.clear):
        with pytest.raises(StatusIndexError, match="outside the list"):
            operation(index)


@pytest.mark.parametrize("index", [True, 1.0, "1", None])
def test_index_of_wrong_type_is_refused(index: Any) -> None:
    """If an index is not an int (a bool, float or str), StatusIndexError is raised."""
    lst = BitstringStatusList()
    with pytest.raises(StatusIndexError, match="int"):
        lst.get(index)
    with pytest.raises(StatusIndexError, match="int"):
        lst.set(index)


def test_status_index_error_is_also_index_and_value_error() -> None:
    """If an index is out of range, the error is catchable as IndexError and InvalidStatusList."""
    with pytest.raises(IndexError):
        BitstringStatusList().get(MIN_LIST_LENGTH)
    with pytest.raises(InvalidStatusList):
        BitstringStatusList().get(-1)


@pytest.mark.parametrize("value", [2, -1, True, 1.0])
def test_value_outside_one_bit_status_is_refused(value: Any) -> None:
    """If a 1-bit entry is given a value other than 0 or 1, InvalidStatusList is raised."""
    with pytest.raises(InvalidStatusList, match="status is 0 to 1"):
        BitstringStatusList().set(0, value)


# --- bulk updates ------------------------------------------------------------------------------


def test_bulk_set_and_clear_thousands() -> None:
    """If 5,000 indices are set then 2,000 of them cleared, exactly the other 3,000 remain."""
    length = 1 << 20
    indices = list(range(7, length, length // 5000))[:5000]
    lst = BitstringStatusList(length)
    lst.set_many(indices)
    assert lst.count_nonzero() == 5000
    lst.clear_many(indices[:2000])
    assert lst.nonzero() == indices[2000:]
    assert lst.to_bytes() == _reference_bytes(length, set(indices[2000:]))


def test_bulk_accepts_any_iterable_and_duplicates() -> None:
    """If indices come as a generator, range or set, with repeats, each is applied once."""
    lst = BitstringStatusList()
    lst.set_many(i * 3 for i in range(10))
    lst.set_many(range(100, 103))
    lst.set_many({200, 201})
    lst.set_many([300, 300, 300])
    assert lst.nonzero() == [*range(0, 30, 3), 100, 101, 102, 200, 201, 300]


def test_bulk_with_no_indices_changes_nothing() -> None:
    """If the iterable is empty, the list stays as it was."""
    lst = BitstringStatusList()
    lst.set_many([])
    lst.clear_many(iter(()))
    assert lst.count_nonzero() == 0


@pytest.mark.parametrize("bad", [-1, MIN_LIST_LENGTH, "3", 2.0, None])
def test_bulk_update_is_all_or_nothing(bad: Any) -> None:
    """If one index in a bulk update is bad, StatusIndexError is raised and no bit changes."""
    lst = BitstringStatusList()
    lst.set_many([10, 20])
    before = lst.to_bytes()
    with pytest.raises(StatusIndexError):
        lst.set_many([1, 2, 3, bad, 4])
    with pytest.raises(StatusIndexError):
        lst.clear_many([10, bad, 20])
    assert lst.to_bytes() == before


def test_bulk_error_names_the_offending_index() -> None:
    """If a bulk update holds an out-of-range index, the error message names that index."""
    with pytest.raises(StatusIndexError, match=str(MIN_LIST_LENGTH + 5)):
        BitstringStatusList().set_many([0, MIN_LIST_LENGTH + 5])


# --- statusSize > 1 ----------------------------------------------------------------------------


@pytest.mark.parametrize("status_size", [2, 3, 5, 8])
def test_multi_bit_entries_hold_values_without_touching_neighbours(status_size: int) -> None:
    """If multi-bit entries (some straddling bytes) are written, each reads back its own value."""
    lst = BitstringStatusList(MIN_LIST_LENGTH, status_size=status_size)
    top = (1 << status_size) - 1
    writes = {1: top, 2: 1, 3: top, 10: top >> 1, MIN_LIST_LENGTH - 1: top}
    for index, value in writes.items():
        lst.set(index, value)
    assert {i: lst.get(i) for i in range(12)} == {i: writes.get(i, 0) for i in range(12)}
    assert lst.nonzero() == sorted(writes)
    lst.clear(2)
    assert (lst.get(1), lst.get(2), lst.get(3)) == (top, 0, top)


def test_multi_bit_layout_is_msb_first() -> None:
    """If entry 0 of a 2-bit list is 0b10 and entry 3 is 0b01, the first byte is 1000_0001."""
    lst = BitstringStatusList(MIN_LIST_LENGTH, status_size=2)
    lst.set(0, 2)
    lst.set(3, 1)
    assert lst.to_bytes()[0] == 0b1000_0001


def test_multi_bit_round_trip_needs_matching_status_size() -> None:
    """If a 2-bit list is encoded, decoding with statusSize 2 restores it; 1-bit reads other bits."""
    lst = BitstringStatusList(MIN_LIST_LENGTH, status_size=2)
    lst.set_many([5, 77], 3)
    decoded = BitstringStatusList.decode(lst.encode(), status_size=2)
    assert decoded == lst
    assert len(decoded) == MIN_LIST_LENGTH
    assert BitstringStatusList.decode(lst.encode()).nonzero() == [10, 11, 154, 155]


def test_multi_bit_value_out_of_range_is_refused() -> None:
    """If a 3-bit entry is given 8, InvalidStatusList is raised."""
    with pytest.raises(InvalidStatusList, match="0 to 7"):
        BitstringStatusList(MIN_LIST_LENGTH, status_size=3).set(0, 8)


def test_multi_bit_minimum_counts_entries_not_bits() -> None:
    """If a 16 KB bitstring is read as 2-bit entries, it has too few entries (§3.2 step 9)."""
    encoded = BitstringStatusList().encode()
    with pytest.raises(InvalidStatusList, match="STATUS_LIST_LENGTH_ERROR"):
        BitstringStatusList.decode(encoded, status_size=2)


# --- encoding ----------------------------------------------------------------------------------


def test_encoded_list_is_multibase_base64url_of_gzip() -> None:
    """If a list is encoded, it is 'u' + unpadded base64url of a GZIP stream of the bitstring."""
    lst = BitstringStatusList()
    lst.set_many([0, 42, 131071])
    encoded = lst.encode()
    assert encoded.startswith("u")
    assert "=" not in encoded and "+" not in encoded and "/" not in encoded
    assert multibase.decode(encoded)[:2] == b"\x1f\x8b"
    assert _stdlib_decode(encoded) == lst.to_bytes()


def test_encoding_is_deterministic() -> None:
    """If the same bits are encoded twice, the encodedList strings are identical."""
    a, b = BitstringStatusList(), BitstringStatusList()
    a.set_many([1, 99, 5000])
    b.set_many([5000, 99, 1])
    assert a.encode() == b.encode()


def test_empty_minimum_list_compresses_to_a_few_bytes() -> None:
    """If the list is all zero, its encodedList is tiny (the point of GZIP, §1.1)."""
    assert len(BitstringStatusList().encode()) < 100


def test_lists_encoded_by_other_gzip_writers_decode() -> None:
    """If a list is GZIP-compressed by Python's gzip module at any level, it decodes the same."""
    raw = _reference_bytes(MIN_LIST_LENGTH, {3, 42, 65535})
    for level in (0, 1, 9):
        assert BitstringStatusList.decode(_b64u(gzip.compress(raw, level))).to_bytes() == raw


def test_from_bytes_wraps_a_copy() -> None:
    """If a list is built from bytes, later changes to it do not alter the source, and back."""
    source = bytearray(MIN_BYTES)
    lst = BitstringStatusList.from_bytes(bytes(source))
    lst.set(0)
    assert source[0] == 0
    assert BitstringStatusList.from_bytes(lst.to_bytes()) == lst


@pytest.mark.parametrize(
    ("bitstring", "status_size", "match"),
    [
        (bytes(MIN_BYTES - 1), 1, "fewer than the minimum"),
        (b"", 1, "fewer than the minimum"),
        (bytes(MIN_BYTES + 1), 3, "whole 3-bit entries"),
        ("00" * MIN_BYTES, 1, "bytes"),
        (MIN_BYTES, 1, "bytes"),
    ],
)
def test_from_bytes_refuses_bad_bitstrings(bitstring: Any, status_size: int, match: str) -> None:
    """If raw bits are too short, not whole entries, or not bytes, InvalidStatusList is raised."""
    with pytest.raises(InvalidStatusList, match=match):
        BitstringStatusList.from_bytes(bitstring, status_size=status_size)


def test_copy_is_independent_and_equal() -> None:
    """If a list is copied, the copy is equal and changing it leaves the original alone."""
    lst = BitstringStatusList()
    lst.set(7)
    twin = lst.copy()
    assert twin == lst
    twin.set(8)
    assert twin != lst
    assert lst.nonzero() == [7]


def test_lists_are_unhashable_and_compare_by_bits() -> None:
    """If two lists have the same bits they are equal; lists are mutable, so unhashable."""
    assert BitstringStatusList() == BitstringStatusList()
    assert BitstringStatusList() != BitstringStatusList(MIN_LIST_LENGTH + 8)
    assert BitstringStatusList() != object()
    with pytest.raises(TypeError):
        hash(BitstringStatusList())


def test_repr_shows_size_and_count() -> None:
    """If a list is shown, its repr gives length, statusSize and how many entries are set."""
    lst = BitstringStatusList()
    lst.set_many([1, 2])
    assert repr(lst) == "BitstringStatusList(length=131072, status_size=1, nonzero=2)"


# --- malformed and truncated input -------------------------------------------------------------

_RAW = _reference_bytes(MIN_LIST_LENGTH, {0, 94567})
_GOOD_GZIP = _gzip(_RAW)


def _truncations() -> list[bytes]:
    cut_points = [1, 2, 9, 10, 15, len(_GOOD_GZIP) // 2, len(_GOOD_GZIP) - 8, len(_GOOD_GZIP) - 1]
    return [_GOOD_GZIP[:n] for n in cut_points]


def _with_trailer(crc_delta: int, size_delta: int) -> bytes:
    crc, size = struct.unpack("<II", _GOOD_GZIP[-8:])
    return _GOOD_GZIP[:-8] + struct.pack("<II", (crc + crc_delta) % 2**32, (size + size_delta) % 2**32)


def _corrupt_body() -> bytes:
    data = bytearray(_GOOD_GZIP)
    data[12] ^= 0xFF
    return bytes(data)


MALFORMED = [
    pytest.param(b"uAAAA", "string", id="bytes-not-str"),
    pytest.param(None, "string", id="none"),
    pytest.param("", "starts with 'u'", id="empty"),
    pytest.param(multibase.encode_base58btc(_GOOD_GZIP), "starts with 'u'", id="base58btc-prefix"),
    pytest.param("U" + _b64u(_GOOD_GZIP)[1:], "starts with 'u'", id="uppercase-prefix"),
    pytest.param("m" + base64.b64encode(_GOOD_GZIP).decode(), "starts with 'u'", id="base64-prefix"),
    pytest.param(_b64u(_GOOD_GZIP) + "==", "base64url", id="padding"),
    pytest.param("u" + base64.b64encode(b"\xfb\xff" + _GOOD_GZIP).decode(), "base64url", id="std-alphabet"),
    pytest.param(_b64u(_GOOD_GZIP)[:-1] + " ", "base64url", id="space"),
    pytest.param("u" + "A" * 5, "base64url", id="impossible-length"),
    pytest.param("u", "not GZIP", id="nothing-encoded"),
    pytest.param(_b64u(_RAW), "not GZIP", id="uncompressed"),
    pytest.param(_b64u(zlib.compress(_RAW)), "not GZIP", id="zlib-wrapper"),
    pytest.param(_b64u(zlib.compress(_RAW, wbits=-15)), "not GZIP", id="raw-deflate"),
    pytest.param(_b64u(_corrupt_body()), "corrupt GZIP", id="corrupt-body"),
    pytest.param(_b64u(b"\x1f\x8b\x07" + _GOOD_GZIP[3:]), "corrupt GZIP", id="bad-method"),
    pytest.param(_b64u(_with_trailer(1, 0)), "corrupt GZIP", id="bad-crc"),
    pytest.param(_b64u(_with_trailer(0, 1)), "corrupt GZIP", id="bad-isize"),
    *[
        pytest.param(_b64u(cut), "truncated|corrupt|not GZIP", id=f"truncated-{len(cut)}")
        for cut in _truncations()
    ],
    pytest.param(_b64u(_GOOD_GZIP + b"\x00"), "1 bytes follow", id="trailing-byte"),
    pytest.param(_b64u(_GOOD_GZIP + _GOOD_GZIP), "follow the GZIP stream", id="second-member"),
    pytest.param(_b64u(_gzip(bytes(MIN_BYTES - 1))), "fewer than the minimum", id="too-short"),
    pytest.param(_b64u(_gzip(b"")), "fewer than the minimum", id="empty-bitstring"),
    pytest.param("u" + "A" * (3 * MAX_DECOMPRESSED_SIZE // 2), "too long", id="oversized-text"),
]


@pytest.mark.parametrize(("encoded", "match"), MALFORMED)
def test_malformed_encoded_lists_are_refused(encoded: Any, match: str) -> None:
    """If an encodedList is malformed or truncated in any way, InvalidStatusList says how."""
    with pytest.raises(InvalidStatusList, match=match):
        BitstringStatusList.decode(encoded)


def test_decompression_bomb_is_refused_by_default() -> None:
    """If a small encodedList inflates beyond 16 MiB, decoding stops at the cap and refuses it."""
    bomb = _b64u(_gzip(bytes(MAX_DECOMPRESSED_SIZE + 1)))
    assert len(bomb) < 40_000
    with pytest.raises(InvalidStatusList, match="beyond the cap"):
        BitstringStatusList.decode(bomb)


def test_list_at_the_cap_is_accepted() -> None:
    """If a list inflates to exactly the cap, it is accepted."""
    encoded = _b64u(_gzip(bytes(2 * MIN_BYTES)))
    assert len(BitstringStatusList.decode(encoded, max_size=2 * MIN_BYTES)) == 2 * MIN_LIST_LENGTH


def test_cap_is_configurable() -> None:
    """If max_size is lowered, a list larger than it is refused."""
    encoded = BitstringStatusList(2 * MIN_LIST_LENGTH).encode()
    with pytest.raises(InvalidStatusList, match=f"cap of {MIN_BYTES} bytes"):
        BitstringStatusList.decode(encoded, max_size=MIN_BYTES)


@pytest.mark.parametrize("actual", [MIN_LIST_LENGTH, 2 * MIN_LIST_LENGTH, 4 * MIN_LIST_LENGTH])
def test_expected_length_must_match_exactly(actual: int) -> None:
    """If the expected length is given, a list of any other size is refused."""
    encoded = BitstringStatusList(actual).encode()
    assert len(BitstringStatusList.decode(encoded, length=actual)) == actual
    expected = 2 * MIN_LIST_LENGTH if actual != 2 * MIN_LIST_LENGTH else MIN_LIST_LENGTH
    with pytest.raises(InvalidStatusList, match=r"expected|cap"):
        BitstringStatusList.decode(encoded, length=expected)


def test_lower_minimum_only_when_asked() -> None:
    """If an ecosystem lowers the minimum, a smaller list decodes; by default it is refused."""
    encoded = _b64u(_gzip(_reference_bytes(1024, {3})))
    with pytest.raises(InvalidStatusList, match="STATUS_LIST_LENGTH_ERROR"):
        BitstringStatusList.decode(encoded)
    small = BitstringStatusList.decode(encoded, min_length=1024)
    assert (len(small), small.nonzero()) == (1024, [3])
    assert small.copy() == small


@pytest.mark.parametrize(
    "options",
    [{"min_length": 0}, {"max_size": 0}, {"length": 0}, {"length": MIN_LIST_LENGTH + 1}, {"status_size": 9}],
)
def test_decode_refuses_bad_options(options: dict[str, Any]) -> None:
    """If a decode option is out of range, InvalidStatusList is raised before any decoding."""
    with pytest.raises(InvalidStatusList):
        BitstringStatusList.decode(BitstringStatusList().encode(), **options)


# --- property-based round trips ----------------------------------------------------------------

lengths = st.integers(min_value=0, max_value=64).map(lambda k: MIN_LIST_LENGTH + 8 * k)


@given(length=lengths, data=st.data())
def test_round_trip_random_index_sets(length: int, data: st.DataObject) -> None:
    """If random indices are set, encode then decode gives the same bits as an independent model."""
    indices = data.draw(st.sets(st.integers(min_value=0, max_value=length - 1), max_size=300))
    lst = BitstringStatusList(length)
    lst.set_many(indices)
    decoded = BitstringStatusList.decode(lst.encode(), length=length)
    assert decoded == lst
    assert decoded.nonzero() == sorted(indices)
    assert decoded.to_bytes() == _reference_bytes(length, indices)
    assert decoded.count_nonzero() == len(indices)


@given(
    st.sets(st.integers(min_value=0, max_value=MIN_LIST_LENGTH - 1), max_size=200),
    st.sets(st.integers(min_value=0, max_value=MIN_LIST_LENGTH - 1), max_size=200),
)
def test_set_then_clear_leaves_the_difference(to_set: set[int], to_clear: set[int]) -> None:
    """If set A then clear B, exactly A - B stays set, before and after a round trip."""
    lst = BitstringStatusList()
    lst.set_many(to_set)
    lst.clear_many(to_clear)
    assert lst.nonzero() == sorted(to_set - to_clear)
    assert BitstringStatusList.decode(lst.encode()).nonzero() == sorted(to_set - to_clear)


@given(st.integers(min_value=1, max_value=MAX_STATUS_SIZE), st.data())
def test_round_trip_multi_bit_values(status_size: int, data: st.DataObject) -> None:
    """If random values are written to random entries of any width, they survive a round trip."""
    values = data.draw(
        st.dictionaries(
            st.integers(min_value=0, max_value=MIN_LIST_LENGTH - 1),
            st.integers(min_value=0, max_value=(1 << status_size) - 1),
            max_size=100,
        )
    )
    lst = BitstringStatusList(MIN_LIST_LENGTH, status_size=status_size)
    for index, value in values.items():
        lst.set(index, value)
    decoded = BitstringStatusList.decode(lst.encode(), status_size=status_size)
    assert {i: decoded.get(i) for i in values} == values
    assert decoded.nonzero() == sorted(i for i, v in values.items() if v)


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0, max_value=10_000))
def test_random_garbage_is_refused_not_crashed(junk: bytes, where: int) -> None:
    """If bytes in a valid GZIP stream are replaced by junk, decode returns or raises InvalidStatusList."""
    where %= len(_GOOD_GZIP)
    spoiled = _GOOD_GZIP[:where] + junk + _GOOD_GZIP[where + len(junk) :]
    try:
        lst = BitstringStatusList.decode(_b64u(spoiled))
    except InvalidStatusList:
        return
    assert len(lst) == MIN_LIST_LENGTH
