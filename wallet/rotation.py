"""Key rotation of a did:trellis: the DID document that replaces the current key with a new one.

The new Ed25519 key takes every signing relationship of the old one (``authentication``,
``assertionMethod``, ``capabilityInvocation``, ``capabilityDelegation``) under its own fragment
(``key-2``, ``key-3`` …); when the document had the old key's X25519 form in ``keyAgreement``
(``key-agreement-1`` …) it is replaced by the new key's. The old key goes by its public key, not by
its id: every method holding it (or its X25519 form, which its private key also opens) goes, under
whatever id, listed in ``verificationMethod`` or embedded in a relationship. So a second method
for the same key (added by whoever stole it) does not outlive the rotation. The ``did.update``
carrying the document is signed with the *old* key, which the ledger still knows as a
``capabilityInvocation`` key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from did_registry.errors import InvalidDIDDocument
from did_registry.identity.crypto import Ed25519PrivateKey, Ed25519PublicKey
from did_registry.identity.did_document import DIDDocument
from did_registry.identity.did_document_builder import DIDDocumentBuilder
from did_registry.ledger.txn import Transaction

__all__ = ["SIGNING_RELATIONSHIPS", "rotated_document", "rotation_transaction"]

SIGNING_RELATIONSHIPS: Final = (
    "authentication",
    "assertionMethod",
    "capabilityInvocation",
    "capabilityDelegation",
)
"""The relationships a device's Ed25519 key holds, and its successor takes over."""


def _agreement_fragment(fragment: str) -> str:
    return fragment.replace("key-", "key-agreement-", 1)


def rotated_document(
    document: Mapping[str, Any], old_fragment: str, new_key: Ed25519PublicKey, new_fragment: str
) -> dict[str, Any]:
    """``document`` (JSON) with the key of ``#old_fragment`` replaced by ``new_key`` as ``#new_fragment``.

    Every method whose public key is the old key, or the old key's X25519 form, is removed with
    every reference to it. The new key's X25519 form comes in as ``#key-agreement-<n>`` when such
    an X25519 method went, or when the document had ``#key-agreement-<m>`` for ``#key-<m>``.

    Raises :class:`~did_registry.errors.DidRegistryError` subclasses when the document is not
    valid, has no such key, its key is not Ed25519, the new key is the old one, or the document
    already has the new fragment.
    """
    current = DIDDocument.from_json(document)
    old = current.verification_method(old_fragment)
    if not isinstance(old.public_key, Ed25519PublicKey):
        raise InvalidDIDDocument(f"{old.id!r} holds an X25519 key; only an Ed25519 key is rotated")
    if old.public_key == new_key:
        raise InvalidDIDDocument(f"the new key is the key of {old.id!r} itself")
    old_agreement = old.public_key.to_x25519()
    agreement_id = f"{current.id}#{_agreement_fragment(old.fragment)}" if old.fragment else None
    signing = [m.id for m in current.verification_methods if m.public_key == old.public_key]
    agreement = [
        m.id
        for m in current.verification_methods
        if m.public_key == old_agreement or (agreement_id is not None and m.id == agreement_id)
    ]
    builder = DIDDocumentBuilder.from_document(current)
    builder.add_verification_method(new_key, fragment=new_fragment, relationships=SIGNING_RELATIONSHIPS)
    for method_id in [*signing, *agreement]:
        builder.remove_verification_method(method_id)
    if agreement:
        builder.add_verification_method(
            new_key.to_x25519(), fragment=_agreement_fragment(new_fragment), relationships=("keyAgreement",)
        )
    return builder.to_json()


def rotation_transaction(
    record: Mapping[str, Any],
    *,
    key: Ed25519PrivateKey,
    method: str,
    new_key: Ed25519PrivateKey,
    new_fragment: str,
    network: str,
    nonce: int,
) -> Transaction:
    """The ``did.update`` rotating ``method`` (the signer's current key, a DID URL) to ``new_key``.

    ``record`` is the DID's ledger record (its ``document`` is the current one).
    """
    did, _, old_fragment = method.partition("#")
    document = rotated_document(record["document"], old_fragment, new_key.public_key, new_fragment)
    txn = Transaction.build(
        "did.update", network=network, submitter=did, nonce=nonce, body={"document": document}
    )
    return txn.signed(key, method)
