"""The newest certified block bounds how fresh a verifier's view can be (``Policy.max_block_age``):
validators commit a block at least every freshness interval, so when every node that answers shows
nothing newer for longer, they are behind or hiding blocks, and the verifier refuses ``too_stale``
rather than trust their word (``docs/verifier.md`` § Caches)."""

from __future__ import annotations

import httpx
import pytest

from tests.verifier.conftest_ledger import AUDIENCE, Device, Ledger, ledger  # noqa: F401  (fixture)
from verifier import NetworkTrust, Policy, Reason, Refused, Verifier
from verifier._ledger_view import CATCH_UP_INTERVAL


class Hiding(httpx.BaseTransport):
    """The only node the verifier reaches: honest until :meth:`hide`, then it shows nothing past the
    head it had (its head answer, and no newer block to sync), while the network goes on."""

    def __init__(self, network: Ledger) -> None:
        self.inner = network.transport()
        self.head: object | None = None
        self.height = 0
        self.head_asked = 0  # GET /blocks/head answered

    def hide(self) -> None:
        self.head = httpx.Client(transport=self.inner).get("http://node/blocks/head").json()
        self.height = self.head["block"]["header"]["height"]  # type: ignore[index]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/events":
            return httpx.Response(503)  # no stream: the polls and the request path are what is tested
        if path == "/blocks/head":
            self.head_asked += 1
        if self.head is not None:
            if path == "/blocks/head":
                return httpx.Response(200, json=self.head)
            if path == "/sync/blocks":
                return httpx.Response(200, json={"head": self.height, "blocks": []})
        return self.inner.handle_request(request)


def _verifier(network: Ledger, transport: Hiding, policy: Policy) -> Verifier:
    trust = NetworkTrust("testnet", ("http://node-1",), network.genesis, transport=transport)
    return Verifier([trust], policy, follow=False, clock=network.clock)


def _admit(verifier: Verifier, network: Ledger, device: Device) -> None:
    verifier.authenticate_presentation(network.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)


def test_a_node_hiding_a_revocation_behind_nothing_newer_is_found_out(ledger: Ledger) -> None:  # noqa: F811
    """The one reachable node keeps answering "nothing newer" while the network revokes the device and
    keeps committing: once its newest block is older than max_block_age, the verifier refuses."""
    device = ledger.enrol()
    hiding = Hiding(ledger)
    policy = Policy()
    with _verifier(ledger, hiding, policy) as verifier:
        _admit(verifier, ledger, device)
        hiding.hide()
        ledger.revoke(device)
        ledger.clock.advance(120)
        ledger.freshness_block()
        with pytest.raises(Refused) as refused:
            _admit(verifier, ledger, device)
        assert refused.value.reason is Reason.TOO_STALE
        assert "the newest block the nodes that answer show is" in refused.value.detail
        assert verifier.staleness() >= 120 - (policy.max_block_age or 0)


def test_within_max_block_age_the_node_s_word_stands(ledger: Ledger) -> None:  # noqa: F811
    """A quiet spell shorter than max_block_age: a node answering nothing newer confirms the view."""
    device = ledger.enrol()
    hiding = Hiding(ledger)
    policy = Policy()
    assert policy.max_block_age is not None
    with _verifier(ledger, hiding, policy) as verifier:
        _admit(verifier, ledger, device)
        hiding.hide()
        ledger.clock.advance(policy.max_block_age + policy.max_staleness - 1)
        _admit(verifier, ledger, device)


def test_without_max_block_age_a_network_silent_while_idle_stays_usable(ledger: Ledger) -> None:  # noqa: F811
    """max_block_age=None is for a network whose validators commit nothing while idle: an hour with no
    block, and the node's "nothing newer" is believed."""
    device = ledger.enrol()
    with _verifier(ledger, Hiding(ledger), Policy(max_block_age=None)) as verifier:
        _admit(verifier, ledger, device)
        ledger.clock.advance(3600)
        _admit(verifier, ledger, device)
        assert verifier.staleness() < 1


def test_a_stalled_network_is_not_asked_for_its_head_on_every_request(ledger: Ledger) -> None:  # noqa: F811
    """While the nodes keep showing an old newest block, requests are refused from what they said a
    moment ago: not one head query per request (they would all fan out to every node at once)."""
    device = ledger.enrol()
    hiding = Hiding(ledger)
    with _verifier(ledger, hiding, Policy()) as verifier:
        _admit(verifier, ledger, device)
        hiding.hide()
        ledger.clock.advance(120)
        asked = hiding.head_asked
        for _ in range(20):
            with pytest.raises(Refused):
                _admit(verifier, ledger, device)
        assert hiding.head_asked - asked == 1
        ledger.clock.advance(CATCH_UP_INTERVAL)
        with pytest.raises(Refused):
            _admit(verifier, ledger, device)
        assert hiding.head_asked - asked == 2


def test_stale_for_another_reason_the_cache_catches_up_at_once(ledger: Ledger) -> None:  # noqa: F811
    """The wait between catch-ups is only for a network whose newest block is too old: with a short
    max_staleness, a live network is asked again as soon as the cache is stale, and a revocation
    committed meanwhile is seen."""
    device = ledger.enrol()
    node = Hiding(ledger)  # never hides here: an honest, live node
    with _verifier(ledger, node, Policy(max_staleness=0.2)) as verifier:
        _admit(verifier, ledger, device)
        ledger.revoke(device)
        ledger.clock.advance(0.5)  # past max_staleness, within CATCH_UP_INTERVAL of the last catch-up
        with pytest.raises(Refused) as refused:
            _admit(verifier, ledger, device)
        assert refused.value.reason is Reason.REVOKED
