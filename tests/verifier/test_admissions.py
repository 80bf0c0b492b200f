"""Remembered credential and session decisions stand only while nothing they were made from changed."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.multikey import decode_x25519_public_key
from tests.verifier.conftest import FakeClock
from verifier import MemorySessionStore, Reason, Refused, Verifier
from verifier.testing import StaticLedger
from wallet.credential import build_credential, issue_credential
from wallet.device_client import CREDENTIAL_HEADER, SIGNED_COMPONENTS, encode_device_credential
from wallet.http_signatures import HttpRequest, sign_request
from wallet.session_keys import session_key

URL = "https://service.example/readings"
LIST = "devices"


@dataclass
class World:
    """A static ledger with one accredited issuer, one enrolled device, and a verifier on a fake clock."""

    ledger: StaticLedger
    clock: FakeClock
    issuer: str
    device_key: Ed25519PrivateKey
    device: str
    header: str
    verifier: Verifier


@pytest.fixture
def world() -> Iterator[World]:
    """The device holds a credential valid for one hour, with revocation entry 7 of the issuer's list."""
    clock = FakeClock(datetime.now(UTC).timestamp())
    ledger = StaticLedger("testnet")
    issuer_key, device_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    issuer = ledger.add_issuer(issuer_key)
    url = ledger.create_status_list(issuer, LIST)
    device = ledger.add_device(device_key)
    now = datetime.fromtimestamp(clock(), UTC)
    entry = {"id": f"{url}#7", "type": "BitstringStatusListEntry", "statusPurpose": "revocation",
             "statusListIndex": "7", "statusListCredential": url}  # fmt: skip
    document = build_credential(
        issuer=issuer,
        subject={"id": device},
        types=["DeviceCredential"],
        valid_from=now - timedelta(minutes=1),
        valid_until=now + timedelta(hours=1),
        status=entry,
    )
    header = encode_device_credential(issue_credential(document, issuer_key, f"{issuer}#key-1"))
    verifier = ledger.verifier(clock=clock, sessions=MemorySessionStore(clock=clock))
    yield World(ledger, clock, issuer, device_key, device, header, verifier)
    verifier.close()


def request(world: World, key: object = None, keyid: str | None = None, alg: str = "ed25519") -> HttpRequest:
    """A fresh POST signed by the device (or by ``key`` under ``keyid``) carrying its credential."""
    body = b"{}"
    base = HttpRequest(
        "POST", URL, {"content-type": "application/json", CREDENTIAL_HEADER: world.header}, body
    )
    created = int(world.clock())
    added = sign_request(
        base, key=key or world.device_key, keyid=keyid or f"{world.device}#key-1", components=SIGNED_COMPONENTS,
        created=created, expires=created + 60, nonce=secrets.token_urlsafe(16), alg=alg,
    )  # fmt: skip
    return HttpRequest("POST", URL, {**base.headers, **added}, body)


def refusal(world: World, made: HttpRequest) -> Reason:
    """Why the verifier refuses ``made``."""
    with pytest.raises(Refused) as refused:
        world.verifier.authenticate_request(made)
    return refused.value.reason


def test_a_revocation_after_a_remembered_admission_is_refused(world: World) -> None:
    """The same credential header let in twice is refused once its revocation bit is set."""
    world.verifier.authenticate_request(request(world))
    world.verifier.authenticate_request(request(world))
    world.ledger.set_status(world.issuer, LIST, 7)
    assert refusal(world, request(world)) is Reason.REVOKED


def test_a_withdrawn_accreditation_after_a_remembered_admission_is_refused(world: World) -> None:
    """The issuer losing its accreditation refuses a credential let in before."""
    world.verifier.authenticate_request(request(world))
    world.ledger.withdraw(world.issuer)
    assert refusal(world, request(world)) is Reason.ISSUER_NOT_ACCREDITED


def test_a_remembered_admission_still_expires_with_the_credential(world: World) -> None:
    """Past validUntil (and the clock skew) the remembered credential is refused as expired."""
    world.verifier.authenticate_request(request(world))
    world.clock.advance(3600 + world.verifier.policy.clock_skew + 1)
    assert refusal(world, request(world)) is Reason.CREDENTIAL_EXPIRED


def test_a_quarantine_after_a_remembered_admission_is_refused(world: World) -> None:
    """Quarantining the device refuses it although its credential decision was remembered."""
    world.verifier.authenticate_request(request(world))
    world.ledger.quarantine(world.device)
    assert refusal(world, request(world)) is Reason.QUARANTINED


def test_a_session_ends_at_a_revocation_after_remembered_checks(world: World) -> None:
    """A verifier serving a session another one opened (a shared store, so no watch of its own) refuses
    it once the credential is revoked, although its checks of the session were remembered."""
    offer = world.verifier.authenticate_request(request(world)).session
    assert offer is not None and world.verifier.sessions is not None
    mac = session_key(
        world.device_key.to_x25519(), decode_x25519_public_key(offer["verifier_key"]), offer["session_id"]
    )
    store, world.verifier.sessions = world.verifier.sessions, None  # the opener no longer ends sessions
    with world.ledger.verifier(clock=world.clock, sessions=store) as other:
        world.verifier = other
        for _ in range(3):
            assert other.authenticate_request(request(world, mac, offer["session_id"], "hmac-sha256"))
        world.ledger.set_status(world.issuer, LIST, 7)
        assert refusal(world, request(world, mac, offer["session_id"], "hmac-sha256")) is Reason.SESSION_ENDED


def test_a_session_is_refused_too_stale_after_remembered_checks(world: World) -> None:
    """With the ledger unreachable past offline_max_staleness, a remembered session check does not let in."""
    offer = world.verifier.authenticate_request(request(world)).session
    assert offer is not None
    mac = session_key(
        world.device_key.to_x25519(), decode_x25519_public_key(offer["verifier_key"]), offer["session_id"]
    )
    assert world.verifier.authenticate_request(request(world, mac, offer["session_id"], "hmac-sha256"))
    world.ledger.go_offline()
    world.clock.advance(world.verifier.policy.offline_max_staleness + 1)
    assert refusal(world, request(world, mac, offer["session_id"], "hmac-sha256")) is Reason.TOO_STALE
