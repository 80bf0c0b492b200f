"""Key rotation documents and transactions (wallet.rotation)."""

from __future__ import annotations

import pytest

from did_registry.errors import DidRegistryError
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_document import DIDDocument
from did_registry.identity.did_trellis import initial_document, trellis_did
from wallet.rotation import SIGNING_RELATIONSHIPS, rotated_document, rotation_transaction


def _device() -> tuple[Ed25519PrivateKey, str, dict[str, object]]:
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
