"""VC 2.0 credentials: issue, verify, and every refusal named."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.wallet.conftest import KeyRing
from wallet.credential import build_credential, issue_credential, verify_credential
from wallet.errors import (
    CredentialExpired,
    CredentialNotYetValid,
    CredentialStatusRefused,
    InvalidSignature,
    IssuerMismatch,
    MalformedDocument,
    UnknownVerificationMethod,
    WrongVerificationRelationship,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _issue(keyring: KeyRing, **changes: Any) -> tuple[dict[str, Any], Any, Any]:
    issuer, device = keyring.new(), keyring.new()
    fields: dict[str, Any] = {
        "issuer": issuer.did,
        "subject": {"id": device.did, "model": "TH-1", "firmware": "1.4.2"},
        "types": ["DeviceCredential"],
        "credential_id": "urn:uuid:0b7c2c1e-8f3e-4a57-9a0a-2f6a1c1d0001",
        "valid_from": NOW - timedelta(days=1),
        "valid_until": NOW + timedelta(days=365),
    }
    fields.update(changes)
    credential = issue_credential(build_credential(**fields), issuer.key, issuer.method, created=NOW)
    return credential, issuer, device


def test_issued_credential_verifies(keyring: KeyRing) -> None:
    """A freshly issued credential verifies and reports issuer, types and subject."""
    credential, issuer, device = _issue(keyring)
    result = verify_credential(credential, keyring.lookup, now=NOW)
    assert result.issuer == issuer.did
    assert result.types == ("VerifiableCredential", "DeviceCredential")
    assert result.subject_ids == (device.did,)
    assert result.subject["model"] == "TH-1"
    assert result.proof.verification_method == issuer.method


def test_refuses_expired_credential(keyring: KeyRing) -> None:
    """If now is after validUntil, verification fails with expired."""
    credential, _, _ = _issue(keyring, valid_until=NOW - timedelta(seconds=1))
    with pytest.raises(CredentialExpired) as failure:
        verify_credential(credential, keyring.lookup, now=NOW)
    assert failure.value.check == "expired"
    assert failure.value.subject == credential["id"]


def test_refuses_credential_not_yet_valid(keyring: KeyRing) -> None:
    """If now is before validFrom, verification fails with not_yet_valid."""
    credential, _, _ = _issue(keyring, valid_from=NOW + timedelta(minutes=5))
    with pytest.raises(CredentialNotYetValid):
        verify_credential(credential, keyring.lookup, now=NOW)


def test_clock_skew_tolerates_small_differences(keyring: KeyRing) -> None:
    """A credential valid from 30 s in the future passes with 60 s of allowed clock skew."""
    credential, _, _ = _issue(keyring, valid_from=NOW + timedelta(seconds=30))
    verify_credential(credential, keyring.lookup, now=NOW, clock_skew=timedelta(seconds=60))


def test_refuses_key_the_issuer_does_not_control(keyring: KeyRing) -> None:
    """A credential whose issuer is one DID but signed by another's key fails with issuer_mismatch."""
    other = keyring.new()
    credential, _, _ = _issue(keyring)
    forged = issue_credential(
        {k: v for k, v in credential.items() if k != "proof"}, other.key, other.method, created=NOW
    )
    with pytest.raises(IssuerMismatch):
        verify_credential(forged, keyring.lookup, now=NOW)


def test_refuses_unknown_key(keyring: KeyRing) -> None:
    """A proof whose verification method cannot be found fails with unknown_key."""
    credential, _, _ = _issue(keyring)
    credential["proof"]["verificationMethod"] += "-gone"
    with pytest.raises(UnknownVerificationMethod):
        verify_credential(credential, keyring.lookup, now=NOW)


def test_refuses_key_not_authorised_for_assertion(keyring: KeyRing) -> None:
    """A key listed only for authentication cannot sign credentials: wrong_relationship."""
    issuer = keyring.new(frozenset({"authentication"}))
    credential = issue_credential(
        build_credential(issuer=issuer.did, subject={"id": "did:example:1"}), issuer.key, issuer.method
    )
    with pytest.raises(WrongVerificationRelationship):
        verify_credential(credential, keyring.lookup)


def test_status_check_refusal_is_raised(keyring: KeyRing) -> None:
    """A status check that reports the entry as revoked stops verification with revoked."""
    entry = {
        "id": "https://example.org/status/1#94567",
        "type": "BitstringStatusListEntry",
        "statusPurpose": "revocation",
        "statusListIndex": "94567",
        "statusListCredential": "https://example.org/status/1",
    }
    credential, _, _ = _issue(keyring, status=entry)
    seen: list[Any] = []

    def revoked(status: Any, checked: Any) -> None:
        seen.append(status)
        raise CredentialStatusRefused("bit set", purpose="revocation", subject=checked.get("id"))

    with pytest.raises(CredentialStatusRefused) as failure:
        verify_credential(credential, keyring.lookup, now=NOW, status_check=revoked)
    assert failure.value.check == "revoked"
    assert seen == [entry]


MALFORMED: list[tuple[str, Any]] = [
    ("@context", ["https://www.w3.org/2018/credentials/v1"]),
    ("@context", "https://www.w3.org/ns/credentials/v2"),
    ("type", ["DeviceCredential"]),
    ("type", 7),
    ("issuer", 42),
    ("issuer", {"name": "no id"}),
    ("credentialSubject", []),
    ("credentialSubject", "did:example:1"),
    ("credentialSubject", {"id": 5}),
    ("validFrom", "2026-01-01"),
    ("validUntil", "2026-01-01T00:00:00"),
    ("credentialStatus", {"statusPurpose": "revocation"}),
    ("@context", ["https://www.w3.org/ns/credentials/v2", 42]),  # §4.3: later items are URLs or objects
    ("@context", ["https://www.w3.org/ns/credentials/v2", "not a url"]),
    ("id", 42),  # §4.4: an id "MUST be a single URL"
    ("id", "not-a-url"),
    ("id", ["urn:uuid:1", "urn:uuid:2"]),
    ("credentialSubject", {"id": "alice"}),
    ("credentialStatus", {"id": "nope", "type": "BitstringStatusListEntry"}),
]


@pytest.mark.parametrize(("field", "value"), MALFORMED, ids=[f"{f}={v!r}" for f, v in MALFORMED])
def test_malformed_credentials_are_refused(keyring: KeyRing, field: str, value: Any) -> None:
    """A credential breaking the VC 2.0 data model is refused as malformed, before any crypto."""
    credential, _, _ = _issue(keyring)
    broken = copy.deepcopy(credential)
    broken[field] = value
    with pytest.raises(MalformedDocument):
        verify_credential(broken, keyring.lookup, now=NOW)


def test_a_lone_surrogate_in_a_claim_name_is_malformed(keyring: KeyRing) -> None:
    """A claim named with a lone surrogate (JSON's ``"\\ud800"``) is refused as malformed."""
    credential, _, _ = _issue(keyring)
    broken = copy.deepcopy(credential)
    broken["credentialSubject"]["\ud800"] = 1
    with pytest.raises(MalformedDocument):
        verify_credential(broken, keyring.lookup, now=NOW)


def test_valid_until_before_valid_from_is_malformed(keyring: KeyRing) -> None:
    """A validity period that ends before it starts is malformed."""
    with pytest.raises(MalformedDocument):
        _issue(keyring, valid_from=NOW, valid_until=NOW - timedelta(days=1))


claims = st.dictionaries(
    st.text(min_size=1).filter(lambda k: k != "id"),
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    max_size=6,
)


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(claims)
def test_any_claims_round_trip(keyring: KeyRing, extra: dict[str, Any]) -> None:
    """Whatever claims a subject has, the issued credential verifies, and changing one fails."""
    credential, _, _ = _issue(keyring, subject={"id": "did:example:device", **extra})
    verify_credential(credential, keyring.lookup, now=NOW)
    tampered = copy.deepcopy(credential)
    tampered["credentialSubject"]["injected"] = True
    with pytest.raises(InvalidSignature):
        verify_credential(tampered, keyring.lookup, now=NOW)
