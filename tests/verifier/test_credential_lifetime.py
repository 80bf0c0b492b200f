"""Nothing outlives the credential a device was let in with: neither a session opened with it nor a
remembered decision on it, whether it ends at its validUntil or at its proof's ``expires``."""

from __future__ import annotations

import copy

import pytest

from did_registry.identity.timestamps import parse_timestamp
from tests.verifier.lifetime_world import INDEX, LIST, make_world, refused
from verifier import Reason

SKEW = 60.0  # the default policy's clock skew


def test_a_session_expires_with_its_credential() -> None:
    """A session opened with a credential valid 30 s more is expired once the credential is (with the
    clock skew), although the session lifetime is far longer."""
    world = make_world(valid_for=30)
    verifier = world.verifier()
    offer = verifier.authenticate_request(world.request()).session
    assert offer is not None and verifier.policy.session_ttl > 30 + SKEW + 1
    world.clock.advance(30 + SKEW + 1)
    assert refused(verifier, world.session_request(offer)).reason is Reason.SESSION_EXPIRED


def test_a_session_offer_expires_no_later_than_the_credential() -> None:
    """The offer's expiry is at most the credential's validUntil plus the clock skew."""
    world = make_world(valid_for=30)
    offer = world.verifier().authenticate_request(world.request()).session
    assert offer is not None
    until = parse_timestamp(world.credential["validUntil"]).timestamp()
    assert parse_timestamp(offer["expires"]).timestamp() <= until + SKEW


def test_a_session_expires_with_its_credential_proof() -> None:
    """A session opened with a credential whose proof expires in 30 s is expired once the proof is."""
    world = make_world(proof_expires_in=30)
    verifier = world.verifier()
    offer = verifier.authenticate_request(world.request()).session
    assert offer is not None
    world.clock.advance(31)
    assert refused(verifier, world.session_request(offer)).reason is Reason.SESSION_EXPIRED


def test_no_session_is_offered_with_a_credential_at_its_last_second() -> None:
    """A credential let in at the very moment its proof expires opens no session (it would be over)."""
    world = make_world(proof_expires_in=0)
    device = world.verifier().authenticate_request(world.request())
    assert device.did == world.device and device.session is None


@pytest.mark.parametrize("memo", ["decision", "fast-path device", "verified proof"])
def test_a_remembered_credential_is_refused_once_its_proof_expires(memo: str) -> None:
    """Let in twice (so remembered), the credential is refused as expired once its proof's expires
    has passed: by the decision memo (sessions on), the fast path's memo of devices (sessions off), and
    the memo of verified proofs (an unrelated block having dropped the decisions)."""
    world = make_world(proof_expires_in=100)
    verifier = world.verifier(sessions=memo == "decision")
    for _ in range(2):
        assert verifier.authenticate_request(world.request()).did == world.device
    world.clock.advance(101)
    if memo == "verified proof":
        world.ledger.set_status(world.issuer, LIST, INDEX + 1)
    assert refused(verifier, world.request()).reason is Reason.CREDENTIAL_EXPIRED


def test_a_remembered_proof_expiry_is_refused_as_the_full_check_refuses_it() -> None:
    """The remembered decision's refusal is the full check's own: the same reason and detail as for a
    copy of the credential, whose proof is verified from scratch."""
    world = make_world(proof_expires_in=100)
    verifier = world.verifier(sessions=False)
    verifier.authenticate_request(world.request())
    world.clock.advance(101)
    warm = refused(verifier, world.request())
    with pytest.raises(type(warm)) as cold:
        verifier.authenticate_request(world.request(), credential=copy.deepcopy(world.credential))
    assert (warm.reason, warm.detail) == (cold.value.reason, cold.value.detail)
