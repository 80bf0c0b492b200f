"""A block the verifier applies while a request is being checked counts for that request: a device
disabled by it is refused, not let in "as of" that block, and a record read before it is never used.

Deterministic: the ledger's proven read of the status list (dropped from the cache by an unrelated
revocation just before) waits until the test has committed and applied the block."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_document_builder import DIDDocumentBuilder
from verifier import AuthenticatedDevice, Refused, Verifier
from verifier.testing import StaticLedger
from wallet.credential import build_credential, issue_credential
from wallet.device_client import CREDENTIAL_HEADER, SIGNED_COMPONENTS, encode_device_credential
from wallet.http_signatures import HttpRequest, sign_request

URL = "https://service.example/readings"
AUDIENCE = "https://service.example"


class World:
    """Two devices of one issuer, sharing its revocation list, and a verifier that has seen device 0."""

    def __init__(self) -> None:
        self.ledger = StaticLedger("testnet")
        issuer_key = Ed25519PrivateKey.generate()
        self.issuer = self.ledger.add_issuer(issuer_key)
        url = self.ledger.create_status_list(self.issuer, "devices")
        now = datetime.now(UTC)
        self.keys, self.dids, self.headers = [], [], []
        for index in range(2):
            key = Ed25519PrivateKey.generate()
            did = self.ledger.add_device(key)
            status = {"id": f"{url}#{index}", "type": "BitstringStatusListEntry", "statusPurpose": "revocation",
                      "statusListIndex": str(index), "statusListCredential": url}  # fmt: skip
            document = build_credential(
                issuer=self.issuer,
                subject={"id": did},
                types=["DeviceCredential"],
                valid_from=now - timedelta(minutes=1),
                valid_until=now + timedelta(hours=1),
                status=status,
            )
            credential = issue_credential(document, issuer_key, f"{self.issuer}#key-1")
            self.keys.append(key)
            self.dids.append(did)
            self.headers.append(encode_device_credential(credential))
        self.verifier: Verifier = self.ledger.verifier()
        self.verifier.authenticate_request(self.request(), AUDIENCE)
        self.ledger.set_status(self.issuer, "devices", 1)  # device 1 revoked: the shared list is re-read

    def request(self) -> HttpRequest:
        """A fresh signed request of device 0."""
        body = b"{}"
        request = HttpRequest("POST", URL, {CREDENTIAL_HEADER: self.headers[0]}, body)
        now = int(time.time())
        added = sign_request(
            request, key=self.keys[0], keyid=f"{self.dids[0]}#key-1", components=SIGNED_COMPONENTS,
            created=now, expires=now + 60, nonce=secrets.token_urlsafe(12),
        )  # fmt: skip
        return HttpRequest("POST", URL, {**request.headers, **added}, body)

    def during_status_read(
        self, block: Callable[[World], object], *, answered: bool = False
    ) -> AuthenticatedDevice | Refused:
        """Authenticate device 0 while ``block`` is committed and applied during its status-list read
        (once the ledger has ``answered`` it: the answer then predates the block)."""
        reading, applied = threading.Event(), threading.Event()
        fetch = self.ledger.fetch

        def slow_fetch(keys: Sequence[str], min_height: int | None = None) -> tuple[list[Any], int]:
            if not any(k.startswith("status:") for k in keys) or reading.is_set():
                return fetch(keys, min_height)
            answer = fetch(keys, min_height) if answered else None
            reading.set()
            applied.wait(5)
            return answer or fetch(keys, min_height)

        self.ledger.fetch = slow_fetch  # type: ignore[method-assign]
        outcome: list[AuthenticatedDevice | Refused] = []

        def authenticate() -> None:
            try:
                outcome.append(self.verifier.authenticate_request(self.request(), AUDIENCE))
            except Refused as refused:
                outcome.append(refused)

        thread = threading.Thread(target=authenticate)
        thread.start()
        assert reading.wait(5)
        block(self)
        applied.set()
        thread.join(10)
        self.ledger.fetch = fetch  # type: ignore[method-assign]
        return outcome[0]


def _rotate(world: World) -> None:
    """Device 0's document now holds only a new key, #key-2."""
    builder = DIDDocumentBuilder(world.dids[0])
    builder.add_verification_method(
        Ed25519PrivateKey.generate().public_key, fragment="key-2", relationships=("authentication",)
    )
    world.ledger.update(world.dids[0], builder.build())


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        (lambda w: w.ledger.quarantine(w.dids[0]), "quarantined"),
        (lambda w: w.ledger.deactivate(w.dids[0]), "did_deactivated"),
        (_rotate, "key_not_authorized"),
    ],
    ids=["quarantined", "deactivated", "key rotated away"],
)
def test_a_device_disabled_by_a_block_applied_in_flight_is_refused(
    block: Callable[[World], object], reason: str
) -> None:
    world = World()
    outcome = world.during_status_read(block)
    assert isinstance(outcome, Refused) and outcome.reason.value == reason


def test_a_record_read_before_a_block_applied_in_flight_is_read_again() -> None:
    """The status list read as of block h - 1 is not used once the cache applied block h, which
    revokes the device: it is read again, as of h."""
    world = World()
    outcome = world.during_status_read(lambda w: w.ledger.set_status(w.issuer, "devices", 0), answered=True)
    assert isinstance(outcome, Refused) and outcome.reason.value == "revoked"


def test_a_block_about_other_devices_changes_nothing_in_flight() -> None:
    world = World()
    outcome = world.during_status_read(lambda w: w.ledger.quarantine(w.dids[1]))
    assert isinstance(outcome, AuthenticatedDevice) and outcome.did == world.dids[0]


def test_a_block_keeping_the_devices_key_lets_it_in_as_of_that_block() -> None:
    """A block touching the device's document but not its key (a service added) refuses nothing;
    the device is let in as of the block."""
    world = World()

    def add_service(w: World) -> None:
        builder = DIDDocumentBuilder(w.dids[0])
        builder.add_verification_method(
            w.keys[0].public_key, fragment="key-1", relationships=("authentication", "capabilityInvocation")
        )
        document = builder.to_json()
        document["service"] = [
            {"id": f"{w.dids[0]}#s", "type": "LinkedDomains", "serviceEndpoint": "https://s.example/"}
        ]
        w.ledger.update(w.dids[0], document)

    outcome = world.during_status_read(add_service)
    assert isinstance(outcome, AuthenticatedDevice)
    assert outcome.height == world.verifier.caches["testnet"].height


def test_a_session_request_in_flight_when_its_device_is_quarantined_is_refused() -> None:
    """The same for a request in a session: its remembered checks run again on the device's new entry."""
    from tests.verifier.lifetime_world import LIST, make_world

    world = make_world()
    verifier = world.verifier()
    offer = verifier.authenticate_request(world.request()).session
    assert offer is not None
    world.ledger.set_status(world.issuer, LIST, 3)  # another device's bit: the shared list is read again
    reading, applied = threading.Event(), threading.Event()
    fetch = world.ledger.fetch

    def slow_fetch(keys: Sequence[str], min_height: int | None = None) -> tuple[list[Any], int]:
        if any(k.startswith("status:") for k in keys) and not reading.is_set():
            reading.set()
            applied.wait(5)
        return fetch(keys, min_height)

    world.ledger.fetch = slow_fetch  # type: ignore[method-assign]
    outcome: list[AuthenticatedDevice | Refused] = []

    def authenticate() -> None:
        try:
            outcome.append(verifier.authenticate_request(world.session_request(offer)))
        except Refused as refused:
            outcome.append(refused)

    thread = threading.Thread(target=authenticate)
    thread.start()
    assert reading.wait(5)
    world.ledger.quarantine(world.device)
    applied.set()
    thread.join(10)
    assert isinstance(outcome[0], Refused) and outcome[0].reason.value == "session_ended"
    assert "quarantine" in outcome[0].detail
