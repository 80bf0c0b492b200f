"""The mempool holds one transaction per submitter and nonce and is bounded in bytes, overall and per
submitter; a transaction refused at the door leaves nothing behind."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from did_registry.identity.did_document_builder import DIDDocumentBuilder
from did_registry.ledger import rules
from did_registry.ledger.txn import Transaction, TxnRejected
from did_registry.node import service as service_module
from did_registry.node.mempool import Mempool
from tests.did_registry.ledger.conftest import NETWORK, Actor, new_actor
from tests.did_registry.node.conftest import Node, make_node


def _update(device: Actor, nonce: int, services: int = 0) -> Transaction:
    """A ``did.update`` of ``device`` with ``nonce`` (its key kept, a service of its own so no two are
    alike), and ``services`` more made-up services to make it larger."""
    builder = DIDDocumentBuilder(device.did)
    builder.add_verification_method(
        device.key.public_key,
        fragment="key-1",
        relationships=("authentication", "capabilityInvocation"),
    )
    document: dict[str, Any] = builder.to_json()
    document["service"] = [
        {
            "id": f"{device.did}#tag",
            "type": "LinkedDomains",
            "serviceEndpoint": f"https://{secrets.token_hex(8)}.example/",
        }
    ]
    if services:
        document["service"] += [
            {
                "id": f"{device.did}#s{n}",
                "type": "LinkedDomains",
                "serviceEndpoint": f"https://s{n}.example/" + "x" * 200,
            }
            for n in range(services)
        ]
    txn = Transaction.build(
        "did.update", network=NETWORK, submitter=device.did, nonce=nonce, body={"document": document}
    )
    return txn.signed(device.key, device.method)


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json(force=True)
    assert body["code"] == code
    return body


class TestOneTransactionPerNonce:
    def test_a_second_transaction_with_a_waiting_nonce_is_refused(self, node: Node) -> None:
        device = node.onboard()
        first, second = _update(device, 2), _update(device, 2)
        assert node.submit(first).status_code == 202
        body = _problem(node.submit(second), 409, "conflict")
        assert body["txn"] == second.id and first.id in body["detail"]
        assert node.service.pending_txns() == [first]

    def test_a_batch_may_not_use_one_nonce_twice(self, node: Node) -> None:
        device = node.onboard()
        body = _problem(node.submit(_update(device, 2), _update(device, 2)), 409, "conflict")
        assert "nonce 2" in body["detail"]
        assert node.service.pending_count == 0

    def test_the_nonce_is_free_again_once_its_transaction_leaves(self, node: Node) -> None:
        device = node.onboard()
        assert node.submit(_update(device, 2)).status_code == 202
        node.service.produce_block()
        assert node.submit(_update(device, 3)).status_code == 202

    def test_following_nonces_of_one_submitter_wait_together(self, node: Node) -> None:
        device = node.onboard()
        assert node.submit(_update(device, 2), _update(device, 3), _update(device, 4)).status_code == 202
        assert node.service.pending_count == 3


class TestBytes:
    def test_past_the_submitters_share_is_overloaded_and_others_still_get_in(self) -> None:
        node = make_node(max_submitter_bytes=40_000)
        try:
            device, other = node.onboard(), node.onboard()
            assert node.submit(_update(device, 2, services=60)).status_code == 202  # ~17 KB
            assert node.submit(_update(device, 3, services=60)).status_code == 202
            body = _problem(node.submit(_update(device, 4, services=60)), 503, "overloaded")
            assert device.did in body["detail"]
            assert node.submit(_update(other, 2, services=60)).status_code == 202
            assert node.service.pending_count == 3
        finally:
            node.service.stop()

    def test_past_the_mempools_bytes_is_overloaded(self) -> None:
        node = make_node(max_pending_bytes=40_000)
        try:
            devices = [node.onboard() for _ in range(3)]
            assert node.submit(_update(devices[0], 2, services=60)).status_code == 202
            assert node.submit(_update(devices[1], 2, services=60)).status_code == 202
            _problem(node.submit(_update(devices[2], 2, services=60)), 503, "overloaded")
            node.service.produce_block()  # committed: their bytes leave with them
            assert node.submit(_update(devices[2], 2, services=60)).status_code == 202
        finally:
            node.service.stop()


class TestMempool:
    def test_discard_gives_back_the_bytes_and_the_nonce(self) -> None:
        device = new_actor()
        pool = Mempool(10, max_bytes=10_000, max_submitter_bytes=10_000)
        txn = _update(device, 1)
        pool.check_room([txn])
        pool.add([txn])
        assert pool.bytes == len(txn.canonical) and txn.id in pool
        with pytest.raises(TxnRejected, match="nonce 1"):
            pool.check_room([_update(device, 1)])
        assert pool.discard(txn.id) == txn
        assert pool.bytes == 0 and len(pool) == 0
        pool.check_room([_update(device, 1)])

    def test_the_count_bound_holds(self) -> None:
        pool = Mempool(2)
        txns = [_update(new_actor(), 1) for _ in range(3)]
        with pytest.raises(TxnRejected) as refused:
            pool.check_room(txns)
        assert refused.value.code == "overloaded"


class TestRefusedLeaveNothing:
    def test_a_refused_did_create_leaves_no_parsed_document(self, node: Node) -> None:
        """Checking ahead parses a did.create's document before the door decides; refused (here a
        bad signature), the parsed document must go, or anyone could fill the node's memory."""
        device = new_actor()
        txn = device.txn("did.create", {"document": device.document()}, node.trustee)
        forged = Transaction.from_json(
            {
                **txn.to_json(),
                "signatures": [
                    {**s.to_json(), "signature": txn.signatures[1].signature} for s in txn.signatures
                ],
            }
        )
        assert node.submit(forged).status_code == 401
        assert forged.id_bytes not in rules._PARSED._parsed

    def test_an_admitted_did_create_keeps_its_parsed_document(self, node: Node) -> None:
        device = new_actor()
        txn = device.txn("did.create", {"document": device.document()}, node.trustee)
        assert node.submit(txn).status_code == 202
        assert txn.id_bytes in rules._PARSED._parsed

    def test_a_batch_refused_for_one_forgets_them_all(self, node: Node) -> None:
        good, bad = new_actor(), new_actor()
        txns = [
            good.txn("did.create", {"document": good.document()}, node.trustee),
            bad.txn("did.create", {"document": bad.document()}),  # no endorser
        ]
        assert node.submit(*txns).status_code == 403
        assert all(t.id_bytes not in rules._PARSED._parsed for t in txns)


def test_the_sweep_keeps_at_most_the_latest_rejections(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rejections the sweep settles are remembered within the same bound as a block's."""
    monkeypatch.setattr(service_module, "_REJECTED_KEPT", 2)
    unendorsed = []
    for _ in range(3):
        device = new_actor()
        unendorsed.append(device.txn("did.create", {"document": device.document()}))  # no endorser
    node.service._pending.add(unendorsed)  # as if the head had admitted them before it moved on
    node.service.sweep_pending()  # the first sweep only marks them
    assert node.service.sweep_pending() == 3
    statuses = sorted(node.service.status(t.id).status for t in unendorsed)  # (swept in no set order)
    assert statuses == ["rejected", "rejected", "unknown"]


class _Consensus:
    """A runner whose engine takes requests of at most ``largest`` bytes (``None``: an observer's)."""

    def __init__(self, largest: int | None) -> None:
        self.largest = largest
        self.handed: list[Transaction] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def submit(self, txns: Any) -> None:
        self.handed.extend(txns)

    def status(self) -> dict[str, Any]:
        return {}

    def max_request_bytes(self) -> int | None:
        return self.largest


class TestLargerThanConsensusTakes:
    """A transaction the engine would drop as larger than a block of the network holds is refused at
    the door: admitted, it would wait in the mempool for ever (the sweep finds nothing wrong)."""

    def test_it_is_refused_413_and_nothing_waits(self, node: Node) -> None:
        device = node.onboard()
        txn = _update(device, 2, services=20)
        consensus = _Consensus(len(txn.leaf) - 1)
        node.service.runner = consensus
        body = _problem(node.submit(txn), 413, "payload_too_large")
        assert body["txn"] == txn.id and str(len(txn.leaf) - 1) in body["detail"]
        assert node.service.pending_count == 0 and consensus.handed == []

    def test_one_that_fits_is_admitted_and_handed_on(self, node: Node) -> None:
        device = node.onboard()
        txn = _update(device, 2, services=20)
        node.service.runner = consensus = _Consensus(len(txn.leaf))
        assert node.submit(txn).status_code == 202
        assert consensus.handed == [txn]

    def test_an_observer_sets_no_bound_of_its_own(self, node: Node) -> None:
        device = node.onboard()
        node.service.runner = _Consensus(None)  # the validators it forwards to decide
        assert node.submit(_update(device, 2, services=20)).status_code == 202

    def test_the_sweep_rejects_one_admitted_before_the_bound_shrank(self, node: Node) -> None:
        """The set grew since (more validators: a NEW-VIEW must carry more copies of a block)."""
        device = node.onboard()
        txn = _update(device, 2, services=20)
        node.service.runner = consensus = _Consensus(None)
        assert node.submit(txn).status_code == 202
        consensus.largest = len(txn.leaf) - 1
        node.service.sweep_pending()  # the first sweep only marks it
        assert node.service.sweep_pending() == 1
        status = node.service.status(txn.id)
        assert (status.status, status.code) == ("rejected", "payload_too_large")
        assert node.service.pending_count == 0
