"""Content-Digest (RFC 9530): making the field and checking a body against it."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wallet.content_digest import MAX_DIGEST_HEADER_SIZE, content_digest, verify_content_digest
from wallet.errors import DigestMismatch, HttpSignatureError, MalformedDigestHeader, UnsupportedAlgorithm

CONFORMANCE = Path("/work/shared/conformance/rfc9421")
BODY = b'{"hello": "world"}'
# RFC 9530 §2 example (and RFC 9421's earlier test-request Digest): SHA-256 of {"hello": "world"}.
SHA256_HELLO = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"


def _published_sha512() -> str:
    """The Content-Digest header of the RFC 9421 Appendix B.2 test-request."""
    request = json.loads((CONFORMANCE / "b26.json").read_text())["request"]
    value: str = dict(request["headers"])["Content-Digest"]
    return value


def test_sha256_matches_rfc9530_example() -> None:
    """content_digest gives the RFC 9530 sha-256 value for the example body."""
    assert content_digest(BODY) == SHA256_HELLO


def test_sha512_matches_rfc9421_test_request() -> None:
    """content_digest with sha-512 gives the Content-Digest of the RFC 9421 test-request."""
    assert content_digest(BODY, "sha-512") == _published_sha512()


def test_verify_accepts_published_values() -> None:
    """Both published values verify against the body."""
    verify_content_digest(SHA256_HELLO, BODY)
    verify_content_digest(_published_sha512(), BODY)


def test_verify_accepts_several_algorithms() -> None:
    """A field with sha-256 and sha-512 verifies when both match."""
    verify_content_digest(f"{SHA256_HELLO}, {_published_sha512()}", BODY)


def test_verify_refuses_when_any_known_algorithm_mismatches() -> None:
    """One wrong member among right ones is a DigestMismatch."""
    wrong = content_digest(b"other", "sha-512")
    with pytest.raises(DigestMismatch, match="sha-512"):
        verify_content_digest(f"{SHA256_HELLO}, {wrong}", BODY)


def test_verify_refuses_other_body() -> None:
    """A changed body does not match its digest."""
    with pytest.raises(DigestMismatch):
        verify_content_digest(SHA256_HELLO, BODY + b" ")


def test_verify_ignores_unknown_algorithms() -> None:
    """Unknown algorithm keys are skipped when a known one is present."""
    verify_content_digest(f"md5=:AAAA:, unixsum=1, {SHA256_HELLO}", BODY)


def test_verify_refuses_only_unknown_algorithms() -> None:
    """A field with no known algorithm is refused."""
    md5 = base64.b64encode(hashlib.md5(BODY).digest()).decode()  # an algorithm the verifier must skip
    with pytest.raises(MalformedDigestHeader, match="no algorithm known"):
        verify_content_digest(f"md5=:{md5}:", BODY)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha-256",
        "sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",
        'sha-256="X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE="',
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:;p=1",
        "sha-256=(:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:)",
        "SHA-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:,",
        "sha-256=:é:",
    ],
)
def test_verify_refuses_malformed_fields(value: str) -> None:
    """Values that are not a Dictionary of bare Byte Sequences are MalformedDigestHeader."""
    with pytest.raises(MalformedDigestHeader):
        verify_content_digest(value, BODY)


def test_verify_refuses_oversize_field() -> None:
    """A value over the size cap is refused before parsing."""
    value = SHA256_HELLO + ", " + ", ".join(f"x{i}=1" for i in range(MAX_DIGEST_HEADER_SIZE))
    with pytest.raises(MalformedDigestHeader, match="at most"):
        verify_content_digest(value, BODY)


def test_content_digest_refuses_unknown_algorithm() -> None:
    """Only sha-256 and sha-512 are made."""
    with pytest.raises(UnsupportedAlgorithm, match="md5"):
        content_digest(BODY, "md5")


@given(st.binary(max_size=256), st.sampled_from(["sha-256", "sha-512"]))
def test_round_trip(body: bytes, algorithm: str) -> None:
    """Any body verifies against its own digest."""
    verify_content_digest(content_digest(body, algorithm), body)


@given(st.text(alphabet=st.sampled_from(list('sha-256=:;,()"?*AZaz09+/ \t\x00é')), max_size=80))
def test_fuzz_raises_only_typed_errors(value: str) -> None:
    """Arbitrary header text verifies or raises the wallet's typed errors, nothing else."""
    with contextlib.suppress(HttpSignatureError):
        verify_content_digest(value, BODY)
