"""Within a session, every network its checks read must be fresh enough, not only the device's: with
the issuer (and its status list) on another trusted network that no node answers for, session requests
are refused ``too_stale`` as full checks are, though that network's cache generation never moves."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from tests.verifier.conftest import START, FakeClock
from tests.verifier.lifetime_world import INDEX, LIST, World, refused
from verifier import MemorySessionStore, Reason, Refused, Verifier, _signed
from verifier.testing import StaticLedger
from wallet.credential import build_credential
from wallet.device_client import encode_device_credential
from wallet.proofs.eddsa_jcs_2022 import ProofOptions, add_proof

PAST_THE_LIMIT = 250.0
"""Seconds of silence after which the default policy refuses a network as too stale (limit: 30 s)."""


@dataclass
class TwoNetworks:
    """The device on ``devnet``; its credential's issuer and status list on ``issuernet``."""

    world: World
    issuer_network: StaticLedger
    verifier: Verifier
    offer: dict[str, str]


@pytest.fixture
def two() -> Iterator[TwoNetworks]:
    """A verifier trusting both networks, with a session of the device open and used once."""
    clock = FakeClock(START)
    devices, issuers = StaticLedger("devnet"), StaticLedger("issuernet")
    issuer_key, device_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    issuer = issuers.add_issuer(issuer_key)
    url = issuers.create_status_list(issuer, LIST)
    device = devices.add_device(device_key)
    now = datetime.fromtimestamp(clock(), UTC)
    entry = {"id": f"{url}#{INDEX}", "type": "BitstringStatusListEntry", "statusPurpose": "revocation",
             "statusListIndex": str(INDEX), "statusListCredential": url}  # fmt: skip
    document = build_credential(
        issuer=issuer, subject={"id": device}, types=["DeviceCredential"],
        valid_from=now - timedelta(minutes=1), valid_until=now + timedelta(hours=1), status=entry,
    )  # fmt: skip
    credential = add_proof(
        document, issuer_key, ProofOptions(f"{issuer}#key-1", "assertionMethod", created=now)
    )
    world = World(devices, clock, issuer_key, issuer, device_key, device, credential,
                  encode_device_credential(credential))  # fmt: skip
    verifier = devices.verifier(clock=clock, sessions=MemorySessionStore(clock=clock))
    issuers.attach(verifier)
    offer = verifier.authenticate_request(world.request()).session
    assert offer is not None
    assert verifier.authenticate_request(world.session_request(offer)).did == device  # the checks remembered
    yield TwoNetworks(world, issuers, verifier, dict(offer))
    verifier.close()


def test_a_session_request_is_refused_too_stale_when_the_issuer_s_network_is(two: TwoNetworks) -> None:
    """The issuer's network unreachable past the staleness limit: the session request is refused too_stale."""
    two.issuer_network.go_offline()
    two.world.clock.advance(PAST_THE_LIMIT)
    refusal = refused(two.verifier, two.world.session_request(two.offer))
    assert refusal.reason is Reason.TOO_STALE
    assert "issuernet" in refusal.detail


def test_the_general_path_refuses_a_session_request_too_stale_when_the_issuer_s_network_is(
    two: TwoNetworks,
) -> None:
    """The general request path (any request not in the devices' shape) refuses it the same way."""
    two.issuer_network.go_offline()
    two.world.clock.advance(PAST_THE_LIMIT)
    with pytest.raises(Refused) as caught:
        _signed.authenticate_request(two.verifier, two.world.session_request(two.offer), None, None)
    assert caught.value.reason is Reason.TOO_STALE


def test_a_session_request_is_refused_as_the_full_check_is(two: TwoNetworks) -> None:
    """With the issuer's network too stale, a full request and a session request get the same reason."""
    two.issuer_network.go_offline()
    two.world.clock.advance(PAST_THE_LIMIT)
    full = refused(two.verifier, two.world.request())
    session = refused(two.verifier, two.world.session_request(two.offer))
    assert full.reason is session.reason is Reason.TOO_STALE


def test_a_session_request_is_let_in_again_once_the_issuer_s_network_answers(two: TwoNetworks) -> None:
    """Refused too_stale does not end the session: once the network answers again it is let in."""
    two.issuer_network.go_offline()
    two.world.clock.advance(PAST_THE_LIMIT)
    refused(two.verifier, two.world.session_request(two.offer))
    two.issuer_network.go_online()
    assert two.verifier.authenticate_request(two.world.session_request(two.offer)).did == two.world.device


def test_a_session_request_is_let_in_while_the_issuer_s_network_is_within_the_limit(two: TwoNetworks) -> None:
    """Unreachable but within offline_max_staleness, the remembered checks still let the device in."""
    two.issuer_network.go_offline()
    two.world.clock.advance(10)
    assert two.verifier.authenticate_request(two.world.session_request(two.offer)).did == two.world.device
