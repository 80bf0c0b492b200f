"""DID resolution results (DID Core §7.1), the did:key resolver and method dispatch."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from did_registry.errors import (
    DIDDeactivated,
    DIDNotFound,
    InvalidDID,
    MethodNotSupported,
    ResolutionError,
)
from did_registry.identity.did_document import DIDDocument
from did_registry.identity.did_key import resolve_did_key
from did_registry.identity.multibase import encode_base58btc
from did_registry.identity.multikey import ED25519_PUB_HEADER
from did_registry.identity.resolution import (
    DID_LD_JSON,
    INVALID_DID,
    INVALID_OPTIONS,
    INVALID_PUBLIC_KEY,
    METHOD_NOT_SUPPORTED,
    NOT_FOUND,
    REPRESENTATION_NOT_SUPPORTED,
    RESOLUTION_CONTEXT,
    DIDKeyResolver,
    DocumentMetadata,
    MultiResolver,
    ResolutionOptions,
    ResolutionResult,
    Resolver,
)
from did_registry.identity.timestamps import InvalidTimestamp
from tests.did_registry.identity.test_crypto import OFF_CURVE

DID_KEY = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
EXAMPLE = "did:example:123"


class StaticResolver:
    """A resolver that knows one document (a stand-in for the ledger resolver)."""

    def __init__(self, result: ResolutionResult) -> None:
        self.result = result
        self.calls: list[tuple[str, ResolutionOptions | None]] = []

    def resolve(self, did: str, options: ResolutionOptions | None = None) -> ResolutionResult:
        """Return the stored result, or notFound for any other DID."""
        self.calls.append((did, options))
        document = self.result.did_document
        if document is not None and str(document.id) == did:
            return self.result
        return ResolutionResult.failure(NOT_FOUND, f"{did} is not known")


class TestDIDKeyResolver:
    def test_success(self) -> None:
        """If a valid did:key is resolved, the result has the document and content type, and no error."""
        result = DIDKeyResolver().resolve(DID_KEY)
        assert result.error is None
        assert result.did_resolution_metadata == {"contentType": DID_LD_JSON}
        assert result.did_document is not None
        assert result.did_document.to_json() == resolve_did_key(DID_KEY).to_json()
        assert result.document_or_raise() is result.did_document

    def test_to_json_shape(self) -> None:
        """If a result is serialised, it has the DID Resolution context and the three members."""
        data = DIDKeyResolver().resolve(DID_KEY).to_json()
        assert list(data) == ["@context", "didDocument", "didResolutionMetadata", "didDocumentMetadata"]
        assert data["@context"] == RESOLUTION_CONTEXT
        assert data["didDocument"]["id"] == DID_KEY
        assert data["didDocumentMetadata"] == {}
        json.dumps(data)

    @pytest.mark.parametrize(
        ("did", "code", "words"),
        [
            ("did:key:", INVALID_DID, "empty method-specific-id"),
            ("not a did", INVALID_DID, "does not start with 'did:'"),
            ("did:key:z6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc", INVALID_DID, "x25519-pub"),
            ("did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp#key", INVALID_DID, "no path"),
            ("did:web:example.com", METHOD_NOT_SUPPORTED, "did:web"),
        ],
    )
    def test_errors(self, did: str, code: str, words: str) -> None:
        """If the DID is malformed or of another method, the result carries the error code and a message."""
        result = DIDKeyResolver().resolve(did)
        assert result.error == code
        assert words in result.error_message
        assert result.did_document is None
        assert result.to_json()["didDocument"] is None

    def test_public_key_format_option(self, conformance_dir: Path) -> None:
        """If publicKeyFormat asks for the 2018 form, the document equals the published vector."""
        vectors = json.loads((conformance_dir / "did-key" / "ed25519-x25519.json").read_text())
        result = DIDKeyResolver().resolve(DID_KEY, {"publicKeyFormat": "Ed25519VerificationKey2018"})
        assert result.did_document is not None
        assert result.did_document.to_json() == vectors[DID_KEY]["didDocument"]

    def test_derivation_option(self) -> None:
        """If enableEncryptionKeyDerivation is false, there is no keyAgreement."""
        result = DIDKeyResolver().resolve(DID_KEY, {"enableEncryptionKeyDerivation": False})
        assert "keyAgreement" not in result.document_or_raise().to_json()
        default = DIDKeyResolver(enable_encryption_key_derivation=False).resolve(DID_KEY)
        assert "keyAgreement" not in default.document_or_raise().to_json()

    @pytest.mark.parametrize(
        ("options", "code"),
        [
            ({"publicKeyFormat": "RsaVerificationKey2018"}, INVALID_OPTIONS),
            ({"publicKeyFormat": ["Multikey"]}, INVALID_OPTIONS),
            ({"publicKeyFormat": {"Multikey": 1}}, INVALID_OPTIONS),
            ({"enableEncryptionKeyDerivation": "yes"}, INVALID_OPTIONS),
            ({"accept": "application/did+cbor"}, REPRESENTATION_NOT_SUPPORTED),
        ],
    )
    def test_bad_options(self, options: dict[str, Any], code: str) -> None:
        """If an option cannot be honoured, the result says which error."""
        assert DIDKeyResolver().resolve(DID_KEY, options).error == code

    @pytest.mark.parametrize("derive", [True, False])
    def test_a_key_that_is_no_valid_point_is_an_invalid_public_key_result(self, derive: bool) -> None:
        """If a did:key's 32 bytes are off the curve, the result is invalidPublicKey (did:key spec),
        not an exception, whether or not the X25519 key is derived."""
        did = "did:key:" + encode_base58btc(ED25519_PUB_HEADER + OFF_CURVE)
        result = DIDKeyResolver(enable_encryption_key_derivation=derive).resolve(did)
        assert result.error == INVALID_PUBLIC_KEY
        assert "not a valid Ed25519 public key" in result.error_message
        assert result.did_document is None

    def test_accept_json_ld(self) -> None:
        """If the caller accepts application/did+ld+json, resolution succeeds."""
        assert DIDKeyResolver().resolve(DID_KEY, {"accept": DID_LD_JSON}).error is None


class TestMultiResolver:
    def test_dispatches_by_method(self) -> None:
        """If a DID's method has a resolver, that resolver answers, with the options passed on."""
        document = DIDDocument({"id": EXAMPLE})
        static = StaticResolver(ResolutionResult.success(document))
        resolver: Resolver = MultiResolver({"key": DIDKeyResolver(), "example": static})
        assert resolver.resolve(DID_KEY).error is None
        assert resolver.resolve(EXAMPLE, {"versionId": "2"}).document_or_raise() is document
        assert static.calls == [(EXAMPLE, {"versionId": "2"})]
        assert resolver.resolve("did:example:456").error == NOT_FOUND

    def test_unknown_method(self) -> None:
        """If no resolver handles the method, the result is methodNotSupported."""
        result = MultiResolver({"key": DIDKeyResolver()}).resolve("did:trellis:main:abc")
        assert result.error == METHOD_NOT_SUPPORTED
        assert "did:trellis" in result.error_message

    def test_invalid_did(self) -> None:
        """If the DID is malformed, the result is invalidDid before any resolver is asked."""
        static = StaticResolver(ResolutionResult.failure(NOT_FOUND))
        result = MultiResolver({"example": static}).resolve("did:Example:1")
        assert result.error == INVALID_DID
        assert static.calls == []

    def test_methods(self) -> None:
        """If resolvers are registered, methods lists their names."""
        assert MultiResolver({"key": DIDKeyResolver()}).methods == frozenset({"key"})


class TestDocumentOrRaise:
    @pytest.mark.parametrize(
        ("code", "error"),
        [(INVALID_DID, InvalidDID), (NOT_FOUND, DIDNotFound), (METHOD_NOT_SUPPORTED, MethodNotSupported)],
    )
    def test_maps_error_codes(self, code: str, error: type[Exception]) -> None:
        """If a result is an error, document_or_raise raises the matching typed error with the message."""
        with pytest.raises(error, match="because"):
            ResolutionResult.failure(code, "because").document_or_raise(EXAMPLE)

    def test_other_codes(self) -> None:
        """If the code has no dedicated class, a ResolutionError carries the code."""
        with pytest.raises(ResolutionError) as info:
            ResolutionResult.failure(REPRESENTATION_NOT_SUPPORTED).document_or_raise(EXAMPLE)
        assert info.value.error == REPRESENTATION_NOT_SUPPORTED
        assert str(info.value).startswith(REPRESENTATION_NOT_SUPPORTED)

    def test_deactivated_is_refused_unless_allowed(self) -> None:
        """If the DID is deactivated, document_or_raise refuses it unless explicitly allowed."""
        document = DIDDocument({"id": EXAMPLE})
        result = ResolutionResult.success(document, DocumentMetadata(deactivated=True))
        with pytest.raises(DIDDeactivated) as info:
            result.document_or_raise()
        assert isinstance(info.value, ResolutionError) and info.value.did == EXAMPLE
        assert result.document_or_raise(allow_deactivated=True) is document


class TestDocumentMetadata:
    def test_to_json_normalises_times(self) -> None:
        """If times are given in any zone with sub-seconds, they are written in UTC, whole seconds, with Z."""
        created = datetime(2026, 1, 2, 5, 4, 5, 999_999, tzinfo=timezone(timedelta(hours=2)))
        metadata = DocumentMetadata(created=created, updated=created, version_id="3", deactivated=True)
        assert metadata.to_json() == {
            "created": "2026-01-02T03:04:05Z",
            "updated": "2026-01-02T03:04:05Z",
            "deactivated": True,
            "versionId": "3",
        }

    def test_empty(self) -> None:
        """If nothing is known, the metadata is an empty map."""
        assert DocumentMetadata().to_json() == {}

    def test_refuses_naive_datetimes(self) -> None:
        """If a time has no zone, it is refused rather than guessed."""
        with pytest.raises(InvalidTimestamp, match="timezone-aware"):
            DocumentMetadata(created=datetime(2026, 1, 1))

    @pytest.mark.parametrize(
        "data",
        [
            {"created": "yesterday"},
            {"deactivated": "true"},
            {"versionId": 3},
            {"equivalentId": "did:ex:1"},
            [],
        ],
    )
    def test_from_json_refuses_malformed(self, data: Any) -> None:
        """If a metadata member has the wrong type or form, reading it raises ResolutionError."""
        with pytest.raises(ResolutionError):
            DocumentMetadata.from_json(data)


class TestResultJSON:
    def test_success_round_trip(self) -> None:
        """If a success result is serialised and read back, it is the same result."""
        metadata = DocumentMetadata(created=datetime(2026, 1, 1, tzinfo=UTC), version_id="1")
        result = ResolutionResult.success(resolve_did_key(DID_KEY), metadata)
        again = ResolutionResult.from_json(json.loads(json.dumps(result.to_json())))
        assert again.to_json() == result.to_json()
        assert again.did_document_metadata == metadata

    def test_failure_round_trip(self) -> None:
        """If an error result is serialised and read back, the code and message survive."""
        data = ResolutionResult.failure(NOT_FOUND, "gone").to_json()
        assert data["didResolutionMetadata"] == {"error": NOT_FOUND, "errorMessage": "gone"}
        again = ResolutionResult.from_json(data)
        assert (again.error, again.error_message, again.did_document) == (NOT_FOUND, "gone", None)

    @pytest.mark.parametrize(
        "data",
        [
            [],
            {"didResolutionMetadata": []},
            {"didResolutionMetadata": {}},
            {"didDocument": {"id": EXAMPLE}, "didResolutionMetadata": {"error": NOT_FOUND}},
        ],
    )
    def test_refuses_malformed_results(self, data: Any) -> None:
        """If a result is neither a document nor an error (or both), reading it raises ResolutionError."""
        with pytest.raises(ResolutionError):
            ResolutionResult.from_json(data)


times = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=0))


@given(
    st.one_of(st.none(), times),
    st.one_of(st.none(), times),
    st.booleans(),
    st.one_of(st.none(), st.text(min_size=1, max_size=8)),
    st.lists(st.text(min_size=1, max_size=8), max_size=2).map(tuple),
)
def test_metadata_round_trip(
    created: datetime | None,
    updated: datetime | None,
    deactivated: bool,
    version: str | None,
    equivalent: tuple[str, ...],
) -> None:
    """If any metadata is written and read back, the same metadata comes out."""
    metadata = DocumentMetadata(
        created=created,
        updated=updated,
        deactivated=deactivated,
        version_id=version,
        equivalent_id=equivalent,
    )
    assert DocumentMetadata.from_json(json.loads(json.dumps(metadata.to_json()))) == metadata
