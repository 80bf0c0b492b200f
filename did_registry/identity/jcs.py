"""RFC 8785 JSON Canonicalization Scheme (JCS): the bytes that Trellis hashes and signs.

Canonical form: UTF-8, no insignificant white space, object members sorted by the UTF-16 code
units of their names, strings with only the escapes RFC 8785 §3.2.2.2 requires, and numbers
serialized as ECMAScript does (§3.2.2.3).

Two paths give the same bytes. The reference path is the well-kept :mod:`rfc8785` package. The fast
path is CPython's C JSON encoder, used only when its output provably equals JCS: no floating-point
numbers and no integers outside the IEEE-754 safe range (those are the only places where Python's
number text differs from ECMAScript's), and no characters outside the Basic Multilingual Plane
(the only place where code-point and UTF-16 ordering of keys differ, and where lone surrogates could
hide). Anything else takes the reference path. A property test holds the two paths equal.
"""

from __future__ import annotations

import json
import re
from typing import Any

import rfc8785

from did_registry.errors import CanonicalizationError

__all__ = ["canonicalize", "canonicalize_reference", "holds_nul"]

_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")).encode

# Number tokens follow '":', ',' or '[' in compact output (or start the text) and end at ',', '}' or
# ']'. Most documents have none: three cheap searches settle it (a pattern that starts with a
# literal scans far faster than one that starts with a class). Otherwise, a whole token with a
# fraction or exponent (a float) or of 16+ digits (an integer that may lie outside ±(2**53 - 1))
# sends the value to the reference path. Text inside strings can match too (rarely, since the token
# must end as a number does); then the check is repeated with the strings taken out.
_AFTER_COLON = re.compile(r'":[-0-9]').search
_AFTER_COMMA = re.compile(r",[-0-9]").search
_AFTER_BRACKET = re.compile(r"\[[-0-9]").search
_RISKY = r"-?(?:[0-9]+(?:\.[0-9]+)?[eE][+-]?[0-9]+|[0-9]+\.[0-9]+|[0-9]{16,})[,}\]]"
_NUMBER_RISK = re.compile(r"[:,\[]" + _RISKY)
# The same, one pattern per literal a number follows: a pattern that starts with a literal is
# scanned for far faster than one that starts with a class (16 µs -> 1 µs on a DID record).
_RISK_AFTER_COLON = re.compile(r'":' + _RISKY).search
_RISK_AFTER_COMMA = re.compile(r"," + _RISKY).search
_RISK_AFTER_BRACKET = re.compile(r"\[" + _RISKY).search
_NUMBER_START = frozenset("-0123456789")
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_OUTSIDE_BMP_OR_SURROGATE = re.compile("[\ud800-\udfff\U00010000-\U0010ffff]")


def canonicalize_reference(value: Any) -> bytes:
    """Return the RFC 8785 bytes of ``value`` by the reference implementation."""
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise CanonicalizationError(str(exc)) from None
    except UnicodeEncodeError as exc:  # rfc8785 sorts keys by their UTF-16: a lone surrogate fails there
        raise CanonicalizationError(f"a lone surrogate in {exc.object[:40]!r} is not Unicode text") from None
    except (TypeError, RecursionError) as exc:
        raise CanonicalizationError(f"not a JSON value: {exc}") from None


def canonicalize(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of a JSON value (as :func:`json.loads` builds it).

    Object keys must be strings, as in any parsed JSON; like :func:`json.dumps`, the fast path
    writes int, float, bool and None keys as their JSON text instead of refusing them.

    Raises :class:`~did_registry.errors.CanonicalizationError` for values JCS cannot express:
    NaN or infinity, integers beyond ±(2**53 - 1), lone surrogates, non-string object keys.
    """
    try:
        text = _encode(value)
    except (TypeError, ValueError, RecursionError):
        return canonicalize_reference(value)
    if text[0] in _NUMBER_START or (
        (
            (_AFTER_COLON(text) and _RISK_AFTER_COLON(text))
            or (_AFTER_COMMA(text) and _RISK_AFTER_COMMA(text))
            or (_AFTER_BRACKET(text) and _RISK_AFTER_BRACKET(text))
        )
        and _NUMBER_RISK.search(_STRING.sub("", text)) is not None
    ):
        return canonicalize_reference(value)
    if not text.isascii() and _OUTSIDE_BMP_OR_SURROGATE.search(text) is not None:
        return canonicalize_reference(value)
    return text.encode("utf-8")


_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")  # an escaped U+0000, not an escaped backslash


def holds_nul(canonical: bytes) -> bool:
    """Whether a string of a canonical text holds U+0000 (escaped ``\\u0000``; not a literal
    backslash followed by ``u0000``, escaped ``\\\\u0000``): what PostgreSQL cannot store."""
    return b"\\u0000" in canonical and _NUL_ESCAPE.search(canonical) is not None
