"""Sessions offered to devices let in: a device whose key-agreement key cannot key one."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from did_registry.identity.crypto import Ed25519PrivateKey, X25519PublicKey
from did_registry.identity.did_document_builder import DIDDocumentBuilder
from did_registry.identity.did_trellis import initial_document
from verifier import AuthenticatedDevice, MemorySessionStore
from verifier._signed import CREDENTIAL_HEADER, encode_credential_header
from verifier.testing import StaticLedger
from wallet.credential import build_credential, issue_credential
from wallet.http_signatures import HttpRequest, sign_request

URL = "https://service.example/readings"
AUDIENCE = "https://service.example"


def _enrol(ledger: StaticLedger, issuer: str, issuer_key: Ed25519PrivateKey, status: str, *,
           agreement: X25519PublicKey | None = None) -> tuple[Ed25519PrivateKey, str, dict[str, Any]]:  # fmt: skip
    """A device on ``ledger`` (with ``agreement`` as its key-agreement key if given) and its credential."""
    key = Ed25519PrivateKey.generate()
    did = ledger.did_for(key)
    builder = DIDDocumentBuilder.from_document(initial_document(did, key.public_key))
    if agreement is not None:
        builder.remove_verification_method("key-agreement-1")
        builder.add_verification_method(
            agreement, fragment="key-agreement-1", relationships=("keyAgreement",)
        )
    ledger.add_did(builder.to_json())
    index, now = secrets.randbelow(100_000), datetime.now(UTC)
    entry = {"id": f"{status}#{index}", "type": "BitstringStatusListEntry", "statusPurpose": "revocation",
             "statusListIndex": str(index), "statusListCredential": status}  # fmt: skip
    document = build_credential(
        issuer=issuer, subject={"id": did}, types=("DeviceCredential",),
        valid_from=now - timedelta(minutes=1), valid_until=now + timedelta(days=1), status=[entry],
    )  # fmt: skip
    return key, did, issue_credential(document, issuer_key, f"{issuer}#key-1", created=now)


def _request(key: Ed25519PrivateKey, did: str, credential: dict[str, Any]) -> HttpRequest:
    request = HttpRequest("POST", URL, {CREDENTIAL_HEADER: encode_credential_header(credential)}, b"{}")
    now = int(time.time())
    added = sign_request(
        request, key=key, keyid=f"{did}#key-1", components=("@method", "@target-uri", "content-digest"),
        created=now, expires=now + 60, nonce=secrets.token_urlsafe(12), alg="ed25519",
    )  # fmt: skip
    return HttpRequest("POST", URL, {**request.headers, **added}, b"{}")


def test_a_low_order_agreement_key_lets_the_device_in_without_a_session() -> None:
    """A device whose key-agreement key is a low-order X25519 point (no shared secret can come of
    it) is let in without a session offer, and a batch holding its request still answers every
    device (the key-agreement failure escaped as an exception and lost the whole batch)."""
    ledger = StaticLedger()
    issuer_key = Ed25519PrivateKey.generate()
    issuer = ledger.add_issuer(issuer_key)
    status = ledger.create_status_list(issuer, "rev")
    verifier = ledger.verifier(sessions=MemorySessionStore())
    honest = _enrol(ledger, issuer, issuer_key, status)
    low = _enrol(ledger, issuer, issuer_key, status, agreement=X25519PublicKey(bytes(32)))
    device = verifier.authenticate_request(_request(*low), AUDIENCE)
    assert device.did == low[1] and device.session is None
    answers = verifier.authenticate_many([_request(*honest), _request(*low)])
    first, second = answers
    assert isinstance(first, AuthenticatedDevice) and isinstance(second, AuthenticatedDevice)
    assert first.session is not None and second.session is None
