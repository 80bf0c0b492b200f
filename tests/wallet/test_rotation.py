"""Key rotation documents and transactions (wallet.rotation)."""

from __future__ import annotations

from typing import Any

import pytest

from did_registry.errors import DidRegistryError
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_document import DIDDocument
from did_registry.identity.did_document_builder import DIDDocumentBuilder
from did_registry.identity.did_trellis import initial_document, trellis_did
from did_registry.identity.multikey import encode_ed25519_public_key
from did_registry.identity.verification_method import PublicKey
from wallet.rotation import SIGNING_RELATIONSHIPS, rotated_document, rotation_transaction


def _device() -> tuple[Ed25519PrivateKey, str, dict[str, Any]]:
    key = Ed25519PrivateKey.generate()
    did = str(trellis_did("testnet", key.public_key))
    return key, did, initial_document(did, key.public_key).to_json()


def test_the_new_key_takes_every_signing_relationship_and_the_old_one_goes() -> None:
    _, did, document = _device()
    new = Ed25519PrivateKey.generate()
    rotated = DIDDocument.from_json(rotated_document(document, "key-1", new.public_key, "key-2"))
    for relationship in SIGNING_RELATIONSHIPS:
        assert rotated.relationship(relationship) == (f"{did}#key-2",)
    assert {m.fragment for m in rotated.verification_methods} == {"key-2", "key-agreement-2"}


def test_the_key_agreement_key_is_the_new_keys_x25519_form() -> None:
    _, did, document = _device()
    new = Ed25519PrivateKey.generate()
    rotated = DIDDocument.from_json(rotated_document(document, "key-1", new.public_key, "key-2"))
    assert rotated.relationship("keyAgreement") == (f"{did}#key-agreement-2",)
    agreement = next(m for m in rotated.verification_methods if m.fragment == "key-agreement-2")
    assert agreement.public_key == new.public_key.to_x25519()


def test_rotating_a_key_the_document_lacks_is_refused() -> None:
    _, _, document = _device()
    with pytest.raises(DidRegistryError):
        rotated_document(document, "key-7", Ed25519PrivateKey.generate().public_key, "key-8")


def test_the_update_is_signed_by_the_old_key_for_the_did() -> None:
    key, did, document = _device()
    new = Ed25519PrivateKey.generate()
    txn = rotation_transaction(
        {"document": document}, key=key, method=f"{did}#key-1", new_key=new, new_fragment="key-2",
        network="testnet", nonce=2,
    )  # fmt: skip
    assert (txn.type, txn.submitter, txn.nonce) == ("did.update", did, 2)
    assert [s.verification_method for s in txn.signatures] == [f"{did}#key-1"]
    assert DIDDocument.from_json(txn.body["document"]).relationship("authentication") == (f"{did}#key-2",)


def _with_method(
    document: dict[str, Any], key: PublicKey, fragment: str, relationships: tuple[str, ...]
) -> dict[str, Any]:
    builder = DIDDocumentBuilder.from_document(DIDDocument.from_json(document))
    builder.add_verification_method(key, fragment=fragment, relationships=relationships)
    return builder.to_json()


def test_a_second_method_holding_the_old_key_goes_too() -> None:
    """A method with the old key under another fragment (added by whoever stole the key) does not
    outlive the rotation, nor do its references."""
    key, did, document = _device()
    document = _with_method(document, key.public_key, "key-1-recovery", SIGNING_RELATIONSHIPS)
    new = Ed25519PrivateKey.generate()
    rotated = DIDDocument.from_json(rotated_document(document, "key-1", new.public_key, "key-2"))
    assert {m.fragment for m in rotated.verification_methods} == {"key-2", "key-agreement-2"}
    for relationship in SIGNING_RELATIONSHIPS:
        assert rotated.relationship(relationship) == (f"{did}#key-2",)


def test_a_method_embedded_in_a_relationship_holding_the_old_key_goes() -> None:
    key, did, document = _device()
    embedded = {"id": f"{did}#hidden", "type": "Multikey", "controller": did,
                "publicKeyMultibase": encode_ed25519_public_key(key.public_key)}  # fmt: skip
    document = {**document, "capabilityInvocation": [*document["capabilityInvocation"], embedded]}
    new = Ed25519PrivateKey.generate()
    rotated = DIDDocument.from_json(rotated_document(document, "key-1", new.public_key, "key-2"))
    assert rotated.relationship("capabilityInvocation") == (f"{did}#key-2",)
    assert all(m.public_key != key.public_key for m in rotated.verification_methods)


def test_a_key_agreement_method_holding_the_old_keys_x25519_form_goes() -> None:
    """The old private key opens its X25519 form whatever the method's fragment."""
    key, did, document = _device()
    document = _with_method(document, key.public_key.to_x25519(), "agreement-copy", ("keyAgreement",))
    new = Ed25519PrivateKey.generate()
    rotated = DIDDocument.from_json(rotated_document(document, "key-1", new.public_key, "key-2"))
    assert rotated.relationship("keyAgreement") == (f"{did}#key-agreement-2",)
    assert all(m.public_key != key.public_key.to_x25519() for m in rotated.verification_methods)


def test_methods_holding_other_keys_stay() -> None:
    _, did, document = _device()
    other = Ed25519PrivateKey.generate()
    document = _with_method(document, other.public_key, "recovery", ("capabilityInvocation",))
    new = Ed25519PrivateKey.generate()
    rotated = DIDDocument.from_json(rotated_document(document, "key-1", new.public_key, "key-2"))
    assert rotated.relationship("capabilityInvocation") == (f"{did}#recovery", f"{did}#key-2")
