"""A batch sent again costs the ledger little: creations already on the ledger are found with batched
proven reads and not sent again, and a chunk the ledger refuses transaction by transaction is not
sent again whole for each one.

A reviewer timed the documented recovery of a batch cut short (sent again once its claims are
abandoned): every creation was on the ledger, the node refused them one a request, and the rest of the
chunk was sent again each time (1,000 devices: 1,000 requests carrying 500,500 transactions, 83 s).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from did_registry.ledger.txn import Transaction
from tests.web.test_enrolment import PROFILE, Device, Portal, make_portal, new_device
from tests.web.test_enrolment_recovery import LATER, Died, die, restarted, stored
from web.enrolment_records import EnrolmentResult
from web.organisation import LedgerRefused


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    """A ready portal on an in-memory database."""
    yield from make_portal(tmp_path)


def items_of(portal: Portal, count: int) -> tuple[list[tuple[str, dict[str, object]]], list[Device]]:
    """``count`` fresh tokens, each with a new device's request."""
    tokens = [t.token for t in portal.enrolment.create_tokens(PROFILE, count=count)]
    devices = [new_device() for _ in tokens]
    return [(t, d.request()) for t, d in zip(tokens, devices, strict=True) if t], devices


def test_a_batch_cut_short_sent_again_sends_no_creation_again(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process died after the creations committed; the batch sent again finds them all on the
    ledger with one batched proven read and sends none of them (it used to send 60 requests carrying
    1,830 transactions), and enrols every device."""
    items, devices = items_of(portal, 60)
    die(portal.enrolment, monkeypatch, "before_issue")
    with pytest.raises(Died):
        portal.enrolment.enrol_many(items)
    monkeypatch.undo()
    enrolment = restarted(portal)
    portal.clock.now += LATER
    portal.transport.posts.clear()
    results = enrolment.enrol_many(items)
    assert [r.did for r in results if isinstance(r, EnrolmentResult)] == [d.did for d in devices]
    assert portal.transport.posts == []
    assert stored(enrolment)[0] == ["used"] * 60


def test_a_chunk_of_creations_on_the_ledger_already_is_refused_once(portal: Portal) -> None:
    """Creations committed already (the answer to their batch lost) sent with fresh tokens: the first
    refusal (a replay) leads to one batched proven read that finds every one of them, so the chunk is
    posted once (it used to be posted once per creation, less one each time)."""
    items, devices = items_of(portal, 40)
    portal.client.submit_and_wait([portal.enrolment._endorsed(d.txn) for d in devices])
    portal.transport.posts.clear()
    results = portal.enrolment.enrol_many(items)
    assert [r.did for r in results if isinstance(r, EnrolmentResult)] == [d.did for d in devices]
    assert portal.transport.posts == [40]


def test_many_refusals_in_one_chunk_cost_few_transactions(portal: Portal) -> None:
    """16 of 64 devices whose DIDs another transaction created: each is refused for itself and the others
    are enrolled, the chunk sent again in halves after the second refusal (it used to be sent again
    whole for each refusal: 17 requests, 952 transactions)."""
    items, devices = items_of(portal, 64)
    taken = devices[::4]
    clashes = [
        Transaction.build("did.create", network="testnet", submitter=d.did, nonce=2, body=d.txn.body)
        for d in taken
    ]
    portal.client.submit_and_wait(
        [
            portal.enrolment._endorsed(c.signed(d.key, f"{d.did}#key-1"))
            for c, d in zip(clashes, taken, strict=True)
        ]
    )
    portal.transport.posts.clear()
    results = portal.enrolment.enrol_many(items)
    refused = [n for n, r in enumerate(results) if isinstance(r, LedgerRefused)]
    assert refused == list(range(0, 64, 4))
    assert all(isinstance(r, EnrolmentResult) for n, r in enumerate(results) if n % 4)
    carried = sum(portal.transport.posts)
    assert carried <= 64 * 6, (len(portal.transport.posts), carried)  # n log2 n, not n k
