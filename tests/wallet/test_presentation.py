"""Verifiable Presentations: holder proof bound to challenge and domain, embedded credentials."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.wallet.conftest import Identity, KeyRing
from wallet.credential import build_credential, issue_credential
from wallet.errors import (
    ChallengeMismatch,
    CredentialExpired,
    DomainMismatch,
    HolderMismatch,
    InvalidSignature,
    MalformedDocument,
    VerificationFailed,
    WrongVerificationRelationship,
)
from wallet.presentation import build_presentation, sign_presentation, verify_presentation

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CHALLENGE = "c2b7a6e1-5c0e-4d3b-9f1a-0e8d7c6b5a41"
DOMAIN = "https://metering.example.com"


def _device_credential(keyring: KeyRing, device: Identity, **changes: Any) -> dict[str, Any]:
    issuer = keyring.new()
    fields: dict[str, Any] = {
        "issuer": issuer.did,
        "subject": {"id": device.did, "model": "TH-1"},
        "types": ["DeviceCredential"],
        "valid_until": NOW + timedelta(days=30),
    }
    fields.update(changes)
    return issue_credential(build_credential(**fields), issuer.key, issuer.method, created=NOW)


def _present(keyring: KeyRing, device: Identity | None = None, **changes: Any) -> dict[str, Any]:
    device = device or keyring.new()
    credential = _device_credential(keyring, device)
    presentation = build_presentation(holder=device.did, credentials=[credential])
    return sign_presentation(
        presentation, device.key, device.method, challenge=CHALLENGE, domain=DOMAIN, created=NOW, **changes
    )


def test_presentation_verifies_with_its_challenge_and_domain(keyring: KeyRing) -> None:
    """A presentation made for a challenge and domain verifies for exactly those."""
    device = keyring.new()
    result = verify_presentation(
        _present(keyring, device), keyring.lookup, challenge=CHALLENGE, domain=DOMAIN, now=NOW
    )
    assert result.holder == device.did
    assert [c.types[-1] for c in result.credentials] == ["DeviceCredential"]
    assert result.proof.challenge == CHALLENGE


def test_refuses_other_challenge(keyring: KeyRing) -> None:
    """A presentation replayed against another challenge fails with wrong_challenge."""
    with pytest.raises(ChallengeMismatch):
        verify_presentation(_present(keyring), keyring.lookup, challenge="other", domain=DOMAIN, now=NOW)


def test_refuses_other_domain(keyring: KeyRing) -> None:
    """A presentation made for one service is refused by another: wrong_domain."""
    with pytest.raises(DomainMismatch):
        verify_presentation(
            _present(keyring), keyring.lookup, challenge=CHALLENGE, domain="https://evil.example", now=NOW
        )


def test_a_lone_surrogate_challenge_is_a_wrong_challenge(keyring: KeyRing) -> None:
    """A proof whose challenge is a lone surrogate (JSON's ``"\\ud800"``) fails with wrong_challenge."""
    presentation = _present(keyring)
    presentation["proof"]["challenge"] = "\ud800"
    with pytest.raises(ChallengeMismatch):
        verify_presentation(presentation, keyring.lookup, challenge=CHALLENGE, domain=DOMAIN, now=NOW)


def test_a_lone_surrogate_challenge_asked_for_is_malformed(keyring: KeyRing) -> None:
    """Asked to check the lone surrogate a proof carries, verification refuses it as malformed."""
    presentation = _present(keyring)
    presentation["proof"]["challenge"] = "\ud800"
    with pytest.raises(MalformedDocument):
        verify_presentation(presentation, keyring.lookup, challenge="\ud800", domain=DOMAIN, now=NOW)


def test_refuses_presentation_without_challenge(keyring: KeyRing) -> None:
    """A proof that carries no challenge fails with wrong_challenge, not a crash."""
    presentation = _present(keyring)
    del presentation["proof"]["challenge"]
    with pytest.raises(ChallengeMismatch):
        verify_presentation(presentation, keyring.lookup, challenge=CHALLENGE, domain=DOMAIN, now=NOW)


def test_refuses_expired_proof(keyring: KeyRing) -> None:
    """A presentation proof past its expires time is refused as expired."""
    presentation = _present(keyring, expires=NOW - timedelta(seconds=1))
    with pytest.raises(CredentialExpired):
        verify_presentation(presentation, keyring.lookup, challenge=CHALLENGE, domain=DOMAIN, now=NOW)


def test_refuses_credential_about_someone_else(keyring: KeyRing) -> None:
    """A holder presenting another device's credential fails with holder_mismatch."""
    thief, victim = keyring.new(), keyring.new()
    stolen = _device_credential(keyring, victim)
    presentation = sign_presentation(
        build_presentation(holder=thief.did, credentials=[stolen]),
        thief.key,
        thief.method,
        challenge=CHALLENGE,
        domain=DOMAIN,
    )
    with pytest.raises(HolderMismatch):
        verify_presentation(presentation, keyring.lookup, challenge=CHALLENGE, domain=DOMAIN, now=NOW)


def test_refuses_presentation_signed_by_non_holder(keyring: KeyRing) -> None:
    """A presentation whose holder is one DID but signed by another fails with holder_mismatch."""
    device, other = keyring.new(), keyring.new()
    presentation = sign_presentation(
        build_presentation(holder=device.did, credentials=[_device_credential(keyring, device)]),
        other.key,
        other.method,
        challenge=CHALLENGE,
        domain=DOMAIN,
    )
    with pytest.raises(HolderMismatch):
        verify_presentation(presentation, keyring.lookup, challenge=CHALLENGE, domain=DOMAIN, now=NOW)


def test_refuses_key_not_for_authentication(keyring: KeyRing) -> None:
    """A key the holder lists only for assertion cannot authenticate: wrong_relationship."""
    device = keyring.new(frozenset({"assertionMethod"}))
    with pytest.raises(WrongVerificationRelationship):
        verify_presentation(
            _present(keyring, device), keyring.lookup, challenge=CHALLENGE, domain=DOMAIN, now=NOW
        )


def test_tampered_embedded_credential_fails(keyring: KeyRing) -> None:
    """Changing a claim of an embedded credential breaks the presentation's signature."""
    presentation = _present(keyring)
    presentation["verifiableCredential"][0]["credentialSubject"]["model"] = "TH-2"
    with pytest.raises(InvalidSignature):
        verify_presentation(presentation, keyring.lookup, challenge=CHALLENGE, domain=DOMAIN, now=NOW)


def test_embedded_credential_tampered_then_resigned_fails(keyring: KeyRing) -> None:
    """A holder who edits its credential and re-signs the presentation is caught by the credential proof."""
    device = keyring.new()
    credential = _device_credential(keyring, device)
    credential["credentialSubject"]["model"] = "PREMIUM"
    presentation = sign_presentation(
        build_presentation(holder=device.did, credentials=[credential]),
        device.key,
        device.method,
        challenge=CHALLENGE,
        domain=DOMAIN,
    )
    with pytest.raises(InvalidSignature):
        verify_presentation(presentation, keyring.lookup, challenge=CHALLENGE, domain=DOMAIN, now=NOW)


@pytest.mark.parametrize(
    ("field", "value"),
    [("type", ["VerifiableCredential"]), ("verifiableCredential", "x"), ("@context", [])],
)
def test_malformed_presentations_are_refused(keyring: KeyRing, field: str, value: Any) -> None:
    """A presentation breaking the data model is refused as malformed."""
    presentation = copy.deepcopy(_present(keyring))
    presentation[field] = value
    with pytest.raises(MalformedDocument):
        verify_presentation(presentation, keyring.lookup, challenge=CHALLENGE, domain=DOMAIN, now=NOW)


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for key, member in value.items() for p in _leaves(member, (*path, key))]
    if isinstance(value, list):
        return [p for index, member in enumerate(value) for p in _leaves(member, (*path, index))]
    return [path]


def test_changing_any_field_of_a_presentation_fails(keyring: KeyRing) -> None:
    """Changing any single value anywhere in a signed presentation makes verification fail."""
    presentation = _present(keyring)
    paths = _leaves(presentation)
    assert len(paths) > 20
    for path in paths:
        tampered = copy.deepcopy(presentation)
        target = tampered
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = "tampered" if target[path[-1]] != "tampered" else "other"
        with pytest.raises(VerificationFailed):
            verify_presentation(tampered, keyring.lookup, challenge=CHALLENGE, domain=DOMAIN, now=NOW)
