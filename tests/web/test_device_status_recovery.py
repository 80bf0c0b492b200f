"""Device status changes that fail part-way: the portal's record converges on the ledger.

Against a real in-process ledger node (``make_portal``): a change cut short after the ledger committed
it (the database failed, the process stopped, the ledger's answer timed out) is recorded by the next
attempt, in one database transaction with the issuer's bits and the caller's audit rows; a database
busy before the ledger is written refuses the change with nothing changed.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, update
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from tests.web.test_enrolment import Portal, make_portal, new_device
from wallet.storage import IssuedCredentialRow
from web import device_status
from web.device_status import StatusEvent, StatusNotRecorded, StatusStoreBusy
from web.devices_pages import ACTIONS
from web.enrolment_records import DeviceRow, DeviceStateConflict, EnrolmentResult
from web.organisation import LedgerUnreachable


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    """A ready portal on an in-memory database."""
    yield from make_portal(tmp_path)


@pytest.fixture
def file_portal(tmp_path: Path) -> Iterator[Portal]:
    """A ready portal on an SQLite file whose connections wait 0.3 s for a busy database (not 5 s)."""
    for made in make_portal(tmp_path, f"sqlite:///{tmp_path}/portal.db"):
        engine = made.enrolment.engine

        def short_wait(connection: Any, _record: Any) -> None:
            connection.execute("PRAGMA busy_timeout=300")

        event.listen(engine, "connect", short_wait)
        engine.dispose()  # every connection from now on waits 0.3 s
        yield made


def enrolled(portal: Portal, count: int = 1) -> list[EnrolmentResult]:
    """``count`` devices enrolled through the portal."""
    return [portal.enrolment.enrol(portal.token(), new_device().request()) for _ in range(count)]


def recorded(portal: Portal, result: EnrolmentResult) -> tuple[str, bool, bool]:
    """The portal's record of a device: its row's status and the issuer's revoked and suspended flags."""
    with Session(portal.enrolment.engine) as session:
        row = session.get(DeviceRow, result.did)
        credential = session.get(IssuedCredentialRow, result.credential_id)
    assert row is not None and credential is not None
    return row.status, credential.revoked, credential.suspended


def events_into(found: list[StatusEvent]) -> Callable[[Session, Sequence[StatusEvent]], None]:
    """A ``record`` hook that keeps the events it is given."""

    def record(_: Session, events: Sequence[StatusEvent]) -> None:
        found.extend(events)

    return record


def fail_row_update_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next update of device rows fails as a busy database does (then the real one is back)."""

    def locked(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(device_status, "update", update)
        raise OperationalError("UPDATE portal_device", {}, Exception("database is locked"))

    monkeypatch.setattr(device_status, "update", locked)


def time_out_once(portal: Portal, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next wait for a commit ends as a timeout does, the transaction admitted and still pending."""
    real, calls = portal.client.wait, []

    def slow(ids: Any, timeout: float = 30.0) -> Any:
        calls.append(1)
        if len(calls) == 1:
            return [{"id": i, "status": "pending"} for i in ids]
        return real(ids, timeout)

    monkeypatch.setattr(portal.client, "wait", slow)


def settle(portal: Portal, list_name: str, index: int, want: int) -> None:
    """Wait until the ledger has committed the pending change of a bit."""
    deadline = time.monotonic() + 10
    while portal.bit("", list_name, index) != want:
        assert time.monotonic() < deadline, "the pending change never committed"
        time.sleep(0.02)


def committed_after_a_timeout(
    portal: Portal, monkeypatch: pytest.MonkeyPatch, action: str, list_name: str, devices: list[Any]
) -> None:
    """``action`` each of ``devices`` with its answer timing out, then wait until the ledger committed it."""
    for device in devices:
        time_out_once(portal, monkeypatch)
        with pytest.raises(LedgerUnreachable):
            portal.enrolment.change(action, [device.did], allowed=ACTIONS[action])
        settle(portal, list_name, device.status_index, 1)
        monkeypatch.undo()


# -- a change cut short after the ledger committed it --------------------------------------------
def test_a_failure_recording_a_revocation_changes_nothing_locally_and_a_retry_completes_it(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record fails after the ledger committed: 503 ``status_not_recorded`` naming the transaction,
    and neither the issuer's bit nor the row changed (one transaction). The retry records it (it used
    to be refused with 409 for ever): its transaction is sent again (a change asked for always is; it
    changes nothing on the ledger) and its event says the ledger showed it made already."""
    [device] = enrolled(portal)
    fail_row_update_once(monkeypatch)
    with pytest.raises(StatusNotRecorded) as failed:
        portal.enrolment.change("revoke", [device.did], allowed=ACTIONS["revoke"])
    assert failed.value.status == 503 and failed.value.code == "status_not_recorded"
    [txn] = failed.value.txns.values()
    assert txn in str(failed.value) and failed.value.dids == (device.did,)
    assert portal.bit("", "1-revocation", device.status_index) == 1
    assert recorded(portal, device) == ("active", False, False)

    portal.transport.posts.clear()
    events: list[StatusEvent] = []
    change = portal.enrolment.change(
        "revoke", [device.did], allowed=ACTIONS["revoke"], record=events_into(events)
    )
    [again] = change.txns.values()
    assert [d.status for d in change.devices] == ["revoked"] and again["id"] != txn
    assert portal.transport.posts == [1]  # sent again: the ledger's state is never taken for the change
    assert recorded(portal, device) == ("revoked", True, False)
    [done] = events
    assert (done.action, done.txn, done.requested) == ("revoke", again["id"], True)
    assert done.found is not None and done.found.portal_status == "active"


def test_a_half_recorded_revocation_left_by_earlier_versions_is_completed(portal: Portal) -> None:
    """The state the old three-step change left (issuer revoked, ledger revoked, row active): revoking
    again completes it, and a bulk revoke with a healthy device revokes both."""
    stuck, healthy = enrolled(portal, 2)
    organisation = portal.enrolment.organisation
    organisation.transact(
        portal.client, [("status_list.update", {"list": "1-revocation", "set": [stuck.status_index]})]
    )
    portal.enrolment.issuer.revoke(stuck.credential_id)
    assert recorded(portal, stuck) == ("active", True, False)
    change = portal.enrolment.change("revoke", [stuck.did, healthy.did], allowed=ACTIONS["revoke"])
    assert [d.status for d in change.devices] == ["revoked", "revoked"]
    assert recorded(portal, stuck) == recorded(portal, healthy) == ("revoked", True, False)
    assert portal.bit("", "1-revocation", healthy.status_index) == 1
    [(name, status)] = change.txns.items()  # one transaction, for the healthy device's bit only
    assert name == "1-revocation" and status["status"] == "committed"


def test_a_bulk_change_whose_record_fails_says_which_devices_the_ledger_changed(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bulk revoke whose record fails names every device and transaction the ledger committed; none
    is recorded half-way; repeating the bulk revoke records them all (its one transaction sent again)."""
    devices = enrolled(portal, 3)
    dids = [d.did for d in devices]
    fail_row_update_once(monkeypatch)
    with pytest.raises(StatusNotRecorded) as failed:
        portal.enrolment.change("revoke", dids, allowed=ACTIONS["revoke"])
    assert sorted(failed.value.dids) == sorted(dids) and list(failed.value.txns) == ["1-revocation"]
    assert all(recorded(portal, d) == ("active", False, False) for d in devices)
    portal.transport.posts.clear()
    change = portal.enrolment.change("revoke", dids, allowed=ACTIONS["revoke"])
    assert [d.status for d in change.devices] == ["revoked"] * 3 and portal.transport.posts == [1]
    assert all(recorded(portal, d) == ("revoked", True, False) for d in devices)


def test_a_failing_record_hook_rolls_back_the_whole_record(portal: Portal) -> None:
    """The caller's rows (its audit entries) are written in the change's transaction: when they fail,
    the issuer's bit and the row stay as they were, and the retry writes them with the change."""
    [device] = enrolled(portal)

    def broken(_: Session, __: Sequence[StatusEvent]) -> None:
        raise RuntimeError("audit insert failed")

    with pytest.raises(StatusNotRecorded, match="audit insert failed"):
        portal.enrolment.change("suspend", [device.did], allowed=ACTIONS["suspend"], record=broken)
    assert recorded(portal, device) == ("active", False, False)
    assert portal.bit("", "1-suspension", device.status_index) == 1
    events: list[StatusEvent] = []
    portal.enrolment.change("suspend", [device.did], allowed=ACTIONS["suspend"], record=events_into(events))
    assert recorded(portal, device) == ("suspended", False, True)
    [event] = events
    assert (event.action, event.requested) == ("suspend", True) and event.txn is not None
    assert event.found is not None and event.found.portal_status == "active"


# -- a busy database ----------------------------------------------------------------------------
def hold_database(path: Path, seconds: float, held: threading.Event) -> threading.Thread:
    """Another writer (a second portal process, a CLI) holding the database's write lock."""

    def other_writer() -> None:
        connection = sqlite3.connect(path, timeout=10)
        connection.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        connection.rollback()
        connection.close()

    thread = threading.Thread(target=other_writer)
    thread.start()
    held.wait()
    return thread


def test_a_busy_database_refuses_the_change_before_the_ledger(file_portal: Portal, tmp_path: Path) -> None:
    """The database is held by another writer past the wait: 503 ``database_busy`` with nothing sent to
    the ledger and nothing changed (it used to be a 409 after the ledger had committed the change)."""
    [device] = enrolled(file_portal)
    height = file_portal.height()
    thread = hold_database(tmp_path / "portal.db", 1.5, threading.Event())
    try:
        with pytest.raises(StatusStoreBusy) as busy:
            file_portal.enrolment.change("revoke", [device.did], allowed=ACTIONS["revoke"])
    finally:
        thread.join()
    assert busy.value.status == 503 and "Nothing was sent to the ledger" in str(busy.value)
    assert file_portal.height() == height and file_portal.bit("", "1-revocation", device.status_index) == 0
    assert recorded(file_portal, device) == ("active", False, False)
    assert [d.status for d in file_portal.enrolment.revoke(device.did)] == ["revoked"]


def test_a_database_busy_after_the_ledger_committed_is_a_503_and_the_retry_records_it(
    file_portal: Portal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database is taken by another writer between the ledger's commit and the record: 503
    ``status_not_recorded`` saying the ledger committed it (not 409 ``device_state``); the retry records it."""
    [device] = enrolled(file_portal)
    organisation = file_portal.enrolment.organisation
    real = organisation.transact
    threads: list[threading.Thread] = []

    def then_busy(*args: Any, **kwargs: Any) -> Any:
        statuses = real(*args, **kwargs)
        threads.append(hold_database(tmp_path / "portal.db", 1.5, threading.Event()))
        return statuses

    monkeypatch.setattr(organisation, "transact", then_busy)
    try:
        with pytest.raises(StatusNotRecorded, match="the ledger committed the change"):
            file_portal.enrolment.change("suspend", [device.did], allowed=ACTIONS["suspend"])
    finally:
        for thread in threads:
            thread.join()
    monkeypatch.setattr(organisation, "transact", real)
    assert recorded(file_portal, device) == ("active", False, False)
    assert file_portal.bit("", "1-suspension", device.status_index) == 1
    file_portal.enrolment.change("suspend", [device.did], allowed=ACTIONS["suspend"])
    assert recorded(file_portal, device) == ("suspended", False, True)


# -- a ledger answer that timed out -------------------------------------------------------------
def test_a_timed_out_suspension_that_committed_can_be_reinstated(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The suspension's answer timed out and the ledger committed it later: the record still says
    active, yet reinstating is allowed by the proven state, and the events say what was found."""
    first, second = enrolled(portal, 2)
    committed_after_a_timeout(portal, monkeypatch, "suspend", "1-suspension", [first, second])
    assert recorded(portal, first) == ("active", False, False)
    change = portal.enrolment.change("reinstate", [first.did], allowed=ACTIONS["reinstate"])
    assert [d.status for d in change.devices] == ["active"]
    assert portal.bit("", "1-suspension", first.status_index) == 0
    assert recorded(portal, first) == ("active", False, False)
    events: list[StatusEvent] = []  # the second device: the events the change records
    change = portal.enrolment.change(
        "reinstate", [second.did], allowed=ACTIONS["reinstate"], record=events_into(events)
    )
    found, done = events
    assert (found.action, found.txn, found.requested) == ("suspend", None, False)
    assert (done.action, done.requested) == ("reinstate", True)
    assert done.txn == change.txns["1-suspension"]["id"]


def test_a_timed_out_change_repeated_completes_without_another_transaction(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Repeating a timed-out suspension after it committed records it; its transaction is sent again
    (it used to be recorded from the ledger's state alone, which a node behind could fake)."""
    [device] = enrolled(portal)
    time_out_once(portal, monkeypatch)
    with pytest.raises(LedgerUnreachable):
        portal.enrolment.change("suspend", [device.did], allowed=ACTIONS["suspend"])
    settle(portal, "1-suspension", device.status_index, 1)
    portal.transport.posts.clear()
    change = portal.enrolment.change("suspend", [device.did], allowed=ACTIONS["suspend"])
    assert [d.status for d in change.devices] == ["suspended"] and portal.transport.posts == [1]
    assert recorded(portal, device) == ("suspended", False, True) and change.txns["1-suspension"]["id"]


def test_a_timed_out_reinstatement_that_committed_can_be_suspended_again(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reinstatement committed after its answer timed out: the record says suspended, the ledger
    active; suspending again is allowed (the proven state admits it) and sets the bit again."""
    [device] = enrolled(portal)
    portal.enrolment.change("suspend", [device.did], allowed=ACTIONS["suspend"])
    time_out_once(portal, monkeypatch)
    with pytest.raises(LedgerUnreachable):
        portal.enrolment.change("reinstate", [device.did], allowed=ACTIONS["reinstate"])
    settle(portal, "1-suspension", device.status_index, 0)
    assert recorded(portal, device) == ("suspended", False, True)
    change = portal.enrolment.change("suspend", [device.did], allowed=ACTIONS["suspend"])
    assert [d.status for d in change.devices] == ["suspended"] and change.txns
    assert portal.bit("", "1-suspension", device.status_index) == 1


def test_a_timed_out_revocation_refuses_a_suspension_and_is_recorded(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A revocation that committed after its answer timed out: suspending is refused (revocation is
    final) with nothing sent, and the portal's record is brought in line (revoked, audited by the hook)."""
    first, second = enrolled(portal, 2)
    committed_after_a_timeout(portal, monkeypatch, "revoke", "1-revocation", [first, second])
    height = portal.height()
    with pytest.raises(DeviceStateConflict, match="revoked on the ledger") as refused:
        portal.enrolment.change("suspend", [first.did], allowed=ACTIONS["suspend"])
    assert "brought in line" in str(refused.value) and portal.height() == height
    assert recorded(portal, first) == ("revoked", True, False)
    assert portal.bit("", "1-suspension", first.status_index) == 0
    events: list[StatusEvent] = []  # the second device: the event the refusal records
    with pytest.raises(DeviceStateConflict, match="revoked on the ledger"):
        portal.enrolment.change("reinstate", [second.did], record=events_into(events))
    [found] = events
    assert (found.action, found.txn, found.requested, found.list) == ("revoke", None, False, "1-revocation")
    assert recorded(portal, second) == ("revoked", True, False)


def test_reconcile_records_what_the_ledger_shows(portal: Portal, monkeypatch: pytest.MonkeyPatch) -> None:
    """``reconcile`` alone brings the record in line; a device in line is left as it is."""
    changed, steady = enrolled(portal, 2)
    time_out_once(portal, monkeypatch)
    with pytest.raises(LedgerUnreachable):
        portal.enrolment.change("suspend", [changed.did], allowed=ACTIONS["suspend"])
    settle(portal, "1-suspension", changed.status_index, 1)
    events: list[StatusEvent] = []
    devices = portal.enrolment.reconcile([changed.did, steady.did], record=events_into(events))
    assert [d.status for d in devices] == ["suspended", "active"]
    assert [(e.did, e.action, e.requested) for e in events] == [(changed.did, "suspend", False)]
    assert events[0].found is not None and events[0].found.list_height is not None
    assert portal.enrolment.reconcile([changed.did], record=events_into(events)) and len(events) == 1


def test_refusals_still_change_nothing(portal: Portal) -> None:
    """A device in line with the ledger: suspending a suspended one or reinstating an active one is
    refused with nothing sent, as before."""
    first, second = enrolled(portal, 2)
    portal.enrolment.change("suspend", [first.did], allowed=ACTIONS["suspend"])
    height = portal.height()
    with pytest.raises(DeviceStateConflict, match="is suspended: it cannot be suspended"):
        portal.enrolment.change("suspend", [first.did], allowed=ACTIONS["suspend"])
    with pytest.raises(DeviceStateConflict, match="is active: it cannot be reinstated"):
        portal.enrolment.change("reinstate", [first.did, second.did], allowed=ACTIONS["reinstate"])
    assert portal.height() == height
    assert recorded(portal, first) == ("suspended", False, True)
    assert recorded(portal, second) == ("active", False, False)
