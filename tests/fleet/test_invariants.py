"""Judging the services' decisions against the devices' ground truth (fleet.invariants)."""

from __future__ import annotations

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_trellis import trellis_did
from fleet.devices import Change, SimulatedDevice
from fleet.invariants import check_roots, judge_decisions
from fleet.traffic import Decision, ProbeResult


def _device() -> SimulatedDevice:
    key = Ed25519PrivateKey.generate()
    return SimulatedDevice(str(trellis_did("fleet", key.public_key)), key)


def _decision(
    device: SimulatedDevice, view: int, admitted: bool, reason: str | None = None, flow: str = "signed"
) -> Decision:
    return Decision(
        device, "telemetry", flow, started=5.0, ended=5.1, view_height=view, admitted=admitted, reason=reason
    )


def _revoked(height: int = 10) -> SimulatedDevice:
    device = _device()
    device.committed(device.record(Change("revocation", submitted=1.0)), height)
    return device


def _verdict(decisions: list[Decision], name: str, probes: list[ProbeResult] | None = None) -> bool:
    judgement = judge_decisions(decisions, probes or [])
    return next(v.ok for v in judgement.verdicts if v.name == name)


def test_right_decisions_are_not_counted() -> None:
    legitimate, revoked = _device(), _revoked()
    decisions = [
        _decision(legitimate, 12, True),
        _decision(revoked, 12, False, "revoked"),
        _decision(revoked, 9, True),
    ]
    judgement = judge_decisions(decisions, [ProbeResult("revocation", revoked.did, "telemetry", 1.0, 350.0)])
    assert judgement.wrong_decisions == 0
    assert all(v.ok for v in judgement.verdicts)


def test_admitting_a_revoked_device_at_or_after_its_block_is_wrong() -> None:
    decisions = [_decision(_revoked(10), 10, True)]
    assert judge_decisions(decisions, []).wrong_decisions == 1
    assert not _verdict(decisions, "changes refused from their block on")


def test_a_probe_that_was_never_refused_breaks_the_invariant() -> None:
    revoked = _revoked()
    probes = [ProbeResult("revocation", revoked.did, "firmware", 1.0, None)]
    assert not _verdict([], "changes refused from their block on", probes)


def test_refusing_a_legitimate_device_is_wrong_whatever_the_reason() -> None:
    decisions = [_decision(_device(), 12, False, "ledger_unavailable")]
    assert judge_decisions(decisions, []).wrong_decisions == 1
    assert not _verdict(decisions, "no legitimate device refused")


def test_a_wrong_refusal_is_reported_in_the_verifiers_own_words() -> None:
    device = _device()
    refusal = Decision(
        device, "telemetry", "signed", 5.0, 5.1, 12, False, "ledger_unavailable", "node-1: gone"
    )
    verdict = next(
        v for v in judge_decisions([refusal], []).verdicts if v.name == "no legitimate device refused"
    )
    assert f"telemetry refused {device.did} (signed) at view height 12: ledger_unavailable: node-1: gone" in (
        verdict.detail
    )


def test_a_session_sent_back_to_a_challenge_is_not_a_refusal() -> None:
    decisions = [_decision(_device(), 12, False, "session_unknown", flow="session")]
    assert judge_decisions(decisions, []).wrong_decisions == 0


def test_a_new_key_refused_by_a_verifier_behind_the_rotation_is_not_wrong_but_after_it_is() -> None:
    device = _device()
    device.rotate(Ed25519PrivateKey.generate(), submitted=2.0, height=11)
    assert judge_decisions([_decision(device, 10, False, "key_not_authorized")], []).wrong_decisions == 0
    assert judge_decisions([_decision(device, 11, False, "key_not_authorized")], []).wrong_decisions == 1


def test_an_admitted_replay_is_wrong() -> None:
    decisions = [_decision(_device(), 12, True, flow="replay")]
    assert not _verdict(decisions, "replays refused")
    assert judge_decisions(decisions, []).wrong_decisions == 1


def test_state_roots_must_be_equal_at_equal_heights() -> None:
    assert check_roots(
        {"node-1": {"height": 5, "state_root": "ab"}, "node-2": {"height": 5, "state_root": "ab"}}
    ).ok
    assert not check_roots(
        {"node-1": {"height": 5, "state_root": "ab"}, "node-2": {"height": 5, "state_root": "cd"}}
    ).ok
    assert not check_roots(
        {"node-1": {"height": 5, "state_root": "ab"}, "node-2": {"height": 6, "state_root": "ab"}}
    ).ok
