"""Catching up in pages: a verifier back after two hours of an idle network (720 empty blocks, one
every 10 s) fetches the blocks it missed a page at a time (``GET /sync/blocks``), not one round trip
per block, and still applies every one (a revocation among them included)."""

from __future__ import annotations

import httpx
import pytest

from tests.verifier.conftest_ledger import AUDIENCE, Ledger, ledger  # noqa: F401  (fixture)
from verifier import NetworkTrust, Policy, Reason, Refused, Verifier


class Counting(httpx.BaseTransport):
    """The node's transport, noting each path asked."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return self.inner.handle_request(request)


def test_two_hours_of_blocks_come_in_a_few_pages(ledger: Ledger) -> None:  # noqa: F811
    device = ledger.enrol()
    counting = Counting(ledger.transport())
    trust = NetworkTrust("testnet", ("http://node-1",), ledger.genesis, transport=counting)
    with Verifier([trust], Policy(), follow=False, clock=ledger.clock) as verifier:
        verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)
        before = verifier.caches["testnet"].height
        assert before is not None
        for minute in range(720):
            ledger.clock.advance(10)
            if minute == 360:
                ledger.revoke(device)
            else:
                ledger.freshness_block()
        counting.paths.clear()
        with pytest.raises(Refused) as refused:
            verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)
        assert refused.value.reason is Reason.REVOKED
        assert verifier.caches["testnet"].height == before + 720
        assert counting.paths.count("/sync/blocks") <= 10
        assert not [p for p in counting.paths if p.startswith("/blocks/") and p != "/blocks/head"]
