"""A real four-validator PBFT network behind relays: partitions, kills, slow links and cut-off services."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from did_registry.client import LedgerClient
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_trellis import initial_document, trellis_did
from did_registry.ledger.txn import Transaction
from fleet.errors import NetworkFault
from fleet.network import FleetNetwork
from wallet.keystore import Keystore

CONSENSUS = {"view_change_timeout": 1.0, "view_change_timeout_max": 4.0}
COMMIT_TIMEOUT = 30.0  # a view change after a lost primary takes a few seconds; this bounds it


class Trustee:
    """Writes to the network: each call commits a did.create the genesis trustee endorses."""

    def __init__(self, net: FleetNetwork) -> None:
        self.net = net
        self.genesis: dict[str, Any] = json.loads((net.directory / "genesis.json").read_text())
        self.keystore = Keystore.open(net.directory / "trustee.key", net.passphrase)
        assert self.keystore.did is not None
        self.did: str = self.keystore.did

    def create_did(self, node_ids: list[str]) -> None:
        """Submit one did.create through ``node_ids`` and wait until it is committed."""
        key = Ed25519PrivateKey.generate()
        did = str(trellis_did(self.net.network, key.public_key))
        document = initial_document(did, key.public_key).to_json()
        txn = Transaction.build(
            "did.create", network=self.net.network, submitter=did, nonce=1, body={"document": document}
        )
        txn = txn.signed(key, f"{did}#key-1").signed(self.keystore.current_key, f"{self.did}#key-1")
        urls = [self.net.url(node_id) for node_id in node_ids]
        with LedgerClient(urls, self.genesis, timeout=5) as client:
            client.submit_and_wait(txn, timeout=COMMIT_TIMEOUT)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetNetwork]:
    """Four PBFT validators behind relays, shared by this module's tests."""
    with FleetNetwork(tmp_path_factory.mktemp("fleet") / "net", 4, consensus=CONSENSUS) as network:
        yield network


@pytest.fixture
def trustee(net: FleetNetwork) -> Iterator[Trustee]:
    """The trustee; after the test, every fault is undone and the nodes have converged again."""
    yield Trustee(net)
    for node_id in net.node_ids:
        if node_id not in net.running():
            net.restart(node_id)
        net.heal(node_id)
        net.unslow(node_id)
    net.restore_services()
    net.wait_converged(COMMIT_TIMEOUT)
    net.wait_connected(COMMIT_TIMEOUT)  # redialing after a heal backs off for up to 10 s


def _others(net: FleetNetwork, node_id: str) -> list[str]:
    return [n for n in net.node_ids if n != node_id]


def _pairs_of(net: FleetNetwork, node_id: str) -> list[tuple[str, str]]:
    return [pair for other in _others(net, node_id) for pair in ((node_id, other), (other, node_id))]


def _backup(net: FleetNetwork) -> str:
    primary = net.primary()
    return next(n for n in reversed(net.node_ids) if n != primary)


def _wait_for(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


def test_peers_are_relays(net: FleetNetwork) -> None:
    """Every node's configuration names a relay of its own for each peer's consensus address and API."""
    ports = set()
    for node_id in net.node_ids:
        text = (net.directory / f"{node_id}.toml").read_text()
        for peer_id in _others(net, node_id):
            for kind in ("address", "api"):
                relay = net.relay(kind, node_id, peer_id)
                assert f":{relay.port}" in text
                ports.add(relay.port)
    assert len(ports) == 2 * 4 * 3  # one relay per ordered pair and kind


def test_consensus_runs_through_relays(net: FleetNetwork, trustee: Trustee) -> None:
    """Each pair of validators holds its consensus connection through the dialer's relay."""
    trustee.create_did(net.node_ids)
    pairs = [(a, b) for a in net.node_ids for b in net.node_ids if a < b]  # the lower id dials
    _wait_for(
        lambda: net.relayed_consensus() == pairs, "a consensus connection through each pair's relay", 5.0
    )


def test_partitioned_backup_falls_behind_and_catches_up(net: FleetNetwork, trustee: Trustee) -> None:
    """The three others keep committing without a partitioned backup, which catches up once healed."""
    backup = _backup(net)
    others = _others(net, backup)
    net.partition(backup)
    for _ in range(3):
        trustee.create_did(others)
    time.sleep(1.0)  # time for anything that leaks through the partition to arrive
    heads = net.heads()
    for _ in range(20):  # an empty block may land between two reads (docs/consensus.md § 9a)
        if len({heads[n]["height"] for n in others}) == 1:
            break
        time.sleep(0.1)
        heads = net.heads()
    assert len({heads[n]["height"] for n in others}) == 1
    assert heads[backup]["height"] < heads[others[0]]["height"]
    net.heal(backup)
    converged = net.wait_converged(COMMIT_TIMEOUT)
    assert converged[backup] == converged[others[0]]
    assert converged[backup]["height"] >= heads[others[0]]["height"]


def test_wait_converged_names_the_node_behind(net: FleetNetwork, trustee: Trustee) -> None:
    """wait_converged raises NetworkFault naming a node that cannot catch up."""
    backup = _backup(net)
    net.partition(backup)
    trustee.create_did(_others(net, backup))
    with pytest.raises(NetworkFault, match=f"{backup} at height"):
        net.wait_converged(timeout=1.0)


@pytest.mark.parametrize("fault", ["kill", "partition"])
def test_others_commit_without_the_primary(net: FleetNetwork, trustee: Trustee, fault: str) -> None:
    """With the primary killed or partitioned, the others change view and commit again."""
    primary = net.primary()
    others = _others(net, primary)
    if fault == "kill":
        net.kill(primary)
        assert primary not in net.running()
    else:
        net.partition(primary)
    trustee.create_did(others)
    if fault == "kill":
        assert net.primary() != primary
    else:
        assert net.primary() in others  # the majority of nodes names a new primary


def test_restarted_node_catches_up(net: FleetNetwork, trustee: Trustee) -> None:
    """A node killed with SIGKILL and restarted on its files catches up with the others."""
    backup = _backup(net)
    net.kill(backup)
    trustee.create_did(_others(net, backup))
    net.restart(backup)
    heads = net.wait_converged(COMMIT_TIMEOUT)
    assert set(heads) == set(net.node_ids)


def test_network_commits_with_a_slow_primary(net: FleetNetwork, trustee: Trustee) -> None:
    """With every link of the primary delayed both ways, transactions still commit; unslow removes it."""
    primary = net.primary()
    links = [net.relay(kind, a, b) for kind in ("address", "api") for a, b in _pairs_of(net, primary)]
    net.slow(primary, 0.25)
    assert {relay.delay for relay in links} == {0.25}
    for _ in range(3):
        trustee.create_did([_backup(net)])  # forwarded to the primary, which proposes it
    net.unslow(primary)
    assert {relay.delay for relay in links} == {0.0}


def test_cut_services_leaves_direct_urls(net: FleetNetwork, trustee: Trustee) -> None:
    """cut_services makes every service URL unreachable while the direct URLs still answer."""
    net.cut_services()
    for url in net.service_urls:
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/health", timeout=3)
    for url in net.urls:
        assert httpx.get(f"{url}/health", timeout=3).status_code == 200
    net.restore_services()
    for url in net.service_urls:
        assert httpx.get(f"{url}/health", timeout=3).json()["status"] == "ok"


def test_one_service_can_be_cut_off_while_another_keeps_the_ledger(net: FleetNetwork) -> None:
    """Each service reads through relays of its own; cutting one leaves the other's links alone."""
    telemetry, firmware = net.service_urls_for("telemetry"), net.service_urls_for("firmware")
    assert not set(telemetry) & set(firmware)
    net.cut_services("telemetry")
    try:
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{telemetry[0]}/health", timeout=3)
        assert httpx.get(f"{firmware[0]}/health", timeout=3).status_code == 200
    finally:
        net.restore_services("telemetry")
    assert httpx.get(f"{telemetry[0]}/health", timeout=3).status_code == 200
    with pytest.raises(NetworkFault, match="billing"):
        net.cut_services("billing")


def test_unknown_node_is_refused(net: FleetNetwork) -> None:
    """A fault on a node id the network does not have raises NetworkFault naming it."""
    with pytest.raises(NetworkFault, match="node-9"):
        net.partition("node-9")


def test_stop_leaves_no_process_or_thread(tmp_path: Path) -> None:
    """stop() ends every node process and the relay thread; faults before start() are refused."""
    network = FleetNetwork(tmp_path / "solo", 1, network="solo")
    with pytest.raises(NetworkFault, match="not started"):
        network.partition("node-1")
    before = set(threading.enumerate())
    with network:
        assert network.running() == ["node-1"]
        assert httpx.get(f"{network.service_urls[0]}/health", timeout=3).status_code == 200
        relay_threads = {t for t in threading.enumerate() if t.name == "fleet-relays"} - before
        assert len(relay_threads) == 1
    assert network.running() == []
    assert not any(t.is_alive() for t in relay_threads)
