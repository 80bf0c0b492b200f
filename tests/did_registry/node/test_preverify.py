"""The background signature checks: requests first seen as forwarded are verified before their block."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey, Ed25519PublicKey
from did_registry.ledger.application import LedgerApplication
from did_registry.ledger.storage.memory import MemoryLedgerStore
from did_registry.ledger.txn import Transaction
from did_registry.node.block_app import LedgerBlockApp, request_bytes
from did_registry.node.preverify import Preverifier
from did_registry.node.service import NodeService
from tests.did_registry.ledger.conftest import Actor, creates, make_genesis, new_actor

_TIME = "2026-01-02T00:00:00Z"


def _node(trustee: Actor, key: Ed25519PrivateKey) -> LedgerBlockApp:
    app = LedgerApplication(MemoryLedgerStore(), make_genesis(trustee, key))
    return LedgerBlockApp(NodeService(app, validator_id="node-1", validator_key=key))


def _wait(until: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not until() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Record every Ed25519 verification from now on (its message)."""
    seen: list[bytes] = []
    original = Ed25519PublicKey.verify

    def counting(self: Ed25519PublicKey, message: bytes, signature: bytes) -> None:
        seen.append(message)
        original(self, message, signature)

    monkeypatch.setattr(Ed25519PublicKey, "verify", counting)
    return seen


def test_forwarded_requests_are_verified_before_their_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """A validator that glanced at forwarded requests has their signatures checked in the background;
    validating the block holding them then verifies no transaction signature again."""
    trustee, key = new_actor(), Ed25519PrivateKey.generate()
    node = _node(trustee, key)
    txns = creates(trustee, 5)
    requests = [request_bytes(t) for t in txns]
    seen = _counting(monkeypatch)
    assert all(node.check(r) for r in requests)
    _wait(lambda: node.preverifier.done >= 5)
    assert node.preverifier.done == 5 and len(seen) == 10
    seen.clear()
    block = node.propose(1, requests, _TIME)
    assert block is not None and len(node.requests(block)) == 5
    assert seen == []
    node.close()


def test_a_full_queue_drops_work_and_close_stops_the_thread() -> None:
    """Work beyond the queue's size is dropped (counted), never waited for; close ends the thread."""
    trustee, key = new_actor(), Ed25519PrivateKey.generate()
    app = LedgerApplication(MemoryLedgerStore(), make_genesis(trustee, key))
    preverifier = Preverifier(app, size=2)
    gate = threading.Event()
    original = app.preverify

    def held(txns: Sequence[Transaction]) -> None:
        gate.wait(10)
        original(txns)

    app.preverify = held  # type: ignore[method-assign]
    preverifier.offer(creates(trustee, 1))  # taken by the thread, which then waits at the gate
    _wait(lambda: preverifier.waiting == 0)
    preverifier.offer(creates(trustee, 5))
    assert preverifier.dropped == 3
    gate.set()
    _wait(lambda: preverifier.done == 3)
    assert preverifier.done == 3
    assert preverifier.running
    preverifier.close()
    assert not preverifier.running


def test_the_queue_is_bounded_in_bytes_too() -> None:
    """Large requests a peer forwards fill the queue's bytes before its count: beyond max_bytes they
    are dropped (they were queued up to 20,000 of them, about 5 GiB of 256 KiB requests), and what
    the queue holds is given back as the thread takes it."""
    trustee, key = new_actor(), Ed25519PrivateKey.generate()
    app = LedgerApplication(MemoryLedgerStore(), make_genesis(trustee, key))
    network = app.genesis.network
    big = [
        Transaction.build(
            "did.update", network=network, submitter=f"did:junk:{n}", nonce=1, body={"pad": "a" * 100_000}
        )
        for n in range(10)
    ]
    preverifier = Preverifier(app, max_bytes=350_000)
    gate = threading.Event()
    original = app.preverify

    def held(txns: Sequence[Transaction]) -> bool:
        gate.wait(10)
        return original(txns)

    app.preverify = held  # type: ignore[method-assign]
    preverifier.offer(big[:1])  # taken by the thread, which then waits at the gate
    _wait(lambda: preverifier.waiting == 0)
    preverifier.offer(big[1:])
    assert (preverifier.waiting, preverifier.dropped) == (3, 6)  # three of about 100 KB fit
    assert 300_000 < preverifier.waiting_bytes <= 350_000
    gate.set()
    _wait(lambda: preverifier.done == 4)
    assert preverifier.waiting_bytes == 0
    preverifier.close()
