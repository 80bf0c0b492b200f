"""An in-process cluster: several nodes, each with its HTTP API (waitress) and its replica, on loopback.

Every node keeps its chain in its own store (memory, or SQLite files under a folder), talks to the
others over the real transport, and syncs from their real HTTP APIs. Stopping a node and starting
it again on the same store is a restart; :meth:`Cluster.add_observer` starts a node that is not a
validator.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from did_registry.consensus import ConsensusConfig
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.multikey import encode_ed25519_public_key
from did_registry.ledger.application import LedgerApplication
from did_registry.ledger.genesis import Genesis
from did_registry.ledger.storage.base import LedgerStore
from did_registry.ledger.storage.memory import MemoryLedgerStore
from did_registry.ledger.txn import Transaction
from did_registry.node.replica import Replica, ReplicaConfig
from did_registry.node.server import NodeServer
from did_registry.node.service import NodeService
from did_registry.transport import TransportConfig
from tests.did_registry.ledger.conftest import GENESIS_TIME, NETWORK, Actor, new_actor
from tests.ports import free_ports

__all__ = ["Cluster", "ClusterNode", "free_ports", "make_cluster_genesis"]


def make_cluster_genesis(
    engine: str, trustee: Actor, keys: dict[str, Ed25519PrivateKey], addresses: dict[str, str]
) -> Genesis:
    """A genesis with ``engine`` and the validators ``keys`` listening at ``addresses``."""
    return Genesis.from_json(
        {
            "network": NETWORK,
            "time": GENESIS_TIME,
            "consensus": {"engine": engine},
            "trustees": [trustee.document()],
            "validators": [
                {"id": i, "public_key": encode_ed25519_public_key(k.public_key), "address": addresses[i]}
                for i, k in keys.items()
            ],
        }
    )


@dataclass
class ClusterNode:
    """One node: its service, server and replica, while it runs."""

    id: str
    key: Ed25519PrivateKey
    api_port: int
    p2p_port: int
    store: LedgerStore
    service: NodeService | None = None
    server: NodeServer | None = None
    replica: Replica | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def running(self) -> bool:
        return self.server is not None


@dataclass
class Cluster:
    """Validators (and observers) of one network, in this process."""

    genesis: Genesis
    trustee: Actor
    consensus: ConsensusConfig
    nodes: dict[str, ClusterNode] = field(default_factory=dict)
    store_factory: Callable[[str], LedgerStore] = lambda _id: MemoryLedgerStore()

    @classmethod
    def create(
        cls,
        engine: str,
        n: int,
        *,
        consensus: ConsensusConfig | None = None,
        store_factory: Callable[[str], LedgerStore] | None = None,
    ) -> Cluster:
        ids = [f"node-{i}" for i in range(1, n + 1)]
        keys = {i: Ed25519PrivateKey.generate() for i in ids}
        ports = free_ports(2 * n)
        addresses = {i: f"127.0.0.1:{ports[2 * k + 1]}" for k, i in enumerate(ids)}
        trustee = new_actor()
        genesis = make_cluster_genesis(engine, trustee, keys, addresses)
        cluster = cls(genesis, trustee, consensus or _fast_config())
        if store_factory is not None:
            cluster.store_factory = store_factory
        for k, i in enumerate(ids):
            cluster.nodes[i] = ClusterNode(
                i, keys[i], ports[2 * k], ports[2 * k + 1], cluster.store_factory(i)
            )
        return cluster

    @staticmethod
    def fast_config() -> ConsensusConfig:
        """The consensus settings clusters use unless given others."""
        return _fast_config()

    def start(self, node_id: str | None = None) -> None:
        """Start one node, or all."""
        for node in [self.nodes[node_id]] if node_id else list(self.nodes.values()):
            if node.running:
                continue
            application = LedgerApplication(node.store, self.genesis)
            service = NodeService(application, validator_id=node.id, validator_key=node.key)
            peers = tuple(o.url for o in self.nodes.values() if o.id != node.id)
            node.replica = Replica(
                service,
                node.key,
                ReplicaConfig(sync_urls=peers, consensus=self.consensus, transport=TransportConfig.testing()),
            )
            node.service = service
            node.server = NodeServer(service, port=node.api_port)
            node.server.start()
            _wait_serving(node)

    def stop(self, node_id: str) -> None:
        """Stop one node (its store is kept for a restart)."""
        node = self.nodes[node_id]
        if node.server is not None:
            node.server.stop()
        node.server = node.service = node.replica = None

    def close(self) -> None:
        for node_id in list(self.nodes):
            self.stop(node_id)

    def add_observer(self, node_id: str) -> ClusterNode:
        """A node that is not a validator, following the others."""
        port, p2p = free_ports(2)
        node = ClusterNode(node_id, Ed25519PrivateKey.generate(), port, p2p, self.store_factory(node_id))
        self.nodes[node_id] = node
        self.start(node_id)
        return node

    def running(self) -> list[ClusterNode]:
        return [n for n in self.nodes.values() if n.running]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError(
            f"timed out after {timeout} s waiting for {what or predicate}: {self.describe()}"
        )

    def committed_everywhere(self, txns: list[Transaction]) -> bool:
        """Whether every running node has committed every one of ``txns``."""
        for node in self.running():
            assert node.service is not None
            if any(node.service.app.store.locate(t.id) is None for t in txns):
                return False
        return True

    def heights(self) -> dict[str, int]:
        return {n.id: n.service.app.height for n in self.running() if n.service is not None}

    def describe(self) -> dict[str, Any]:
        return {
            n.id: {
                "height": n.service.app.height if n.service else None,
                "status": n.replica.status() if n.replica else None,
            }
            for n in self.running()
        }


def _fast_config() -> ConsensusConfig:
    return ConsensusConfig(
        batch_size=200,
        batch_timeout=0.01,
        view_change_timeout=1.0,
        view_change_timeout_max=4.0,
        checkpoint_interval=10,
        watermark_window=40,
        retransmit_interval=0.25,
    )


def _wait_serving(node: ClusterNode) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", node.api_port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.01)
    raise AssertionError(f"{node.id} does not serve")
