"""A credential is let in only if its issuer is accredited for each type of it the policy accepts, and
the service is told only the types vouched for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.verifier.lifetime_world import INDEX, World, make_world, refused
from verifier import Policy, Reason
from wallet.credential import build_credential
from wallet.device_client import encode_device_credential
from wallet.proofs.eddsa_jcs_2022 import ProofOptions, add_proof

BOTH = Policy(credential_types=("DeviceCredential", "AdminCredential"))


def _credential(world: World, types: list[str]) -> str:
    """The device's credential header, of ``types``, issued by the world's issuer."""
    now = datetime.fromtimestamp(world.clock(), UTC)
    url = world.credential["credentialStatus"]["statusListCredential"]
    entry = {"id": f"{url}#{INDEX}", "type": "BitstringStatusListEntry", "statusPurpose": "revocation",
             "statusListIndex": str(INDEX), "statusListCredential": url}  # fmt: skip
    document = build_credential(
        issuer=world.issuer, subject={"id": world.device}, types=types,
        valid_from=now - timedelta(minutes=1), valid_until=now + timedelta(hours=1), status=entry,
    )  # fmt: skip
    options = ProofOptions(f"{world.issuer}#key-1", "assertionMethod", created=now)
    return encode_device_credential(add_proof(document, world.issuer_key, options))


def test_a_type_the_issuer_is_not_accredited_for_refuses_the_credential() -> None:
    world = make_world()  # the issuer is accredited for DeviceCredential only
    world.header = _credential(world, ["DeviceCredential", "AdminCredential"])
    verifier = world.ledger.verifier(BOTH, clock=world.clock)
    refusal = refused(verifier, world.request())
    assert refusal.reason is Reason.ISSUER_NOT_ACCREDITED
    assert "AdminCredential" in refusal.detail and "DeviceCredential" not in refusal.detail


def test_once_accredited_for_both_the_credential_is_let_in_with_both() -> None:
    world = make_world()
    world.ledger.accredit(world.issuer, ["AdminCredential"])
    world.header = _credential(world, ["DeviceCredential", "AdminCredential"])
    device = world.ledger.verifier(BOTH, clock=world.clock).authenticate_request(world.request())
    assert device.credential is not None
    assert device.credential.types == ("VerifiableCredential", "DeviceCredential", "AdminCredential")


def test_types_the_policy_does_not_accept_are_not_reported() -> None:
    world = make_world()
    world.header = _credential(world, ["DeviceCredential", "AdminCredential"])
    device = world.ledger.verifier(clock=world.clock).authenticate_request(
        world.request()
    )  # DeviceCredential
    assert device.credential is not None
    assert device.credential.types == ("VerifiableCredential", "DeviceCredential")
