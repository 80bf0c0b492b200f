"""RFC 8785 canonicalization: the RFC author's test data, ECMAScript numbers, fast path == reference."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from did_registry.errors import CanonicalizationError
from did_registry.identity.jcs import canonicalize, canonicalize_reference

CASES = ["arrays", "french", "structures", "unicode", "values", "weird"]


@pytest.mark.parametrize("name", CASES)
def test_matches_published_output(conformance_dir: Path, name: str) -> None:
    """Each published input canonicalizes to the published output, byte for byte."""
    base = conformance_dir / "jcs-rfc8785"
    value = json.loads((base / "input" / f"{name}.json").read_text(encoding="utf-8"))
    expected = (base / "output" / f"{name}.json").read_bytes()
    assert canonicalize(value) == expected
    assert canonicalize(value).hex() == (base / "outhex" / f"{name}.txt").read_text().replace(
        " ", ""
    ).replace("\n", "")


def _samples(conformance_dir: Path) -> list[tuple[float, str]]:
    lines = (conformance_dir / "jcs-rfc8785" / "es6-number-samples.csv").read_text().splitlines()
    out = []
    for line in lines[1:]:
        hex_ieee, expected = line.split(",")
        (number,) = struct.unpack(">d", bytes.fromhex(hex_ieee.zfill(16)))
        out.append((number, expected))
    return out


def test_numbers_serialize_as_ecmascript(conformance_dir: Path) -> None:
    """Every published IEEE-754 sample serializes as ECMAScript's Number.prototype.toString."""
    samples = _samples(conformance_dir)
    assert len(samples) > 5
    for number, expected in samples:
        if math.isfinite(number):
            assert canonicalize([number]) == f"[{expected}]".encode(), (number, expected)


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), -float("inf"), 2**53, -(2**53), "\ud800", {"a": "\udfff"}],
    ids=["nan", "inf", "-inf", "2^53", "-2^53", "lone-high-surrogate", "lone-low-surrogate"],
)
def test_refuses_values_jcs_cannot_express(value: object) -> None:
    """NaN, infinities, unsafe integers and lone surrogates raise CanonicalizationError."""
    with pytest.raises(CanonicalizationError):
        canonicalize(value)


@pytest.mark.parametrize("value", [{"\ud800": 1}, {"a": [{"b": 2, "\udfff": 1}]}], ids=["high", "low"])
def test_refuses_a_lone_surrogate_in_an_object_key(value: object) -> None:
    """A lone surrogate in a key (valid JSON text, as in ``{"\\ud800": 1}``) is a CanonicalizationError."""
    for function in (canonicalize, canonicalize_reference):
        with pytest.raises(CanonicalizationError, match="surrogate"):
            function(value)


def test_refuses_non_json_types() -> None:
    """A value with no JSON form (bytes, a set) raises CanonicalizationError, not TypeError."""
    for value in (b"x", {1, 2}, {"a": object()}):
        with pytest.raises(CanonicalizationError):
            canonicalize(value)


def test_sorts_keys_by_utf16_code_units() -> None:
    """A key outside the BMP sorts before U+E000..U+FFFF keys, as UTF-16 code units order them."""
    value = {"\ufb01": 1, "\U0001f600": 2}
    assert canonicalize(value) == '{"\U0001f600":2,"\ufb01":1}'.encode()


def test_number_text_inside_strings_is_left_alone() -> None:
    """Strings that look like numbers (times, URNs) keep the fast path's output, equal to reference."""
    value = {"t": "12:30:45.5Z", "id": "urn:uuid:5817", "list": ["1e5", ",9"]}
    assert canonicalize(value) == canonicalize_reference(value)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=400)
@given(json_values)
def test_fast_path_equals_reference(value: object) -> None:
    """For any JSON value, the fast path gives exactly the reference implementation's bytes."""
    try:
        expected = canonicalize_reference(value)
    except CanonicalizationError:
        with pytest.raises(CanonicalizationError):
            canonicalize(value)
        return
    assert canonicalize(value) == expected


safe_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: abs(x) < 2**53)
    | st.text()
)
safe_json_values = st.recursive(
    safe_json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=25,
)


@given(safe_json_values)
def test_canonical_form_is_a_fixed_point(value: object) -> None:
    """Parsing canonical bytes and canonicalizing again gives the same bytes.

    Integral floats of 2**53 and beyond are left out: their text parses back as an integer
    outside the I-JSON safe range, which JCS refuses.
    """
    try:
        once = canonicalize(value)
    except CanonicalizationError:
        return
    assert canonicalize(json.loads(once)) == once
