"""A cache applies block ``h + 1`` only when its ``previous_hash`` is the header the cache stands on.

A snapshot forged with the keys of validators removed from the set, re-signed at a height after their
removal, loads into a verifier that has not seen the removal (the light-client limit). Once the
verifier is online and applies the honest chain, the honest block after the snapshot's height does
not follow the forged header: the cache drops everything and starts over from the nodes, so the
forged values go."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.verifier.conftest_ledger import Device
from tests.verifier.hostile_chain import (
    HandChain,
    authenticate,
    block_at,
    forge,
    forged_block,
    genesis_keys,
    hand_chain,
    replace_quorum,
)
from verifier import NetworkTrust, Reason, Refused, Verifier
from verifier._follower import Follower
from verifier.ledger_cache import Changes, LedgerCache


def _honest_snapshot(ledger: HandChain, path: Path) -> Device:
    """A snapshot of a verifier that admitted a new device (its records cached); the device."""
    device = ledger.enrol()
    with ledger.verifier() as verifier:
        authenticate(ledger, verifier, device)
        verifier.save_snapshot(path)
    return device


def _forged_after_removal(ledger: HandChain, tmp_path: Path) -> tuple[Path, Device]:
    """An honest snapshot at block h0; then a quorum of genesis validators leaves, the device is
    revoked, and the snapshot is re-signed by the removed validators' keys at the head's height."""
    chain = ledger.hand
    honest = tmp_path / "honest.json"
    device = _honest_snapshot(ledger, honest)
    replace_quorum(chain)
    ledger.revoke(device)
    chain.empty_blocks(1)
    head = chain.height
    data = json.loads(honest.read_text())
    item = data["networks"][0]
    for section in item["sections"]:
        section["header"], section["certificate"] = forge(
            section["header"], genesis_keys(chain), height=head, time=chain.header(head).time
        )
    item["confirmed_at"] = ledger.clock()
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(data))
    return forged, device


def test_a_forged_snapshot_s_values_go_once_the_honest_chain_is_applied(tmp_path: Path) -> None:
    ledger = hand_chain()
    forged, device = _forged_after_removal(ledger, tmp_path)
    trust = NetworkTrust("testnet", ("http://node-1",), ledger.genesis, transport=ledger.transport())
    with Verifier.from_snapshot(forged, [trust], clock=ledger.clock, follow=False) as verifier:
        cache = verifier.caches["testnet"]
        height = cache.height
        assert height == ledger.hand.height
        # Just loaded, it has not seen the removal: the light-client limit (docs/verifier.md).
        assert authenticate(ledger, verifier, device) == device.did
        for _ in range(2):
            ledger.clock.advance(verifier.policy.max_staleness + 1)
            ledger.freshness_block()
            with pytest.raises(Refused) as refused:
                authenticate(ledger, verifier, device)
            assert refused.value.reason is Reason.REVOKED
        assert cache.restarts == 1
        assert f"not the block {height} the cache stands on" in cache.errors[-1]
        assert cache.base == ledger.hand.header(cache.height or 0).hash.hex()


def test_an_honest_snapshot_works_offline_and_online(tmp_path: Path) -> None:
    ledger = hand_chain()
    path = tmp_path / "honest.json"
    device = _honest_snapshot(ledger, path)
    saved = ledger.hand.height
    offline = NetworkTrust("testnet", (), ledger.genesis)
    with Verifier.from_snapshot(path, [offline], clock=ledger.clock, follow=False) as edge:
        assert authenticate(ledger, edge, device) == device.did
        assert edge.caches["testnet"].base == ledger.hand.header(saved).hash.hex()
    replace_quorum(ledger.hand)
    trust = NetworkTrust("testnet", ("http://node-1",), ledger.genesis, transport=ledger.transport())
    with Verifier.from_snapshot(path, [trust], clock=ledger.clock, follow=False) as verifier:
        cache = verifier.caches["testnet"]
        assert authenticate(ledger, verifier, device) == device.did
        ledger.clock.advance(verifier.policy.max_staleness + 1)
        ledger.freshness_block()
        assert authenticate(ledger, verifier, device) == device.did
        assert cache.height == ledger.hand.height and cache.restarts == 0
        assert cache.base == ledger.hand.header(cache.height).hash.hex()
        ledger.revoke(device)
        ledger.clock.advance(verifier.policy.max_staleness + 1)
        with pytest.raises(Refused) as refused:
            authenticate(ledger, verifier, device)
        assert refused.value.reason is Reason.REVOKED
        assert cache.restarts == 0


def test_the_polling_thread_catches_a_forged_base(tmp_path: Path) -> None:
    """The blocks another node gives the polling thread (``GET /sync/blocks``) are checked against
    the header the cache stands on too."""
    ledger = hand_chain()
    forged, device = _forged_after_removal(ledger, tmp_path)
    trust = NetworkTrust("testnet", ("http://node-1",), ledger.genesis, transport=ledger.transport())
    with Verifier.from_snapshot(forged, [trust], clock=ledger.clock, follow=False) as verifier:
        cache = verifier.caches["testnet"]
        assert cache.follower is not None and cache.watcher is not None
        ended: list[Changes] = []
        cache.listeners.append(ended.append)
        ledger.freshness_block()
        Follower(cache, cache.follower, cache.watcher, poll_interval=0.5, retry=1.0).poll("http://node-1")
        assert cache.height == ledger.hand.height and cache.restarts == 1
        assert any(changes.everything for changes in ended)
        assert len(cache) == 0
        with pytest.raises(Refused) as refused:
            authenticate(ledger, verifier, device)
        assert refused.value.reason is Reason.REVOKED


def _cache_on(ledger: HandChain, height: int) -> LedgerCache:
    """A cache standing on block ``height`` of ``ledger`` with one DID cached."""
    cache = LedgerCache("testnet", None, clock=ledger.clock)
    cache.load({f"did:{ledger.issuer.did}": _record(ledger)}, height)
    cache.confirm(height, base=ledger.hand.header(height).hash.hex())
    return cache


def _record(ledger: HandChain) -> object:
    value, _ = ledger.client.prove(f"did:{ledger.issuer.did}")
    return value


def test_blocks_with_a_gap_or_out_of_order_are_not_applied() -> None:
    ledger = hand_chain()
    chain = ledger.hand
    chain.empty_blocks(3)
    start = chain.height - 3
    cache = _cache_on(ledger, start)
    blocks = [block_at(chain, start + i) for i in (1, 2, 3)]
    cache.apply_blocks([blocks[1], blocks[0]])  # out of order: block start + 2 does not follow start
    assert cache.height == start + 1
    cache.apply_blocks([blocks[2]])  # a gap: start + 3 does not follow start + 1
    assert cache.height == start + 1
    assert cache.base == blocks[0].header.hash.hex() and cache.restarts == 0 and len(cache) == 1
    cache.apply_blocks(blocks[1:])
    assert cache.height == start + 3 and cache.base == blocks[2].header.hash.hex() and len(cache) == 1


def test_a_block_that_does_not_follow_the_base_starts_the_cache_over() -> None:
    """A block at the next height whose ``previous_hash`` is not the header the cache stands on: the
    cache's base is not on that chain; every entry goes (the listeners hear so) and the cache stands
    on that block."""
    ledger = hand_chain()
    chain = ledger.hand
    chain.empty_blocks(2)
    start = chain.height - 2
    cache = _cache_on(ledger, start)
    ended: list[Changes] = []
    cache.listeners.append(ended.append)
    elsewhere = forged_block(block_at(chain, start + 1), previous_hash="00" * 32)
    cache.apply_blocks([elsewhere])
    assert cache.height == start + 1 and cache.restarts == 1 and len(cache) == 0
    assert cache.base == elsewhere.header.hash.hex()
    assert [c.everything for c in ended] == [True]
    assert "not on the chain the nodes prove" in cache.errors[-1]
    # the honest block after it does not follow it either: over again, on the honest chain
    cache.apply_blocks([block_at(chain, start + 2)])
    assert cache.restarts == 2 and cache.base == chain.header(start + 2).hash.hex()


def test_a_page_of_blocks_is_checked_link_by_link() -> None:
    """Inside one page, each block must follow the one before it."""
    ledger = hand_chain()
    chain = ledger.hand
    chain.empty_blocks(2)
    start = chain.height - 2
    cache = _cache_on(ledger, start)
    first = block_at(chain, start + 1)
    second = forged_block(block_at(chain, start + 2), previous_hash=chain.header(start).hash.hex())
    cache.apply_blocks([first, second])
    assert cache.height == start + 2 and cache.restarts == 1 and len(cache) == 0


def test_a_cache_without_a_known_base_applies_as_before() -> None:
    """A cache moved to a height with no header (``confirm`` alone, as the in-memory test ledger
    does) checks the link from the first block it applies on."""
    ledger = hand_chain()
    chain = ledger.hand
    chain.empty_blocks(2)
    start = chain.height - 2
    cache = LedgerCache("testnet", None, clock=ledger.clock)
    cache.confirm(start)
    assert cache.base is None
    cache.apply_blocks([block_at(chain, start + 1)])
    assert cache.base == chain.header(start + 1).hash.hex() and cache.restarts == 0


def test_a_catch_up_from_a_forged_base_starts_over_on_the_nodes_chain(tmp_path: Path) -> None:
    """The catch-up (``GET /sync/blocks`` from the snapshot's height) is where the forged base shows."""
    ledger = hand_chain()
    forged, _ = _forged_after_removal(ledger, tmp_path)
    asked: list[str] = []
    inner = ledger.transport()

    class Logged(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            asked.append(request.url.path)
            return inner.handle_request(request)

    trust = NetworkTrust("testnet", ("http://node-1",), ledger.genesis, transport=Logged())
    with Verifier.from_snapshot(forged, [trust], clock=ledger.clock, follow=False) as verifier:
        ledger.freshness_block()
        verifier.caches["testnet"].catch_up()
        assert verifier.caches["testnet"].restarts == 1
    assert "/sync/blocks" in asked


def test_a_snapshot_certified_past_every_node_s_head_is_not_confirmed_online(tmp_path: Path) -> None:
    """A snapshot re-signed by removed validators at a height no node has reached: once online, the
    nodes prove no block there, so the cache is not confirmed and grows stale (too_stale past the
    offline limit) instead of looking fresh until the chain gets there."""
    ledger = hand_chain()
    chain = ledger.hand
    honest = tmp_path / "honest.json"
    device = _honest_snapshot(ledger, honest)
    replace_quorum(chain)
    ledger.revoke(device)
    data = json.loads(honest.read_text())
    item = data["networks"][0]
    ahead = chain.height + 50
    for section in item["sections"]:
        section["header"], section["certificate"] = forge(
            section["header"], genesis_keys(chain), height=ahead, time=chain.header(chain.height).time
        )
    item["confirmed_at"] = ledger.clock()
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(data))
    trust = ledger.trust()
    with Verifier.from_snapshot(forged, [trust], clock=ledger.clock, follow=False) as verifier:
        ledger.clock.advance(verifier.policy.offline_max_staleness + 1)
        with pytest.raises(Refused) as refused:
            authenticate(ledger, verifier, device)
        assert refused.value.reason in (Reason.TOO_STALE, Reason.REVOKED)
        assert "below block" in " ".join(verifier.caches["testnet"].errors)
