"""The follower's threads outlive whatever a node sends, and a stale verifier catches up to the highest
head the nodes show, not to the first node's: one node lying or partitioned cannot hold it back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from did_registry.client import LedgerClient
from tests.did_registry.ledger.conftest import NETWORK
from tests.did_registry.node.conftest import Node
from tests.verifier.conftest_ledger import AUDIENCE, Clock, Ledger, ledger_node, onboard_issuer
from verifier import NetworkTrust, Policy, Refused, Verifier

DEEP = "[" * 200_000 + "]" * 200_000


class Hostile(httpx.BaseTransport):
    """``http://liar`` answers /events and /sync/blocks with JSON nested too deeply to parse, and,
    once frozen, /blocks/head with an old (certified) head; ``http://honest`` is the real node."""

    def __init__(self, node: Node) -> None:
        self.inner = httpx.WSGITransport(app=node.app)
        self.frozen_head: Any = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.url.host == "liar":
            if path == "/events":
                body = ("data: " + DEEP + "\n\n").encode()
                return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
            if path == "/sync/blocks":
                return httpx.Response(
                    200, headers={"content-type": "application/json"}, content=DEEP.encode()
                )
            if path == "/blocks/head" and self.frozen_head is not None:
                return httpx.Response(200, json=self.frozen_head)
        elif path == "/events":
            return httpx.Response(503)  # the honest node's stream is not what this test is about
        return self.inner.handle_request(request)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def node(clock: Clock) -> Iterator[Node]:
    made = ledger_node(clock, block_interval=0.005)
    made.service.start()
    yield made
    made.service.stop()


def _world(node: Node, clock: Clock) -> tuple[LedgerClient, Ledger, Any, Hostile, NetworkTrust]:
    """A client of the honest node, an issuer and one enrolled device, and a trust in the liar first."""
    client = LedgerClient(
        "http://honest", node.service.app.genesis, transport=httpx.WSGITransport(app=node.app)
    )
    ledger = Ledger(node, client, onboard_issuer(node.trustee, client), clock)
    device = ledger.enrol()
    hostile = Hostile(node)
    trust = NetworkTrust(NETWORK, ("http://liar", "http://honest"), ledger.genesis, transport=hostile)
    return client, ledger, device, hostile, trust


def test_a_node_sending_unreadable_json_does_not_end_the_follower(node: Node, clock: Clock) -> None:
    client, ledger, device, hostile, trust = _world(node, clock)
    verifier = Verifier([trust], Policy(head_poll_interval=0.1), clock=ledger.clock)
    try:
        cache = verifier.caches[NETWORK]
        verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)
        time.sleep(0.5)  # the liar answered both threads with its deep JSON meanwhile
        assert cache.following is not None and cache.following.alive()
        hostile.frozen_head = httpx.Client(transport=hostile.inner).get("http://x/blocks/head").json()
        ledger.revoke(device)
        deadline = time.monotonic() + 10
        while (
            cache.height is not None and cache.height < client.head().height and time.monotonic() < deadline
        ):
            time.sleep(0.05)  # the polling thread, still alive, applies the revocation from the honest node
        ledger.clock.now += 3600  # and an hour later, stale, it catches up past the liar's frozen head
        ledger.freshness_block()  # (to the block the honest network committed meanwhile)
        with pytest.raises(Refused) as refused:
            verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)
        assert refused.value.reason == "revoked"
    finally:
        verifier.close()
        client.close()


def test_catching_up_takes_the_highest_head_the_nodes_show(node: Node, clock: Clock) -> None:
    """With the follower off, a stale verifier asks every node: the liar listed first, serving an old
    head, does not make the cache look fresh while the honest node has the revocation."""
    client, ledger, device, hostile, trust = _world(node, clock)
    verifier = Verifier([trust], Policy(), clock=ledger.clock, follow=False)
    try:
        verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)
        hostile.frozen_head = httpx.Client(transport=hostile.inner).get("http://x/blocks/head").json()
        ledger.revoke(device)
        ledger.clock.now += 3600
        ledger.freshness_block()
        with pytest.raises(Refused) as refused:
            verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)
        assert refused.value.reason == "revoked"
    finally:
        verifier.close()
        client.close()
