"""Data Integrity eddsa-jcs-2022: the published vectors step by step, and tampering."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from did_registry.identity.crypto import Ed25519PublicKey
from did_registry.identity.jcs import canonicalize
from did_registry.identity.multikey import decode_ed25519_private_key
from did_registry.identity.timestamps import parse_timestamp
from tests.conftest import CONFORMANCE
from wallet.errors import (
    DomainMismatch,
    InvalidSignature,
    MalformedDocument,
    UnknownVerificationMethod,
    UnsupportedCryptosuite,
    VerificationFailed,
    WrongVerificationRelationship,
)
from wallet.proofs import ProofOptions, add_proof, create_proof, verify_proof


@pytest.fixture
def vectors(conformance_dir: Path) -> dict[str, Any]:
    """The vc-di-eddsa eddsa-jcs-2022 vectors."""
    base = conformance_dir / "vc-di-eddsa"
    suite = base / "eddsa-jcs-2022"
    key_pair = json.loads((base / "keyPair.json").read_text())
    return {
        "key": decode_ed25519_private_key(key_pair["privateKeyMultibase"]),
        "public": key_pair["publicKeyMultibase"],
        "unsigned": json.loads((base / "unsigned.json").read_text()),
        "signed": json.loads((suite / "signedJCS.json").read_text()),
        "config": json.loads((suite / "proofConfigJCS.json").read_text()),
        **{
            name: (suite / f"{name}JCS.txt").read_text()
            for name in (
                "canonDoc",
                "docHash",
                "proofCanon",
                "proofHash",
                "combinedHash",
                "sigHex",
                "sigBTC58",
            )
        },
    }


def _lookup_for(vectors: dict[str, Any]) -> Any:
    def lookup(method: str, purpose: str) -> Ed25519PublicKey:
        if not method.endswith("#" + vectors["public"]):
            raise UnknownVerificationMethod("not the vector's key", subject=method)
        return vectors["key"].public_key

    return lookup


def test_intermediate_values_match_vectors(vectors: dict[str, Any]) -> None:
    """Canonical document, hashes and the signature equal the published intermediate values."""
    canon_doc = canonicalize(vectors["unsigned"])
    assert canon_doc.decode() == vectors["canonDoc"]
    assert hashlib.sha256(canon_doc).hexdigest() == vectors["docHash"]
    canon_proof = canonicalize(vectors["config"])
    assert canon_proof.decode() == vectors["proofCanon"]
    assert hashlib.sha256(canon_proof).hexdigest() == vectors["proofHash"]
    combined = hashlib.sha256(canon_proof).digest() + hashlib.sha256(canon_doc).digest()
    assert combined.hex() == vectors["combinedHash"]
    assert vectors["key"].sign(combined).hex() == vectors["sigHex"]


def test_create_proof_reproduces_signed_vector(vectors: dict[str, Any]) -> None:
    """Signing the unsigned credential with the vector's options gives the published document."""
    config = vectors["config"]
    options = ProofOptions(
        config["verificationMethod"], config["proofPurpose"], created=parse_timestamp(config["created"])
    )
    proof = create_proof(vectors["unsigned"], vectors["key"], options)
    assert proof["proofValue"] == vectors["sigBTC58"]
    assert add_proof(vectors["unsigned"], vectors["key"], options) == vectors["signed"]


def test_verifies_published_signed_document(vectors: dict[str, Any]) -> None:
    """The published secured credential verifies and reports its method and creation time."""
    result = verify_proof(vectors["signed"], _lookup_for(vectors), expected_purpose="assertionMethod")
    assert result.verification_method == vectors["config"]["verificationMethod"]
    assert result.created == parse_timestamp("2023-02-24T23:36:38Z")


def _leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, member in value.items():
            yield from _leaf_paths(member, (*path, key))
    elif isinstance(value, list):
        for index, member in enumerate(value):
            yield from _leaf_paths(member, (*path, index))
    else:
        yield path


def _set(document: Any, path: tuple[Any, ...], new: Any) -> None:
    for step in path[:-1]:
        document = document[step]
    document[path[-1]] = new


SIGNED_PATHS = list(
    _leaf_paths(json.loads((CONFORMANCE / "vc-di-eddsa/eddsa-jcs-2022/signedJCS.json").read_text()))
)


@pytest.mark.parametrize("path", SIGNED_PATHS, ids=lambda p: ".".join(map(str, p)))
def test_changing_any_field_fails(vectors: dict[str, Any], path: tuple[Any, ...]) -> None:
    """Changing any value of the secured credential makes verification fail, naming why.

    Claims fail the signature; the document's @context no longer matches the proof's; a proof
    member fails its own check (or the signature, as ``created`` does)."""
    tampered = copy.deepcopy(vectors["signed"])
    _set(tampered, path, "tampered")
    with pytest.raises(VerificationFailed) as failure:
        verify_proof(tampered, _lookup_for(vectors), expected_purpose="assertionMethod")
    expected = {"@context": MalformedDocument, "proof": VerificationFailed}.get(path[0], InvalidSignature)
    assert isinstance(failure.value, expected)


def test_adding_a_field_fails_with_bad_signature(vectors: dict[str, Any]) -> None:
    """Adding a claim to a signed credential breaks the signature."""
    tampered = copy.deepcopy(vectors["signed"])
    tampered["credentialSubject"]["degree"] = "PhD"
    with pytest.raises(InvalidSignature):
        verify_proof(tampered, _lookup_for(vectors), expected_purpose="assertionMethod")


@pytest.mark.parametrize("position", range(1, 88, 3))
def test_changing_any_signature_character_fails(vectors: dict[str, Any], position: int) -> None:
    """Changing one character of proofValue fails with bad_signature."""
    tampered = copy.deepcopy(vectors["signed"])
    value = tampered["proof"]["proofValue"]
    replacement = "2" if value[position] != "2" else "3"
    tampered["proof"]["proofValue"] = value[:position] + replacement + value[position + 1 :]
    with pytest.raises(InvalidSignature):
        verify_proof(tampered, _lookup_for(vectors), expected_purpose="assertionMethod")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"cryptosuite": "eddsa-rdfc-2022"}, UnsupportedCryptosuite),
        ({"type": "Ed25519Signature2020"}, UnsupportedCryptosuite),
        ({"proofPurpose": "authentication"}, WrongVerificationRelationship),
        ({"proofValue": "not-base58-0OIl"}, InvalidSignature),
        ({"proofValue": 7}, MalformedDocument),
        ({"verificationMethod": ""}, MalformedDocument),
        ({"created": "yesterday"}, MalformedDocument),
        ({"@context": ["https://example.org/other"]}, MalformedDocument),
        ({"domain": []}, MalformedDocument),
        ({"domain": ["https://a.example", 7]}, MalformedDocument),
        ({"domain": {"https://a.example": True}}, MalformedDocument),
    ],
)
def test_proof_defects_name_the_check(
    vectors: dict[str, Any], change: dict[str, Any], error: type[VerificationFailed]
) -> None:
    """A defective proof raises the error that names the defect."""
    tampered = copy.deepcopy(vectors["signed"])
    tampered["proof"].update(change)
    with pytest.raises(error):
        verify_proof(tampered, _lookup_for(vectors), expected_purpose="assertionMethod")


@pytest.mark.parametrize("length", [89, 10_000])
def test_a_proof_value_longer_than_any_signature_is_refused_undecoded(
    vectors: dict[str, Any], length: int
) -> None:
    """A proofValue of more base58 characters than 64 bytes can take (88) fails with bad_signature,
    refused for its length before it is decoded."""
    tampered = copy.deepcopy(vectors["signed"])
    tampered["proof"]["proofValue"] = "z" + "2" * length
    with pytest.raises(InvalidSignature, match=f"{length} base58btc characters encode more than 64 bytes"):
        verify_proof(tampered, _lookup_for(vectors), expected_purpose="assertionMethod")


def test_missing_proof_and_proof_sets_are_malformed(vectors: dict[str, Any]) -> None:
    """A document without a proof, or with a list of proofs, is refused as malformed."""
    with pytest.raises(MalformedDocument):
        verify_proof(vectors["unsigned"], _lookup_for(vectors), expected_purpose="assertionMethod")
    multi = copy.deepcopy(vectors["signed"])
    multi["proof"] = [multi["proof"], multi["proof"]]
    with pytest.raises(MalformedDocument):
        verify_proof(multi, _lookup_for(vectors), expected_purpose="assertionMethod")


def test_a_domain_may_be_a_set_of_strings(vectors: dict[str, Any]) -> None:
    """A proof whose ``domain`` is a set of strings (Data Integrity §2.1) verifies, and matches an
    expected domain it holds; an expected domain it does not hold is a mismatch."""
    domains = ("https://a.example", "https://b.example")
    options = ProofOptions(f"did:key:{vectors['public']}#{vectors['public']}", domain=domains)
    secured = add_proof(vectors["unsigned"], vectors["key"], options)
    assert secured["proof"]["domain"] == list(domains)
    lookup = _lookup_for(vectors)
    assert verify_proof(secured, lookup, expected_purpose="assertionMethod").domain == domains
    verify_proof(secured, lookup, expected_purpose="assertionMethod", domain="https://b.example")
    with pytest.raises(DomainMismatch):
        verify_proof(secured, lookup, expected_purpose="assertionMethod", domain="https://c.example")
