"""A streamed header confirms the cache only when it is new: one node replaying its last certified
header does not keep the verifier fresh, while an honest quiet network (heartbeats only on the
stream, an empty block every freshness interval) stays fresh through the polls, or through the
request path with polling off."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from did_registry.client import LedgerClient
from tests.did_registry.ledger.conftest import NETWORK
from tests.did_registry.node.conftest import Node
from tests.verifier.conftest_ledger import AUDIENCE, Clock, Device, Ledger, ledger_node, onboard_issuer
from verifier import NetworkTrust, Policy, Reason, Refused, Verifier
from verifier.ledger_cache import LedgerCache

HOUR = 3600.0


class Replaying(httpx.BaseTransport):
    """``http://liar`` streams the header item ``replayed`` again and again (heartbeats while it is
    ``None``) and serves everything else from the real node; ``http://honest`` is the real node with
    no stream, unreachable once ``cut``; any other host is the real node, stream included."""

    def __init__(self, node: Node) -> None:
        self.inner = httpx.WSGITransport(app=node.app)
        self.replayed: dict[str, Any] | None = None
        self.sent = 0  # header events the liar has streamed
        self.cut = False
        self.closed = threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host, path = request.url.host, request.url.path
        if host == "liar" and path == "/events":
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=self._events())
        if host == "honest":
            if self.cut:
                raise httpx.ConnectError("honest node unreachable", request=request)
            if path == "/events":
                return httpx.Response(503)  # the liar's stream is the one followed
        return self.inner.handle_request(request)

    def _events(self) -> Iterator[bytes]:
        yield b": trellis certified headers\n\n"
        while not self.closed.is_set():
            time.sleep(0.02)
            item = self.replayed
            if item is None:
                yield b": heartbeat\n\n"
            else:
                self.sent += 1
                yield ("event: header\ndata: " + json.dumps(item) + "\n\n").encode()

    def head_item(self) -> dict[str, Any]:
        """The real node's certified head, as a stream event's data."""
        data = httpx.Client(transport=self.inner).get("http://node/blocks/head").json()
        return {"header": data["block"]["header"], "certificate": data["certificate"]}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def node(clock: Clock) -> Iterator[Node]:
    """A running one-validator node (heartbeats every 0.2 s on its stream), dating blocks by ``clock``."""
    made = ledger_node(clock, block_interval=0.005)
    made.service.start()
    yield made
    made.service.stop()


@pytest.fixture
def world(node: Node, clock: Clock) -> Iterator[tuple[Ledger, Device, Replaying]]:
    """The ledger helper over ``node``, one enrolled device, and the transport of the nodes."""
    client = LedgerClient(
        "http://node", node.service.app.genesis, transport=httpx.WSGITransport(app=node.app)
    )
    transport = Replaying(node)
    try:
        ledger = Ledger(node, client, onboard_issuer(node.trustee, client), clock)
        yield ledger, ledger.enrol(), transport
    finally:
        transport.closed.set()
        client.close()


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``predicate`` every 10 ms until it holds (fails after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _admit(verifier: Verifier, ledger: Ledger, device: Device) -> None:
    verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)


def _replay_the_head(ledger: Ledger, cache: LedgerCache, transport: Replaying) -> None:
    """Once the cache is at the node's head, the liar streams that head again and again."""
    head = ledger.client.head().height
    wait_until(lambda: cache.height == head, "the cache to reach the head")
    transport.replayed = transport.head_item()


def _replays(transport: Replaying, count: int) -> None:
    """Wait until the liar has streamed ``count`` more headers (all but the last read by the follower)."""
    sent = transport.sent
    wait_until(lambda: transport.sent >= sent + count, f"{count} replayed headers")


def test_a_replayed_header_does_not_keep_the_cache_fresh(world: tuple[Ledger, Device, Replaying]) -> None:
    """With polling off, the streamed node sending its last certified header every 20 ms confirms
    nothing: an hour later the cache is an hour stale."""
    ledger, device, transport = world
    trust = NetworkTrust(NETWORK, ("http://liar", "http://honest"), ledger.genesis, transport=transport)
    with Verifier([trust], Policy(head_poll_interval=0), clock=ledger.clock) as verifier:
        cache = verifier.caches[NETWORK]
        _admit(verifier, ledger, device)
        _replay_the_head(ledger, cache, transport)
        ledger.clock.advance(HOUR)
        _replays(transport, 3)
        assert cache.staleness() >= HOUR


def test_a_revoked_device_is_refused_while_the_streamed_node_replays_its_head(
    world: tuple[Ledger, Device, Replaying],
) -> None:
    """Default policy, the other node unreachable: the liar's replays do not hold the cache fresh, so
    the request path catches up (from the liar's own head answer) and sees the revocation."""
    ledger, device, transport = world
    trust = NetworkTrust(NETWORK, ("http://liar", "http://honest"), ledger.genesis, transport=transport)
    with Verifier([trust], Policy(), clock=ledger.clock) as verifier:
        cache = verifier.caches[NETWORK]
        _admit(verifier, ledger, device)
        _replay_the_head(ledger, cache, transport)
        transport.cut = True  # before the revocation: the polls never bring it
        ledger.revoke(device)
        ledger.clock.advance(HOUR)
        ledger.freshness_block()  # (the blocks the network committed meanwhile)
        _replays(transport, 3)
        with pytest.raises(Refused) as refused:
            _admit(verifier, ledger, device)
        assert refused.value.reason is Reason.REVOKED


def test_an_honest_quiet_network_stays_fresh_through_the_polls(
    world: tuple[Ledger, Device, Replaying],
) -> None:
    """No request for an hour, the stream sending heartbeats only: a poll answering that the node has
    nothing newer than its latest (empty) block confirms the cache, with no catching up on the request
    path."""
    ledger, device, transport = world
    trust = NetworkTrust(NETWORK, ("http://a", "http://b"), ledger.genesis, transport=transport)
    with Verifier([trust], Policy(head_poll_interval=0.1), clock=ledger.clock) as verifier:
        cache = verifier.caches[NETWORK]
        _admit(verifier, ledger, device)
        ledger.clock.advance(HOUR)
        ledger.freshness_block()  # what the idle network committed meanwhile, the newest an hour later
        wait_until(lambda: cache.staleness() < 1, "a poll to confirm the cache")
        cache.catch_up = None  # type: ignore[assignment, method-assign]  # the polls alone must suffice
        _admit(verifier, ledger, device)


def test_an_honest_quiet_network_without_polls_is_confirmed_on_the_request_path(
    world: tuple[Ledger, Device, Replaying],
) -> None:
    """Polling off, no request for an hour: heartbeats confirm nothing, and the next request catches up
    (to the network's latest empty block) and admits the device, the cache fresh again."""
    ledger, device, transport = world
    trust = NetworkTrust(NETWORK, ("http://a", "http://b"), ledger.genesis, transport=transport)
    with Verifier([trust], Policy(head_poll_interval=0), clock=ledger.clock) as verifier:
        cache = verifier.caches[NETWORK]
        _admit(verifier, ledger, device)
        ledger.clock.advance(HOUR)
        assert cache.staleness() >= HOUR
        ledger.freshness_block()  # what the idle network committed meanwhile, the newest an hour later
        _admit(verifier, ledger, device)
        assert cache.staleness() < 1
