"""A status wait (POST /txns/status with ``wait``) looks up again, on each block, only the
transactions still pending: one pending id beside thousands of settled or unknown ones does not make
every block cost thousands of store reads under the node's lock."""

from __future__ import annotations

import secrets
import threading
from typing import Any

from tests.did_registry.ledger.conftest import new_actor
from tests.did_registry.node.conftest import Node


def test_a_wait_reads_only_pending_transactions_again(node: Node) -> None:
    """Waiting on one pending transaction and 500 unknown ids over three blocks looks each unknown id
    up once (it looked every id up on every block: 2,004 lookups)."""
    actor = new_actor()
    pending = actor.txn("did.create", {"document": actor.document()}, node.trustee)
    assert node.submit(pending).status_code == 202
    ids = [pending.id, *(secrets.token_hex(32) for _ in range(500))]
    lookups: list[str] = []
    status = node.service.status

    def counted(txn_id: str) -> Any:
        lookups.append(txn_id)
        return status(txn_id)

    node.service.status = counted  # type: ignore[method-assign]
    answer: list[Any] = []
    waiter = threading.Thread(target=lambda: answer.extend(node.service.wait_for(ids, 10)))
    waiter.start()
    while len(lookups) < len(ids):  # the first look at every id
        threading.Event().wait(0.01)
    for _ in range(2):
        node.service.produce_block(empty=True)  # blocks that leave it pending
    node.service.produce_block()  # the block committing it
    waiter.join(10)
    assert [s.status for s in answer[:2]] == ["committed", "unknown"]
    assert len(lookups) <= len(ids) + 3  # each block: the pending one again, no more
