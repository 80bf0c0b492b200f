"""A verifier anchored in genesis goes on checking devices after the network's validators change,
online and from a snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.verifier.hostile_chain import HandChain, authenticate, hand_chain
from verifier import NetworkTrust, Reason, Refused, Verifier


@pytest.fixture
def ledger() -> HandChain:
    """Genesis v1..v4, an accredited issuer with its two lists, blocks dated by the test clock."""
    return hand_chain()


def change_validators(ledger: HandChain) -> None:
    """v5 joins, then v1 leaves: every later block is certified by a set genesis does not name."""
    chain = ledger.chain
    assert chain is not None
    chain.block(chain.add("v5", chain.height + 2))
    chain.block(chain.remove("v1", chain.height + 2))
    chain.empty_blocks(2)


def test_a_revocation_certified_by_a_new_set_is_acted_on(ledger: HandChain) -> None:
    device = ledger.enrol()
    with ledger.verifier() as verifier:
        assert authenticate(ledger, verifier, device) == device.did
        change_validators(ledger)
        ledger.revoke(device)
        ledger.clock.advance(verifier.policy.max_staleness + 1)
        with pytest.raises(Refused) as refused:
            authenticate(ledger, verifier, device)
        assert refused.value.reason is Reason.REVOKED


def test_a_device_enrolled_after_the_change_is_let_in(ledger: HandChain) -> None:
    change_validators(ledger)
    device = ledger.enrol()
    with ledger.verifier() as verifier:
        assert authenticate(ledger, verifier, device) == device.did


def test_a_snapshot_taken_after_the_change_runs_offline_from_genesis_alone(
    ledger: HandChain, tmp_path: Path
) -> None:
    change_validators(ledger)
    device = ledger.enrol()
    path = tmp_path / "snapshot.json"
    with ledger.verifier() as online:
        authenticate(ledger, online, device)
        online.save_snapshot(path)
    offline = NetworkTrust("testnet", (), ledger.genesis)
    with Verifier.from_snapshot(path, [offline], clock=ledger.clock) as edge:
        assert authenticate(ledger, edge, device) == device.did


def test_a_verifier_s_clients_of_one_network_share_one_trust(ledger: HandChain) -> None:
    """The request client, the follower and the watcher trust one set of validator sets: a change the
    follower learns from the header stream holds for the reads that prove cache misses."""
    with ledger.verifier() as verifier:
        cache = verifier.caches["testnet"]
        assert cache.client is not None and cache.follower is not None and cache.watcher is not None
        assert cache.client.trust is cache.follower.trust is cache.watcher.trust
