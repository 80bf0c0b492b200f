"""Multibase (draft-multiformats-multibase) for the two bases Trellis uses.

``z`` is base58btc (Multikey, Data Integrity ``proofValue``) and ``u`` is base64url without padding
(Bitstring Status List ``encodedList``). Encoding uses well-kept libraries (:mod:`base58`, :mod:`base64`);
this module adds and checks the one-character prefix, strictly: a wrong prefix, a character outside
the alphabet, or base64 padding is an error. Base58 *decoding* sits on every signature check
(``proofValue``), so it has its own table-driven decoder, 2.5x faster than :mod:`base58`'s; a property
test holds it equal to the library on every input. Its time grows with the square of the length, so
it takes the largest size its caller accepts (``max_size``) and refuses longer text unread.
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache

import base58

__all__ = ["MultibaseError", "base58_length", "decode", "decode_base58btc", "encode", "encode_base58btc"]

BASE58BTC = "z"
BASE64URL = "u"

_BASE58_ALPHABET = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_DIGITS = bytearray(b"\xff" * 256)
for _value, _char in enumerate(_BASE58_ALPHABET):
    _BASE58_DIGITS[_char] = _value
_BASE64URL_RE = re.compile(r"[A-Za-z0-9_-]*")


class MultibaseError(ValueError):
    """A multibase string has an unknown prefix or characters outside its alphabet."""


def encode_base58btc(data: bytes) -> str:
    """Return ``data`` as multibase base58btc: ``z`` followed by the Bitcoin base58 alphabet."""
    return BASE58BTC + base58.b58encode(data).decode("ascii")


@lru_cache(maxsize=64)
def base58_length(size: int) -> int:
    """The most base58 characters ``size`` bytes encode to: the fewest digits that reach ``256**size``.

    A leading zero byte takes one character, less than the log(256)/log(58) ≈ 1.37 of any other, so
    no value of ``size`` bytes is longer, and any longer text decodes to more than ``size`` bytes."""
    if size < 0:
        raise ValueError(f"a size is not negative, got {size}")
    length, reach, bound = 0, 1, 256**size
    while reach < bound:
        length, reach = length + 1, reach * 58
    return length


def decode_base58btc(text: str, *, max_size: int | None = None) -> bytes:
    """Decode a multibase base58btc string (``z…``).

    Decoding takes time quadratic in the length, so a caller holding untrusted text passes
    ``max_size``, the most bytes it accepts: text longer than :func:`base58_length` of ``max_size``
    (which can only decode to more) is refused unread. Shorter text may still decode to a few bytes
    more; the caller checks the exact size it needs.
    """
    if not isinstance(text, str) or not text.startswith(BASE58BTC):
        raise MultibaseError("expected multibase base58btc, which starts with 'z'")
    if max_size is not None and len(text) - 1 > base58_length(max_size):
        raise MultibaseError(f"{len(text) - 1} base58btc characters encode more than {max_size} bytes")
    try:
        raw = text[1:].encode("ascii")
    except UnicodeEncodeError:
        raise MultibaseError("character outside the base58btc alphabet") from None
    digits = raw.translate(_BASE58_DIGITS)
    if 0xFF in digits:
        raise MultibaseError("character outside the base58btc alphabet")
    value = 0
    for digit in digits:
        value = value * 58 + digit
    zeros = len(raw) - len(raw.lstrip(b"1"))  # each leading '1' is a leading zero byte
    return bytes(zeros) + value.to_bytes((value.bit_length() + 7) // 8, "big")


def encode(data: bytes, base: str = BASE58BTC) -> str:
    """Encode ``data`` with the multibase prefix ``base`` (``z`` or ``u``)."""
    if base == BASE58BTC:
        return encode_base58btc(data)
    if base == BASE64URL:
        return BASE64URL + base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
    raise MultibaseError(f"unsupported multibase prefix {base!r}")


def decode(text: str) -> bytes:
    """Decode a multibase string whose prefix is ``z`` (base58btc) or ``u`` (base64url, no padding)."""
    if not isinstance(text, str) or not text:
        raise MultibaseError("multibase value must be a non-empty string")
    prefix, body = text[0], text[1:]
    if prefix == BASE58BTC:
        return decode_base58btc(text)
    if prefix == BASE64URL:
        if _BASE64URL_RE.fullmatch(body) is None:
            raise MultibaseError("character outside the base64url alphabet (or padding)")
        if len(body) % 4 == 1:
            raise MultibaseError("truncated base64url value")
        try:
            return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except binascii.Error as exc:
            raise MultibaseError(f"bad base64url: {exc}") from None
    raise MultibaseError(f"unsupported multibase prefix {prefix!r}")
