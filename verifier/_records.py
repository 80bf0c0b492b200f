"""Compact forms of the ledger records a verifier needs, made from proven state values.

A cached device costs a few hundred bytes: its Ed25519 keys as raw bytes with a bit mask of the
relationships they serve, two flags and the height the record is valid at (never the JSON
document). Status lists keep their raw bits; issuers their accredited types.
"""

from __future__ import annotations

import base64
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from did_registry.bounded_cache import BoundedCache
from did_registry.errors import DidRegistryError
from did_registry.identity.crypto import Ed25519PublicKey, X25519PublicKey
from did_registry.identity.did_document import DIDDocument

__all__ = [
    "AUTHENTICATION",
    "ASSERTION",
    "KEY_AGREEMENT",
    "STATUS_LIST_URL",
    "DIDEntry",
    "StatusEntry",
    "IssuerEntry",
    "did_entry",
    "did_entry_from_document",
    "status_entry",
    "issuer_entry",
]

AUTHENTICATION: Final = 1
"""Relationship bit: the key may authenticate (``authentication``)."""
ASSERTION: Final = 2
"""Relationship bit: the key may issue credentials (``assertionMethod``)."""
KEY_AGREEMENT: Final = 4
"""Relationship bit: an X25519 key for key agreement (``keyAgreement``; sessions)."""
_RELATIONSHIPS: Final = (
    ("authentication", AUTHENTICATION),
    ("assertionMethod", ASSERTION),
    ("keyAgreement", KEY_AGREEMENT),
)

_KEYS: BoundedCache[bytes, Ed25519PublicKey] = BoundedCache(4096)  # the keys of the devices seen last

STATUS_LIST_URL: Final = re.compile(r"/status-lists/(did:trellis:[^/]+)/([A-Za-z0-9._-]+)(?:/credential)?$")
"""A ledger status list's URL (any node serves it): ``…/status-lists/<issuer>/<list>[/credential]``."""


@dataclass(frozen=True, slots=True)
class DIDEntry:
    """A DID's usable keys, whether it is deactivated or quarantined, and its ledger height."""

    keys: tuple[tuple[str, bytes, int], ...]  # (fragment, raw key, relationship bits)
    deactivated: bool
    quarantined: bool
    height: int

    def key(self, fragment: str, relationship: int) -> Ed25519PublicKey | None:
        """The key ``#fragment`` if it serves ``relationship`` (``None`` otherwise)."""
        for name, raw, bits in self.keys:
            if name == fragment and bits & relationship and not bits & KEY_AGREEMENT:
                key = _KEYS.get(raw)
                if key is None:
                    key = Ed25519PublicKey(raw)
                    _KEYS.put(raw, key)
                return key
        return None

    def serves(self, fragment: str, relationship: int) -> bool:
        """Whether :meth:`key` finds ``#fragment`` for ``relationship``."""
        for name, _, bits in self.keys:
            if name == fragment and bits & relationship and not bits & KEY_AGREEMENT:
                return True
        return False

    def agreement_key(self) -> X25519PublicKey | None:
        """The first ``keyAgreement`` X25519 key (``None`` when the document has none)."""
        for _, raw, bits in self.keys:
            if bits & KEY_AGREEMENT:
                return X25519PublicKey(raw)
        return None

    def has(self, fragment: str) -> bool:
        """Whether the document defines a key ``#fragment`` at all."""
        return any(name == fragment for name, _, _ in self.keys)

    def same_as(self, other: DIDEntry) -> bool:
        """Whether ``other`` says what this entry says (the same keys serving the same relationships,
        in the same order, and the same flags), whatever heights the two were read at."""
        return (
            self.keys == other.keys
            and self.deactivated == other.deactivated
            and self.quarantined == other.quarantined
        )


@dataclass(frozen=True, slots=True)
class StatusEntry:
    """A status list's purpose and raw bits (bit 0 is the first byte's high bit)."""

    purpose: str
    bits: bytes
    height: int

    def get(self, index: int) -> bool:
        """Whether bit ``index`` is set; ``IndexError`` beyond the list."""
        if not 0 <= index < len(self.bits) * 8:
            raise IndexError(index)
        return bool(self.bits[index >> 3] & (0x80 >> (index & 7)))


@dataclass(frozen=True, slots=True)
class IssuerEntry:
    """The credential types an issuer is accredited for, and whether it still holds the issuer role."""

    types: frozenset[str]
    issuer_role: bool
    height: int


def did_entry_from_document(
    document: DIDDocument, *, deactivated: bool, quarantined: bool, height: int
) -> DIDEntry:
    """The compact entry of a parsed DID document (its own Ed25519 and X25519 keys only)."""
    did = str(document.id)
    keys: dict[str, list[Any]] = {}
    for relationship, bit in _RELATIONSHIPS:
        for method in document.methods_for(relationship):
            key = method.public_key
            kind = X25519PublicKey if bit == KEY_AGREEMENT else Ed25519PublicKey
            if not isinstance(key, kind) or not method.id.startswith(did + "#"):
                continue
            fragment = sys.intern(method.id[len(did) + 1 :])
            keys.setdefault(fragment, [bytes(key), 0])[1] |= bit
    return DIDEntry(
        tuple((f, raw, bits) for f, (raw, bits) in keys.items()), deactivated, quarantined, height
    )


def did_entry(record: Mapping[str, Any], quarantine: object, height: int) -> DIDEntry:
    """The entry of a proven ``did:<did>`` record and its ``quarantine:<did>`` value (or ``None``)."""
    try:
        document = DIDDocument.from_json(record["document"])
        return did_entry_from_document(
            document,
            deactivated=bool(record["deactivated"]),
            quarantined=quarantine is not None,
            height=height,
        )
    except (KeyError, TypeError, DidRegistryError) as exc:
        raise ValueError(f"unusable DID record: {exc}") from None


def status_entry(value: Mapping[str, Any], height: int) -> StatusEntry:
    """The entry of a proven ``status:<issuer>:<list>`` value."""
    try:
        bits = base64.urlsafe_b64decode(value["bits"] + "=" * (-len(value["bits"]) % 4))
        return StatusEntry(sys.intern(str(value["purpose"])), bits, height)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"unusable status list: {exc}") from None


def issuer_entry(trust: object, roles: object, height: int) -> IssuerEntry:
    """The entry of an issuer's proven ``trust:<did>`` and ``role:<did>`` values (each may be absent)."""
    types = frozenset(t for t in trust if isinstance(t, str)) if isinstance(trust, list) else frozenset()
    role = isinstance(roles, list) and "issuer" in roles
    return IssuerEntry(types, role, height)
