"""The ledger cache: proven reads only, invalidated by each certified block, memory-conscious, honest about staleness."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_trellis import initial_document, trellis_did
from did_registry.ledger.block import BlockHeader, CommitCertificate
from tests.verifier.conftest_ledger import AUDIENCE, Ledger, ledger  # noqa: F401
from verifier import NetworkTrust, Policy, Reason, Refused, Verifier
from verifier._records import did_entry
from verifier.ledger_cache import LedgerCache

Mutate = Callable[[dict[str, Any]], dict[str, Any]]


class LyingTransport(httpx.BaseTransport):
    """Serves the real node, rewriting the JSON of proof answers."""

    def __init__(self, source: Ledger, mutate: Mutate) -> None:
        self._inner = source.transport()
        self._mutate = mutate

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if request.url.path != "/proofs/state" or response.status_code != 200:
            return response
        return httpx.Response(200, json=self._mutate(json.loads(response.read())))


def _deactivate(body: dict[str, Any]) -> dict[str, Any]:
    for item in body.get("proofs", []):
        if item["value"] is not None and "document" in item["value"]:
            item["value"]["deactivated"] = True
    return body


def _hide_quarantine(body: dict[str, Any]) -> dict[str, Any]:
    for item in body.get("proofs", []):
        if item["key"].startswith("quarantine:"):
            item["value"] = None
    return body


def _forge_certificate(body: dict[str, Any]) -> dict[str, Any]:
    body["header"]["state_root"] = "11" * 32  # a header no validator signed, "certified" by a forger
    header = BlockHeader.from_json(body["header"])
    forger = Ed25519PrivateKey.generate()
    body["certificate"] = CommitCertificate(
        header.height, header.hash.hex(), {"node-1": CommitCertificate.sign(header.hash, forger)}
    ).to_json()
    return body


def _drop_certificate(body: dict[str, Any]) -> dict[str, Any]:
    body["header"]["time"] = "2030-01-01T00:00:00Z"
    body["certificate"] = None
    return body


def _forge_root(body: dict[str, Any]) -> dict[str, Any]:
    body["header"]["state_root"] = "00" * 32
    return body


@pytest.mark.parametrize(
    "lie",
    [_deactivate, _hide_quarantine, _forge_certificate, _drop_certificate, _forge_root],
    ids=lambda f: f.__name__,
)
def test_a_forged_ledger_answer_is_never_believed(ledger: Ledger, lie: Mutate) -> None:  # noqa: F811
    """A node that alters a value, a proof or a certificate gets the device refused as ledger_unavailable."""
    device = ledger.enrol()
    if lie is _hide_quarantine:
        reporter_free = ledger.node.trustee
        ledger.commit(reporter_free.txn("role.grant", {"did": reporter_free.did, "role": "reporter"}))
        evidence = {"hash": "ab" * 32, "description": "attack"}
        ledger.commit(reporter_free.txn("quarantine.report", {"did": device.did, "evidence": evidence}))
    trust = NetworkTrust("testnet", ("http://liar",), ledger.genesis, transport=LyingTransport(ledger, lie))
    with Verifier([trust], follow=False, clock=ledger.clock) as verifier:
        answer = ledger.present(device, verifier.challenge(AUDIENCE))
        with pytest.raises(Refused) as refused:
            verifier.authenticate_presentation(answer, AUDIENCE)
        assert refused.value.reason is Reason.LEDGER_UNAVAILABLE
        assert refused.value.status == 503


def test_an_old_answer_after_a_newer_head_is_not_believed(ledger: Ledger) -> None:  # noqa: F811
    """A node replaying a certified answer from before a revocation is caught: its height is behind the head."""
    device = ledger.enrol()
    recorded: dict[str, bytes] = {}
    inner = ledger.transport()

    class Replaying(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = inner.handle_request(request)
            if request.url.path == "/proofs/state":
                body = response.read()
                key = request.content.decode()
                recorded.setdefault(key, body)
                return httpx.Response(
                    200, content=recorded[key], headers={"content-type": "application/json"}
                )
            return response

    trust = NetworkTrust("testnet", ("http://replayer",), ledger.genesis, transport=Replaying())
    with Verifier([trust], follow=False, clock=ledger.clock) as verifier:
        verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)
        ledger.revoke(device)
        verifier.caches["testnet"].catch_up()  # the head is honest here; the proofs are replayed
        with pytest.raises(Refused) as refused:
            verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)
        assert refused.value.reason in (Reason.REVOKED, Reason.LEDGER_UNAVAILABLE)
        assert refused.value.reason is Reason.LEDGER_UNAVAILABLE


def test_entries_are_read_once_and_dropped_by_the_blocks_that_touch_them(ledger: Ledger) -> None:  # noqa: F811
    """A cached DID stays cached across unrelated blocks and is dropped by its own did.update (a
    snapshot still proves it: it is tracked, only its entry is gone)."""
    device, other = ledger.enrol(), ledger.enrol()
    with ledger.verifier() as verifier:
        cache = verifier.caches["testnet"]
        cache.catch_up()
        cache.dids([device.did, other.did])
        assert len(cache) == 2
        ledger.enrol()  # an unrelated block
        cache.catch_up()
        assert len(cache) == 2
        ledger.commit(device.actor.txn("did.update", {"document": device.actor.document()}))
        cache.catch_up()
        assert len(cache) == 1
        assert cache.dids([other.did])[0] is not None
        assert cache.keys() == [
            f"did:{other.did}",
            f"quarantine:{other.did}",
            f"did:{device.did}",
            f"quarantine:{device.did}",
        ]


def test_the_header_stream_keeps_the_cache_fresh(ledger: Ledger) -> None:  # noqa: F811
    """With follow=True a background thread applies each new block: a revocation is seen without asking."""
    device = ledger.enrol()
    verifier = ledger.verifier(follow=True)
    try:
        cache = verifier.caches["testnet"]
        verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)
        height = ledger.client.head().height
        ledger.revoke(device)
        deadline = time.monotonic() + 10
        while (cache.height or 0) <= height and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (cache.height or 0) > height, cache.errors
        assert cache.staleness() < 5
        cache.catch_up = None  # type: ignore[assignment, method-assign]  # the stream alone must suffice
        with pytest.raises(Refused) as refused:
            verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)
        assert refused.value.reason is Reason.REVOKED
        following = cache.following
        assert following is not None and following.alive()
    finally:
        verifier.close()
    assert not following.alive()  # stopped at the stream's next heartbeat


class Unreachable(httpx.BaseTransport):
    """A transport to nodes that are down (or, once ``up``, forwards to the real node)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner, self.up = inner, True

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not self.up:
            raise httpx.ConnectError("node down", request=request)
        return self.inner.handle_request(request)


def test_unreachable_ledger_without_data_is_unavailable(ledger: Ledger) -> None:  # noqa: F811
    """With no node answering and nothing cached, a device is refused as ledger_unavailable (503)."""
    device = ledger.enrol()
    transport = Unreachable(ledger.transport())
    transport.up = False
    trust = NetworkTrust("testnet", ("http://node-1",), ledger.genesis, transport=transport)
    with Verifier([trust], follow=False, clock=ledger.clock) as verifier:
        with pytest.raises(Refused) as refused:
            verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)
        assert refused.value.reason in (Reason.TOO_STALE, Reason.LEDGER_UNAVAILABLE)


def test_cached_data_serves_until_too_stale(ledger: Ledger) -> None:  # noqa: F811
    """Offline, cached records serve within offline_max_staleness; past it the verifier refuses too_stale."""
    device = ledger.enrol()
    transport = Unreachable(ledger.transport())
    trust = NetworkTrust("testnet", ("http://node-1",), ledger.genesis, transport=transport)
    policy = Policy(max_staleness=5, offline_max_staleness=60)
    with Verifier([trust], policy, follow=False, clock=ledger.clock) as verifier:
        verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)
        transport.up = False
        ledger.clock.advance(30)
        assert 29 <= verifier.staleness() <= 31
        assert verifier.authenticate_presentation(
            ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE
        )
        ledger.clock.advance(31)
        with pytest.raises(Refused) as refused:
            verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)
        assert refused.value.reason is Reason.TOO_STALE and refused.value.status == 503
        ledger.freshness_block()  # the idle network committed one meanwhile
        transport.up = True
        assert verifier.authenticate_presentation(
            ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE
        )
        assert verifier.staleness() < 1


def test_a_cached_device_costs_under_a_kilobyte() -> None:
    """Compact entries: 2,000 cached devices take less than 1,024 bytes each (keys as raw bytes)."""
    records = []
    for _ in range(2000):
        key = Ed25519PrivateKey.generate()
        did = str(trellis_did("testnet", key.public_key))
        records.append(
            (did, {"document": initial_document(did, key.public_key).to_json(), "deactivated": False})
        )
    cache = LedgerCache("testnet", None, clock=time.time)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    cache.load({f"did:{did}": record for did, record in records}, 1000)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(cache) == 2000
    per_device = (after - before) / 2000
    assert per_device < 1024, per_device
    assert did_entry(records[0][1], None, 7).height == 7


def test_values_proven_below_the_cache_s_height_are_not_loaded() -> None:
    """A load of values older than the block the cache has applied (a revocation may lie between) is
    refused, naming both heights, and leaves the newer entry in place."""
    key = Ed25519PrivateKey.generate()
    did = str(trellis_did("testnet", key.public_key))
    record = {"document": initial_document(did, key.public_key).to_json(), "deactivated": False}
    cache = LedgerCache("testnet", None, clock=time.time)
    cache.load({f"did:{did}": record}, 6)
    cache.confirm(6)
    with pytest.raises(ValueError, match="proven at block 5 are older than block 6"):
        cache.load({f"did:{did}": {**record, "deactivated": True}}, 5)
    entry = cache.cached_did(did)
    assert entry is not None and entry.height == 6


def test_a_cache_too_far_behind_starts_afresh_and_ends_sessions(ledger: Ledger) -> None:  # noqa: F811
    """Past MAX_CATCH_UP blocks behind, the cache drops everything and tells listeners anything may have changed."""
    from verifier.ledger_cache import MAX_CATCH_UP, Changes

    device = ledger.enrol()
    with ledger.verifier() as verifier:
        cache = verifier.caches["testnet"]
        cache.catch_up()
        cache.dids([device.did])
        seen: list[Changes] = []
        cache.listeners.append(seen.append)
        assert cache.height is not None
        cache.height -= MAX_CATCH_UP + 1  # as if a thousand blocks had gone by unseen
        cache.catch_up()
        assert len(cache) == 0 and seen and seen[-1].everything


def test_a_node_answering_behind_the_cache_is_passed_over_for_another(ledger: Ledger) -> None:  # noqa: F811
    """Reads go on to the next node when the first answers as of a block older than the cache's head."""
    device = ledger.enrol()
    inner = ledger.transport()
    recorded: dict[bytes, bytes] = {}

    class Stuck(httpx.BaseTransport):
        """``http://stuck`` answers each proof request as it did the first time (a node cut off)."""

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = inner.handle_request(request)
            if request.url.host != "stuck" or request.url.path != "/proofs/state":
                return response
            body = recorded.setdefault(request.content, response.read())
            return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    trust = NetworkTrust("testnet", ("http://stuck", "http://node-1"), ledger.genesis, transport=Stuck())
    with Verifier([trust], follow=False, clock=ledger.clock) as verifier:
        verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)
        ledger.revoke(device)
        verifier.caches["testnet"].catch_up()
        with pytest.raises(Refused) as refused:
            verifier.authenticate_presentation(ledger.present(device, verifier.challenge(AUDIENCE)), AUDIENCE)
        assert refused.value.reason is Reason.REVOKED
        failures = verifier.client("testnet").failures
        assert any("stuck" in failure and "behind block" in failure for failure in failures)
