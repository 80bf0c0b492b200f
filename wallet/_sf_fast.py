"""Fast paths for the canonical Structured Field shapes of signed requests (RFC 8941, 9421, 9530).

A device signs every request the same way: one signature, plain component names, integer and
String parameters, a single ``sha-256`` digest. For exactly those shapes, written canonically (no
optional white space, no leading zeros, no escapes), a regular expression reads the header and
yields what the full ``http_sfv`` parser would, and the serialized ``@signature-params`` is the text
as received. Anything else returns ``None`` and the caller takes the full parser, so the fast path
never accepts what the full one would refuse; a property test holds the two equal.
"""

from __future__ import annotations

import binascii
import re
from typing import Final

__all__ = [
    "REQUEST_INPUT",
    "DEVICE_INPUT",
    "REQUEST_SIGNATURE",
    "signature_input",
    "signature_bytes",
    "sha256_digest",
]

_KEY = r"[a-z*][a-z0-9_\-.*]{0,63}"
_CHARS = r"[\x20\x21\x23-\x5b\x5d-\x7e]*"  # a String's characters when it needs no escape
_STRING = rf'"{_CHARS}"'
_INTEGER = r"(?:0|[1-9][0-9]{0,14})"
_COMPONENT = r'"[a-z0-9@][a-z0-9@\-_.]*"'
_INPUT: Final = re.compile(
    rf"({_KEY})=(\((?:{_COMPONENT}(?: {_COMPONENT})*)?\)((?:;{_KEY}=(?:{_INTEGER}|{_STRING}))*))"
)
# The same shapes with possessive quantifiers, which never give back what they took (each stops at a
# character that may not follow it, so giving back could not help): matching is then a single pass.
_KEY_P = r"[a-z*][a-z0-9_\-.*]{0,63}+"
_INTEGER_P = r"(?:0|[1-9][0-9]{0,14}+)"
_CHARS_P = r"[\x20\x21\x23-\x5b\x5d-\x7e]*+"
_COMPONENT_P = r'"[a-z0-9@][a-z0-9@\-_.]*+"'
_PARAMS_P = (  # the parameters in the order wallet.http_signatures writes them, each at most once
    rf'(?:;created=({_INTEGER_P}))?+(?:;expires=({_INTEGER_P}))?+(?:;keyid="({_CHARS_P})")?+'
    rf'(?:;nonce="({_CHARS_P})")?+(?:;alg="({_CHARS_P})")?+(?:;tag="({_CHARS_P})")?+'
)
REQUEST_INPUT: Final = re.compile(rf"({_KEY_P})=(\(((?:{_COMPONENT_P}(?: {_COMPONENT_P})*+)?+)\){_PARAMS_P})")
"""A canonical one-member ``Signature-Input`` whose parameters come in the order a signer here writes
them (a subset of what :func:`signature_input` reads). Its groups: the label, the raw
``@signature-params``, the component list's text, then ``created``, ``expires`` (their digits),
``keyid``, ``nonce``, ``alg`` and ``tag`` (unquoted), ``None`` when absent."""
DEVICE_INPUT: Final = re.compile(rf'sig1=(\("@method" "@target-uri" "content-digest"\){_PARAMS_P})')
""":data:`REQUEST_INPUT` with the label and components a device signs with (``wallet.device_client``),
which it matches more quickly: where this matches, that does, with the same groups after the first
and the third (the label ``sig1`` and the component list, not captured here)."""
REQUEST_SIGNATURE: Final = re.compile(rf"({_KEY_P})=:([A-Za-z0-9+/]*+={{0,2}}+):")
"""A one-member ``Signature`` holding a bare Byte Sequence (as :func:`signature_bytes` reads). Its
groups: the label and the base64 text, whose alphabet and padding characters are checked (decoding it
with :func:`binascii.a2b_base64`, which raises on a wrong length, is then ``b64decode(validate=True)``)."""
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
    try:  # the expression checked the alphabet: this is b64decode(validate=True)
        return match.group(1), binascii.a2b_base64(match.group(2))
    except binascii.Error:
        return None


def sha256_digest(text: str) -> bytes | None:
    """The digest of a ``Content-Digest`` holding exactly one ``sha-256`` member, else ``None``."""
    match = _SHA256.fullmatch(text)
    if match is None:
        return None
    return binascii.a2b_base64(match.group(1))  # 43 characters and "=": always 32 bytes
