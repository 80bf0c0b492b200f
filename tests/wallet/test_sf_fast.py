"""The fast paths for canonical signature headers give what the full Structured Field parser gives."""

from __future__ import annotations

import base64
import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from did_registry.identity.crypto import Ed25519PrivateKey
from wallet import _sf_fast
from wallet.content_digest import verify_content_digest
from wallet.errors import WalletError
from wallet.http_signatures import (
    HttpRequest,
    _fast_signature,
    _parse_signatures_fully,
    parse_signatures,
    sign_request,
)

KEY = Ed25519PrivateKey.generate()
PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
COMPONENTS = st.lists(
    st.sampled_from(["@method", "@target-uri", "@authority", "@path", "content-digest", "content-type"]),
    unique=True,
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(
    keyid=PRINTABLE,
    nonce=st.none() | PRINTABLE,
    tag=st.none() | PRINTABLE,
    created=st.integers(0, 2**40),
    lifetime=st.none() | st.integers(0, 10**6),
    components=COMPONENTS,
    label=st.from_regex(r"[a-z][a-z0-9_\-.*]{0,10}", fullmatch=True),
)
def test_signed_headers_parse_the_same_both_ways(
    keyid: str, nonce: str | None, tag: str | None, created: int, lifetime: int | None,
    components: list[str], label: str,
) -> None:  # fmt: skip
    request = HttpRequest("POST", "https://svc.example/x", {"content-type": "text/plain"}, b"hi")
    headers = sign_request(
        request, key=KEY, keyid=keyid, label=label, components=components, created=created,
        expires=None if lifetime is None else created + lifetime, nonce=nonce, tag=tag,
    )  # fmt: skip
    full = _parse_signatures_fully(headers["Signature-Input"], headers["Signature"])
    fast = _fast_signature(headers["Signature-Input"], headers["Signature"])
    if fast is not None:
        assert [fast] == full
    assert parse_signatures(headers) == full


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120))
def test_fast_parse_of_any_text_never_disagrees_with_the_full_parser(text: str) -> None:
    signature = "sig1=:" + base64.b64encode(bytes(64)).decode() + ":"
    fast = _fast_signature(text, signature)
    if fast is None:
        return
    assert [fast] == _parse_signatures_fully(text, signature)


def test_non_canonical_text_takes_the_full_parser() -> None:
    """Leading zeros, white space or an escape are not the fast path's shape."""
    for text in ('sig1=("@method");created=01', 'sig1=( "@method")', 'sig1=("@method");nonce="a\\"b"'):
        assert _sf_fast.signature_input(text) is None


@given(st.binary(max_size=200), st.binary(max_size=200))
def test_content_digest_fast_path_agrees(body: bytes, other: bytes) -> None:
    header = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
    verify_content_digest(header, body)
    if other != body:
        try:
            verify_content_digest(header, other)
        except WalletError:
            return
        raise AssertionError("a different body passed")
