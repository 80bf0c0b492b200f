"""Within a session, the issuer-side checks of the credential it was opened with are done again
whenever the verifier's caches change: a change the full check would refuse ends the session."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_document import DIDDocument
from did_registry.identity.did_document_builder import DIDDocumentBuilder
from did_registry.identity.resolution import DIDKeyResolver, DocumentMetadata, ResolutionResult
from tests.verifier.conftest import Clocked
from tests.verifier.lifetime_world import World, make_world, refused
from tests.verifier.test_sessions import make_session
from verifier import MemorySessionStore, Policy, Reason, RedisSessionStore, Session
from wallet.credential import build_credential
from wallet.device_client import encode_device_credential
from wallet.holder import did_key_identity
from wallet.proofs.eddsa_jcs_2022 import ProofOptions, add_proof


def _moved_assertion_key(world: World) -> None:
    """The issuer keeps key-1 for authentication only; its assertion key is now a new key-2."""
    builder = DIDDocumentBuilder(world.issuer)
    builder.add_verification_method(
        world.issuer_key.public_key,
        fragment="key-1",
        relationships=("authentication", "capabilityInvocation"),
    )
    builder.add_verification_method(
        Ed25519PrivateKey.generate().public_key, fragment="key-2", relationships=("assertionMethod",)
    )
    world.ledger.update(world.issuer, builder.build())


CHANGES = {
    "withdrawn": lambda world: world.ledger.withdraw(world.issuer),
    "deactivated": lambda world: world.ledger.deactivate(world.issuer),
    "assertion key moved": _moved_assertion_key,
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_session_ends_when_its_issuer_changes(change: str) -> None:
    """The issuer losing its accreditation, deactivated, or its proof key no longer an assertion key:
    the next request in the session is refused session_ended."""
    world = make_world()
    verifier = world.verifier()
    offer = verifier.authenticate_request(world.request()).session
    assert offer is not None
    assert verifier.authenticate_request(world.session_request(offer)).did == world.device
    CHANGES[change](world)
    assert refused(verifier, world.session_request(offer)).reason is Reason.SESSION_ENDED


def test_a_session_ended_by_its_issuer_says_what_the_full_check_refuses() -> None:
    """Later requests in a session ended by the issuer's withdrawal are told it ended, with the reason
    the full check gives (issuer_not_accredited) and its detail."""
    world = make_world()
    verifier = world.verifier()
    offer = verifier.authenticate_request(world.request()).session
    assert offer is not None
    world.ledger.withdraw(world.issuer)
    full = refused(verifier, world.request())
    refused(verifier, world.session_request(offer))
    later = refused(verifier, world.session_request(offer))
    assert later.reason is Reason.SESSION_ENDED
    assert f"{full.reason.value}: {full.detail}" in later.detail


def test_a_process_that_did_not_open_the_session_ends_it_when_its_issuer_is_withdrawn() -> None:
    """The session carries what the issuer checks need: another verifier sharing the store ends it."""
    world = make_world()
    store = MemorySessionStore(clock=world.clock)
    offer = world.verifier(store=store).authenticate_request(world.request()).session
    assert offer is not None
    other = world.verifier(store=store)
    assert other.authenticate_request(world.session_request(offer)).did == world.device
    world.ledger.withdraw(world.issuer)
    assert refused(other, world.session_request(offer)).reason is Reason.SESSION_ENDED


def test_a_session_outlasts_an_unrelated_change_to_its_issuer() -> None:
    """The issuer accredited for one more type moves the caches on, and the session goes on."""
    world = make_world()
    verifier = world.verifier()
    offer = verifier.authenticate_request(world.request()).session
    assert offer is not None
    world.ledger.accredit(world.issuer, ["MeterCredential"])
    assert verifier.authenticate_request(world.session_request(offer)).did == world.device


class _Renamed:
    """Resolves ``did:example:issuer`` to the document of a did:key renamed, deactivated when told."""

    def __init__(self, did_key: str) -> None:
        self.did_key = did_key
        self.deactivated = False

    def resolve(self, did: str, options: Any = None) -> ResolutionResult:
        document = DIDKeyResolver().resolve(self.did_key).did_document
        assert document is not None
        renamed = json.loads(json.dumps(document.to_json()).replace(self.did_key, did))
        return ResolutionResult.success(
            DIDDocument.from_json(renamed), DocumentMetadata(deactivated=self.deactivated)
        )


def test_a_session_whose_issuer_is_resolved_elsewhere_is_checked_on_every_request() -> None:
    """An issuer of another DID method is resolved again for each request in the session (no ledger
    change tells of its changes): once it resolves as deactivated, the session ends."""
    world = make_world()
    did_key, method = did_key_identity(world.issuer_key)
    resolver = _Renamed(did_key)
    issuer = "did:example:issuer"
    now = datetime.fromtimestamp(world.clock(), UTC)
    document = build_credential(
        issuer=issuer, subject={"id": world.device}, types=["DeviceCredential"],
        valid_from=now - timedelta(minutes=1), valid_until=now + timedelta(hours=1),
    )  # fmt: skip
    options = ProofOptions(f"{issuer}#{method.rpartition('#')[2]}", "assertionMethod", created=now)
    world = dataclasses.replace(
        world, header=encode_device_credential(add_proof(document, world.issuer_key, options))
    )
    verifier = world.ledger.verifier(
        Policy(issuers=(issuer,), require_revocation=False),
        clock=world.clock,
        sessions=MemorySessionStore(clock=world.clock),
        resolvers={"example": resolver},
    )
    offer = verifier.authenticate_request(world.request()).session
    assert offer is not None
    assert verifier.authenticate_request(world.session_request(offer)).did == world.device
    resolver.deactivated = True
    assert refused(verifier, world.session_request(offer)).reason is Reason.SESSION_ENDED


def _with_issuer_checks(now: float) -> Session:
    return make_session(
        now=now,
        proof_method="did:trellis:test:issuer#key-1",
        proof_key=bytes(range(32)),
        accredited_for=("DeviceCredential",),
    )


def test_a_session_keeps_its_issuer_checks_in_json() -> None:
    """to_json and from_json keep the credential proof's key and the accredited types."""
    session = _with_issuer_checks(now=1.5)
    assert Session.from_json(session.to_json()) == session


def test_a_stored_session_keeps_its_issuer_checks(
    session_store: Clocked[MemorySessionStore | RedisSessionStore],
) -> None:
    """Each store gives the session back with the credential proof's key and the accredited types."""
    session = _with_issuer_checks(now=session_store.now())
    session_store.store.put(session)
    assert session_store.store.get(session.id) == session
