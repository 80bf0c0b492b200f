"""HTTP Message Signatures (RFC 9421) over requests, with ``ed25519`` and ``hmac-sha256``.

A signer lists the *covered components* of a request (derived components such as ``@method`` and
``@target-uri``, §2.2, and HTTP fields by lowercase name, §2.1), builds the *signature base* from
their values (§2.5), and sends the list with its parameters in ``Signature-Input`` and the signature
in ``Signature``, both Structured Field Dictionaries keyed by a label (§4). Structured Field values
(RFC 8941) are parsed and serialized with :mod:`http_sfv`.

Components are written as strings: a name, then any component parameters in Structured Field form,
e.g. ``"@method"``, ``"content-digest"``, ``'@query-param;name="id"'``. Supported here: the derived
components ``@method``, ``@target-uri``, ``@authority``, ``@scheme``, ``@request-target``, ``@path``
and ``@query``, and HTTP fields without component parameters. Anything else (``@query-param``,
``@status``, ``;sf``, ``;key``, ``;bs``, ``;req``, ``;tr``) parses but is refused when a signature base
is built, with :class:`~wallet.errors.UnsupportedComponent`.

The verifier chooses the key (by ``keyid``) and so the algorithm: an Ed25519 public key means
``ed25519``, bytes mean ``hmac-sha256``; an ``alg`` parameter that disagrees is refused. Time and
nonce policy (``created``, ``expires``, replay) is the verifier's, not this module's.

This module signs (:func:`sign_request`) and verifies (:func:`verify_signature`); the rest lives in
modules of its own, whose public names are importable from here: :mod:`wallet.http_message` (the
request and a signature), :mod:`wallet.message_components` (components and the signature base),
:mod:`wallet.signature_fields` (reading ``Signature-Input`` and ``Signature``) and
:mod:`wallet.signature_fast_path` (a verifier's fast path).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Final

from http_sfv.dictionary import Dictionary
from http_sfv.item import InnerList

from did_registry.errors import BadSignature
from did_registry.identity.crypto import Ed25519PrivateKey, Ed25519PublicKey
from wallet.content_digest import content_digest, verify_content_digest
from wallet.errors import MalformedSignatureHeader, SignatureMismatch, UnsupportedAlgorithm
from wallet.http_message import SPLIT_CACHED_MAX as SPLIT_CACHED_MAX
from wallet.http_message import HttpRequest, SignatureInput, split_url
from wallet.message_components import _SFV_ERRORS, DERIVED_COMPONENTS, _base, _component_item, signature_base
from wallet.signature_fast_path import FastSignature, fast_signature_base
from wallet.signature_fields import _SIGNATURE_PARAMS, MAX_SIGNATURE_HEADER_SIZE, parse_signatures
from wallet.signature_fields import _fast_signature as _fast_signature
from wallet.signature_fields import _parse_signatures_fully as _parse_signatures_fully

__all__ = [
    "SIGNATURE_ALGORITHMS",
    "DERIVED_COMPONENTS",
    "MAX_SIGNATURE_HEADER_SIZE",
    "HMAC_MIN_KEY_SIZE",
    "HttpRequest",
    "SignatureInput",
    "sign_request",
    "parse_signatures",
    "signature_base",
    "FastSignature",
    "fast_signature_base",
    "verify_signature",
    "split_url",
]

SIGNATURE_ALGORITHMS: Final = ("ed25519", "hmac-sha256")
"""The RFC 9421 §6.2 algorithms implemented here."""
HMAC_MIN_KEY_SIZE: Final = 32
"""Shortest ``hmac-sha256`` key accepted, in bytes (the hash's output size, RFC 2104 §3)."""

SigningKey = Ed25519PrivateKey | bytes
VerifyingKey = Ed25519PublicKey | bytes


# -- signing ----------------------------------------------------------------------------------


def _sign(alg: str, key: SigningKey, base: bytes) -> bytes:
    if alg == "ed25519":
        if not isinstance(key, Ed25519PrivateKey):
            raise UnsupportedAlgorithm(f"ed25519 signs with an Ed25519PrivateKey, not {type(key).__name__}")
        return key.sign(base)
    if alg == "hmac-sha256":
        if not isinstance(key, bytes) or len(key) < HMAC_MIN_KEY_SIZE:
            raise UnsupportedAlgorithm(f"hmac-sha256 signs with a key of at least {HMAC_MIN_KEY_SIZE} bytes")
        return hmac.digest(key, base, "sha256")
    raise UnsupportedAlgorithm(f"signature algorithm {alg!r} is not one of {SIGNATURE_ALGORITHMS}")


def sign_request(
    request: HttpRequest,
    *,
    key: SigningKey,
    keyid: str,
    label: str = "sig1",
    components: Sequence[str] = ("@method", "@target-uri", "content-digest"),
    created: int,
    expires: int | None = None,
    nonce: str | None = None,
    tag: str | None = None,
    alg: str = "ed25519",
    include_alg: bool = True,
) -> dict[str, str]:
    """Sign ``request``; return the headers to add: ``Signature-Input``, ``Signature``, maybe ``Content-Digest``.

    ``Content-Digest`` (SHA-256 of the body) is made and returned when ``content-digest`` is covered
    and the request has none. Parameters are written in the order created, expires, keyid, nonce,
    alg, tag; ``include_alg=False`` leaves ``alg`` out (the verifier then takes it from the key).
    """
    added: dict[str, str] = {}
    items = [_component_item(spec) for spec in components]
    covers_digest = any(item.value == "content-digest" and not item.params for item in items)
    if covers_digest and request.header("content-digest") is None:
        added["Content-Digest"] = content_digest(request.body)
        request = HttpRequest(request.method, request.url, {**request.headers, **added}, request.body)
    params: dict[str, int | str | None] = {
        "created": created,
        "expires": expires,
        "keyid": keyid,
        "nonce": nonce,
        "alg": alg if include_alg else None,
        "tag": tag,
    }
    inner = InnerList(list(items))
    for name, value in params.items():
        if value is None:
            continue
        if type(value) is not _SIGNATURE_PARAMS[name]:
            raise MalformedSignatureHeader(
                f"signature parameter {name} must be {_SIGNATURE_PARAMS[name].__name__}"
            )
        inner.params[name] = value
    try:
        raw_params = str(inner)
        signature_input, signature = Dictionary(), Dictionary()
        signature_input[label] = inner
        signature_input_text = str(signature_input)
    except _SFV_ERRORS as exc:
        raise MalformedSignatureHeader(
            f"cannot serialize the signature parameters: {exc}", label=label
        ) from None
    base = _base(request, items, raw_params, label)
    signature[label] = _sign(alg, key, base)
    added["Signature-Input"] = signature_input_text
    added["Signature"] = str(signature)
    return added


# -- verification -----------------------------------------------------------------------------


def verify_signature(request: HttpRequest, sig: SignatureInput, key: VerifyingKey) -> None:
    """Check ``sig`` over ``request`` with ``key``; raise a typed error unless it verifies.

    An :class:`Ed25519PublicKey` means ``ed25519``, bytes mean ``hmac-sha256``; an ``alg`` parameter
    naming another algorithm raises :class:`UnsupportedAlgorithm` or :class:`SignatureMismatch`.
    When ``content-digest`` is covered, the body is then checked against it (RFC 9530).
    """
    if isinstance(key, Ed25519PublicKey):
        alg = "ed25519"
    elif isinstance(key, bytes):
        alg = "hmac-sha256"
    else:
        raise UnsupportedAlgorithm(f"no signature algorithm for a {type(key).__name__} key", label=sig.label)
    if sig.alg is not None and sig.alg not in SIGNATURE_ALGORITHMS:
        raise UnsupportedAlgorithm(f"signature algorithm {sig.alg!r} is not supported", label=sig.label)
    if sig.alg is not None and sig.alg != alg:
        raise SignatureMismatch(
            f"the signature says alg {sig.alg!r} but the key is for {alg}", label=sig.label
        )
    base = signature_base(request, sig)
    if isinstance(key, Ed25519PublicKey):
        try:
            key.verify(base, sig.signature)
        except BadSignature:
            raise SignatureMismatch("ed25519 signature does not verify", label=sig.label) from None
    else:
        if len(key) < HMAC_MIN_KEY_SIZE:
            raise UnsupportedAlgorithm(
                f"hmac-sha256 keys are at least {HMAC_MIN_KEY_SIZE} bytes", label=sig.label
            )
        if not hmac.compare_digest(hmac.digest(key, base, "sha256"), sig.signature):
            raise SignatureMismatch("hmac-sha256 signature does not verify", label=sig.label)
    if "content-digest" in sig.components:
        value = request.header("content-digest")
        assert value is not None  # covered, so the signature base needed it
        verify_content_digest(value, request.body)
