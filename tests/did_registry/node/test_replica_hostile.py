"""A validator that sends unreadable payloads (a Byzantine peer) cannot stop the others' replicas."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from did_registry.ledger.application import LedgerApplication
from did_registry.ledger.block import CommitCertificate
from did_registry.node.replica import Replica, ReplicaConfig, beacon_height
from did_registry.node.service import NodeService
from did_registry.node.sync import CertifiedBlock
from did_registry.transport import Transport, TransportConfig
from tests.did_registry.ledger.conftest import creates
from tests.did_registry.node.cluster import Cluster
from tests.did_registry.node.test_replica import submit

POISON = (
    b'\x01{"height": 1e999}',  # a float that overflows int()
    b"\x01" + b"[" * 100_000,  # nesting deeper than the decoder's recursion limit
    b'\x01{"height": true}',
    b'\x01{"height": -5}',
    b"\x01\xff\xfe",
    b"\x07unknown tag",
)


def _send_as(cluster: Cluster, node_id: str, payloads: tuple[bytes, ...]) -> None:
    """Connect to the others with ``node_id``'s key (that node is stopped) and send ``payloads``."""
    validators = cluster.nodes["node-2"].service.app.validators()  # type: ignore[union-attr]
    network = cluster.nodes["node-2"].replica._network  # type: ignore[union-attr]

    async def main() -> None:
        transport = Transport(
            node_id,
            cluster.nodes[node_id].key,
            validators,
            network=network,
            listen=("127.0.0.1", 0),
            config=TransportConfig.testing(),
        )
        await transport.start()
        try:
            async with asyncio.timeout(10):
                while not all(p.connected for p in transport.peers().values()):
                    await asyncio.sleep(0.02)
            for payload in payloads:
                transport.broadcast(payload)
            await asyncio.sleep(0.5)
        finally:
            await transport.stop()

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    thread.join(15)
    assert not thread.is_alive()


def test_unreadable_beacons_from_one_validator_do_not_stop_the_others() -> None:
    """n=4 tolerates one faulty validator: after node-1 sends every kind of unreadable payload, the
    three others still commit, and count what they dropped."""
    cluster = Cluster.create("pbft", 4)
    cluster.start()
    try:
        first = creates(cluster.trustee, 5)
        submit(cluster.nodes["node-2"].url, first)
        cluster.wait_for(lambda: cluster.committed_everywhere(first), what="first batch")
        cluster.stop("node-1")
        _send_as(cluster, "node-1", POISON)
        second = creates(cluster.trustee, 5)
        submit(cluster.nodes["node-3"].url, second)
        cluster.wait_for(lambda: cluster.committed_everywhere(second), timeout=15, what="second batch")
        replica = cluster.nodes["node-2"].replica
        assert replica is not None
        assert replica.status()["dropped"].get("replica_unreadable_beacon", 0) >= 1
    finally:
        cluster.close()


@pytest.mark.parametrize(
    ("body", "height"),
    [
        (b'{"height": 7}', 7),
        (b'{"height": 0}', 0),
        (b'{"height": 1e999}', None),
        (b'{"height": 7.0}', None),
        (b'{"height": true}', None),
        (b'{"height": -1}', None),
        (b'{"height": "7"}', None),
        (b'{"height": ' + b"9" * 5000 + b"}", None),  # past int's digit limit
        (b"[" * 100_000, None),
        (b"[7]", None),
        (b"\xff", None),
        (b"", None),
    ],
)
def test_beacon_height_is_a_non_negative_integer_or_nothing(body: bytes, height: int | None) -> None:
    assert beacon_height(body) == height


def test_a_failing_replica_loop_is_logged_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    cluster = Cluster.create("pbft", 1)
    node = cluster.nodes["node-1"]
    service = NodeService(
        LedgerApplication(node.store, cluster.genesis), validator_id=node.id, validator_key=node.key
    )
    replica = Replica(service, node.key, ReplicaConfig())
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("boom")

    async def main() -> None:
        replica._supervise("flaky", flaky)
        async with asyncio.timeout(10):
            while replica._tasks:
                await asyncio.sleep(0.01)

    with caplog.at_level(logging.ERROR, logger="did_registry.replica"):
        asyncio.run(main())
    assert len(runs) == 3
    assert replica.status()["restarts"] == {"flaky": 2}
    assert sum("flaky loop failed" in r.getMessage() for r in caplog.records) == 2
    replica.app.close()
    replica.source.close()


def test_a_state_transfer_answered_only_with_blocks_it_has_ends() -> None:
    """A node answering /sync/blocks with a block the validator already has (no progress) ends the
    transfer, so later transfers (NeedState, the beacons' and the alone check's) can run: it looped
    for ever before, with the transfer flag set."""
    cluster = Cluster.create("pbft", 1)
    node = cluster.nodes["node-1"]
    service = NodeService(
        LedgerApplication(node.store, cluster.genesis), validator_id=node.id, validator_key=node.key
    )
    replica = Replica(service, node.key, ReplicaConfig(sync_urls=("http://hostile",)))
    genesis_block = service.app.store.block(0)
    assert genesis_block is not None
    asked: list[int] = []

    def known(start: int, wait: float = 0.0) -> list[CertifiedBlock]:
        asked.append(start)
        certificate = CommitCertificate(0, genesis_block[0].header.hash.hex(), {})
        return [CertifiedBlock(genesis_block[0], certificate)]

    replica.source.fetch = known  # type: ignore[method-assign]

    async def main() -> None:
        replica._syncing = True
        async with asyncio.timeout(5):
            await replica._transfer(1)

    asyncio.run(main())
    assert replica._syncing is False and len(asked) == 1
    replica.app.close()
    replica.source.close()


def test_a_broadcast_the_transport_refuses_does_not_lose_the_outputs_after_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broadcast the transport refuses (a frame too large) is logged; the engine's outputs after it
    (a timer here) still run, as after a refused send."""
    from did_registry.consensus.base import Broadcast, SetTimer
    from did_registry.consensus.messages import Request
    from did_registry.errors import InvalidFrame

    cluster = Cluster.create("pbft", 1)
    node = cluster.nodes["node-1"]
    service = NodeService(
        LedgerApplication(node.store, cluster.genesis), validator_id=node.id, validator_key=node.key
    )
    replica = Replica(service, node.key, ReplicaConfig())

    class Refusing:
        def broadcast(self, payload: bytes) -> None:
            raise InvalidFrame("too large")

    async def main() -> None:
        replica._loop = asyncio.get_running_loop()
        replica._transport = Refusing()  # type: ignore[assignment]
        message = Request(sender=node.id, requests=(b"x",))
        replica._apply([Broadcast(message), SetTimer("progress", replica._loop.time() + 60)])
        assert "progress" in replica._timers
        replica._timers.pop("progress").cancel()

    with caplog.at_level(logging.WARNING, logger="did_registry.replica"):
        asyncio.run(main())
    assert any("not broadcast" in r.getMessage() for r in caplog.records)
    replica.app.close()
    replica.source.close()
