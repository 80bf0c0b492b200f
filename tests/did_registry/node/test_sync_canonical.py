"""A block served for catch-up is read as its canonical bytes: a peer cannot make an honest node
refuse, or halt on, the real certified block by writing its JSON differently (an integer as 5.0)."""

from __future__ import annotations

import json

import httpx

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.application import LedgerApplication
from did_registry.ledger.block import Block
from did_registry.ledger.storage.memory import MemoryLedgerStore
from did_registry.node.service import NodeService
from did_registry.node.sync import BlockSource, install
from tests.did_registry.node.conftest import Node, make_node


def _leader() -> Node:
    """A node whose block 4 sets bit 5 of a status list."""
    leader = make_node()
    issuer = leader.onboard("issuer")  # blocks 1 and 2
    leader.commit(issuer.txn("status_list.create", {"list": "rev", "purpose": "revocation"}))
    leader.commit(issuer.txn("status_list.update", {"list": "rev", "set": [5]}))
    return leader


def _floats(data: dict[str, object]) -> None:
    """Write the integers of every status_list.update's ``set`` as floats (the same JCS bytes)."""
    for item in data["blocks"]:  # type: ignore[attr-defined]
        for txn in item["block"]["txns"]:
            if txn["type"] == "status_list.update":
                txn["body"]["set"] = [float(i) for i in txn["body"]["set"]]


def test_a_block_with_integers_written_as_floats_installs_as_the_real_one() -> None:
    """A peer serves the real certified blocks with 5 written as 5.0 (ids, signatures and txn_root
    still check): the follower installs them and reaches the leader's state root (it halted, told
    to check its store, which was sound)."""
    leader = _leader()

    def hostile(request: httpx.Request) -> httpx.Response:
        answer = leader.client.get("/sync/blocks", query_string=dict(request.url.params)).get_json()
        _floats(answer)
        return httpx.Response(
            200, content=json.dumps(answer).encode(), headers={"Content-Type": "application/json"}
        )

    source = BlockSource(["http://hostile.test"])
    source._client.close()
    source._client = httpx.Client(transport=httpx.MockTransport(hostile))
    follower = NodeService(
        LedgerApplication(MemoryLedgerStore(), leader.service.app.genesis),
        validator_id="observer",
        validator_key=Ed25519PrivateKey.generate(),
    )
    try:
        install(follower, source.fetch(1))
    finally:
        source._client.close()
        leader.service.stop()
    assert follower.halted is None
    assert follower.app.head == leader.service.app.head


def test_a_parsed_block_holds_its_transactions_canonical_values() -> None:
    """Block.from_json reads each transaction back from its canonical bytes: 5.0 becomes 5."""
    leader = _leader()
    try:
        answer = leader.client.get("/sync/blocks", query_string={"from": "4"}).get_json()
    finally:
        leader.service.stop()
    _floats(answer)
    block = Block.from_json(answer["blocks"][0]["block"])
    [update] = [t for t in block.txns if t.type == "status_list.update"]
    assert update.body["set"] == [5] and type(update.body["set"][0]) is int
