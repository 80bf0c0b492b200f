"""DID documents (DID Core §5): validation, look-ups, verification methods and the builder."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from did_registry.errors import (
    BadSignature,
    InvalidDIDDocument,
    KeyNotAuthorized,
    VerificationMethodNotFound,
)
from did_registry.identity import multibase, multikey
from did_registry.identity.crypto import Ed25519PrivateKey, Ed25519PublicKey, X25519PublicKey
from did_registry.identity.did_document import (
    DEFAULT_CONTEXT,
    RELATIONSHIPS,
    DIDDocument,
    Service,
    VerificationRelationship,
)
from did_registry.identity.did_document_builder import DIDDocumentBuilder
from did_registry.identity.verification_method import SUPPORTED_TYPES, VerificationMethod
from tests.did_registry.identity.test_crypto import OFF_CURVE

DID = "did:example:123"
KEY = Ed25519PrivateKey(bytes([7] * 32)).public_key
KEY2 = Ed25519PrivateKey(bytes([8] * 32)).public_key
XKEY = KEY.to_x25519()
KEY_MB = multikey.encode_ed25519_public_key(KEY)
KEY2_MB = multikey.encode_ed25519_public_key(KEY2)
XKEY_MB = multikey.encode_x25519_public_key(XKEY)


def b58(data: bytes) -> str:
    return multibase.encode_base58btc(data)[1:]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sample() -> dict[str, Any]:
    """A document using every feature: relative ids, embedded methods, services, external refs."""
    return {
        "@context": list(DEFAULT_CONTEXT),
        "id": DID,
        "controller": "did:example:owner",
        "alsoKnownAs": ["https://example.com/device/1"],
        "verificationMethod": [
            {"id": "#key-1", "type": "Multikey", "controller": DID, "publicKeyMultibase": KEY_MB},
            {"id": f"{DID}#key-2", "type": "Multikey", "controller": DID, "publicKeyMultibase": KEY2_MB},
            {"id": "#ka-1", "type": "Multikey", "controller": DID, "publicKeyMultibase": XKEY_MB},
        ],
        "authentication": [
            "#key-1",
            {"id": "#auth-only", "type": "Multikey", "controller": DID, "publicKeyMultibase": KEY2_MB},
        ],
        "assertionMethod": [f"{DID}#key-2", "did:example:other#key-1"],
        "keyAgreement": ["#ka-1"],
        "capabilityInvocation": ["#key-1"],
        "capabilityDelegation": ["#key-1"],
        "service": [
            {"id": "#files", "type": "LinkedDomains", "serviceEndpoint": "https://example.com"},
            {"id": f"{DID}#hub", "type": ["A", "B"], "serviceEndpoint": [{"uri": "https://x"}, "https://y"]},
        ],
        "extension": {"kept": [1, 2.5, True, None]},
    }


class TestValidDocument:
    def test_round_trips_members_and_order(self) -> None:
        """If a valid document is read, to_json gives back the same members in the same order."""
        data = sample()
        doc = DIDDocument.from_json(data)
        assert json.dumps(doc.to_json()) == json.dumps(data)

    def test_to_json_is_a_copy(self) -> None:
        """If the caller mutates to_json's result or the input, the document is unchanged."""
        data = sample()
        doc = DIDDocument.from_json(data)
        data["authentication"].clear()
        doc.to_json()["authentication"].clear()
        assert doc.public_key_for("#key-1") == KEY

    def test_properties(self) -> None:
        """If a document is read, its id, controllers, aliases and services are exposed."""
        doc = DIDDocument.from_json(sample())
        assert str(doc.id) == DID
        assert doc.controllers == ("did:example:owner",)
        assert doc.also_known_as == ("https://example.com/device/1",)
        assert [s.id for s in doc.services] == [f"{DID}#files", f"{DID}#hub"]
        assert doc.service("hub").type == ("A", "B")
        assert doc.service("#files").to_json()["serviceEndpoint"] == "https://example.com"

    @pytest.mark.parametrize(
        "service_id", ["urn:uuid:0f8e7a2c-52d4-4b3e-9c1e-1b2f3a4d5e6f", "https://example.com/services/1"]
    )
    def test_a_service_id_may_be_any_absolute_uri(self, service_id: str) -> None:
        """A service's id is "a URI conforming to [RFC3986]" (DID Core §5.4), not only a DID URL:
        it is kept as written, and the service is found by it."""
        data = sample()
        data["service"][0]["id"] = service_id
        doc = DIDDocument.from_json(data)
        assert doc.services[0].id == service_id and doc.service(service_id).type == "LinkedDomains"

    def test_relative_ids_resolve_against_document_id(self) -> None:
        """If a method id is relative, it is stored absolute, resolved against the document id."""
        doc = DIDDocument.from_json(sample())
        ids = [m.id for m in doc.verification_methods]
        assert ids == [f"{DID}#key-1", f"{DID}#key-2", f"{DID}#ka-1", f"{DID}#auth-only"]
        assert doc.relationship("authentication") == (f"{DID}#key-1", f"{DID}#auth-only")

    def test_lookup_by_absolute_relative_or_bare_fragment(self) -> None:
        """If a method is asked for by absolute id, '#fragment' or bare fragment, the same method comes back."""
        doc = DIDDocument.from_json(sample())
        method = doc.verification_method(f"{DID}#key-2")
        assert doc.verification_method("#key-2") is method
        assert doc.verification_method("key-2") is method
        assert method.public_key == KEY2 and method.fragment == "key-2"

    def test_unknown_method_lookup_raises(self) -> None:
        """If no method has the id, VerificationMethodNotFound (a LookupError) is raised."""
        doc = DIDDocument.from_json(sample())
        with pytest.raises(VerificationMethodNotFound) as info:
            doc.verification_method("#nope")
        assert isinstance(info.value, LookupError)
        with pytest.raises(VerificationMethodNotFound, match="no such service"):
            doc.service("#nope")

    def test_minimal_document(self) -> None:
        """If a document has only an id, it is valid and has no methods."""
        doc = DIDDocument.from_json({"id": DID})
        assert doc.verification_methods == () and doc.relationship("authentication") == ()
        assert doc.controllers == () and doc.services == ()


class TestPublicKeyFor:
    @pytest.mark.parametrize("method_id", [f"{DID}#key-1", "#key-1", "key-1"])
    def test_returns_authorised_key(self, method_id: str) -> None:
        """If the method is in the relationship, its Ed25519 key is returned."""
        doc = DIDDocument.from_json(sample())
        assert doc.public_key_for(method_id, "authentication") == KEY
        assert doc.public_key_for(method_id, VerificationRelationship.CAPABILITY_INVOCATION) == KEY

    def test_embedded_method_is_authorised_for_its_relationship_only(self) -> None:
        """If a method is embedded in authentication, it authenticates but does not assert."""
        doc = DIDDocument.from_json(sample())
        assert doc.public_key_for("#auth-only", "authentication") == KEY2
        with pytest.raises(KeyNotAuthorized, match="not authorised for assertionMethod"):
            doc.public_key_for("#auth-only", "assertionMethod")

    def test_method_outside_relationship_is_not_authorised(self) -> None:
        """If the method exists but is not in the relationship, KeyNotAuthorized names both."""
        doc = DIDDocument.from_json(sample())
        with pytest.raises(KeyNotAuthorized) as info:
            doc.public_key_for("#key-2", "authentication")
        assert info.value.relationship == "authentication"
        assert info.value.method_id == f"{DID}#key-2"
        assert info.value.did == DID

    def test_unknown_method_is_not_found(self) -> None:
        """If no method has the id, VerificationMethodNotFound is raised."""
        with pytest.raises(VerificationMethodNotFound):
            DIDDocument.from_json(sample()).public_key_for("#key-9", "authentication")

    def test_external_reference_says_to_resolve_the_other_did(self) -> None:
        """If the relationship references another DID's method, the error says to resolve that DID."""
        doc = DIDDocument.from_json(sample())
        assert "did:example:other#key-1" in doc.relationship("assertionMethod")
        with pytest.raises(VerificationMethodNotFound, match="defined by another DID"):
            doc.public_key_for("did:example:other#key-1", "assertionMethod")

    def test_key_agreement_is_not_a_signing_relationship(self) -> None:
        """If keyAgreement is asked of public_key_for, it refuses; key_agreement_key returns the X25519 key."""
        doc = DIDDocument.from_json(sample())
        with pytest.raises(KeyNotAuthorized, match="X25519"):
            doc.public_key_for("#ka-1", "keyAgreement")
        assert doc.key_agreement_key("#ka-1") == XKEY
        with pytest.raises(KeyNotAuthorized):
            doc.key_agreement_key("#key-1")

    def test_unknown_relationship_is_refused(self) -> None:
        """If the relationship name is not one of DID Core's five, KeyNotAuthorized says so."""
        doc = DIDDocument.from_json(sample())
        with pytest.raises(KeyNotAuthorized, match="unknown relationship"):
            doc.public_key_for("#key-1", "signing")
        with pytest.raises(KeyNotAuthorized, match="unknown relationship"):
            doc.methods_for("signing")

    def test_methods_for(self) -> None:
        """If methods_for is asked, it lists this document's methods of the relationship, in order."""
        doc = DIDDocument.from_json(sample())
        assert [m.id for m in doc.methods_for("authentication")] == [f"{DID}#key-1", f"{DID}#auth-only"]
        assert [m.id for m in doc.methods_for("assertionMethod")] == [f"{DID}#key-2"]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Return a mutation that sets ``path`` (dotted, with list indexes) to ``value``."""

    def mutate(doc: dict[str, Any]) -> None:
        parts = [int(p) if p.isdigit() else p for p in path.split(".")]
        target: Any = doc
        for part in parts[:-1]:
            target = target[part]
        target[parts[-1]] = value

    return mutate


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        parts = [int(p) if p.isdigit() else p for p in path.split(".")]
        target: Any = doc
        for part in parts[:-1]:
            target = target[part]
        del target[parts[-1]]

    return mutate


def _append(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        doc[path].append(value)

    return mutate


VM = "verificationMethod"
INVALID = [
    # (id, mutation, JSON path in the error, words in the reason)
    ("no id", _delete("id"), "id", "needs a string 'id'"),
    ("id is a DID URL", _set("id", f"{DID}#x"), "id", "no path, query or fragment"),
    ("id is not a DID", _set("id", "https://example.com"), "id", "does not start with 'did:'"),
    ("bad context", _set("@context", ["https://example.com/ctx"]), "@context", "must start with"),
    ("empty context", _set("@context", []), "@context", "must start with"),
    ("context item", _set("@context", [DEFAULT_CONTEXT[0], 5]), "@context[1]", "URL or a map"),
    ("controller", _set("controller", "not-a-did"), "controller", "does not start with 'did:'"),
    ("controller list", _set("controller", [DID, "did:X:1"]), "controller[1]", "uppercase"),
    ("controller empty", _set("controller", []), "controller", "empty list"),
    ("alsoKnownAs type", _set("alsoKnownAs", "https://x"), "alsoKnownAs", "list of URIs"),
    ("alsoKnownAs uri", _set("alsoKnownAs", ["no scheme"]), "alsoKnownAs[0]", "URI"),
    ("alsoKnownAs dup", _set("alsoKnownAs", ["https://x", "https://x"]), "alsoKnownAs[1]", "duplicate"),
    ("vm not list", _set(VM, {}), VM, "must be a list"),
    ("vm null", _set(VM, None), VM, "not null"),
    ("vm not object", _set(f"{VM}.0", "#key-1"), f"{VM}[0]", "JSON object"),
    ("vm no id", _delete(f"{VM}.0.id"), f"{VM}[0].id", "string 'id'"),
    ("vm bad id", _set(f"{VM}.0.id", "key-1"), f"{VM}[0].id", "must start with"),
    ("vm bad fragment", _set(f"{VM}.0.id", "#a b"), f"{VM}[0].id", "not allowed"),
    ("vm controller", _set(f"{VM}.0.controller", "me"), f"{VM}[0].controller", "must be a DID"),
    ("vm no type", _delete(f"{VM}.0.type"), f"{VM}[0].type", "string 'type'"),
    (
        "vm unknown type",
        _set(f"{VM}.0.type", "EcdsaSecp256k1VerificationKey2019"),
        f"{VM}[0].type",
        "unsupported",
    ),
    ("vm no key", _delete(f"{VM}.0.publicKeyMultibase"), f"{VM}[0].publicKeyMultibase", "exactly one key"),
    ("vm two keys", _set(f"{VM}.0.publicKeyBase58", b58(bytes(KEY))), f"{VM}[0].publicKeyMultibase", "found"),
    (
        "vm wrong prop",
        _set(f"{VM}.0", {"id": "#k", "type": "Multikey", "controller": DID, "publicKeyBase58": "x"}),
        f"{VM}[0].publicKeyMultibase",
        "exactly one key",
    ),
    ("vm private", _set(f"{VM}.0.privateKeyMultibase", "z1"), f"{VM}[0].privateKeyMultibase", "private key"),
    ("vm secret", _set(f"{VM}.0.secretKeyMultibase", "z1"), f"{VM}[0].secretKeyMultibase", "private key"),
    ("mb not string", _set(f"{VM}.0.publicKeyMultibase", 5), f"{VM}[0].publicKeyMultibase", "string"),
    (
        "mb not z",
        _set(f"{VM}.0.publicKeyMultibase", "u" + KEY_MB[1:]),
        f"{VM}[0].publicKeyMultibase",
        "base58btc",
    ),
    (
        "mb bad char",
        _set(f"{VM}.0.publicKeyMultibase", KEY_MB[:-1] + "0"),
        f"{VM}[0].publicKeyMultibase",
        "alphabet",
    ),
    (
        "mb short",
        _set(
            f"{VM}.0.publicKeyMultibase", multibase.encode_base58btc(multikey.ED25519_PUB_HEADER + bytes(31))
        ),
        f"{VM}[0].publicKeyMultibase",
        "32 bytes, got 31",
    ),
    (
        "mb codec",
        _set(f"{VM}.0.publicKeyMultibase", multibase.encode_base58btc(b"\x80\x24" + bytes(33))),
        f"{VM}[0].publicKeyMultibase",
        "not an ed25519-pub or x25519-pub key: 48 base58btc characters encode more than 34 bytes",
    ),
]


def _kind_mismatch(doc: dict[str, Any]) -> None:
    doc[VM][0]["type"] = "Ed25519VerificationKey2020"
    doc[VM][0]["publicKeyMultibase"] = XKEY_MB


MORE_INVALID = [
    ("key kind", _kind_mismatch, f"{VM}[0].publicKeyMultibase", "cannot hold an X25519 key"),
    (
        "dup vm",
        _append(
            VM, {"id": f"{DID}#key-1", "type": "Multikey", "controller": DID, "publicKeyMultibase": KEY_MB}
        ),
        f"{VM}[3].id",
        "duplicate id",
    ),
    (
        "dup embedded",
        _append(
            "authentication",
            {"id": "#key-2", "type": "Multikey", "controller": DID, "publicKeyMultibase": KEY2_MB},
        ),
        "authentication[2].id",
        "duplicate id",
    ),
    ("dup service", _set("service.0.id", "#key-1"), "service[0].id", "duplicate id"),
    ("dup of doc id", _set("service.0.id", DID), "service[0].id", "duplicate id"),
    (
        "dangling",
        _append("capabilityDelegation", "#key-9"),
        "capabilityDelegation[1]",
        "names no verification method",
    ),
    (
        "dangling abs",
        _append("capabilityDelegation", f"{DID}#key-9"),
        "capabilityDelegation[1]",
        "names no verification method",
    ),
    (
        "listed twice",
        _append("capabilityDelegation", f"{DID}#key-1"),
        "capabilityDelegation[1]",
        "listed twice",
    ),
    ("bad reference", _append("authentication", "key-1"), "authentication[2]", "must start with"),
    ("reference type", _append("authentication", 7), "authentication[2]", "DID URL or an embedded"),
    ("relationship type", _set("authentication", "#key-1"), "authentication", "must be a list"),
    ("x25519 signs", _append("authentication", "#ka-1"), "authentication[2]", "needs an Ed25519 key"),
    ("ed25519 agrees", _append("keyAgreement", "#key-1"), "keyAgreement[1]", "needs an X25519 key"),
    ("service not object", _set("service.0", "x"), "service[0]", "JSON object"),
    ("service id", _set("service.0.id", "files"), "service[0].id", "must start with"),
    ("service type", _set("service.0.type", []), "service[0].type", "string or a list"),
    ("service endpoint", _set("service.0.serviceEndpoint", 5), "service[0].serviceEndpoint", "URI, a map"),
    (
        "service endpoint list",
        _set("service.0.serviceEndpoint", ["https://x", "nope"]),
        "service[0].serviceEndpoint",
        "URI, a map",
    ),
    ("not json", _set("extension", {1, 2}), "extension", "set is not a JSON value"),
    ("key not str", _set("extension", {1: "a"}), "extension", "member name 1"),
]


@pytest.mark.parametrize(("name", "mutate", "path", "reason"), INVALID + MORE_INVALID)
def test_refuses_invalid_document(
    name: str, mutate: Callable[[dict[str, Any]], None], path: str, reason: str
) -> None:
    """If a document breaks DID Core §5, InvalidDIDDocument names the JSON path and the problem."""
    data = sample()
    mutate(data)
    with pytest.raises(InvalidDIDDocument) as info:
        DIDDocument.from_json(data)
    assert info.value.path == path, name
    assert reason in info.value.reason, name
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("value", [None, [], "did:example:1", 5])
def test_refuses_non_object(value: object) -> None:
    """If the document is not a JSON object, it is refused."""
    with pytest.raises(InvalidDIDDocument, match="JSON object"):
        DIDDocument.from_json(value)  # type: ignore[arg-type]


def test_tuples_are_accepted_as_arrays() -> None:
    """If Python tuples stand for JSON arrays, they are read and written back as lists."""
    data = sample()
    data["authentication"] = tuple(data["authentication"])
    assert DIDDocument.from_json(data).to_json()["authentication"] == sample()["authentication"]


class TestVerificationMethodRepresentations:
    @pytest.mark.parametrize(
        ("type_", "prop", "value", "key"),
        [
            ("Multikey", "publicKeyMultibase", KEY_MB, KEY),
            ("Multikey", "publicKeyMultibase", XKEY_MB, XKEY),
            ("Ed25519VerificationKey2020", "publicKeyMultibase", KEY_MB, KEY),
            ("Ed25519VerificationKey2018", "publicKeyBase58", b58(bytes(KEY)), KEY),
            ("X25519KeyAgreementKey2020", "publicKeyMultibase", XKEY_MB, XKEY),
            ("X25519KeyAgreementKey2019", "publicKeyBase58", b58(bytes(XKEY)), XKEY),
            (
                "JsonWebKey2020",
                "publicKeyJwk",
                {"kty": "OKP", "crv": "Ed25519", "x": b64url(bytes(KEY))},
                KEY,
            ),
            (
                "JsonWebKey2020",
                "publicKeyJwk",
                {"kty": "OKP", "crv": "X25519", "x": b64url(bytes(XKEY))},
                XKEY,
            ),
        ],
    )
    def test_reads_published_representations(self, type_: str, prop: str, value: Any, key: Any) -> None:
        """If a method uses any supported type and material property, the same key is read and written back."""
        data = {"id": "#k", "type": type_, "controller": DID, prop: value}
        method = VerificationMethod.from_json(data, base=DIDDocument({"id": DID}).id, path="vm")
        assert method.public_key == key
        assert method.to_json() == {**data, "id": f"{DID}#k"}

    @pytest.mark.parametrize(
        ("type_", "prop", "value", "reason"),
        [
            ("Ed25519VerificationKey2018", "publicKeyBase58", b58(bytes(31)), "32 bytes"),
            ("Ed25519VerificationKey2018", "publicKeyBase58", "0OIl", "alphabet"),
            ("Ed25519VerificationKey2018", "publicKeyBase58", 5, "string"),
            ("X25519KeyAgreementKey2020", "publicKeyMultibase", KEY_MB, "cannot hold an Ed25519 key"),
            (
                "JsonWebKey2020",
                "publicKeyJwk",
                {"kty": "OKP", "crv": "Ed25519", "x": b64url(bytes(KEY)), "d": "x"},
                "private key",
            ),
            ("JsonWebKey2020", "publicKeyJwk", {"kty": "EC", "crv": "P-256", "x": "a"}, "kty 'OKP'"),
            (
                "JsonWebKey2020",
                "publicKeyJwk",
                {"kty": "OKP", "crv": "Ed25519", "x": b64url(bytes(31))},
                "32 bytes",
            ),
            ("JsonWebKey2020", "publicKeyJwk", "x", "JSON object"),
            ("Ed25519VerificationKey2018", "publicKeyBase58", "2" * 100_000, "encode more than 32 bytes"),
        ],
    )
    def test_refuses_bad_material(self, type_: str, prop: str, value: Any, reason: str) -> None:
        """If the key material is malformed or of the wrong kind, the method is refused."""
        data = {"id": "#k", "type": type_, "controller": DID, prop: value}
        with pytest.raises(InvalidDIDDocument) as info:
            VerificationMethod.from_json(data, base=DIDDocument({"id": DID}).id, path="vm")
        assert reason in info.value.reason
        assert info.value.path.startswith("vm.")

    @pytest.mark.parametrize(
        ("type_", "prop", "value"),
        [
            ("Multikey", "publicKeyMultibase", multibase.encode_base58btc(b"\xed\x01" + OFF_CURVE)),
            (
                "Ed25519VerificationKey2020",
                "publicKeyMultibase",
                multibase.encode_base58btc(b"\xed\x01" + OFF_CURVE),
            ),
            ("Ed25519VerificationKey2018", "publicKeyBase58", b58(OFF_CURVE)),
            ("JsonWebKey2020", "publicKeyJwk", {"kty": "OKP", "crv": "Ed25519", "x": b64url(OFF_CURVE)}),
        ],
        ids=["Multikey", "Ed25519VerificationKey2020", "Ed25519VerificationKey2018", "JsonWebKey2020"],
    )
    def test_ed25519_bytes_off_the_curve_verify_nothing(self, type_: str, prop: str, value: Any) -> None:
        """An Ed25519 key whose 32 bytes are off the curve reads, in every representation (the point
        check costs a signature check per new key; only did:key resolution makes it), and verifies
        no signature."""
        data = {"id": "#k", "type": type_, "controller": DID, prop: value}
        method = VerificationMethod.from_json(data, base=DIDDocument({"id": DID}).id, path="vm")
        assert isinstance(method.public_key, Ed25519PublicKey) and not method.public_key.is_valid_point()
        with pytest.raises(BadSignature):
            method.public_key.verify(b"message", bytes(64))

    def test_constructor_refuses_mismatched_key(self) -> None:
        """If a method is constructed with a key its type cannot hold, it is refused."""
        with pytest.raises(InvalidDIDDocument, match="cannot hold"):
            VerificationMethod(f"{DID}#k", "Ed25519VerificationKey2020", DID, XKEY)
        with pytest.raises(InvalidDIDDocument, match="unsupported"):
            VerificationMethod(f"{DID}#k", "RsaVerificationKey2018", DID, KEY)
        with pytest.raises(InvalidDIDDocument, match="not a DID"):
            VerificationMethod(f"{DID}#k", "Multikey", "nobody", KEY)
        with pytest.raises(InvalidDIDDocument, match="method id"):
            VerificationMethod("#k", "Multikey", DID, KEY)


class TestBuilder:
    def test_builds_valid_document(self) -> None:
        """If keys and services are added, build gives a valid document with them in DID Core order."""
        builder = DIDDocumentBuilder(DID)
        kid = builder.add_verification_method(
            KEY, fragment="key-1", relationships=("authentication", "assertionMethod")
        )
        builder.add_verification_method(XKEY, fragment="ka-1", relationships=("keyAgreement",))
        sid = builder.add_service("files", "LinkedDomains", "https://example.com")
        builder.set_controller("did:example:owner").set_also_known_as(["https://example.com/d"])
        doc = builder.build()
        assert kid == f"{DID}#key-1" and sid == f"{DID}#files"
        assert list(doc.to_json()) == [
            "@context", "id", "controller", "alsoKnownAs", "verificationMethod",
            "authentication", "assertionMethod", "keyAgreement", "service",
        ]  # fmt: skip
        assert doc.public_key_for("key-1", "assertionMethod") == KEY
        assert doc.key_agreement_key("ka-1") == XKEY

    def test_key_rotation(self) -> None:
        """If a new key is added and the old one removed, the old key loses every relationship."""
        builder = DIDDocumentBuilder(DID)
        builder.add_verification_method(KEY, fragment="key-1", relationships=RELATIONSHIPS[:2])
        rotated = DIDDocumentBuilder.from_document(builder.build())
        rotated.add_verification_method(KEY2, fragment="key-2", relationships=RELATIONSHIPS[:2])
        rotated.remove_verification_method("key-1")
        doc = rotated.build()
        assert doc.public_key_for("key-2", "authentication") == KEY2
        with pytest.raises(VerificationMethodNotFound):
            doc.public_key_for("key-1", "authentication")
        assert f"{DID}#key-1" not in json.dumps(doc.to_json())

    def test_from_document_keeps_everything(self) -> None:
        """If a builder starts from a document and changes nothing, it builds the same JSON members."""
        doc = DIDDocument.from_json(sample())
        rebuilt = DIDDocumentBuilder.from_document(doc).build().to_json()
        assert rebuilt == doc.to_json()

    def test_remove_embedded_method(self) -> None:
        """If an embedded method is removed, it disappears from its relationship."""
        builder = DIDDocumentBuilder.from_document(DIDDocument.from_json(sample()))
        builder.remove_verification_method("#auth-only")
        assert builder.build().relationship("authentication") == (f"{DID}#key-1",)

    def test_relationship_changes(self) -> None:
        """If a method is added to and removed from relationships, the document follows."""
        builder = DIDDocumentBuilder(DID)
        builder.add_verification_method(KEY, fragment="key-1")
        builder.add_relationship("capabilityInvocation", "#key-1")
        builder.add_relationship("capabilityInvocation", "key-1")  # idempotent
        assert builder.build().relationship("capabilityInvocation") == (f"{DID}#key-1",)
        builder.remove_relationship("capabilityInvocation", "key-1")
        assert builder.build().relationship("capabilityInvocation") == ()
        with pytest.raises(VerificationMethodNotFound, match="not listed"):
            builder.remove_relationship("capabilityInvocation", "key-1")
        with pytest.raises(InvalidDIDDocument, match="unknown verification relationship"):
            builder.add_relationship("signing", "key-1")
        with pytest.raises(InvalidDIDDocument, match="unknown verification relationship"):
            builder.remove_relationship("signing", "key-1")

    def test_refuses_duplicates_and_unknown_removals(self) -> None:
        """If an id is added twice or a missing one removed, the builder refuses."""
        builder = DIDDocumentBuilder(DID)
        builder.add_verification_method(KEY, fragment="key-1")
        with pytest.raises(InvalidDIDDocument, match="duplicate id"):
            builder.add_verification_method(KEY2, fragment="key-1")
        builder.add_service("s", ["A"], [{"uri": "https://x"}])
        with pytest.raises(InvalidDIDDocument, match="duplicate id"):
            builder.add_service("#s", "A", "https://x")
        with pytest.raises(VerificationMethodNotFound):
            builder.remove_verification_method("key-9")
        builder.remove_service("s")
        with pytest.raises(VerificationMethodNotFound, match="no such service"):
            builder.remove_service("s")

    def test_build_validates(self) -> None:
        """If the draft breaks a rule (an Ed25519 key in keyAgreement), build refuses it."""
        builder = DIDDocumentBuilder(DID)
        builder.add_verification_method(KEY, fragment="key-1", relationships=("keyAgreement",))
        with pytest.raises(InvalidDIDDocument, match="needs an X25519 key"):
            builder.build()

    def test_external_controller_and_reference(self) -> None:
        """If a method is controlled by, or a relationship references, another DID, that is kept."""
        builder = DIDDocumentBuilder(DID)
        builder.add_verification_method(KEY, fragment="k", controller="did:example:boss")
        builder.add_relationship("authentication", "did:example:boss#key-1")
        doc = builder.build()
        assert doc.verification_method("k").controller == "did:example:boss"
        assert doc.relationship("authentication") == ("did:example:boss#key-1",)
        builder.set_controller(["did:example:a", "did:example:b"])
        assert builder.build().controllers == ("did:example:a", "did:example:b")
        builder.set_controller(None).set_also_known_as(None)
        assert "controller" not in builder.build().to_json()


keys = st.binary(min_size=32, max_size=32).map(lambda seed: Ed25519PrivateKey(seed).public_key)
fragments = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._", min_size=1, max_size=12)


@given(
    st.lists(st.tuples(keys, st.sets(st.sampled_from(RELATIONSHIPS[:1] + RELATIONSHIPS[3:]))), max_size=5),
    st.booleans(),
)
def test_builder_round_trip(entries: list[tuple[Ed25519PublicKey, set[str]]], agreement: bool) -> None:
    """If any set of keys and relationships is built, the JSON reads back into the same document."""
    builder = DIDDocumentBuilder(DID)
    for i, (key, rels) in enumerate(entries):
        builder.add_verification_method(key, fragment=f"key-{i}", relationships=sorted(rels))
        if agreement:
            builder.add_verification_method(
                key.to_x25519(), fragment=f"ka-{i}", relationships=["keyAgreement"]
            )
    doc = builder.build()
    again = DIDDocument.from_json(json.loads(json.dumps(doc.to_json())))
    assert again.to_json() == doc.to_json()
    for i, (key, rels) in enumerate(entries):
        for rel in rels:
            assert again.public_key_for(f"key-{i}", rel) == key


@given(keys, st.sampled_from(sorted(SUPPORTED_TYPES)), fragments)
def test_verification_method_round_trip(key: Ed25519PublicKey, type_: str, fragment: str) -> None:
    """If a method of any supported type is written, reading it gives the same method."""
    public: Ed25519PublicKey | X25519PublicKey = key if "X25519" not in type_ else key.to_x25519()
    method = VerificationMethod(f"{DID}#{fragment}", type_, DID, public)
    again = VerificationMethod.from_json(
        copy.deepcopy(method.to_json()), base=DIDDocument({"id": DID}).id, path="vm"
    )
    assert again == method


def test_service_round_trip() -> None:
    """If a service is read, to_json gives back its members."""
    data = {"id": f"{DID}#s", "type": "X", "serviceEndpoint": {"origins": ["https://a"]}}
    service = Service.from_json(data, base=DIDDocument({"id": DID}).id, path="service[0]")
    assert service.to_json() == data
