"""The did:trellis method: syntax, self-certifying ids and the initial DID document.

The method is specified in ``docs/did-method.md`` (W3C DID method specification form)::

    did:trellis:<network>:<id>
    network = 1 to 32 of [a-z0-9-], not starting or ending with "-"
    id      = base58btc(SHA-256(0xed 0x01 || initial Ed25519 public key)[0:16])   (no multibase "z")

The id commits to the key that created the DID, so anyone holding the creation transaction can
check that its initial key hashes to the id (:func:`check_self_certifying`). The ledger rules that
enforce this on create, and the update and deactivate operations, live in the ledger package.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final, NamedTuple

from did_registry.errors import InvalidDID
from did_registry.identity import multibase, multikey
from did_registry.identity.crypto import Ed25519PublicKey, sha256
from did_registry.identity.did import DID, parse_did
from did_registry.identity.did_document import DIDDocument
from did_registry.identity.did_document_builder import DIDDocumentBuilder

__all__ = [
    "METHOD",
    "ID_SIZE",
    "NETWORK_MAX_LENGTH",
    "KEY_FRAGMENT",
    "KEY_AGREEMENT_FRAGMENT",
    "TrellisDID",
    "trellis_id",
    "trellis_did",
    "parse_trellis_did",
    "is_self_certifying",
    "check_self_certifying",
    "initial_document",
]

METHOD: Final = "trellis"
"""The DID method name."""
ID_SIZE: Final = 16
"""Bytes of SHA-256 kept in the id (128 bits: a collision needs about 2^64 keys)."""
NETWORK_MAX_LENGTH: Final = 32
"""Longest network name."""
KEY_FRAGMENT: Final = "key-1"
"""Fragment of the initial signing key."""
KEY_AGREEMENT_FRAGMENT: Final = "key-agreement-1"
"""Fragment of the X25519 key derived from the initial signing key."""

_NETWORK_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
_BASE58_ALPHABET = frozenset("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")
_PREFIX = f"did:{METHOD}:"


class TrellisDID(NamedTuple):
    """The parts of a did:trellis: the network name and the base58btc id."""

    network: str
    id: str


def trellis_id(public_key: Ed25519PublicKey) -> str:
    """Return the id derived from an initial key: base58btc of SHA-256(``ed 01`` ‖ key)[:16]."""
    digest = sha256(multikey.ED25519_PUB_HEADER + bytes(public_key))
    return multibase.encode_base58btc(digest[:ID_SIZE])[1:]


def _check_network(network: str, did: str, offset: int) -> None:
    if _NETWORK_RE.fullmatch(network):
        return
    if not network:
        raise InvalidDID(did, "empty network name")
    if len(network) > NETWORK_MAX_LENGTH:
        raise InvalidDID(did, f"network name is {len(network)} characters, at most {NETWORK_MAX_LENGTH}")
    for i, char in enumerate(network):
        if not ("a" <= char <= "z" or "0" <= char <= "9" or char == "-"):
            raise InvalidDID(
                did,
                f"character {char!r} at position {offset + i} not allowed in the network name ([a-z0-9-])",
            )
    raise InvalidDID(did, "network name must not start or end with '-'")


def _check_id(value: str, did: str, offset: int) -> None:
    if not value:
        raise InvalidDID(did, "empty id")
    for i, char in enumerate(value):
        if char not in _BASE58_ALPHABET:
            raise InvalidDID(did, f"character {char!r} at position {offset + i} is not base58btc")
    try:
        size = len(multibase.decode_base58btc("z" + value, max_size=ID_SIZE))
    except multibase.MultibaseError as exc:  # refused unread: longer than 16 bytes can be
        raise InvalidDID(did, f"the id must encode {ID_SIZE} bytes: {exc}") from None
    if size != ID_SIZE:
        raise InvalidDID(did, f"the id must encode {ID_SIZE} bytes, it encodes {size}")


def parse_trellis_did(did: DID | str) -> TrellisDID:
    """Split a did:trellis into network and id; raise :class:`InvalidDID` saying what is wrong."""
    return _parse_trellis_did(str(did))


@lru_cache(maxsize=65536)
def _parse_trellis_did(did: str) -> TrellisDID:  # a pure function of the text, parsed often per txn
    parsed = parse_did(did)
    text = str(parsed)
    if parsed.method != METHOD:
        raise InvalidDID(text, f"not a did:trellis (the method is {parsed.method!r})")
    parts = parsed.method_specific_id.split(":")
    if len(parts) != 2:
        raise InvalidDID(text, "a did:trellis is did:trellis:<network>:<id> (two segments)")
    network, id_ = parts
    _check_network(network, text, len(_PREFIX))
    _check_id(id_, text, len(_PREFIX) + len(network) + 1)
    return TrellisDID(network, id_)


def trellis_did(network: str, public_key: Ed25519PublicKey) -> DID:
    """Return ``did:trellis:<network>:<id>`` for a new DID whose initial key is ``public_key``."""
    if not isinstance(network, str):
        raise InvalidDID(repr(network), "the network name must be a string")
    _check_network(network, f"{_PREFIX}{network}:", len(_PREFIX))
    return parse_did(f"{_PREFIX}{network}:{trellis_id(public_key)}")


def is_self_certifying(did: DID | str, public_key: Ed25519PublicKey) -> bool:
    """Return whether ``did`` is a valid did:trellis whose id derives from ``public_key``."""
    try:
        check_self_certifying(did, public_key)
    except InvalidDID:
        return False
    return True


def check_self_certifying(did: DID | str, public_key: Ed25519PublicKey) -> None:
    """Raise :class:`InvalidDID` unless ``did``'s id is derived from ``public_key``."""
    parts = parse_trellis_did(did)
    expected = trellis_id(public_key)
    if parts.id != expected:
        raise InvalidDID(str(did), f"the id is not derived from this key (which gives {expected!r})")


def initial_document(did: DID | str, public_key: Ed25519PublicKey) -> DIDDocument:
    """Return the document a did:trellis is created with.

    ``#key-1`` (Multikey, controller the DID) in ``authentication``, ``assertionMethod``,
    ``capabilityInvocation`` and ``capabilityDelegation``; ``#key-agreement-1``, the X25519 form of
    the same key, in ``keyAgreement``. Raises :class:`InvalidDID` if ``did`` is not derived from
    ``public_key``.
    """
    check_self_certifying(did, public_key)
    builder = DIDDocumentBuilder(did)
    builder.add_verification_method(
        public_key,
        fragment=KEY_FRAGMENT,
        relationships=("authentication", "assertionMethod", "capabilityInvocation", "capabilityDelegation"),
    )
    builder.add_verification_method(
        public_key.to_x25519(), fragment=KEY_AGREEMENT_FRAGMENT, relationships=("keyAgreement",)
    )
    return builder.build()
