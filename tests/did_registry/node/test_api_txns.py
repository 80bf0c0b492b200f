"""POST /txns and GET /txns/{id}: admission, batches, status, waiting, and every refusal as a problem."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from did_registry.node.api import MAX_BATCH, MAX_BODY_BYTES
from tests.did_registry.ledger.conftest import new_actor
from tests.did_registry.node.conftest import PROBLEM_JSON, Node, make_node


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    body: dict[str, Any] = response.get_json(force=True)
    assert body["status"] == status and body["code"] == code
    assert body["type"] == f"https://trellis.dev/problems/{code}"
    assert body["title"] and body["detail"]
    return body


class TestSubmit:
    def test_single_transaction_is_accepted_pending(self, node: Node) -> None:
        """One transaction object is admitted: 202 with its id, pending."""
        device = new_actor()
        txn = device.txn("did.create", {"document": device.document()}, node.trustee)
        response = node.client.post("/txns", json=txn.to_json())
        assert response.status_code == 202
        assert response.get_json() == {"txns": [{"id": txn.id, "status": "pending"}]}
        assert node.service.status(txn.id).status == "pending"

    def test_batch_is_accepted_in_order(self, node: Node) -> None:
        """An array of transactions is admitted as a whole, answered in the order sent."""
        devices = [new_actor() for _ in range(3)]
        txns = [d.txn("did.create", {"document": d.document()}, node.trustee) for d in devices]
        response = node.submit(*txns)
        assert response.status_code == 202
        assert [t["id"] for t in response.get_json()["txns"]] == [t.id for t in txns]

    def test_batch_is_all_or_nothing(self, node: Node) -> None:
        """One refused transaction refuses the batch: nothing is pending afterwards."""
        good = new_actor()
        bad = new_actor()
        txns = [
            good.txn("did.create", {"document": good.document()}, node.trustee),
            bad.txn("did.create", {"document": bad.document()}),  # no endorser
        ]
        body = _problem(node.submit(*txns), 403, "forbidden")
        assert body["txn"] == txns[1].id
        assert node.service.pending_count == 0

    @pytest.mark.parametrize(
        ("body", "content_type"),
        [
            (b"{", "application/json"),
            (b"[]", "application/json"),
            (b"42", "application/json"),
            (b'{"type": "did.create"}', "application/json"),
            (
                b'[{"type": "nope", "network": "testnet", "submitter": "did:x:y", "nonce": 1, "body": {}}]',
                None,
            ),
            (b"[" * 100_000 + b"]" * 100_000, "application/json"),
            (b'{"a": 1e999}', "application/merge-patch+json"),
            (b"\xff\xfe", "application/json"),
        ],
    )
    def test_malformed_body_is_400(self, node: Node, body: bytes, content_type: str | None) -> None:
        """Bodies that are not transactions are refused as malformed problems."""
        headers = {"Content-Type": content_type} if content_type else {}
        _problem(node.client.post("/txns", data=body, headers=headers), 400, "malformed")

    def test_too_many_transactions_is_400(self, node: Node) -> None:
        """A batch above the maximum is malformed (checked before parsing each one)."""
        _problem(node.client.post("/txns", json=[{}] * (MAX_BATCH + 1)), 400, "malformed")

    def test_malformed_transaction_names_its_index(self, node: Node) -> None:
        """A malformed transaction in a batch is named by its position."""
        device = new_actor()
        txn = device.txn("did.create", {"document": device.document()}, node.trustee).to_json()
        body = _problem(node.client.post("/txns", json=[txn, {"type": "x"}]), 400, "malformed")
        assert body["index"] == 1

    def test_body_too_large_is_413(self, node: Node) -> None:
        """A body above the size limit is refused before it is read."""
        response = node.client.post(
            "/txns", data=b" " * (MAX_BODY_BYTES + 1), content_type="application/json"
        )
        _problem(response, 413, "payload_too_large")

    def test_wrong_media_type_is_415(self, node: Node) -> None:
        """A body that says it is not JSON is refused."""
        _problem(
            node.client.post("/txns", data=b"{}", content_type="text/plain"), 415, "unsupported_media_type"
        )

    def test_bad_signature_is_401(self, node: Node) -> None:
        """A transaction whose signature does not verify is a 401 problem naming the transaction."""
        device, forger = new_actor(), new_actor()
        txn = device.txn("did.create", {"document": device.document()}, node.trustee).to_json()
        txn["signatures"][1]["signature"] = forger.txn("did.create", {}).signatures[0].signature
        body = _problem(node.client.post("/txns", json=txn), 401, "bad_signature")
        assert len(body["txn"]) == 64

    def test_unendorsed_create_is_403(self, node: Node) -> None:
        """A DID creation without an endorser is forbidden."""
        device = new_actor()
        _problem(node.submit(device.txn("did.create", {"document": device.document()})), 403, "forbidden")

    def test_reference_to_missing_thing_is_404(self, node: Node) -> None:
        """Updating a status list that does not exist is a 404 problem."""
        issuer = node.onboard("issuer")
        _problem(
            node.submit(issuer.txn("status_list.update", {"list": "nope", "set": [1]})), 404, "not_found"
        )

    def test_resubmission_is_409_replay(self, node: Node) -> None:
        """The same transaction twice is a replay, while pending and once committed."""
        device = new_actor()
        txn = device.txn("did.create", {"document": device.document()}, node.trustee)
        assert node.submit(txn).status_code == 202
        _problem(node.submit(txn), 409, "replay")
        node.service.produce_block()
        _problem(node.submit(txn), 409, "replay")

    def test_duplicate_in_batch_is_409_replay(self, node: Node) -> None:
        """A batch holding the same transaction twice is a replay."""
        device = new_actor()
        txn = device.txn("did.create", {"document": device.document()}, node.trustee)
        body = _problem(node.submit(txn, txn), 409, "replay")
        assert body["index"] == 1 and body["txn"] == txn.id

    def test_conflict_is_409(self, node: Node) -> None:
        """Creating an existing DID is a conflict."""
        device = node.onboard()
        _problem(
            node.submit(device.txn("did.create", {"document": device.document()}, node.trustee)),
            409,
            "conflict",
        )

    def test_full_mempool_is_503_overloaded(self) -> None:
        """When the mempool is full the node answers 503 overloaded with Retry-After."""
        small = make_node(max_pending=1)
        first, second = new_actor(), new_actor()
        assert (
            small.submit(first.txn("did.create", {"document": first.document()}, small.trustee)).status_code
            == 202
        )
        response = small.submit(second.txn("did.create", {"document": second.document()}, small.trustee))
        _problem(response, 503, "overloaded")
        assert response.headers["Retry-After"] == "1"

    def test_get_on_txns_is_405_with_allow(self, node: Node) -> None:
        """A method a route does not take is a 405 problem listing the allowed ones."""
        response = node.client.put("/txns")
        _problem(response, 405, "method_not_allowed")
        assert "POST" in response.headers["Allow"]


class TestStatus:
    def test_committed_status_names_height_and_index(self, node: Node) -> None:
        """After its block, a transaction reports committed with its place."""
        device = new_actor()
        txn = device.txn("did.create", {"document": device.document()}, node.trustee)
        header = node.commit(txn)
        assert node.client.get(f"/txns/{txn.id}").get_json() == {
            "id": txn.id,
            "status": "committed",
            "height": header.height,
            "index": 0,
        }

    def test_pending_status(self, node: Node) -> None:
        """Before its block, a transaction reports pending."""
        device = new_actor()
        txn = device.txn("did.create", {"document": device.document()}, node.trustee)
        node.submit(txn)
        assert node.client.get(f"/txns/{txn.id}").get_json()["status"] == "pending"

    def test_rejected_in_block_reports_code(self, node: Node) -> None:
        """A transaction admitted but rejected in its block reports rejected with the rule's code."""
        device = new_actor()
        create = device.txn("did.create", {"document": device.document()}, node.trustee)
        again = device.txn(
            "did.create", {"document": device.document()}, node.trustee
        )  # conflicts once the first is in
        node.submit(create)
        node.submit(again)
        node.service.produce_block()
        body = node.client.get(f"/txns/{again.id}").get_json()
        assert body["status"] == "rejected" and body["code"] in {"conflict", "replay"}

    def test_unknown_is_404(self, node: Node) -> None:
        """An id the node never saw is a 404 problem."""
        body = _problem(node.client.get("/txns/" + "ab" * 32), 404, "not_found")
        assert body["txn"] == "ab" * 32

    @pytest.mark.parametrize("txn_id", ["xyz", "AB" * 32, "ab" * 33, "0"])
    def test_bad_id_is_400(self, node: Node, txn_id: str) -> None:
        """An id that is not 64 lowercase hex digits is malformed."""
        _problem(node.client.get(f"/txns/{txn_id}"), 400, "malformed")

    @pytest.mark.parametrize("wait", ["31", "-1", "abc", "nan", "inf", "1e3", "5" * 40])
    def test_bad_wait_is_400(self, node: Node, wait: str) -> None:
        """``wait`` must be a number of seconds from 0 to 30."""
        _problem(node.client.get(f"/txns/{'ab' * 32}?wait={wait}"), 400, "malformed")

    def test_wait_returns_when_committed(self, node: Node) -> None:
        """``?wait`` holds the request until the block commits, then answers committed."""
        device = new_actor()
        txn = device.txn("did.create", {"document": device.document()}, node.trustee)
        node.submit(txn)
        timer = threading.Timer(0.2, node.service.produce_block)
        timer.start()
        started = time.monotonic()
        body = node.client.get(f"/txns/{txn.id}?wait=10").get_json()
        timer.join()
        assert body["status"] == "committed"
        assert time.monotonic() - started < 5

    def test_wait_times_out_pending(self, node: Node) -> None:
        """If nothing commits within ``wait``, the answer is still pending."""
        device = new_actor()
        txn = device.txn("did.create", {"document": device.document()}, node.trustee)
        node.submit(txn)
        assert node.client.get(f"/txns/{txn.id}?wait=0.1").get_json()["status"] == "pending"


class TestStatusOfMany:
    def _create(self, node: Node) -> Any:
        actor = new_actor()
        return actor.txn("did.create", {"document": actor.document()}, node.trustee)

    def test_committed_pending_and_unknown_in_one_answer(self, node: Node) -> None:
        """POST /txns/status answers for every id, in order: committed, pending, unknown."""
        done, waiting = self._create(node), self._create(node)
        node.commit(done)
        assert node.submit(waiting).status_code == 202
        unknown = "ab" * 32
        answer = node.client.post("/txns/status", json={"ids": [done.id, waiting.id, unknown]})
        assert answer.status_code == 200
        assert [t["status"] for t in answer.get_json()["txns"]] == ["committed", "pending", "unknown"]

    def test_wait_returns_once_all_are_settled(self, node: Node) -> None:
        """With wait, the answer comes when the last pending one commits."""
        txn = self._create(node)
        assert node.submit(txn).status_code == 202
        threading.Timer(0.2, node.service.produce_block).start()
        started = time.monotonic()
        answer = node.client.post("/txns/status", json={"ids": [txn.id], "wait": 5})
        assert answer.get_json()["txns"][0]["status"] == "committed"
        assert time.monotonic() - started < 4

    @pytest.mark.parametrize(
        "body",
        [{}, {"ids": []}, {"ids": ["xyz"]}, {"ids": ["ab" * 32], "wait": 31}, {"ids": ["ab" * 32], "wait": True},
         {"ids": ["ab" * 32] * (MAX_BATCH + 1)}, []],
    )  # fmt: skip
    def test_malformed_requests_are_refused(self, node: Node, body: Any) -> None:
        answer = node.client.post("/txns/status", json=body)
        assert answer.status_code == 400 and answer.content_type == PROBLEM_JSON
