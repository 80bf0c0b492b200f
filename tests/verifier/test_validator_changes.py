"""A verifier anchored in genesis goes on checking devices after the network's validators change,
online and from a snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from tests.did_registry.ledger.conftest import new_actor
from tests.did_registry.node.conftest import Node
from tests.did_registry.validator_chain import SetChangeChain
from tests.verifier.conftest_ledger import AUDIENCE, REVOCATION, SUSPENSION, Clock, Device, Ledger
from verifier import NetworkTrust, Reason, Refused, Verifier


@dataclass
class ChainLedger(Ledger):
    """The verifier tests' ledger on a four-validator chain whose blocks are committed by hand."""

    chain: SetChangeChain | None = None

    def commit(self, *txns: Any) -> None:
        assert self.chain is not None
        self.chain.block(*txns)

    def freshness_block(self) -> None:
        assert self.chain is not None
        self.chain.block()


@pytest.fixture
def ledger() -> ChainLedger:
    """Genesis v1..v4, an accredited issuer with its two lists, blocks dated by the test clock."""
    clock = Clock()
    chain = SetChangeChain(clock=lambda: datetime.fromtimestamp(clock(), UTC))
    node = Node(
        chain.service, chain.wsgi, chain.wsgi.test_client(), chain.trustee, Ed25519PrivateKey.generate()
    )
    trustee, issuer = chain.trustee, new_actor()
    chain.block(issuer.txn("did.create", {"document": issuer.document()}, trustee))
    chain.block(trustee.txn("role.grant", {"did": issuer.did, "role": "issuer"}))
    chain.block(trustee.txn("trust.accredit", {"issuer": issuer.did, "types": ["DeviceCredential"]}))
    chain.block(
        issuer.txn("status_list.create", {"list": REVOCATION, "purpose": "revocation"}),
        issuer.txn("status_list.create", {"list": SUSPENSION, "purpose": "suspension"}),
    )
    return ChainLedger(node, chain.client(), issuer, clock, chain=chain)


def change_validators(ledger: ChainLedger) -> None:
    """v5 joins, then v1 leaves: every later block is certified by a set genesis does not name."""
    chain = ledger.chain
    assert chain is not None
    chain.block(chain.add("v5", chain.height + 2))
    chain.block(chain.remove("v1", chain.height + 2))
    chain.empty_blocks(2)


def authenticate(ledger: Ledger, verifier: Verifier, device: Device) -> str:
    answer = ledger.present(device, verifier.challenge(AUDIENCE))
    return verifier.authenticate_presentation(answer, AUDIENCE).did


def test_a_revocation_certified_by_a_new_set_is_acted_on(ledger: ChainLedger) -> None:
    device = ledger.enrol()
    with ledger.verifier() as verifier:
        assert authenticate(ledger, verifier, device) == device.did
        change_validators(ledger)
        ledger.revoke(device)
        ledger.clock.advance(verifier.policy.max_staleness + 1)
        with pytest.raises(Refused) as refused:
            authenticate(ledger, verifier, device)
        assert refused.value.reason is Reason.REVOKED


def test_a_device_enrolled_after_the_change_is_let_in(ledger: ChainLedger) -> None:
    change_validators(ledger)
    device = ledger.enrol()
    with ledger.verifier() as verifier:
        assert authenticate(ledger, verifier, device) == device.did


def test_a_snapshot_taken_after_the_change_runs_offline_from_genesis_alone(
    ledger: ChainLedger, tmp_path: Path
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


def test_a_verifier_s_clients_of_one_network_share_one_trust(ledger: ChainLedger) -> None:
    """The request client, the follower and the watcher trust one set of validator sets: a change the
    follower learns from the header stream holds for the reads that prove cache misses."""
    with ledger.verifier() as verifier:
        cache = verifier.caches["testnet"]
        assert cache.client is not None and cache.follower is not None and cache.watcher is not None
        assert cache.client.trust is cache.follower.trust is cache.watcher.trust
