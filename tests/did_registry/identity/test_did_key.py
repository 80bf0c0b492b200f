"""The did:key method v0.7: published vectors byte for byte, and refusal of malformed did:keys."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import base58
import pytest
from hypothesis import given
from hypothesis import strategies as st

from did_registry.errors import InvalidDID
from did_registry.identity import multibase, multikey
from did_registry.identity.crypto import Ed25519PrivateKey, Ed25519PublicKey, X25519PrivateKey
from did_registry.identity.did import parse_did
from did_registry.identity.did_key import (
    InvalidPublicKey,
    Representation,
    did_key,
    public_key_from_did_key,
    resolve_did_key,
    verification_method_id,
)
from tests.did_registry.identity.test_crypto import MIXED_ORDER, NEUTRAL, OFF_CURVE


def _load(conformance_dir: Path, name: str) -> Any:
    return json.loads((conformance_dir / "did-key" / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def x25519_vectors(conformance_dir: Path) -> dict[str, Any]:
    """The did:key spec's ed25519-x25519.json test vectors, keyed by DID."""
    vectors: dict[str, Any] = _load(conformance_dir, "ed25519-x25519.json")
    return vectors


@pytest.fixture(scope="module")
def derived_vectors(conformance_dir: Path) -> list[dict[str, str]]:
    """The derived seed → key → DID table."""
    vectors: list[dict[str, str]] = _load(conformance_dir, "ed25519-derived.json")["vectors"]
    return vectors


def _dump(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


def test_published_vectors_byte_for_byte(x25519_vectors: dict[str, Any]) -> None:
    """If each published seed is expanded in its representation, the document equals the vector byte for byte."""
    assert len(x25519_vectors) == 5
    for did, vector in x25519_vectors.items():
        key = Ed25519PrivateKey(bytes.fromhex(vector["seed"])).public_key
        assert str(did_key(key)) == did
        legacy = vector["verificationKeyPair"]["type"] == "Ed25519VerificationKey2018"
        representation = Representation.LEGACY_2018 if legacy else Representation.JWK_2020
        document = resolve_did_key(did, representation=representation)
        assert _dump(document.to_json()) == _dump(vector["didDocument"]), did


def test_published_key_agreement_keys(x25519_vectors: dict[str, Any]) -> None:
    """If the X25519 key pair is derived from the Ed25519 seed, its public key equals the published
    keyAgreement key, in base58 and in JWK form alike, and its private key agrees with the published
    one (the same shared secret with any peer: the private key's bytes are never exposed)."""
    peer = X25519PrivateKey.generate().public_key
    for did, vector in x25519_vectors.items():
        published = vector["keyAgreementKeyPair"]
        document = resolve_did_key(did)
        expected_id = published["id"] if published["id"].startswith("did:") else did + published["id"]
        public = bytes(document.key_agreement_key(expected_id))
        if "publicKeyBase58" in published:
            assert base58.b58encode(public).decode() == published["publicKeyBase58"], did
            private = base58.b58decode(published["privateKeyBase58"])
        else:
            assert (published["publicKeyJwk"]["crv"], published["privateKeyJwk"]["crv"]) == (
                "X25519",
                "X25519",
            )
            assert _unb64url(published["publicKeyJwk"]["x"]) == public, did
            private = _unb64url(published["privateKeyJwk"]["d"])
        derived = Ed25519PrivateKey(bytes.fromhex(vector["seed"])).to_x25519()
        assert derived.exchange(peer) == X25519PrivateKey(private).exchange(peer), did


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_multikey_reference_document(conformance_dir: Path, x25519_vectors: dict[str, Any]) -> None:
    """If derivation is off, the Multikey document equals Digital Bazaar's reference file byte for byte."""
    reference = (
        conformance_dir / "did-key" / "reference-output-multikey-did-document-seed0.json"
    ).read_text()
    did = json.loads(reference)["id"]
    document = resolve_did_key(did, enable_encryption_key_derivation=False)
    assert _dump(document.to_json()) + "\n" == reference
    assert did in x25519_vectors


def test_default_multikey_document_adds_key_agreement(conformance_dir: Path) -> None:
    """If derivation is on (the default), the reference document gains the X25519 method and keyAgreement."""
    reference = json.loads(
        (conformance_dir / "did-key" / "reference-output-multikey-did-document-seed0.json").read_text()
    )
    document = resolve_did_key(reference["id"]).to_json()
    x25519 = public_key_from_did_key(reference["id"]).to_x25519()
    fragment = multikey.encode_x25519_public_key(x25519)
    extra = {
        "id": f"{reference['id']}#{fragment}",
        "type": "Multikey",
        "controller": reference["id"],
        "publicKeyMultibase": fragment,
    }
    assert document["verificationMethod"] == [*reference["verificationMethod"], extra]
    assert document["keyAgreement"] == [extra["id"]]
    assert {k: v for k, v in document.items() if k not in ("verificationMethod", "keyAgreement")} == {
        k: v for k, v in reference.items() if k != "verificationMethod"
    }


def test_derived_table(derived_vectors: list[dict[str, str]]) -> None:
    """If each seed or public key of the derived table is encoded, every listed value matches."""
    assert len(derived_vectors) == 7
    for vector in derived_vectors:
        key = Ed25519PublicKey(bytes.fromhex(vector["publicKeyHex"]))
        if "seedHex" in vector:
            assert Ed25519PrivateKey(bytes.fromhex(vector["seedHex"])).public_key == key
        assert (multikey.ED25519_PUB_HEADER + bytes(key)).hex() == vector["multicodecPrefixedHex"]
        assert multikey.encode_ed25519_public_key(key) == vector["publicKeyMultibase"]
        assert str(did_key(key)) == vector["did"]
        assert public_key_from_did_key(vector["did"]) == key
        assert verification_method_id(vector["did"]) == vector["verificationMethodId"]


def test_document_authorises_the_key(derived_vectors: list[dict[str, str]]) -> None:
    """If a did:key is resolved, its key is authorised for the four signature relationships."""
    vector = derived_vectors[0]
    key = Ed25519PublicKey(bytes.fromhex(vector["publicKeyHex"]))
    for representation in Representation:
        document = resolve_did_key(vector["did"], representation=representation)
        for relationship in (
            "authentication",
            "assertionMethod",
            "capabilityInvocation",
            "capabilityDelegation",
        ):
            assert document.public_key_for(vector["verificationMethodId"], relationship) == key


def _multibase(header: bytes, size: int) -> str:
    return multibase.encode_base58btc(header + bytes(range(size)))


INVALID = [
    ("did:web:example.com", "not a did:key"),
    ("did:key:1:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp", "exactly one segment"),
    ("did:key:u7QE7aie8zrakLWKjqNAqbw1zZTIVdx3iQ6Y6wEihi1naKQ", "start with 'z'"),
    ("did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooW0", "base58btc alphabet"),
    ("did:key:" + _multibase(b"\xec\x01", 32), "x25519-pub (0xec)"),
    ("did:key:" + _multibase(b"\x80\x24", 32), "p256-pub (0x1200)"),
    ("did:key:" + _multibase(b"\x80\x24", 33), "48 base58btc characters encode more than 34 bytes"),
    ("did:key:" + _multibase(b"\xed\x01", 31), "32 bytes, got 31"),
    ("did:key:" + _multibase(b"\xed\x01", 33), "not an ed25519-pub key: 48 base58btc characters"),
    ("did:key:" + _multibase(b"\xff\xff\xff\x7f", 30), "unsupported multicodec"),
    ("did:key:" + _multibase(b"\xff\xff\xff\xff\x7f", 32), "encode more than 34 bytes"),
    ("did:key:" + _multibase(b"\xff", 0), "unsupported multicodec"),
    ("did:key:z", "unsupported multicodec"),
    ("did:key:z6Mk" + "2" * 100_000, "100003 base58btc characters encode more than 34 bytes"),
]


@pytest.mark.parametrize(("did", "reason"), INVALID)
def test_refuses_malformed_did_key(did: str, reason: str) -> None:
    """If a did:key has the wrong method, form, codec or length, InvalidDID says which."""
    with pytest.raises(InvalidDID) as info:
        public_key_from_did_key(did)
    assert reason in info.value.reason
    with pytest.raises(InvalidDID):
        resolve_did_key(did)


@pytest.mark.parametrize(
    "raw", [OFF_CURVE, NEUTRAL, MIXED_ORDER], ids=["off-curve", "neutral", "mixed-order"]
)
@pytest.mark.parametrize("derive", [True, False])
def test_refuses_a_key_that_is_no_valid_point(raw: bytes, derive: bool) -> None:
    """If a did:key's 32 bytes are no valid Ed25519 point, InvalidPublicKey (the spec's invalidPublicKey)
    is raised, whether or not the X25519 key is derived."""
    did = "did:key:" + multibase.encode_base58btc(multikey.ED25519_PUB_HEADER + raw)
    with pytest.raises(InvalidPublicKey, match="not a valid Ed25519 public key"):
        public_key_from_did_key(did)
    with pytest.raises(InvalidPublicKey):
        resolve_did_key(did, enable_encryption_key_derivation=derive)


def test_refuses_unknown_representation() -> None:
    """If an unknown representation is asked for, the error lists the known ones."""
    with pytest.raises(InvalidDID, match="legacy-2018"):
        resolve_did_key("did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp", representation="jwk")


@given(st.binary(min_size=32, max_size=32))
def test_round_trip(seed: bytes) -> None:
    """If any Ed25519 key is made a did:key, decoding the DID gives the key back and the document holds it."""
    key = Ed25519PrivateKey(seed).public_key
    did = did_key(key)
    assert str(did).startswith("did:key:z6Mk")
    assert public_key_from_did_key(str(did)) == key
    assert parse_did(str(did)) == did
    document = resolve_did_key(did)
    assert document.public_key_for(verification_method_id(did), "authentication") == key
    assert document.key_agreement_key(document.relationship("keyAgreement")[0]) == key.to_x25519()
