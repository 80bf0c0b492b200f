"""Reading the ``Signature-Input`` and ``Signature`` fields (RFC 9421 §4.1, §4.2): Structured Field
Dictionaries (RFC 8941) keyed by a label, read strictly into :class:`~wallet.http_message.SignatureInput`.

A pair written canonically (as :func:`~wallet.http_signatures.sign_request` writes it) is read by the
expressions of ``wallet/_sf_fast.py``; any other by the full :mod:`http_sfv` parser, which gives the
same for canonical ones. Part of :mod:`wallet.http_signatures`, which re-exports the public names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from http_sfv.dictionary import Dictionary
from http_sfv.item import AllItemType, InnerList, Item

from wallet import _sf_fast
from wallet.errors import MalformedSignatureHeader
from wallet.http_message import SignatureInput, _combine_field
from wallet.message_components import _DERIVED_NAME, _FIELD_NAME, _SFV_ERRORS, _check_identifier

__all__ = [
    "MAX_SIGNATURE_HEADER_SIZE",
    "parse_signatures",
]

MAX_SIGNATURE_HEADER_SIZE: Final = 8192
"""Longest ``Signature-Input`` or ``Signature`` value read, in characters."""

_SIGNATURE_PARAMS: Final = {
    "created": int,
    "expires": int,
    "nonce": str,
    "alg": str,
    "keyid": str,
    "tag": str,
}


class _DuplicateLabel(ValueError):
    pass


class _StrictDictionary(Dictionary):
    """A Dictionary that refuses a repeated key instead of keeping the last (labels must be unique)."""

    def __setitem__(self, key: str, value: AllItemType) -> None:
        if key in self.data:
            raise _DuplicateLabel(key)
        super().__setitem__(key, value)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    values = [value for key, value in headers.items() if key.lower() == name]
    return _combine_field(values) if values else None


def _parse_dictionary(field_name: str, text: str) -> Dictionary:
    if not isinstance(text, str):
        raise MalformedSignatureHeader(f"{field_name} must be a string, not {type(text).__name__}")
    if len(text) > MAX_SIGNATURE_HEADER_SIZE:
        raise MalformedSignatureHeader(
            f"{field_name} is {len(text)} characters, at most {MAX_SIGNATURE_HEADER_SIZE}"
        )
    dictionary = _StrictDictionary()
    try:
        dictionary.parse(text.encode("ascii"))
    except _SFV_ERRORS as exc:
        chain: list[BaseException] = [exc]
        while (cause := chain[-1].__cause__) is not None and len(chain) < 8:
            chain.append(cause)
        duplicate = next((e for e in chain if isinstance(e, _DuplicateLabel)), None)
        if duplicate is not None:
            raise MalformedSignatureHeader(f"{field_name} repeats the label {duplicate}") from None
        reason = next((str(e) for e in reversed(chain) if str(e)), type(exc).__name__)
        raise MalformedSignatureHeader(
            f"{field_name} is not a Structured Field Dictionary: {reason}"
        ) from None
    return dictionary


def _signature_input(label: str, member: object, signature: object) -> SignatureInput:
    if not isinstance(member, InnerList):
        raise MalformedSignatureHeader("Signature-Input member is not an Inner List", label=label)
    components = tuple(_check_identifier(item, label) for item in member)
    if len(set(map(str, member))) != len(components):
        raise MalformedSignatureHeader("a component is covered twice", label=label)
    values: dict[str, int | str] = {}
    for name, value in member.params.items():
        wanted = _SIGNATURE_PARAMS.get(name)
        if wanted is None:
            raise MalformedSignatureHeader(f"unknown signature parameter {name!r}", label=label)
        if (
            type(value) is not wanted
            or not isinstance(value, int | str)
            or (isinstance(value, int) and value < 0)
        ):
            kind = "non-negative Integer" if wanted is int else "String"
            raise MalformedSignatureHeader(f"signature parameter {name!r} must be a {kind}", label=label)
        values[name] = value
    if not isinstance(signature, Item) or type(signature.value) is not bytes or signature.params:
        raise MalformedSignatureHeader("Signature member is not a bare Byte Sequence", label=label)
    return _from_params(label, components, values, signature.value, str(member))


def parse_signatures(headers: Mapping[str, str]) -> list[SignatureInput]:
    """Every signature in ``headers`` (names any case), in ``Signature-Input`` order; strict.

    No ``Signature-Input`` and no ``Signature`` gives ``[]``. One without the other, a label in one
    but not the other, a repeated label, a member of the wrong type, an unknown or mistyped
    parameter, or a value over :data:`MAX_SIGNATURE_HEADER_SIZE` raises
    :class:`MalformedSignatureHeader` naming the problem.
    """
    input_text, signature_text = _header(headers, "signature-input"), _header(headers, "signature")
    if input_text is None and signature_text is None:
        return []
    if input_text is None or signature_text is None:
        present, absent = (
            ("Signature", "Signature-Input") if input_text is None else ("Signature-Input", "Signature")
        )
        raise MalformedSignatureHeader(f"{present} is present but {absent} is not")
    fast = _fast_signature(input_text, signature_text)
    if fast is not None:
        return [fast]
    return _parse_signatures_fully(input_text, signature_text)


def _fast_signature(input_text: str, signature_text: str) -> SignatureInput | None:
    """The one signature of a canonically written pair of headers (``wallet/_sf_fast.py``), or
    ``None`` to take the full parser."""
    if len(input_text) > MAX_SIGNATURE_HEADER_SIZE or len(signature_text) > MAX_SIGNATURE_HEADER_SIZE:
        return None
    parsed, signed = _sf_fast.signature_input(input_text), _sf_fast.signature_bytes(signature_text)
    if parsed is None or signed is None or parsed[0] != signed[0]:
        return None
    label, components, params, raw = parsed
    if len(set(components)) != len(components) or not all(
        _FIELD_NAME.fullmatch(c) or _DERIVED_NAME.fullmatch(c) for c in components
    ):
        return None
    for name, value in params.items():
        wanted = _SIGNATURE_PARAMS.get(name)
        if wanted is None or type(value) is not wanted:
            return None
    return _from_params(label, components, params, signed[1], raw)


def _parse_signatures_fully(input_text: str, signature_text: str) -> list[SignatureInput]:
    """The full (``http_sfv``) parse of both headers."""
    inputs = _parse_dictionary("Signature-Input", input_text)
    signatures = _parse_dictionary("Signature", signature_text)
    for label in signatures:
        if label not in inputs:
            raise MalformedSignatureHeader("Signature has no matching Signature-Input", label=label)
    result: list[SignatureInput] = []
    for label, member in inputs.items():
        if label not in signatures:
            raise MalformedSignatureHeader("Signature-Input has no matching Signature", label=label)
        result.append(_signature_input(label, member, signatures[label]))
    return result


def _from_params(
    label: str, components: tuple[str, ...], params: Mapping[str, object], signature: bytes, raw: str
) -> SignatureInput:
    """The :class:`SignatureInput` of checked ``params`` (each of its type, or absent)."""
    created, expires = params.get("created"), params.get("expires")
    keyid, alg, nonce, tag = (params.get(name) for name in ("keyid", "alg", "nonce", "tag"))
    return SignatureInput(
        label=label,
        components=components,
        keyid=keyid if isinstance(keyid, str) else None,
        alg=alg if isinstance(alg, str) else None,
        created=created if isinstance(created, int) else None,
        expires=expires if isinstance(expires, int) else None,
        nonce=nonce if isinstance(nonce, str) else None,
        tag=tag if isinstance(tag, str) else None,
        signature=signature,
        raw_params=raw,
    )
