"""`trellis did resolve`: a W3C DID Resolution result on stdout."""

from __future__ import annotations

import json

from click.testing import CliRunner

from web.cli import main

DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"


def test_resolve_did_key_prints_resolution_result() -> None:
    """Resolving a did:key prints its document and metadata and exits 0."""
    result = CliRunner().invoke(main, ["did", "resolve", DID])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["didDocument"]["id"] == DID
    assert body["didResolutionMetadata"]["contentType"] == "application/did+ld+json"
    assert body["didDocument"]["keyAgreement"]


def test_resolve_unknown_method_is_method_not_supported() -> None:
    """An unknown DID method gives the methodNotSupported error and exit 1."""
    result = CliRunner().invoke(main, ["did", "resolve", "did:web:example.com"])
    assert result.exit_code == 1
    assert json.loads(result.output)["didResolutionMetadata"]["error"] == "methodNotSupported"


def test_resolve_invalid_did_is_invalid_did() -> None:
    """A malformed DID gives the invalidDid error and exit 1."""
    result = CliRunner().invoke(main, ["did", "resolve", "did:KEY:abc"])
    assert result.exit_code == 1
    assert json.loads(result.output)["didResolutionMetadata"]["error"] == "invalidDid"
