"""Certified snapshots: saved with proofs, checked against the trust anchor on load, refused when too stale."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.did_registry.node.conftest import make_node
from tests.verifier.conftest_ledger import AUDIENCE, Ledger, ledger  # noqa: F401
from verifier import InvalidSnapshot, NetworkTrust, Policy, Reason, Refused, Verifier


def _warm(ledger: Ledger, verifier: Verifier, *devices: object) -> None:  # noqa: F811
    for device in devices:
        answer = ledger.present(device, verifier.challenge(AUDIENCE))  # type: ignore[arg-type]
        verifier.authenticate_presentation(answer, AUDIENCE)


def offline(ledger: Ledger) -> NetworkTrust:  # noqa: F811
    """Trust in the network with no node to ask."""
    return NetworkTrust("testnet", (), ledger.genesis)


def test_a_snapshot_runs_offline(ledger: Ledger, tmp_path: Path) -> None:  # noqa: F811
    """Devices seen before the snapshot authenticate offline from it; unseen ones cannot be checked."""
    device, unseen = ledger.enrol(), ledger.enrol()
    path = tmp_path / "snapshot.json"
    with ledger.verifier() as online:
        _warm(ledger, online, device)
        online.save_snapshot(path)
    with Verifier.from_snapshot(path, [offline(ledger)], clock=ledger.clock) as edge:
        assert edge.staleness() < 1
        result = edge.authenticate_presentation(ledger.present(device, edge.challenge(AUDIENCE)), AUDIENCE)
        assert result.did == device.did and result.height >= 1
        with pytest.raises(Refused) as refused:
            edge.authenticate_presentation(ledger.present(unseen, edge.challenge(AUDIENCE)), AUDIENCE)
        assert refused.value.reason is Reason.LEDGER_UNAVAILABLE


def test_an_old_snapshot_is_too_stale(ledger: Ledger, tmp_path: Path) -> None:  # noqa: F811
    """Past offline_max_staleness, an offline verifier refuses every device as too_stale, and says how stale."""
    device = ledger.enrol()
    path = tmp_path / "snapshot.json"
    with ledger.verifier() as online:
        _warm(ledger, online, device)
        online.save_snapshot(path)
    ledger.clock.advance(120)
    policy = Policy(offline_max_staleness=60)
    with Verifier.from_snapshot(path, [offline(ledger)], policy, clock=ledger.clock) as edge:
        assert 119 <= edge.staleness() <= 121
        with pytest.raises(Refused) as refused:
            edge.authenticate_presentation(ledger.present(device, edge.challenge(AUDIENCE)), AUDIENCE)
        assert refused.value.reason is Reason.TOO_STALE


@pytest.mark.parametrize("part", ["value", "proof", "certificate", "header"])
def test_a_tampered_snapshot_is_refused(ledger: Ledger, tmp_path: Path, part: str) -> None:  # noqa: F811
    """Changing a record, its proof, the certificate or the header makes the snapshot fail to load."""
    device = ledger.enrol()
    path = tmp_path / "snapshot.json"
    with ledger.verifier() as online:
        _warm(ledger, online, device)
        online.save_snapshot(path)
    data = json.loads(path.read_text())
    section = data["networks"][0]["sections"][0]
    record = next(r for r in section["records"] if r["key"] == f"did:{device.did}")
    if part == "value":
        record["value"]["deactivated"] = True
    elif part == "proof":
        # another key's proof, and not one that is the same proof: an absent key whose path ends at
        # this record's leaf (1 chance in 16 here) has a byte-identical proof, still valid for it
        other = next(
            r for r in section["records"] if r["key"] != record["key"] and r["proof"] != record["proof"]
        )
        record["proof"] = other["proof"]
    elif part == "certificate":
        section["certificate"]["signatures"][0]["signature"] = section["certificate"]["signatures"][0][
            "signature"
        ][:-4] + (
            "1111" if not section["certificate"]["signatures"][0]["signature"].endswith("1111") else "2222"
        )
    else:
        section["header"]["state_root"] = "00" * 32
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidSnapshot):
        Verifier.from_snapshot(path, [offline(ledger)], clock=ledger.clock)


def test_a_snapshot_of_another_network_is_refused(ledger: Ledger, tmp_path: Path) -> None:  # noqa: F811
    """A snapshot checked against another trust anchor (another genesis) does not load."""
    device = ledger.enrol()
    path = tmp_path / "snapshot.json"
    with ledger.verifier() as online:
        _warm(ledger, online, device)
        online.save_snapshot(path)
    stranger = make_node()
    try:
        with pytest.raises(InvalidSnapshot):
            Verifier.from_snapshot(path, [NetworkTrust("testnet", (), stranger.service.app.genesis)])
    finally:
        stranger.service.stop()


def test_a_reloaded_snapshot_catches_up_with_the_ledger(ledger: Ledger, tmp_path: Path) -> None:  # noqa: F811
    """Back online, a verifier started from a snapshot applies the blocks since: a later revocation counts."""
    device = ledger.enrol()
    path = tmp_path / "snapshot.json"
    with ledger.verifier() as online:
        _warm(ledger, online, device)
        online.save_snapshot(path)
    ledger.revoke(device)
    trust = NetworkTrust(
        "testnet", ("http://node-1",), ledger.genesis, transport=httpx.WSGITransport(app=ledger.node.app)
    )
    with Verifier.from_snapshot(path, [trust], clock=ledger.clock, follow=False) as back:
        back.caches["testnet"].catch_up()
        with pytest.raises(Refused) as refused:
            back.authenticate_presentation(ledger.present(device, back.challenge(AUDIENCE)), AUDIENCE)
        assert refused.value.reason is Reason.REVOKED


def test_entries_a_block_dropped_are_still_in_the_next_snapshot(ledger: Ledger, tmp_path: Path) -> None:  # noqa: F811
    """A revocation drops the cached status list; a snapshot taken before any read brings it back still
    proves the list (as it is now), so the edge verifier started from it decides offline for both devices."""
    device, revoked = ledger.enrol(), ledger.enrol()
    path = tmp_path / "snapshot.json"
    with ledger.verifier(follow=False) as online:
        _warm(ledger, online, device, revoked)
        ledger.revoke(revoked)
        online.caches["testnet"].catch_up()  # the block drops the list from the cache
        online.save_snapshot(path)
    with Verifier.from_snapshot(path, [offline(ledger)], clock=ledger.clock) as edge:
        edge.authenticate_presentation(ledger.present(device, edge.challenge(AUDIENCE)), AUDIENCE)
        with pytest.raises(Refused) as refused:
            edge.authenticate_presentation(ledger.present(revoked, edge.challenge(AUDIENCE)), AUDIENCE)
        assert refused.value.reason is Reason.REVOKED
