"""The did:trellis method: self-certifying ids, syntax errors and the initial document."""

from __future__ import annotations

import hashlib
from pathlib import Path

import base58
import pytest
from hypothesis import given
from hypothesis import strategies as st

from did_registry.errors import InvalidDID
from did_registry.identity import multikey
from did_registry.identity.crypto import Ed25519PrivateKey, Ed25519PublicKey
from did_registry.identity.did import parse_did
from did_registry.identity.did_trellis import (
    ID_SIZE,
    TrellisDID,
    check_self_certifying,
    initial_document,
    is_self_certifying,
    parse_trellis_did,
    trellis_did,
    trellis_id,
)

REPO = Path(__file__).resolve().parents[3]
SEED0 = Ed25519PrivateKey(bytes(32)).public_key
OTHER = Ed25519PrivateKey(bytes([1] * 32)).public_key


def independent_id(key: Ed25519PublicKey) -> str:
    """The id computed from the definition with other libraries (hashlib, base58)."""
    digest = hashlib.sha256(bytes.fromhex("ed01") + bytes(key)).digest()
    return base58.b58encode(digest[:16]).decode("ascii")


def test_id_follows_the_definition() -> None:
    """If an id is derived, it is base58btc of the first 16 bytes of SHA-256(ed01 || key)."""
    assert trellis_id(SEED0) == independent_id(SEED0)
    assert str(trellis_did("mainnet", SEED0)) == f"did:trellis:mainnet:{independent_id(SEED0)}"


def test_method_spec_worked_example_matches_code() -> None:
    """If docs/did-method.md shows the worked example for the all-zero seed, the code produces that DID."""
    text = (REPO / "docs" / "did-method.md").read_text(encoding="utf-8")
    assert str(trellis_did("mainnet", SEED0)) in text
    assert multikey.encode_ed25519_public_key(SEED0) in text
    assert hashlib.sha256(bytes.fromhex("ed01") + bytes(SEED0)).hexdigest() in text


@given(
    st.binary(min_size=32, max_size=32), st.from_regex(r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?", fullmatch=True)
)
def test_round_trip(seed: bytes, network: str) -> None:
    """If any key and network make a did:trellis, it parses back to them and certifies the key."""
    key = Ed25519PrivateKey(seed).public_key
    did = trellis_did(network, key)
    assert parse_trellis_did(did) == TrellisDID(network, independent_id(key))
    assert parse_trellis_did(str(did)) == parse_trellis_did(did)
    assert is_self_certifying(did, key)
    assert len(base58.b58decode(parse_trellis_did(did).id)) == ID_SIZE


@pytest.mark.parametrize("network", ["a", "0", "main", "test-net-2", "a" * 32, "1-2"])
def test_valid_networks(network: str) -> None:
    """If the network name is 1 to 32 of [a-z0-9-] without an edge hyphen, it is accepted."""
    assert parse_trellis_did(trellis_did(network, SEED0)).network == network


ID = independent_id(SEED0)
INVALID = [
    (f"did:key:{ID}", "not a did:trellis"),
    ("did:trellis:mainnet", "two segments"),
    (f"did:trellis:a:b:{ID}", "two segments"),
    (f"did:trellis::{ID}", "empty network name"),
    (f"did:trellis:{'a' * 33}:{ID}", "33 characters, at most 32"),
    (f"did:trellis:Main:{ID}", "character 'M' at position 12"),
    (f"did:trellis:main_net:{ID}", "character '_' at position 16"),
    (f"did:trellis:main.net:{ID}", "character '.' at position 16"),
    (f"did:trellis:%41:{ID}", "character '%' at position 12"),
    (f"did:trellis:-main:{ID}", "must not start or end with '-'"),
    (f"did:trellis:main-:{ID}", "must not start or end with '-'"),
    ("did:trellis:main:0" + ID[1:], "character '0' at position 17 is not base58btc"),
    ("did:trellis:main:" + ID[:-1] + "l", "character 'l'"),
    ("did:trellis:main:" + ID[:-1] + "%41", "not base58btc"),
    ("did:trellis:main:" + base58.b58encode(bytes(15)).decode(), "encode 16 bytes, it encodes 15"),
    ("did:trellis:main:" + base58.b58encode(b"\x01" * 17).decode(), "encode 16 bytes, it encodes 17"),
    ("did:trellis:main:zzzzzzzzzzzzzzzzzzzzzz", "encode 16 bytes, it encodes 17"),
    ("did:trellis:main:" + "2" * 100_000, "100000 base58btc characters encode more than 16 bytes"),
]


@pytest.mark.parametrize(("did", "reason"), INVALID)
def test_refuses_malformed(did: str, reason: str) -> None:
    """If a did:trellis breaks the method syntax, InvalidDID says what and where."""
    with pytest.raises(InvalidDID) as info:
        parse_trellis_did(did)
    assert reason in info.value.reason


def test_refuses_syntax_errors_of_did_core() -> None:
    """If the string is not even a DID, the DID Core reason comes through."""
    with pytest.raises(InvalidDID, match="trailing colon"):
        parse_trellis_did(f"did:trellis:main:{ID}:")


@pytest.mark.parametrize("network", ["", "-a", "a-", "A", "a" * 33, "a b"])
def test_trellis_did_refuses_bad_network(network: str) -> None:
    """If a DID is created for a malformed network name, it is refused."""
    with pytest.raises(InvalidDID):
        trellis_did(network, SEED0)


def test_trellis_did_refuses_non_string_network() -> None:
    """If the network name is not a string, it is refused."""
    with pytest.raises(InvalidDID, match="must be a string"):
        trellis_did(7, SEED0)  # type: ignore[arg-type]


def test_self_certification_fails_for_another_key() -> None:
    """If the key is not the one the id was derived from, the check fails and says which id it gives."""
    did = trellis_did("mainnet", SEED0)
    assert not is_self_certifying(did, OTHER)
    with pytest.raises(InvalidDID, match=trellis_id(OTHER)):
        check_self_certifying(did, OTHER)
    assert not is_self_certifying("did:trellis:mainnet", SEED0)
    check_self_certifying(did, SEED0)


class TestInitialDocument:
    def test_shape(self) -> None:
        """If the initial document is made, #key-1 holds the four signing relationships and #key-agreement-1 keyAgreement."""
        did = trellis_did("mainnet", SEED0)
        doc = initial_document(did, SEED0)
        data = doc.to_json()
        assert data["id"] == str(did)
        assert data["@context"] == ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"]
        key_id, agreement_id = f"{did}#key-1", f"{did}#key-agreement-1"
        assert data["verificationMethod"] == [
            {
                "id": key_id,
                "type": "Multikey",
                "controller": str(did),
                "publicKeyMultibase": multikey.encode_ed25519_public_key(SEED0),
            },
            {
                "id": agreement_id,
                "type": "Multikey",
                "controller": str(did),
                "publicKeyMultibase": multikey.encode_x25519_public_key(SEED0.to_x25519()),
            },
        ]
        for relationship in (
            "authentication",
            "assertionMethod",
            "capabilityInvocation",
            "capabilityDelegation",
        ):
            assert data[relationship] == [key_id]
            assert doc.public_key_for("#key-1", relationship) == SEED0
        assert data["keyAgreement"] == [agreement_id]
        assert doc.key_agreement_key("key-agreement-1") == SEED0.to_x25519()

    def test_refuses_a_key_that_does_not_match(self) -> None:
        """If the key does not hash to the DID's id, no document is made."""
        with pytest.raises(InvalidDID, match="not derived from this key"):
            initial_document(trellis_did("mainnet", SEED0), OTHER)

    def test_accepts_parsed_did(self) -> None:
        """If the DID is given as a DID value rather than a string, the result is the same."""
        did = trellis_did("dev", SEED0)
        assert (
            initial_document(parse_did(str(did)), SEED0).to_json()
            == initial_document(str(did), SEED0).to_json()
        )
