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
    fast_signature_base,
    parse_signatures,
    sign_request,
    signature_base,
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


FIELD_VALUES = st.text(st.sampled_from('ab ;:="\\\r\n\té,'), max_size=6)


def _full_base(request: HttpRequest) -> tuple[object, ...] | None:
    """What parse_signatures and signature_base give for ``request`` (None when either refuses)."""
    try:
        (sig,) = parse_signatures(request.headers)
        base = signature_base(request, sig)
    except (WalletError, ValueError):
        return None
    return (sig.components, sig.label, sig.keyid, sig.alg, sig.created, sig.expires, sig.nonce,
            sig.signature, base)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    keyid=st.none() | PRINTABLE,
    nonce=st.none() | PRINTABLE,
    alg=st.sampled_from(["ed25519", "hmac-sha256"]),
    include_alg=st.booleans(),
    tag=st.none() | PRINTABLE,
    created=st.integers(0, 2**40),
    lifetime=st.none() | st.integers(0, 10**6),
    components=COMPONENTS,
    label=st.from_regex(r"[a-z][a-z0-9_\-.*]{0,10}", fullmatch=True),
    method=st.sampled_from(["POST", "get", "PO\nST", "PÖST"]),
    value=FIELD_VALUES,
)
def test_fast_signature_base_is_what_the_full_path_gives(
    keyid: str | None, nonce: str | None, alg: str, include_alg: bool, tag: str | None, created: int,
    lifetime: int | None, components: list[str], label: str, method: str, value: str,
) -> None:  # fmt: skip
    request = HttpRequest(method, "https://svc.example/x?q=1", {"content-type": value}, b"hi")
    key: object = KEY if alg == "ed25519" else bytes(32)
    try:
        headers = sign_request(
            request, key=key, keyid=keyid or "k", label=label, components=components, created=created,
            expires=None if lifetime is None else created + lifetime, nonce=nonce, tag=tag, alg=alg,
            include_alg=include_alg,
        )  # type: ignore[arg-type]  # fmt: skip
    except WalletError:
        return  # a value no base can hold: nothing was signed
    signed = HttpRequest(method, request.url, {**request.headers, **headers}, request.body)
    fast = fast_signature_base(signed)
    if fast is not None:
        assert fast == _full_base(signed)


EDITS = st.lists(
    st.tuples(st.integers(0, 200), st.sampled_from(["insert", "delete", "replace"]), PRINTABLE),
    min_size=1,
    max_size=3,
)


def _edit(text: str, edits: list[tuple[int, str, str]]) -> str:
    for position, operation, chars in edits:
        at = position % (len(text) + 1)
        if operation == "insert":
            text = text[:at] + chars[:2] + text[at:]
        elif operation == "delete":
            text = text[:at] + text[at + 1 + len(chars) % 3 :]
        else:
            text = text[:at] + chars[:1] + text[at + 1 :]
    return text


@settings(max_examples=500, deadline=None)
@given(edits=EDITS, field=st.sampled_from(["Signature-Input", "Signature"]))
def test_fast_signature_base_of_edited_headers_never_disagrees(
    edits: list[tuple[int, str, str]], field: str
) -> None:
    """Hostile variants of a device's headers: the fast path reads them as the full one, or not at all."""
    request = HttpRequest("POST", "https://svc.example/x", {"content-type": "a"}, b"hi")
    headers = sign_request(
        request, key=KEY, keyid="did:trellis:t:z6Mk#key-1", created=1_700_000_000, expires=1_700_000_060,
        nonce="abc", tag="t",
    )  # fmt: skip
    headers[field] = _edit(headers[field], edits)
    edited = HttpRequest("POST", request.url, {**request.headers, **headers}, b"hi")
    fast = fast_signature_base(edited)
    if fast is not None:
        assert fast == _full_base(edited)


@settings(max_examples=500, deadline=None)
@given(edits=EDITS)
def test_the_device_expression_reads_as_the_general_one(edits: list[tuple[int, str, str]]) -> None:
    """Where the expression for a device's ``Signature-Input`` matches, the general one matches too,
    with the same groups (the label and the component list being those it spells out)."""
    request = HttpRequest("POST", "https://svc.example/x", {"content-type": "a"}, b"hi")
    headers = sign_request(
        request, key=KEY, keyid="did:trellis:t:z6Mk#key-1", created=1_700_000_000, expires=1_700_000_060,
        nonce="abc", tag="t",
    )  # fmt: skip
    for text in (headers["Signature-Input"], _edit(headers["Signature-Input"], edits)):
        device = _sf_fast.DEVICE_INPUT.fullmatch(text)
        if device is None:
            assert text != headers["Signature-Input"]
            continue
        general = _sf_fast.REQUEST_INPUT.fullmatch(text)
        assert general is not None
        raw, *params = device.groups()
        assert general.groups() == ("sig1", raw, '"@method" "@target-uri" "content-digest"', *params)


def test_non_canonical_signature_input_is_left_to_the_full_path() -> None:
    """Parameters out of the signer's order, repeated, spaced or with leading zeros are not fast."""
    request = HttpRequest("POST", "https://svc.example/x", {"content-type": "a"}, b"hi")
    headers = sign_request(request, key=KEY, keyid="k", components=["@method"], created=5, nonce="n")
    text = headers["Signature-Input"]
    for variant in (
        text.replace(";created=5", "") + ";created=5",  # out of order
        text + ';nonce="m"',  # repeated
        text.replace(";", "; ", 1),
        text.replace("created=5", "created=05"),
        text.replace("sig1", "sig2"),  # a label the Signature does not have
    ):
        fields = {**request.headers, **headers, "Signature-Input": variant}
        assert fast_signature_base(HttpRequest("POST", request.url, fields, b"hi")) is None
    assert fast_signature_base(HttpRequest("POST", request.url, {**request.headers, **headers}, b"hi"))
