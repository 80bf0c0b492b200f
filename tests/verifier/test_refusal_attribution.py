"""A refusal's DID is proven (``Refused.authenticated``) only once a signature of that DID verified:
before that it is what the sender claims, and must not be held against the device it names."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx
import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from tests.verifier.lifetime_world import INDEX, LIST, World, make_world, refused
from verifier import Reason, Refused, _signed
from verifier.reporting import REPORT_PATH, AuthenticationReporter
from wallet.device_client import CREDENTIAL_HEADER
from wallet.http_signatures import HttpRequest


def _forged(world: World) -> HttpRequest:
    """A request claiming the device's key id, signed by someone else's key."""
    return world._signed(
        Ed25519PrivateKey.generate(), f"{world.device}#key-1", "ed25519", {CREDENTIAL_HEADER: world.header}
    )


def _general(world: World, request: HttpRequest) -> Refused:
    """The refusal of ``request`` by the general request path (not the fast one)."""
    verifier = world.verifier(sessions=False)
    with pytest.raises(Refused) as caught:
        _signed.authenticate_request(verifier, request, None, None)
    return caught.value


def test_refused_keeps_its_old_signature_and_is_unauthenticated_by_default() -> None:
    """Refused(reason, detail, did=...) still works, and says its DID is not proven."""
    refusal = Refused(Reason.BAD_SIGNATURE, "no", did="did:trellis:testnet:x")
    assert refusal.did == "did:trellis:testnet:x" and refusal.authenticated is False


def test_a_refusal_naming_no_did_is_never_authenticated() -> None:
    """authenticated=True without a DID proves nothing."""
    assert Refused(Reason.MALFORMED, "no", authenticated=True).authenticated is False


def test_a_forged_signature_names_the_claimed_did_unproven() -> None:
    """bad_signature: the DID is the one the key id claims, not authenticated."""
    world = make_world()
    refusal = refused(world.verifier(sessions=False), _forged(world))
    assert (refusal.reason, refusal.did, refusal.authenticated) == (Reason.BAD_SIGNATURE, world.device, False)


def test_the_general_path_leaves_a_forged_signature_unproven() -> None:
    """The general request path says the same of a forged signature."""
    world = make_world()
    refusal = _general(world, _forged(world))
    assert (refusal.reason, refusal.authenticated) == (Reason.BAD_SIGNATURE, False)


def test_a_changed_body_is_unproven() -> None:
    """digest_mismatch: the signature covers the digest, not this body, so nothing is proven."""
    world = make_world()
    request = world.request()
    changed = HttpRequest(request.method, request.url, dict(request.headers), b'{"forged": true}')
    refusal = refused(world.verifier(sessions=False), changed)
    assert (refusal.reason, refusal.authenticated) == (Reason.DIGEST_MISMATCH, False)


def test_a_quarantined_did_claimed_by_anyone_is_unproven() -> None:
    """A refusal from the DID's own entry comes before its signature is checked: unproven."""
    world = make_world()
    world.ledger.quarantine(world.device)
    refusal = refused(world.verifier(sessions=False), _forged(world))
    assert (refusal.reason, refusal.authenticated) == (Reason.QUARANTINED, False)


def test_a_replayed_request_is_authenticated() -> None:
    """replayed: the signature is the device's own (whoever sent the copy)."""
    world = make_world()
    verifier = world.verifier(sessions=False)
    request = world.request()
    verifier.authenticate_request(request)
    refusal = refused(verifier, request)
    assert (refusal.reason, refusal.did, refusal.authenticated) == (Reason.REPLAYED, world.device, True)


def test_the_general_path_authenticates_a_replayed_request() -> None:
    """The general request path says the same of a replay."""
    world = make_world()
    verifier = world.verifier(sessions=False)
    request = world.request()
    _signed.authenticate_request(verifier, request, None, None)
    with pytest.raises(Refused) as caught:
        _signed.authenticate_request(verifier, request, None, None)
    assert (caught.value.reason, caught.value.authenticated) == (Reason.REPLAYED, True)


def test_a_revoked_device_s_signed_request_is_authenticated() -> None:
    """A credential check failing after the device's signature verified: the DID is proven."""
    world = make_world()
    world.ledger.set_status(world.issuer, LIST, INDEX)
    refusal = refused(world.verifier(sessions=False), world.request())
    assert (refusal.reason, refusal.did, refusal.authenticated) == (Reason.REVOKED, world.device, True)


def test_the_general_path_authenticates_a_revoked_device() -> None:
    """The general request path says the same of a revoked device."""
    world = make_world()
    world.ledger.set_status(world.issuer, LIST, INDEX)
    refusal = _general(world, world.request())
    assert (refusal.reason, refusal.authenticated) == (Reason.REVOKED, True)


def test_a_missing_credential_after_a_good_signature_is_authenticated() -> None:
    """credential_missing comes after the signature: proven."""
    world = make_world()
    request = world._signed(world.device_key, f"{world.device}#key-1", "ed25519", {})
    refusal = refused(world.verifier(sessions=False), request)
    assert (refusal.reason, refusal.authenticated) == (Reason.CREDENTIAL_MISSING, True)


def test_a_bad_session_mac_is_unproven() -> None:
    """Within a session, a MAC that does not verify proves nothing about the session's device."""
    world = make_world()
    verifier = world.verifier()
    offer = verifier.authenticate_request(world.request()).session
    assert offer is not None
    forged = world._signed(b"k" * 32, offer["session_id"], "hmac-sha256", {})
    refusal = refused(verifier, forged)
    assert (refusal.reason, refusal.did, refusal.authenticated) == (Reason.BAD_SIGNATURE, world.device, False)


def test_a_session_ended_by_its_issuer_s_withdrawal_is_authenticated() -> None:
    """A session request with a good MAC, refused because its checks end the session: proven."""
    world = make_world()
    verifier = world.verifier()
    offer = verifier.authenticate_request(world.request()).session
    assert offer is not None
    verifier.authenticate_request(world.session_request(offer))
    world.ledger.withdraw(world.issuer)
    refusal = refused(verifier, world.session_request(offer))
    assert (refusal.reason, refusal.authenticated) == (Reason.SESSION_ENDED, True)


def test_a_replayed_session_request_is_authenticated() -> None:
    """A session request replayed: its MAC is the device's, so the DID is proven."""
    world = make_world()
    verifier = world.verifier()
    offer = verifier.authenticate_request(world.request()).session
    assert offer is not None
    request = world.session_request(offer)
    verifier.authenticate_request(request)
    refusal = refused(verifier, request)
    assert (refusal.reason, refusal.authenticated) == (Reason.REPLAYED, True)


def test_a_session_request_to_another_audience_is_authenticated() -> None:
    """A good MAC for another audience than the session's: the device is proven, the audience wrong."""
    world = make_world()
    verifier = world.verifier()
    offer = verifier.authenticate_request(world.request()).session
    assert offer is not None
    request = world.session_request(offer)
    elsewhere = dataclasses.replace(verifier.sessions.get(offer["session_id"]), audience="other.example")  # type: ignore[union-attr]
    verifier.sessions.put(elsewhere)  # type: ignore[union-attr]
    refusal = refused(verifier, request)
    assert (refusal.reason, refusal.authenticated) == (Reason.WRONG_AUDIENCE, True)


class _Portal:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == REPORT_PATH
        self.events += json.loads(request.content)["events"]
        return httpx.Response(201, json={})


def test_the_reporter_does_not_report_a_refusal_whose_did_is_unproven() -> None:
    """A forged request's refusal names a victim's DID: not reported as that device's."""
    world = make_world()
    portal = _Portal()
    reporter = AuthenticationReporter(
        "https://portal.test", "t", "svc", transport=httpx.MockTransport(portal.handler)
    )
    reporter.observe(refused(world.verifier(sessions=False), _forged(world)))
    reporter.flush()
    assert portal.events == []


def test_the_reporter_reports_a_refusal_whose_did_is_proven() -> None:
    """A revoked device's own request is reported as its refusal."""
    world = make_world()
    world.ledger.set_status(world.issuer, LIST, INDEX)
    portal = _Portal()
    reporter = AuthenticationReporter(
        "https://portal.test", "t", "svc", transport=httpx.MockTransport(portal.handler)
    )
    reporter.observe(refused(world.verifier(sessions=False), world.request()))
    reporter.flush()
    assert [(e["did"], e["reason"]) for e in portal.events] == [(world.device, "revoked")]


def test_the_reporter_reports_an_unproven_refusal_under_the_did_the_caller_gives() -> None:
    """A DID the caller passes (it vouches for it) is used for a refusal whose own DID is unproven."""
    portal = _Portal()
    reporter = AuthenticationReporter(
        "https://portal.test", "t", "svc", transport=httpx.MockTransport(portal.handler)
    )
    reporter.observe(Refused(Reason.BAD_SIGNATURE, "no", did="did:trellis:x:claimed"), "did:trellis:x:known")
    reporter.flush()
    assert [e["did"] for e in portal.events] == ["did:trellis:x:known"]
