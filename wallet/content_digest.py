"""The ``Content-Digest`` field of RFC 9530 (Digest Fields), for the SHA-2 algorithms it registers as active.

``Content-Digest`` is a Structured Field Dictionary (RFC 8941) from algorithm key to a Byte Sequence
of the digest of the message content, e.g. ``sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:``.
:func:`verify_content_digest` checks every ``sha-256`` and ``sha-512`` member, skips algorithms it does
not know (RFC 9530 §2: a recipient ignores them) but refuses a field that names none it knows.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Final

from http_sfv.dictionary import Dictionary
from http_sfv.item import Item

from wallet import _sf_fast
from wallet.errors import DigestMismatch, MalformedDigestHeader, UnsupportedAlgorithm

__all__ = [
    "DIGEST_ALGORITHMS",
    "MAX_DIGEST_HEADER_SIZE",
    "content_digest",
    "verify_content_digest",
]

DIGEST_ALGORITHMS: Final[dict[str, Callable[[bytes], bytes]]] = {
    "sha-256": lambda data: hashlib.sha256(data).digest(),
    "sha-512": lambda data: hashlib.sha512(data).digest(),
}
"""The RFC 9530 §7.2 algorithms with status ``Active`` that this module computes and checks."""

MAX_DIGEST_HEADER_SIZE: Final = 4096
"""Longest ``Content-Digest`` value read, in characters; a SHA-512 member is about 100."""


def content_digest(body: bytes, algorithm: str = "sha-256") -> str:
    """The ``Content-Digest`` value for ``body`` with one ``algorithm`` (``sha-256`` or ``sha-512``)."""
    digest = DIGEST_ALGORITHMS.get(algorithm)
    if digest is None:
        raise UnsupportedAlgorithm(
            f"digest algorithm {algorithm!r} is not one of {sorted(DIGEST_ALGORITHMS)}"
        )
    field = Dictionary()
    field[algorithm] = digest(bytes(body))
    return str(field)


def _parse(header_value: str) -> Dictionary:
    if not isinstance(header_value, str):
        raise MalformedDigestHeader(f"Content-Digest must be a string, not {type(header_value).__name__}")
    if len(header_value) > MAX_DIGEST_HEADER_SIZE:
        raise MalformedDigestHeader(
            f"Content-Digest is {len(header_value)} characters, at most {MAX_DIGEST_HEADER_SIZE}"
        )
    field = Dictionary()
    try:
        field.parse(header_value.strip(" \t").encode("ascii"))
    except (ValueError, IndexError, KeyError, TypeError) as exc:  # UnicodeEncodeError is a ValueError
        reason = exc.__cause__ or exc
        raise MalformedDigestHeader(
            f"Content-Digest is not a Structured Field Dictionary: {reason}"
        ) from None
    return field


def verify_content_digest(header_value: str, body: bytes) -> None:
    """Check ``body`` against a ``Content-Digest`` value; raise a typed error unless it matches.

    Raises :class:`MalformedDigestHeader` for a value that does not parse, a known algorithm whose
    member is not a bare Byte Sequence, or a field naming no known algorithm; :class:`DigestMismatch`
    when any known algorithm's digest differs.
    """
    fast = _sf_fast.sha256_digest(header_value) if isinstance(header_value, str) else None
    if fast is not None:  # the one shape devices send: a single sha-256 member
        if not hmac.compare_digest(DIGEST_ALGORITHMS["sha-256"](bytes(body)), fast):
            raise DigestMismatch("the content does not match its sha-256 Content-Digest")
        return
    field = _parse(header_value)
    checked = 0
    for algorithm, member in field.items():
        digest = DIGEST_ALGORITHMS.get(algorithm)
        if digest is None:
            continue  # RFC 9530 §2: unknown algorithms are ignored
        if not isinstance(member, Item) or type(member.value) is not bytes or member.params:
            raise MalformedDigestHeader(f"Content-Digest member {algorithm!r} is not a Byte Sequence")
        expected = digest(bytes(body))
        if not hmac.compare_digest(expected, member.value):
            raise DigestMismatch(f"the content does not match its {algorithm} Content-Digest")
        checked += 1
    if checked == 0:
        raise MalformedDigestHeader(
            f"Content-Digest names no algorithm known here (known: {', '.join(DIGEST_ALGORITHMS)})"
        )
