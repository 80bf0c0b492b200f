"""State proofs, blocks and certificates, validators, genesis and audit pages over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.identity.did_trellis import trellis_did
from did_registry.ledger.block import Block, BlockHeader, CommitCertificate
from did_registry.ledger.proofs import StateProof
from did_registry.ledger.storage.sql import SQLLedgerStore
from did_registry.ledger.validators import ValidatorSet
from tests.did_registry.ledger.conftest import new_actor
from tests.did_registry.node.conftest import PROBLEM_JSON, Node, block_time, make_node


@pytest.fixture(params=["memory", "sql"])
def stored_node(request: pytest.FixtureRequest) -> Iterator[Node]:
    """A node on the memory store (blocks walked) and on SQLite (pages from the store's own queries)."""
    made = make_node(None if request.param == "memory" else SQLLedgerStore("sqlite://", durable=False))
    yield made
    made.service.stop()


def _validators(node: Node) -> ValidatorSet:
    return ValidatorSet.from_json(node.client.get("/validators").get_json()["set"])


class TestProofs:
    def test_present_key_proves_its_value(self, node: Node) -> None:
        """A DID record comes with a proof that verifies against the certified head."""
        device = node.onboard()
        response = node.client.get("/proofs/state", query_string={"key": f"did:{device.did}"})
        proof = StateProof.from_json(response.get_json())
        value = proof.verify(_validators(node))
        assert value["document"] == device.document() and proof.header.height == node.service.app.height

    def test_absent_key_proves_absence(self, node: Node) -> None:
        """An absent key answers 200 with value null and a proof of absence."""
        node.onboard()
        did = str(trellis_did("testnet", Ed25519PrivateKey.generate().public_key))
        response = node.client.get("/proofs/state", query_string={"key": f"did:{did}"})
        assert response.status_code == 200 and response.get_json()["value"] is None
        assert StateProof.from_json(response.get_json()).verify(_validators(node)) is None

    @pytest.mark.parametrize("query", ["", "?key=", "?key=" + "k" * 3000])
    def test_missing_or_long_key_is_400(self, node: Node, query: str) -> None:
        """The key is required and bounded."""
        response = node.client.get(f"/proofs/state{query}")
        assert response.status_code == 400 and response.mimetype == PROBLEM_JSON


class TestBlocks:
    @pytest.fixture
    def node(self, stored_node: Node) -> Node:
        """Each test runs on both stores."""
        return stored_node

    def test_block_with_certificate(self, node: Node) -> None:
        """A block comes with its transactions and a certificate that verifies."""
        device = new_actor()
        txn = device.txn("did.create", {"document": device.document()}, node.trustee)
        node.commit(txn)
        body = node.client.get("/blocks/1").get_json()
        block = Block.from_json(body["block"])
        assert [t.id for t in block.txns] == [txn.id]
        CommitCertificate.from_json(body["certificate"]).verify(block.header, _validators(node))

    def test_genesis_block_has_no_certificate(self, node: Node) -> None:
        """Block 0 is anchored by genesis, not certified."""
        body = node.client.get("/blocks/0").get_json()
        assert body["certificate"] is None and body["block"]["header"]["height"] == 0

    def test_head_is_the_last_block(self, node: Node) -> None:
        """``/blocks/head`` is the newest committed block."""
        node.onboard("issuer")
        body = node.client.get("/blocks/head").get_json()
        assert body["block"]["header"]["height"] == node.service.app.height == 2

    def test_beyond_head_is_404(self, node: Node) -> None:
        """A height above the head is a 404 problem."""
        for path in ("/blocks/1", "/blocks/999999999999999999999999"):
            response = node.client.get(path)
            assert response.status_code == 404 and response.get_json()["code"] == "not_found"

    def test_pages_of_headers(self, node: Node) -> None:
        """``/blocks`` pages headers with certificates (no transactions) and a next height."""
        for _ in range(4):
            node.onboard()
        first = node.client.get("/blocks?from=0&limit=3").get_json()
        assert [BlockHeader.from_json(i["header"]).height for i in first["blocks"]] == [0, 1, 2]
        assert set(first["blocks"][1]) == {"header", "certificate"} and first["next"] == 3
        last = node.client.get(f"/blocks?from={first['next']}&limit=3").get_json()
        assert [i["header"]["height"] for i in last["blocks"]] == [3, 4] and last["next"] is None
        assert node.client.get("/blocks?from=10").get_json() == {"blocks": [], "next": None}

    @pytest.mark.parametrize("query", ["?limit=0", "?limit=101", "?from=-1", "?from=x", "?limit=1.5"])
    def test_bad_page_is_400(self, node: Node, query: str) -> None:
        """Page parameters are bounded integers."""
        assert node.client.get(f"/blocks{query}").status_code == 400


class TestNetwork:
    def test_validators(self, node: Node) -> None:
        """The validator set holds the one genesis validator."""
        body = node.client.get("/validators").get_json()
        assert [v["id"] for v in body["set"]] == ["node-1"] and body["pending"] == []

    def test_genesis(self, node: Node) -> None:
        """The genesis document is the one the chain started from."""
        assert node.client.get("/genesis").get_json() == node.service.app.genesis.to_json()


class TestAudit:
    @pytest.fixture
    def node(self, stored_node: Node) -> Node:
        """Each test runs on both stores."""
        return stored_node

    def _fill(self, node: Node) -> dict[str, Any]:
        issuer = node.onboard("issuer")  # blocks 1 (create), 2 (grant)
        node.commit(issuer.txn("status_list.create", {"list": "a", "purpose": "revocation"}))  # block 3
        device = node.onboard()  # block 4
        return {"issuer": issuer, "device": device}

    def test_all_transactions_in_order(self, node: Node) -> None:
        """Without filters every committed transaction is listed in chain order."""
        self._fill(node)
        body = node.client.get("/audit/txns").get_json()
        assert [(t["height"], t["index"]) for t in body["txns"]] == [(1, 0), (2, 0), (3, 0), (4, 0)]
        assert body["next"] is None
        first = body["txns"][0]
        assert first["type"] == "did.create" and first["time"] == block_time(1)
        assert first["transaction"]["submitter"] == first["submitter"]

    def test_filters(self, node: Node) -> None:
        """Type, submitter, DID, height and time filters narrow the page."""
        actors = self._fill(node)
        issuer = actors["issuer"].did

        def heights(query: dict[str, Any]) -> list[int]:
            return [
                t["height"] for t in node.client.get("/audit/txns", query_string=query).get_json()["txns"]
            ]

        assert heights({"type": "status_list.create"}) == [3]
        assert heights({"submitter": issuer}) == [1, 3]
        assert heights({"did": issuer}) == [1, 2, 3]  # the grant names it in body.did
        assert heights({"from_height": 2, "to_height": 3}) == [2, 3]
        assert heights({"from_time": block_time(3), "to_time": block_time(4)}) == [3, 4]
        assert heights({"from_time": "2026-01-01T00:02:00.5Z"}) == [3, 4]

    def test_pages_follow_the_cursor(self, node: Node) -> None:
        """Pages of 3 then 1, chained by the cursor, list each transaction once."""
        self._fill(node)
        first = node.client.get("/audit/txns?limit=3").get_json()
        assert len(first["txns"]) == 3 and first["next"] == "3.0"
        second = node.client.get("/audit/txns", query_string={"limit": 3, "cursor": first["next"]}).get_json()
        assert [t["height"] for t in second["txns"]] == [4] and second["next"] is None

    @pytest.mark.parametrize(
        "query",
        ["?limit=0", "?limit=501", "?type=nope", "?cursor=abc", "?cursor=1.2.3", "?from_time=noon",
         "?to_height=x", "?did=" + "d" * 3000, "?from_time=9999-12-31T23:59:59.5-14:00",
         "?to_time=0001-01-01T00:00:00%2B14:00"],
    )  # fmt: skip
    def test_bad_query_is_400(self, node: Node, query: str) -> None:
        """Bad filters, limits and cursors are malformed problems."""
        response = node.client.get(f"/audit/txns{query}")
        assert response.status_code == 400 and response.mimetype == PROBLEM_JSON
