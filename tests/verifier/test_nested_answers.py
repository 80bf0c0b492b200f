"""A node answering with JSON nested deeper than the parser goes (``RecursionError``) is a node that
failed: the next node is asked, and a ledger failure is never refused as the device's ``malformed``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from did_registry.client import LedgerUnavailable
from tests.verifier.hostile_chain import NESTED, Router, authenticate, hand_chain, nested_answer
from verifier import NetworkTrust, Reason, Refused, Verifier
from verifier.ledger_cache import fetch_block
from verifier.snapshot import InvalidSnapshot


def _hostile_first(honest: httpx.BaseTransport, nested: set[str]) -> Router:
    """``http://evil`` (asked first) answers the routes in ``nested`` ("blocks", "sync", "proofs") with
    JSON nested too deeply, the rest as the honest node; ``http://node-1`` is the honest node."""

    def evil(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if "blocks" in nested and path.startswith("/blocks/") and path != "/blocks/head":
            return nested_answer()
        if "sync" in nested and path == "/sync/blocks":
            return nested_answer()
        if "proofs" in nested and request.method == "POST" and path == "/proofs/state":
            return nested_answer()
        return honest.handle_request(request)

    return Router({"evil": evil, "node-1": honest})


def test_fetch_block_passes_over_a_node_nested_too_deeply() -> None:
    ledger = hand_chain()
    honest = httpx.WSGITransport(app=ledger.hand.wsgi)
    router = _hostile_first(honest, {"blocks"})
    with ledger.hand.client(router) as client:
        client.nodes = ["http://evil", "http://node-1"]
        block = fetch_block(client, 3)
    assert block.header == ledger.hand.header(3)
    assert [host for host, _, path in router.asked if path == "/blocks/3"] == ["evil", "node-1"]


def test_fetch_block_with_every_node_nested_too_deeply_is_unavailable() -> None:
    ledger = hand_chain()

    def evil(request: httpx.Request) -> httpx.Response:
        return nested_answer()

    with ledger.hand.client(Router({"evil": evil, "node-1": evil})) as client:
        client.nodes = ["http://evil", "http://node-1"]
        with pytest.raises(LedgerUnavailable, match="recursion"):
            fetch_block(client, 3)


def test_a_device_is_admitted_through_the_honest_node_after_a_nested_one(tmp_path: Path) -> None:
    """The cache's first catch-up (a jump to the head, ``GET /blocks/{h}``) and every request after it
    pass over the hostile node; the snapshot saved then proves every record through the honest one."""
    ledger = hand_chain()
    honest = httpx.WSGITransport(app=ledger.hand.wsgi)
    nested: set[str] = {"blocks", "sync"}
    router = _hostile_first(honest, nested)
    trust = NetworkTrust("testnet", ("http://evil", "http://node-1"), ledger.genesis, transport=router)
    device = ledger.enrol()
    with Verifier([trust], follow=False, clock=ledger.clock) as verifier:
        for _ in range(2):
            assert authenticate(ledger, verifier, device) == device.did
        assert verifier.caches["testnet"].height == ledger.hand.height
        ledger.freshness_block()
        ledger.clock.advance(verifier.policy.max_staleness + 1)  # a catch-up of one block (/sync/blocks)
        assert authenticate(ledger, verifier, device) == device.did
        nested.add("proofs")
        path = tmp_path / "snapshot.json"
        verifier.save_snapshot(path)
    assert ("evil", "POST", "/proofs/state") in router.asked
    offline = NetworkTrust("testnet", (), ledger.genesis)
    with Verifier.from_snapshot(path, [offline], clock=ledger.clock, follow=False) as edge:
        assert authenticate(ledger, edge, device) == device.did


def test_a_failed_catch_up_nested_too_deeply_is_no_malformed_presentation() -> None:
    """Whatever a node's answer raises while catching up on the request path, the device is not blamed:
    the request is refused as too stale (not as ``malformed``)."""
    ledger = hand_chain()
    device = ledger.enrol()
    with ledger.verifier() as verifier:
        assert authenticate(ledger, verifier, device) == device.did
        cache = verifier.caches["testnet"]

        def nested_catch_up() -> None:
            raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")

        cache.catch_up = nested_catch_up  # type: ignore[method-assign]
        ledger.clock.advance(max(verifier.policy.max_staleness, verifier.policy.offline_max_staleness) + 1)
        with pytest.raises(Refused) as refused:
            authenticate(ledger, verifier, device)
        assert refused.value.reason is Reason.TOO_STALE


def test_a_ledger_read_nested_too_deeply_is_ledger_unavailable() -> None:
    """A read of the trust registry or a DID that raises what a node's answer may raise is refused as
    ``ledger_unavailable``; a key re-read that does keeps the cached entry."""
    ledger = hand_chain()
    device = ledger.enrol()
    with ledger.verifier() as verifier:
        view = verifier.ledger
        cache = verifier.caches["testnet"]
        entry = view.entry(device.did)

        def nested(*args: object) -> None:
            raise RecursionError("maximum recursion depth exceeded")

        cache.issuer = nested  # type: ignore[method-assign,assignment]
        cache.dids = nested  # type: ignore[method-assign,assignment]
        cache.reread = nested  # type: ignore[method-assign,assignment]
        cache.clear()
        with pytest.raises(Refused) as refused:
            view.issuer(ledger.issuer.did)
        assert refused.value.reason is Reason.LEDGER_UNAVAILABLE
        with pytest.raises(Refused) as refused:
            view.entry(device.did)
        assert refused.value.reason is Reason.LEDGER_UNAVAILABLE
        assert view._reread(device.did, entry) is entry


def test_a_snapshot_file_nested_too_deeply_is_an_invalid_snapshot(tmp_path: Path) -> None:
    ledger = hand_chain()
    path = tmp_path / "snapshot.json"
    path.write_bytes(NESTED)
    with pytest.raises(InvalidSnapshot, match="recursion"):
        Verifier.from_snapshot(path, [NetworkTrust("testnet", (), ledger.genesis)], clock=ledger.clock)
