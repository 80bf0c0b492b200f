"""A device (or gateway) that sends its enrolment again while the first creation is still pending at
the ledger is enrolled once that creation commits, not refused.

A node answers ``replay`` for a transaction it holds, pending or committed (and for a nonce used
already). The portal looked for the creation on the ledger at once and, not finding it yet, refused
the retry with the ledger's ``replay``: a device whose first answer was lost, retrying at once, was
refused although its creation went on to commit. Now a ``replay`` for a creation a node says it
holds is waited for. (A ``replay`` for a nonce used by another transaction is still refused:
``test_enrolment.test_a_ledger_refusal_releases_the_token``.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from did_registry.client import LedgerUnavailable
from did_registry.node.api_support import EXTENSION
from tests.web.test_enrolment import PROFILE, Device, Portal, make_portal, new_device
from web.enrolment_records import DeviceFilter, EnrolmentResult, TokenUsed
from web.organisation import LedgerUnreachable

DELAY = 0.3  # how long after the retry starts the node commits again


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    """A ready portal on an in-memory database."""
    yield from make_portal(tmp_path)


def blocks_held(monkeypatch: pytest.MonkeyPatch, portal: Portal) -> threading.Event:
    """Let the portal's node make blocks only while the event returned is set (it is, at first):
    transactions it admits meanwhile stay pending."""
    service = portal.transport.inner.app.extensions[EXTENSION]
    produce, making = service.produce_block, threading.Event()
    making.set()

    def gated(*args: Any, **options: Any) -> Any:
        return produce(*args, **options) if making.is_set() else None

    monkeypatch.setattr(service, "produce_block", gated)
    return making


def answer_lost_on(
    monkeypatch: pytest.MonkeyPatch, portal: Portal, call: int, making: threading.Event
) -> Any:
    """Make the ledger client's ``call``-th submission reach the node, with blocks held from then
    on, and its answer be lost (``LedgerUnavailable``); return the real ``submit`` to put back."""
    ledger = portal.enrolment.ledger
    submit, calls = ledger.submit, []

    def lost(txns: Any) -> Any:
        calls.append(1)
        if len(calls) != call:
            return submit(txns)
        making.clear()
        submit(txns)
        raise LedgerUnavailable("the answer was lost")

    monkeypatch.setattr(ledger, "submit", lost)
    return submit


def lost_and_pending(
    monkeypatch: pytest.MonkeyPatch, portal: Portal, token: str, device: Device
) -> threading.Event:
    """Enrol ``device`` with ``token``, its creation reaching the node, the answer lost and blocks
    held from then on (the event returned lets them be made again): the creation stays pending."""
    making = blocks_held(monkeypatch, portal)
    submit = answer_lost_on(monkeypatch, portal, 1, making)
    with pytest.raises(LedgerUnreachable):
        portal.enrolment.enrol(token, device.request())
    monkeypatch.setattr(portal.enrolment.ledger, "submit", submit)
    return making


def resume_later(making: threading.Event) -> threading.Timer:
    """Let the node make blocks again :data:`DELAY` seconds from now."""
    timer = threading.Timer(DELAY, making.set)
    timer.start()
    return timer


def test_an_enrolment_retried_while_its_creation_is_pending_waits_for_it(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retry finds the device's creation pending at the node, which commits it a moment later:
    the device is enrolled (it was refused with the ledger's ``replay``)."""
    token, device = portal.token(), new_device()
    making = lost_and_pending(monkeypatch, portal, token, device)
    timer = resume_later(making)
    result = portal.enrolment.enrol(token, device.request())
    timer.join()
    assert result.did == device.did and not result.repeated
    assert [t.status for t in portal.enrolment.tokens()] == ["used"]
    portal.verify(result.credential)


def test_a_pending_creation_that_never_commits_keeps_its_token_for_its_device(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retry finds the creation pending and the node commits nothing within the timeout: the
    ledger is unreachable for it, the token stays reserved for the device that signed the creation,
    and that device enrols once blocks are made again."""
    token, device = portal.token(), new_device()
    making = lost_and_pending(monkeypatch, portal, token, device)
    monkeypatch.setattr(portal.enrolment, "timeout", 0.5)
    with pytest.raises(LedgerUnreachable, match=r"not committed within 0\.5 s"):
        portal.enrolment.enrol(token, device.request())
    with pytest.raises(TokenUsed):
        portal.enrolment.enrol(token, new_device().request())
    making.set()
    assert portal.enrolment.enrol(token, device.request()).did == device.did


def test_a_batch_retried_while_a_chunk_is_pending_enrols_every_device(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway's batch failed after the node admitted its last chunk (the answer lost); sent again
    while that chunk is pending, every device is enrolled once it commits (its devices were refused
    with the ledger's ``replay``)."""
    monkeypatch.setattr("web.batch_enrolment.BULK_CHUNK", 2)
    tokens = [t.token for t in portal.enrolment.create_tokens(PROFILE, count=6)]
    devices = [new_device() for _ in tokens]
    items = [(t, d.request()) for t, d in zip(tokens, devices, strict=True) if t]
    making = blocks_held(monkeypatch, portal)
    submit = answer_lost_on(monkeypatch, portal, 3, making)
    with pytest.raises(LedgerUnreachable):
        portal.enrolment.enrol_many(items)
    monkeypatch.setattr(portal.enrolment.ledger, "submit", submit)
    timer = resume_later(making)
    results = portal.enrolment.enrol_many(items)
    timer.join()
    assert [r.did if isinstance(r, EnrolmentResult) else r for r in results] == [d.did for d in devices]
    assert {t.status for t in portal.enrolment.tokens()} == {"used"}


def test_a_completed_batch_sent_again_gets_the_same_answers(portal: Portal) -> None:
    """A gateway that lost the answer to a batch that enrolled every device sends it again: each
    device gets its earlier answer (its credential; it was told its token was used), nothing goes to
    the ledger, and a used token with another device is still refused."""
    tokens = [t.token for t in portal.enrolment.create_tokens(PROFILE, count=3)]
    devices = [new_device() for _ in tokens]
    items = [(t, d.request()) for t, d in zip(tokens, devices, strict=True) if t]
    first = portal.enrolment.enrol_many(items)
    portal.transport.posts.clear()
    before = portal.counts()
    stranger = (items[0][0], new_device().request())
    again = portal.enrolment.enrol_many([*items, stranger])
    assert [(r.did, r.credential, r.repeated) for r in again[:3] if isinstance(r, EnrolmentResult)] == [
        (r.did, r.credential, True) for r in first if isinstance(r, EnrolmentResult)
    ]
    assert isinstance(again[3], TokenUsed)
    assert portal.transport.posts == [] and portal.counts() == before


def test_a_batch_creation_still_pending_at_the_timeout_keeps_its_token(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose creations are still pending when the wait runs out: each item is told the ledger
    is unreachable and its token stays reserved for its device (the creation may commit yet; it was
    told the ledger refused it, and the token was free for another device)."""
    tokens = [t.token for t in portal.enrolment.create_tokens(PROFILE, count=2)]
    devices = [new_device() for _ in tokens]
    making = blocks_held(monkeypatch, portal)
    making.clear()
    monkeypatch.setattr(portal.enrolment, "timeout", 0.5)
    results = portal.enrolment.enrol_many(
        [(t, d.request()) for t, d in zip(tokens, devices, strict=True) if t]
    )
    assert all(isinstance(r, LedgerUnreachable) for r in results)
    assert tokens[0] is not None
    with pytest.raises(TokenUsed):
        portal.enrolment.enrol(tokens[0], new_device().request())
    making.set()
    assert portal.enrolment.enrol(tokens[0], devices[0].request()).did == devices[0].did


def test_a_batch_creation_a_node_says_committed_is_proven_first(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node that says a creation committed which is on no ledger (it dropped it): that device is
    not recorded as enrolled (it was, with a credential, on the node's word), its token stays
    reserved, and the other devices of the batch are enrolled."""
    tokens = [t.token for t in portal.enrolment.create_tokens(PROFILE, count=3)]
    devices = [new_device() for _ in tokens]
    ledger = portal.enrolment.ledger
    submit, wait = ledger.submit, ledger.wait

    def dropping(txns: Any) -> list[str]:
        batch = list(txns)
        return [*submit(batch[:-1]), batch[-1].id]  # the last one "admitted", never sent

    def lying(txn_ids: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
        real = {s["id"]: s for s in wait([i for i in txn_ids if i != dropped], timeout)}
        return [real.get(i) or {"id": i, "status": "committed", "height": 1} for i in txn_ids]

    dropped = portal.enrolment._endorsed(devices[-1].txn).id
    monkeypatch.setattr(ledger, "submit", dropping)
    monkeypatch.setattr(ledger, "wait", lying)
    results = portal.enrolment.enrol_many(
        [(t, d.request()) for t, d in zip(tokens, devices, strict=True) if t]
    )
    assert [r.did for r in results[:2] if isinstance(r, EnrolmentResult)] == [d.did for d in devices[:2]]
    assert isinstance(results[2], LedgerUnreachable) and "not proven" in str(results[2])
    assert devices[-1].did not in {d.did for d in portal.enrolment.devices(DeviceFilter(limit=10))}
    assert tokens[2] is not None
    with pytest.raises(TokenUsed):
        portal.enrolment.enrol(tokens[2], new_device().request())
