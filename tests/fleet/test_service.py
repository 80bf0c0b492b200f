"""The example device-facing service (fleet.service) over a verifier of an in-memory ledger."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from fleet.devices import SimulatedDevice
from fleet.metrics import Recorder
from fleet.service import SUSPECT_AFTER, VIEW_HEIGHT, ServiceState, create_service
from fleet.traffic import Endpoint, Traffic
from verifier import MemorySessionStore
from verifier.errors import StoreUnavailable
from verifier.testing import StaticLedger
from verifier.wsgi import PROBLEM_JSON
from wallet.credential import build_credential, issue_credential
from wallet.device_client import DeviceClient

NETWORK = "fleet"
URL = "http://localhost"


@dataclass
class World:
    ledger: StaticLedger
    issuer: str
    device: SimulatedDevice
    state: ServiceState
    http: httpx.Client
    traffic: Traffic


@pytest.fixture
def world() -> Iterator[World]:
    ledger = StaticLedger(NETWORK)
    issuer_key = Ed25519PrivateKey.generate()
    issuer = ledger.add_issuer(issuer_key)
    status_url = ledger.create_status_list(issuer, "1-revocation")
    key = Ed25519PrivateKey.generate()
    did = ledger.add_device(key)
    now = datetime.now(UTC)
    credential = issue_credential(
        build_credential(
            issuer=issuer,
            subject={"id": did},
            types=["DeviceCredential"],
            valid_from=now - timedelta(minutes=1),
            valid_until=now + timedelta(days=1),
            status={
                "type": "BitstringStatusListEntry",
                "statusPurpose": "revocation",
                "statusListIndex": "7",
                "statusListCredential": status_url,
            },
        ),
        issuer_key,
        f"{issuer}#key-1",
    )
    verifier = ledger.verifier(sessions=MemorySessionStore())
    state = ServiceState("telemetry", verifier, NETWORK)
    app = create_service(state, "localhost")
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=URL) as http:
        traffic = Traffic([], [Endpoint("telemetry", URL)], Recorder())
        yield World(ledger, issuer, SimulatedDevice(did, key, credential), state, http, traffic)
    verifier.close()


def test_a_signed_reading_is_admitted_and_names_the_height_the_verifier_had_applied(world: World) -> None:
    decision = world.traffic.signed(world.http, world.device, world.traffic.services[0], "signed")
    assert decision.admitted
    assert decision.view_height == world.ledger.height
    assert world.state.status()["admitted"] == 1


def test_a_presentation_opens_a_session_that_later_requests_use(world: World) -> None:
    service = world.traffic.services[0]
    assert world.traffic.present(world.http, world.device, service).admitted
    assert "telemetry" in world.device.sessions
    rng = random.Random(0)  # devices with a session use it 70 % of the time: 20 tries settle it
    flows = {world.traffic.authenticate(world.http, world.device, service, rng).flow for _ in range(20)}
    assert "session" in flows


def test_a_revoked_device_is_refused_with_problem_details_naming_the_reason(world: World) -> None:
    world.ledger.set_status(world.issuer, "1-revocation", 7)
    response = world.http.post("/readings", json={})
    assert response.status_code == 401  # unsigned: not even looked up
    decision = world.traffic.signed(world.http, world.device, world.traffic.services[0], "signed")
    assert (decision.admitted, decision.reason) == (False, "revoked")
    assert world.state.status()["refused"] == {"malformed": 1, "revoked": 1}


def test_a_device_replaying_its_requests_becomes_a_suspect(world: World) -> None:
    for _ in range(SUSPECT_AFTER):
        assert world.traffic.replay(world.http, world.device, world.traffic.services[0]).reason == "replayed"
    assert world.state.status()["suspects"] == [world.device.did]


def test_requests_forged_in_a_device_s_name_do_not_make_it_a_suspect(world: World) -> None:
    """Requests claiming the device's key id, signed with another key, are refused bad_signature and
    counted, but held against no device: the DID they name is not proven."""
    forger = SimulatedDevice(world.device.did, Ed25519PrivateKey.generate(), world.device.credential)
    for _ in range(SUSPECT_AFTER):
        decision = world.traffic.signed(world.http, forger, world.traffic.services[0], "signed")
        assert decision.reason == "bad_signature"
    assert world.state.status()["suspects"] == []
    assert world.state.status()["refused"] == {"bad_signature": SUSPECT_AFTER}


def test_every_answer_carries_the_view_height_header(world: World) -> None:
    response = world.http.post("/readings", json={})
    assert int(response.headers[VIEW_HEIGHT]) == world.ledger.height
    assert response.headers["content-type"] == "application/problem+json"


def test_prefetch_refuses_anything_but_a_list_of_dids(world: World) -> None:
    assert world.http.post("/prefetch", json={"dids": "did:trellis:fleet:x"}).status_code == 400
    assert world.http.post("/prefetch", json={"dids": [world.device.did]}).json()["cached"] >= 1


def test_a_401_carries_the_signature_challenge(world: World) -> None:
    """A refused request answered 401 says how to authenticate (RFC 9110 §15.5.2, RFC 9421 §5.1)."""
    response = world.http.post("/readings", json={})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("HttpMessageSignature ")
    assert '"content-digest"' in response.headers["accept-signature"]


def test_a_store_that_cannot_be_reached_answers_503_not_500(world: World) -> None:
    """A signed reading the nonce store cannot record (Redis down) is answered 503 with problem
    details and Retry-After, not an internal error; nothing is counted for the device."""

    def unreachable(*_: object) -> bool:
        raise StoreUnavailable("the nonce store cannot be reached")

    world.state.verifier.nonces.use = unreachable  # type: ignore[method-assign]
    client = DeviceClient(world.device, URL, http=world.http)
    response = client.signed_request("POST", "/readings", json={"t": 1})
    assert (response.status_code, response.headers["content-type"]) == (503, PROBLEM_JSON)
    assert response.headers["Retry-After"] == "1" and response.json()["reason"] == "store_unavailable"
    assert world.state.status()["admitted"] == 0 and world.state.status()["refused"] == {}
