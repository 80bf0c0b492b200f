"""GET /1.0/identifiers/{did}: the W3C DID Resolution result, versions, deactivation and errors."""

from __future__ import annotations

from typing import Any

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_document_builder import DIDDocumentBuilder
from did_registry.identity.did_trellis import trellis_did
from did_registry.identity.resolution import ResolutionResult
from did_registry.ledger.txn import Transaction
from tests.did_registry.ledger.conftest import Actor
from tests.did_registry.node.conftest import RESOLUTION_TYPE, Node, block_time


def _resolve(node: Node, did: str, query: str = "") -> tuple[int, dict[str, Any]]:
    response = node.client.get(f"/1.0/identifiers/{did}{query}")
    assert response.content_type == RESOLUTION_TYPE
    return response.status_code, response.get_json(force=True)


def _rotate(node: Node, device: Actor, version: int) -> None:
    """Replace ``device``'s key (version ``version`` of its document) with a new one, in its own block."""
    new_key = Ed25519PrivateKey.generate()
    builder = DIDDocumentBuilder(device.did)
    builder.add_verification_method(
        new_key.public_key,
        fragment=f"key-{version + 1}",
        relationships=("authentication", "capabilityInvocation"),
    )
    txn = Transaction.build(
        "did.update", network="testnet", submitter=device.did, nonce=next(device.nonces),
        body={"document": builder.to_json()},
    ).signed(device.key, f"{device.did}#key-{version}")  # fmt: skip
    node.commit(txn)
    device.key = new_key


class TestResolve:
    def test_current_version(self, node: Node) -> None:
        """A DID on the ledger resolves to its document with created/updated/versionId metadata."""
        device = node.onboard()
        status, body = _resolve(node, device.did)
        assert status == 200
        assert body["@context"] == "https://w3id.org/did-resolution/v1"
        assert body["didDocument"] == device.document()
        assert body["didResolutionMetadata"] == {"contentType": "application/did+ld+json"}
        assert body["didDocumentMetadata"] == {
            "created": block_time(1),
            "updated": block_time(1),
            "versionId": "1",
        }
        assert ResolutionResult.from_json(body).document_or_raise().to_json() == device.document()

    def test_trustee_from_genesis(self, node: Node) -> None:
        """A genesis trustee resolves, created at genesis time."""
        status, body = _resolve(node, node.trustee.did)
        assert status == 200 and body["didDocumentMetadata"]["created"] == block_time(0)

    def test_older_version_names_the_next(self, node: Node) -> None:
        """``versionId`` picks an older version, whose metadata names the next version and its time."""
        device = node.onboard()
        first = device.document()
        _rotate(node, device, 1)
        status, body = _resolve(node, device.did, "?versionId=1")
        assert status == 200
        assert body["didDocument"] == first
        assert body["didDocumentMetadata"]["versionId"] == "1"
        assert body["didDocumentMetadata"]["nextVersionId"] == "2"
        assert body["didDocumentMetadata"]["nextUpdate"] == block_time(2)
        _, current = _resolve(node, device.did)
        assert current["didDocumentMetadata"]["versionId"] == "2"
        assert "nextVersionId" not in current["didDocumentMetadata"]
        assert current["didDocument"]["verificationMethod"][0]["id"].endswith("#key-2")

    def test_version_time_picks_the_version_in_force(self, node: Node) -> None:
        """``versionTime`` gives the highest version updated at or before that moment."""
        device = node.onboard()  # version 1 at block 1
        for version in range(1, 5):  # versions 2..5 at blocks 2..5
            _rotate(node, device, version)
        for height, version in ((1, 1), (2, 2), (3, 3), (5, 5)):
            status, body = _resolve(node, device.did, f"?versionTime={block_time(height)}")
            assert status == 200
            assert body["didDocumentMetadata"]["versionId"] == str(version)
        _, later = _resolve(node, device.did, "?versionTime=2030-01-01T00:00:00Z")
        assert later["didDocumentMetadata"]["versionId"] == "5"
        _, between = _resolve(node, device.did, "?versionTime=2026-01-01T00:03:30%2B00:00")
        assert between["didDocumentMetadata"]["versionId"] == "3"

    def test_version_time_before_creation_is_not_found(self, node: Node) -> None:
        """Before the DID existed there is no version in force: notFound."""
        device = node.onboard()
        status, body = _resolve(node, device.did, "?versionTime=2025-01-01T00:00:00Z")
        assert status == 404 and body["didResolutionMetadata"]["error"] == "notFound"

    def test_deactivated_is_410_with_document(self, node: Node) -> None:
        """A deactivated DID answers 410, its last document and ``deactivated: true``."""
        device = node.onboard()
        node.commit(device.txn("did.deactivate", {}))
        status, body = _resolve(node, device.did)
        assert status == 410
        assert body["didDocumentMetadata"]["deactivated"] is True
        assert body["didDocument"]["id"] == device.did
        _, before = _resolve(node, device.did, "?versionId=1")
        assert "deactivated" not in before["didDocumentMetadata"]


class TestErrors:
    @pytest.mark.parametrize(
        "did", ["did:trellis", "not-a-did", "did:trellis:testnet:0OIl", "did:trellis:TESTNET:abc"]
    )
    def test_invalid_did_is_400(self, node: Node, did: str) -> None:
        """A malformed DID is invalidDid."""
        status, body = _resolve(node, did)
        assert status == 400 and body["didResolutionMetadata"]["error"] == "invalidDid"
        assert body["didDocument"] is None

    def test_overlong_did_is_400(self, node: Node) -> None:
        """An absurdly long DID is invalidDid without being parsed."""
        status, body = _resolve(node, "did:trellis:testnet:" + "a" * 5000)
        assert status == 400 and body["didResolutionMetadata"]["error"] == "invalidDid"

    def test_unknown_did_is_404(self, node: Node) -> None:
        """A well-formed DID of this network that is not on the ledger is notFound."""
        did = str(trellis_did("testnet", Ed25519PrivateKey.generate().public_key))
        status, body = _resolve(node, did)
        assert status == 404 and body["didResolutionMetadata"]["error"] == "notFound"

    def test_other_network_is_404(self, node: Node) -> None:
        """A DID of another network is notFound here."""
        did = str(trellis_did("othernet", Ed25519PrivateKey.generate().public_key))
        status, body = _resolve(node, did)
        assert status == 404 and "othernet" in body["didResolutionMetadata"]["errorMessage"]

    @pytest.mark.parametrize(
        "did", ["did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", "did:web:example.com"]
    )
    def test_other_method_is_501(self, node: Node, did: str) -> None:
        """Any method but trellis is methodNotSupported."""
        status, body = _resolve(node, did)
        assert status == 501 and body["didResolutionMetadata"]["error"] == "methodNotSupported"

    @pytest.mark.parametrize(
        "query",
        ["?versionId=0", "?versionId=01", "?versionId=x", "?versionTime=yesterday",
         "?versionId=1&versionTime=2026-01-01T00:00:00Z", "?versionTime=99999-01-01T00:00:00Z"],
    )  # fmt: skip
    def test_bad_options_are_400(self, node: Node, query: str) -> None:
        """Malformed or contradictory options are invalidOptions."""
        status, body = _resolve(node, node.trustee.did, query)
        assert status == 400 and body["didResolutionMetadata"]["error"] == "invalidOptions"

    def test_version_beyond_newest_is_404(self, node: Node) -> None:
        """A versionId above the newest version is notFound."""
        status, body = _resolve(node, node.trustee.did, "?versionId=2")
        assert status == 404 and body["didResolutionMetadata"]["error"] == "notFound"
