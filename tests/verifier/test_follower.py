"""Following a network: a streamed node cut off from the others does not keep the verifier behind."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import httpx
import pytest

from did_registry.client import LedgerClient
from tests.did_registry.ledger.conftest import NETWORK
from tests.did_registry.node.cluster import Cluster, free_ports
from tests.did_registry.node.conftest import Node
from tests.verifier.conftest_ledger import AUDIENCE, Ledger, ledger, onboard_issuer  # noqa: F401
from verifier import NetworkTrust, Policy, Reason, Refused, Verifier
from verifier._follower import FOLLOW_ERRORS, Follower
from verifier.ledger_cache import LedgerCache


class ClusterLedger(Ledger):
    """The verifier tests' ledger helper over an in-process cluster (real HTTP on loopback)."""

    def __init__(self, cluster: Cluster, client: LedgerClient, urls: list[str]) -> None:
        super().__init__(cast(Node, None), client, onboard_issuer(cluster.trustee, client))
        self.cluster, self.urls = cluster, urls

    @property
    def genesis(self) -> Any:
        """The cluster's genesis."""
        return self.cluster.genesis

    def trust(self) -> NetworkTrust:
        """Trust in the cluster through ``urls``, in that order."""
        return NetworkTrust(NETWORK, tuple(self.urls), self.genesis)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """Four PBFT validators on loopback."""
    made = Cluster.create("pbft", 4)
    made.start()
    yield made
    made.close()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``predicate`` every 10 ms until it holds; the seconds it took (fails after ``timeout``)."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.01)
    return time.monotonic() - start


def test_a_partitioned_streamed_node_does_not_keep_a_revoked_device_in(cluster: Cluster) -> None:
    """The streamed node stops advancing while the others commit a revocation: the verifier refuses
    the device within about a second, from blocks fetched from the others, and moves its stream."""
    urls = {node_id: node.url for node_id, node in cluster.nodes.items()}
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"  # nothing listens: connection refused
    with LedgerClient([urls["node-1"], urls["node-2"], urls["node-3"]], cluster.genesis) as client:
        ledger = ClusterLedger(
            cluster, client, [dead, urls["node-4"], urls["node-1"], urls["node-2"], urls["node-3"]]
        )
        device = ledger.enrol()
        verifier = Verifier([ledger.trust()], Policy(head_poll_interval=0.5), clock=time.time)
        try:
            cache = verifier.caches[NETWORK]
            following = cache.following
            assert following is not None
            verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)
            wait_until(lambda: following.streamed == urls["node-4"], 10, "the stream from node-4")
            stuck = cluster.nodes["node-4"]
            assert stuck.replica is not None
            stuck.replica.stop()  # cut off from the validators; its HTTP API and header stream stay up
            cache.catch_up = None  # type: ignore[assignment, method-assign]  # following alone must suffice
            ledger.revoke(device)
            head = client.head().height

            def refused() -> bool:
                try:
                    verifier.authenticate_presentation(
                        ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE
                    )
                except Refused as refusal:
                    assert refusal.reason is Reason.REVOKED
                    return True
                return False

            took = wait_until(refused, 5, "the revocation to be seen")
            assert took < 2.0, took
            assert (cache.height or 0) >= head and stuck.service is not None
            assert stuck.service.app.height < head  # the streamed node never got the block
            wait_until(
                lambda: following.streamed in (urls["node-1"], urls["node-2"], urls["node-3"]), 5, "a move"
            )
            assert following.switches >= 1
            assert any(dead in error for error in cache.errors)  # the dead node was tried and skipped
            assert cache.staleness() < 2
        finally:
            verifier.close()


def test_staleness_grows_while_a_node_has_shown_a_newer_header() -> None:
    """Blocks applied short of the highest certified height shown do not make the cache fresh."""
    now = [1000.0]
    cache = LedgerCache("testnet", None, clock=lambda: now[0])
    cache.confirm(10)
    assert cache.staleness() == 0.0 and not cache.behind()
    now[0] += 3
    cache.note_head(12)
    assert cache.behind()
    cache.confirm(11)
    assert cache.staleness() == 3.0
    now[0] += 1
    cache.confirm(12)
    assert cache.staleness() == 0.0 and not cache.behind()


Lie = Callable[[dict[str, Any]], None]


def _drop_a_transaction(answer: dict[str, Any]) -> None:
    answer["blocks"][0]["block"]["txns"].pop()


def _forge_the_header(answer: dict[str, Any]) -> None:
    answer["blocks"][0]["block"]["header"]["state_root"] = "00" * 32


def _skip_a_block(answer: dict[str, Any]) -> None:
    answer["blocks"].pop(0)


class LyingNode(httpx.BaseTransport):
    """``http://liar`` rewrites the blocks it serves on ``/sync/blocks``; other hosts are the real node."""

    def __init__(self, source: Ledger, lie: Lie) -> None:
        self.inner, self.lie = source.transport(), lie

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.host != "liar" or request.url.path != "/sync/blocks":
            return response
        answer = json.loads(response.read())
        self.lie(answer)
        return httpx.Response(200, json=answer)


@pytest.mark.parametrize(
    "lie", [_drop_a_transaction, _forge_the_header, _skip_a_block], ids=lambda f: f.__name__
)
def test_blocks_from_a_lying_node_are_not_applied(ledger: Ledger, lie: Lie) -> None:  # noqa: F811
    """A node altering or leaving out a block is caught; the honest node's blocks are applied after it."""
    device = ledger.enrol()
    transport = LyingNode(ledger, lie)
    trust = NetworkTrust(NETWORK, ("http://liar", "http://node-1"), ledger.genesis, transport=transport)
    with Verifier([trust], follow=False, clock=ledger.clock) as verifier:
        cache = verifier.caches[NETWORK]
        cache.catch_up()
        height = cache.height
        ledger.revoke(device)
        ledger.enrol()  # two blocks, so that one can be left out
        watch = LedgerClient(["http://liar", "http://node-1"], ledger.genesis, transport=transport)
        follower = Follower(cache, watch, watch, poll_interval=0.5, retry=1.0)
        with pytest.raises(FOLLOW_ERRORS):
            follower.poll("http://liar")
        assert cache.height == height and cache.staleness() == 0.0
        follower.poll("http://node-1")
        assert cache.height == ledger.client.head().height
        watch.close()
