"""Certified snapshots: saved with proofs, checked against the trust anchor on load, refused when too stale."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from did_registry.client import LedgerClient, LedgerUnavailable
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.application import LedgerApplication
from did_registry.ledger.storage.memory import MemoryLedgerStore
from did_registry.node.api import create_app
from did_registry.node.service import NodeService
from tests.did_registry.ledger.conftest import make_genesis, new_actor
from tests.did_registry.node.conftest import Node, make_node
from tests.verifier.conftest_ledger import AUDIENCE, Clock, Ledger, onboard_issuer
from verifier import InvalidSnapshot, NetworkTrust, Policy, Reason, Refused, Verifier
from verifier.snapshot import SNAPSHOT_FORMAT

DAY = 86400.0


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    """A running one-validator node with an accredited issuer, stamping each block with the test's
    clock (a snapshot is never fresher than its head's time, so that time must be the verifier's)."""
    clock = Clock()
    trustee, validator_key = new_actor(), Ed25519PrivateKey.generate()
    service = NodeService(
        LedgerApplication(MemoryLedgerStore(), make_genesis(trustee, validator_key)),
        validator_id="node-1",
        validator_key=validator_key,
        block_interval=0.005,
        clock=lambda: datetime.fromtimestamp(clock(), UTC),
    )
    app = create_app(service, heartbeat_s=0.2)
    node = Node(service, app, app.test_client(), trustee, validator_key)
    service.start()
    client = LedgerClient("http://node-1", service.app.genesis, transport=httpx.WSGITransport(app=app))
    try:
        yield Ledger(node, client, onboard_issuer(trustee, client), clock)
    finally:
        client.close()
        service.stop()


def _warm(ledger: Ledger, verifier: Verifier, *devices: object) -> None:
    for device in devices:
        answer = ledger.present(device, verifier.challenge(AUDIENCE))  # type: ignore[arg-type]
        verifier.authenticate_presentation(answer, AUDIENCE)


def offline(ledger: Ledger) -> NetworkTrust:
    """Trust in the network with no node to ask."""
    return NetworkTrust("testnet", (), ledger.genesis)


def test_a_snapshot_runs_offline(ledger: Ledger, tmp_path: Path) -> None:
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


def test_an_old_snapshot_is_too_stale(ledger: Ledger, tmp_path: Path) -> None:
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
def test_a_tampered_snapshot_is_refused(ledger: Ledger, tmp_path: Path, part: str) -> None:
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


def test_a_snapshot_of_another_network_is_refused(ledger: Ledger, tmp_path: Path) -> None:
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


def test_a_reloaded_snapshot_catches_up_with_the_ledger(ledger: Ledger, tmp_path: Path) -> None:
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


def test_entries_a_block_dropped_are_still_in_the_next_snapshot(ledger: Ledger, tmp_path: Path) -> None:
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


def _saved(ledger: Ledger, path: Path, *devices: object) -> None:
    """Save a snapshot of a verifier that has seen ``devices``."""
    with ledger.verifier() as online:
        _warm(ledger, online, *devices)
        online.save_snapshot(path)


def _edit(path: Path, change: Callable[[dict[str, object]], None]) -> None:
    """Apply ``change`` to the first network of the snapshot at ``path``."""
    data = json.loads(path.read_text())
    change(data["networks"][0])
    path.write_text(json.dumps(data))


def test_sections_proven_against_different_blocks_are_refused(ledger: Ledger, tmp_path: Path) -> None:
    """An older (still certified) section spliced into a newer snapshot makes it fail to load, naming why."""
    device = ledger.enrol()
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    with ledger.verifier() as online:
        _warm(ledger, online, device)
        online.save_snapshot(old)
        ledger.revoke(device)
        online.caches["testnet"].catch_up()
        online.save_snapshot(new)  # honest: proves the revocation
    older = json.loads(old.read_text())["networks"][0]["sections"]
    _edit(new, lambda network: network["sections"].extend(older))  # type: ignore[attr-defined]
    with pytest.raises(InvalidSnapshot, match="different blocks"):
        Verifier.from_snapshot(new, [offline(ledger)], clock=ledger.clock)


def _around_a_revocation(ledger: Ledger, tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The snapshot item of the network before and after a seen device's revocation (both honest)."""
    device = ledger.enrol()
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    with ledger.verifier() as online:
        _warm(ledger, online, device)
        online.save_snapshot(old)
        ledger.revoke(device)
        online.caches["testnet"].catch_up()
        online.save_snapshot(new)
    return json.loads(old.read_text())["networks"][0], json.loads(new.read_text())["networks"][0]


@pytest.mark.parametrize("older_first", [False, True])
def test_a_snapshot_naming_a_network_twice_is_refused(
    ledger: Ledger, tmp_path: Path, older_first: bool
) -> None:
    """A second item for the same network, from an older snapshot, passes the splice check on its own
    but would put the revoked credential back: the whole file is refused, naming the network."""
    older, newer = _around_a_revocation(ledger, tmp_path)
    path = tmp_path / "twice.json"
    items = [older, newer] if older_first else [newer, older]
    path.write_text(json.dumps({"format": SNAPSHOT_FORMAT, "networks": items}))
    with pytest.raises(InvalidSnapshot, match="names network 'testnet' more than once"):
        Verifier.from_snapshot(path, [offline(ledger)], clock=ledger.clock)


def test_a_snapshot_that_proves_no_block_is_refused(ledger: Ledger, tmp_path: Path) -> None:
    """A network with no section claims freshness with nothing certified behind it: refused."""
    path = tmp_path / "snapshot.json"
    _saved(ledger, path)
    _edit(path, lambda network: network.update(sections=[]))  # type: ignore[attr-defined]
    with pytest.raises(InvalidSnapshot, match="proves nothing"):
        Verifier.from_snapshot(path, [offline(ledger)], clock=ledger.clock)


def test_a_rewritten_confirmed_at_does_not_make_an_old_snapshot_fresh(ledger: Ledger, tmp_path: Path) -> None:
    """A day-old snapshot whose confirmed_at is set to now is as stale as its head's certified time
    (less the clock skew, or the block age allowed, whichever is less)."""
    path = tmp_path / "snapshot.json"
    _saved(ledger, path, ledger.enrol())
    ledger.clock.advance(DAY)
    _edit(path, lambda network: network.update(confirmed_at=ledger.clock()))  # type: ignore[attr-defined]
    policy = Policy()
    allowed = min(policy.clock_skew, policy.max_block_age or policy.clock_skew)
    with Verifier.from_snapshot(path, [offline(ledger)], policy, clock=ledger.clock) as edge:
        assert DAY - allowed - 1 <= edge.staleness() <= DAY - allowed + 1


def test_a_confirmed_at_that_is_not_a_finite_number_is_refused(ledger: Ledger, tmp_path: Path) -> None:
    """NaN compares false with every time (it read as staleness 0): the snapshot is refused instead."""
    path = tmp_path / "snapshot.json"
    _saved(ledger, path)
    _edit(path, lambda network: network.update(confirmed_at=float("nan")))  # type: ignore[attr-defined]
    with pytest.raises(InvalidSnapshot, match="confirmation time"):
        Verifier.from_snapshot(path, [offline(ledger)], clock=ledger.clock)


def test_a_quiet_network_s_snapshot_is_as_old_as_its_last_block(ledger: Ledger, tmp_path: Path) -> None:
    """An honest confirmed_at later than the head's time plus the clock skew is capped there, not refused."""
    device = ledger.enrol()
    ledger.clock.advance(600)  # no block for ten minutes
    path = tmp_path / "snapshot.json"
    policy = Policy(offline_max_staleness=DAY, max_block_age=None)  # a network silent while idle
    with ledger.verifier(policy) as online:
        _warm(ledger, online, device)
        online.save_snapshot(path)
    with Verifier.from_snapshot(path, [offline(ledger)], policy, clock=ledger.clock) as edge:
        assert 600 - policy.clock_skew - 1 <= edge.staleness() <= 600 - policy.clock_skew + 1


class _MovingHead(httpx.BaseTransport):
    """The node's transport; while ``moves`` is above 0, each proof answer is followed by a new block."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger, self.inner, self.moves = ledger, ledger.transport(), 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if self.moves > 0 and request.method == "POST" and request.url.path == "/proofs/state":
            self.moves -= 1
            response.read()
            self.ledger.enrol()
        return response


def _saver(ledger: Ledger, transport: _MovingHead) -> Verifier:
    trust = NetworkTrust("testnet", ("http://node-1",), ledger.genesis, transport=transport)
    return Verifier([trust], follow=False, clock=ledger.clock)


def test_saved_sections_are_proven_against_one_head_while_it_moves_on(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block committed between two batches of proofs: the batches left behind are proven again."""
    monkeypatch.setattr("verifier.snapshot._BATCH", 2)
    transport = _MovingHead(ledger)
    path = tmp_path / "snapshot.json"
    with _saver(ledger, transport) as online:
        _warm(ledger, online, ledger.enrol())
        transport.moves = 1
        online.save_snapshot(path)
    sections = json.loads(path.read_text())["networks"][0]["sections"]
    assert len(sections) > 1 and all(s["header"] == sections[-1]["header"] for s in sections)


def test_saving_gives_up_when_the_head_never_holds_still(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new block after every batch, round after round: no snapshot is written, LedgerUnavailable says why."""
    monkeypatch.setattr("verifier.snapshot._BATCH", 2)
    transport = _MovingHead(ledger)
    path = tmp_path / "snapshot.json"
    with _saver(ledger, transport) as online:
        _warm(ledger, online, ledger.enrol())
        transport.moves = 1000
        with pytest.raises(LedgerUnavailable, match="moved on"):
            online.save_snapshot(path)
    assert not path.exists()
