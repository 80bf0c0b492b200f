"""Fast paths for the canonical Structured Field shapes of signed requests (RFC 8941, 9421, 9530).

A device signs every request the same way: one signature, plain component names, integer and
String parameters, a single ``sha-256`` digest. For exactly those shapes, written canonically (no
optional white space, no leading zeros, no escapes), a regular expression reads the header and
yields what the full ``http_sfv`` parser would, and the serialized ``@signature-params`` is the text
as received. Anything else returns ``None`` and the caller takes the full parser, so the fast path
never accepts what the full one would refuse; a property test holds the two equal.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final

__all__ = ["signature_input", "signature_bytes", "sha256_digest"]

_KEY = r"[a-z*][a-z0-9_\-.*]{0,63}"
_STRING = r'"[\x20\x21\x23-\x5b\x5d-\x7e]*"'
_INTEGER = r"(?:0|[1-9][0-9]{0,14})"
_COMPONENT = r'"[a-z0-9@][a-z0-9@\-_.]*"'
_INPUT: Final = re.compile(
    rf"({_KEY})=(\((?:{_COMPONENT}(?: {_COMPONENT})*)?\)((?:;{_KEY}=(?:{_INTEGER}|{_STRING}))*))"
)
_PARAM: Final = re.compile(rf";({_KEY})=({_INTEGER}|{_STRING})")
_SIGNATURE: Final = re.compile(rf"({_KEY})=:([A-Za-z0-9+/]*={{0,2}}):")
_SHA256: Final = re.compile(r"sha-256=:([A-Za-z0-9+/]{43}=):")

ParsedInput = tuple[str, tuple[str, ...], dict[str, int | str], str]


def signature_input(text: str) -> ParsedInput | None:
    """``(label, component names, parameters, raw params)`` of a canonical one-member
    ``Signature-Input``, or ``None`` when the text is not of that shape (or repeats a parameter)."""
    match = _INPUT.fullmatch(text)
    if match is None:
        return None
    label, raw, params_text = match.groups()
    inner = raw[1 : raw.index(")")]
    components = tuple(item[1:-1] for item in inner.split(" ")) if inner else ()
    params: dict[str, int | str] = {}
    for name, value in _PARAM.findall(params_text):
        if name in params:
            return None  # a repeated parameter: the full parser decides (last one wins there)
        params[name] = value[1:-1] if value.startswith('"') else int(value)
    return label, components, params, raw


def signature_bytes(text: str) -> tuple[str, bytes] | None:
    """``(label, bytes)`` of a one-member ``Signature`` Dictionary holding a bare Byte Sequence."""
    match = _SIGNATURE.fullmatch(text)
    if match is None:
        return None
    try:
        return match.group(1), base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        return None


def sha256_digest(text: str) -> bytes | None:
    """The digest of a ``Content-Digest`` holding exactly one ``sha-256`` member, else ``None``."""
    match = _SHA256.fullmatch(text)
    if match is None:
        return None
    try:
        return base64.b64decode(match.group(1), validate=True)
    except (binascii.Error, ValueError):
        return None
