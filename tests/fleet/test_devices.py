"""A simulated device's ground truth (fleet.devices): what a verifier at a given height must decide."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_trellis import trellis_did
from fleet.devices import Change, SimulatedDevice, Standing
from wallet.device import Challenge
from wallet.proofs.eddsa_jcs_2022 import verify_proof


def _device() -> SimulatedDevice:
    key = Ed25519PrivateKey.generate()
    return SimulatedDevice(str(trellis_did("fleet", key.public_key)), key, {"id": "urn:uuid:1"})


def test_a_device_without_changes_must_be_admitted() -> None:
    assert _device().standing(10, ended=5.0) is Standing.ADMIT


def test_a_revocation_binds_a_verifier_from_its_block_on() -> None:
    device = _device()
    device.committed(device.record(Change("revocation", submitted=1.0)), height=12)
    assert device.standing(12, ended=2.0) is Standing.REFUSE
    assert device.standing(30, ended=2.0) is Standing.REFUSE


def test_before_its_block_a_verifier_may_decide_either_way() -> None:
    device = _device()
    device.committed(device.record(Change("suspension", submitted=1.0)), height=12)
    assert device.standing(11, ended=2.0) is Standing.EITHER


def test_a_change_submitted_after_the_answer_does_not_count() -> None:
    device = _device()
    device.committed(device.record(Change("quarantine", submitted=9.0)), height=12)
    assert device.standing(5, ended=8.0) is Standing.ADMIT


def test_an_unacknowledged_change_leaves_the_decision_open() -> None:
    device = _device()
    device.record(Change("revocation", submitted=1.0))
    assert device.standing(40, ended=2.0) is Standing.EITHER


def test_a_reinstatement_makes_the_device_legitimate_again_from_its_block_on() -> None:
    device = _device()
    device.committed(device.record(Change("suspension", submitted=1.0)), height=10)
    device.committed(device.record(Change("reinstatement", submitted=3.0)), height=14)
    assert device.standing(12, ended=2.0) is Standing.REFUSE
    assert device.standing(14, ended=4.0) is Standing.ADMIT
    assert not device.blocked


def test_a_verifier_behind_a_reinstatement_may_have_read_the_list_afresh() -> None:
    """Suspended at 10 and reinstated at 14: a verifier at height 12 may admit (a fresh read of the
    list sees the reinstatement) once the reinstatement was submitted, and must refuse before."""
    device = _device()
    device.committed(device.record(Change("suspension", submitted=1.0)), height=10)
    device.committed(device.record(Change("reinstatement", submitted=3.0)), height=14)
    assert device.standing(12, ended=4.0) is Standing.EITHER
    assert device.standing(12, ended=2.0) is Standing.REFUSE


def test_a_revocation_is_never_lifted_by_a_reinstatement_of_the_suspension() -> None:
    device = _device()
    device.committed(device.record(Change("suspension", submitted=1.0)), height=10)
    device.committed(device.record(Change("revocation", submitted=1.5)), height=11)
    device.committed(device.record(Change("reinstatement", submitted=3.0)), height=14)
    assert device.standing(12, ended=4.0) is Standing.REFUSE


def test_a_rotation_moves_to_the_next_key_and_ends_sessions() -> None:
    device = _device()
    device.sessions["telemetry"] = object()  # type: ignore[assignment]
    device.rotate(Ed25519PrivateKey.generate(), submitted=1.0, height=7)
    assert device.verification_method.endswith("#key-2")
    assert device.sessions == {}
    assert device.rotating(6, ended=2.0)
    assert not device.rotating(7, ended=2.0)


def test_the_device_answers_a_challenge_with_a_presentation_signed_by_its_current_key() -> None:
    device = _device()
    device.rotate(Ed25519PrivateKey.generate(), submitted=1.0, height=3)
    challenge = Challenge("n-1", "127.0.0.1:9", datetime.now(UTC) + timedelta(minutes=1))
    presentation = device.answer(challenge)
    keys = {device.verification_method: device.key.public_key}
    verified = verify_proof(
        presentation,
        lambda method, _purpose: keys[method],
        expected_purpose="authentication",
        challenge="n-1",
        domain="127.0.0.1:9",
    )
    assert verified.verification_method == device.verification_method
    assert presentation["verifiableCredential"] == [device.credential]
